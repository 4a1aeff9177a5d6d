// A small mutation fuzzer with libFuzzer's command line, for compilers without libFuzzer (g++):
// it links with any LLVMFuzzerTestOneInput target, so `make test` exercises every target on every
// machine. No coverage feedback: it mutates the seed corpus (and its own recent mutants) with
// byte-level and token-level mutations, and stops at the first crash, writing the input to
// <artifact_prefix>crash-<hash> (or timeout-<hash>) the way libFuzzer does.
//
//   target [-max_total_time=S] [-runs=N] [-seed=N] [-max_len=N] [-timeout=S] [-dict=FILE]
//          [-artifact_prefix=P] [-print_final_stats=1] DIR_OR_FILE...
// Directories are seed corpora (read only). Files alone (no directory) are run once each, as a
// regression check. Unknown -flags are ignored, like libFuzzer ignores unknown ones.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace {

using Bytes = std::vector<uint8_t>;
using Clock = std::chrono::steady_clock;

struct Options {
  double max_total_time = 0;  // 0: no limit
  int64_t runs = -1;          // -1: no limit
  uint64_t seed = 0;          // 0: from the clock
  size_t max_len = 0;         // 0: from the seeds
  double timeout = 25;        // per input
  std::string dict, artifact_prefix = "./";
  std::vector<std::string> inputs;
};

// The input being run, for the crash handlers (written with async-signal-safe calls only).
const uint8_t* g_data = nullptr;
size_t g_size = 0;
char g_artifact_prefix[4096] = "./";
std::atomic<int64_t> g_run_started_ns{0};

uint64_t Fnv1a(const uint8_t* d, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ d[i]) * 1099511628211ull;
  return h;
}

// Writes the current input to <prefix><kind>-<hash>; async-signal-safe.
void DumpInput(const char* kind) {
  char path[4200];
  char hex[17];
  uint64_t h = Fnv1a(g_data, g_size);
  for (int i = 15; i >= 0; --i, h >>= 4) hex[i] = "0123456789abcdef"[h & 15];
  hex[16] = '\0';
  size_t n = 0;
  for (const char* s :
       {static_cast<const char*>(g_artifact_prefix), kind, "-", static_cast<const char*>(hex)}) {
    for (; *s && n + 1 < sizeof path; ++s) path[n++] = *s;
  }
  path[n] = '\0';
  int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    if (g_size > 0 && ::write(fd, g_data, g_size) < 0) {
      // nothing more we can do in a signal handler
    }
    ::close(fd);
  }
  const char* msg = "\n==fuzz== input written to ";
  (void)!::write(2, msg, std::strlen(msg));
  (void)!::write(2, path, n);
  (void)!::write(2, "\n", 1);
}

void OnDeath() { DumpInput("crash"); }

void OnSignal(int sig) {
  const char* msg = "\n==fuzz== deadly signal\n";
  (void)!::write(2, msg, std::strlen(msg));
  DumpInput("crash");
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void InstallCrashHandlers() {
  if (__sanitizer_set_death_callback) {  // ASan/UBSan report first, then call us
    __sanitizer_set_death_callback(OnDeath);
    return;
  }
  // An alternate stack, or a stack overflow could not run the handler.
  static std::vector<char> alt(1 << 16);
  stack_t ss{};
  ss.ss_sp = alt.data();
  ss.ss_size = alt.size();
  ::sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sa.sa_flags = SA_ONSTACK;
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) ::sigaction(sig, &sa, nullptr);
}

// A watchdog thread: an input running longer than the timeout is a hang.
void StartWatchdog(double timeout_s) {
  std::thread([timeout_s] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const int64_t start = g_run_started_ns.load();
      if (start == 0) continue;
      const int64_t now = Clock::now().time_since_epoch().count();
      if (static_cast<double>(now - start) / 1e9 > timeout_s) {
        std::fprintf(stderr, "\n==fuzz== timeout: one input ran longer than %g s\n", timeout_s);
        DumpInput("timeout");
        std::_Exit(70);
      }
    }
  }).detach();
}

bool ReadFile(const std::filesystem::path& p, Bytes& out) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return false;
  out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return true;
}

// libFuzzer dictionary lines: name="value" or "value", with \\, \" and \xNN escapes.
std::vector<Bytes> ReadDict(const std::string& path) {
  std::vector<Bytes> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    size_t q = line.find('"');
    if (line.empty() || line[0] == '#' || q == std::string::npos) continue;
    size_t end = line.rfind('"');
    if (end <= q) continue;
    Bytes tok;
    for (size_t i = q + 1; i < end; ++i) {
      if (line[i] == '\\' && i + 1 < end) {
        if (line[i + 1] == 'x' && i + 3 < end) {
          tok.push_back(static_cast<uint8_t>(std::stoi(line.substr(i + 2, 2), nullptr, 16)));
          i += 3;
        } else {
          tok.push_back(static_cast<uint8_t>(line[++i]));
        }
      } else {
        tok.push_back(static_cast<uint8_t>(line[i]));
      }
    }
    if (!tok.empty()) out.push_back(tok);
  }
  return out;
}

class Mutator {
 public:
  Mutator(uint64_t seed, std::vector<Bytes> dict, size_t max_len)
      : rng_(seed), dict_(std::move(dict)), max_len_(max_len) {}

  // 1 to 5 stacked mutations of `in`, `other` available for splicing.
  Bytes Mutate(const Bytes& in, const Bytes& other) {
    Bytes b = in;
    const int n = 1 + static_cast<int>(Below(5));
    for (int i = 0; i < n; ++i) MutateOnce(b, other);
    if (b.size() > max_len_) b.resize(max_len_);
    return b;
  }
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

 private:
  void MutateOnce(Bytes& b, const Bytes& other) {
    switch (Below(b.empty() ? 3 : 11)) {
      case 0:
        InsertBytes(b, RandomBytes(1 + Below(4)));
        break;
      case 1:
        InsertToken(b);
        break;
      case 2:
        Splice(b, other);
        break;
      case 3:
        b[Below(b.size())] ^= static_cast<uint8_t>(1u << Below(8));
        break;
      case 4:
        b[Below(b.size())] = static_cast<uint8_t>(rng_());
        break;
      case 5:
        Erase(b);
        break;
      case 6:
        CopyChunk(b);
        break;
      case 7:
        InterestingInteger(b);
        break;
      case 8:
        AsciiNumber(b);
        break;
      case 9:
        RepeatChunk(b);
        break;
      default:
        InsertToken(b);
        break;
    }
  }
  Bytes RandomBytes(size_t n) {
    Bytes r(n);
    for (auto& c : r) c = static_cast<uint8_t>(rng_());
    return r;
  }
  void InsertBytes(Bytes& b, const Bytes& what) {
    b.insert(b.begin() + static_cast<ptrdiff_t>(Below(b.size() + 1)), what.begin(), what.end());
  }
  void InsertToken(Bytes& b) {
    static const char* kTokens[] = {"{", "}",  "[",    "]",  "\"",           ",",
                                    ":", "\n", "\r\n", "\0", "\xEF\xBB\xBF", "\\u0000",
                                    "-", ".",  "e",    "E",  "nan",          "inf"};
    if (!dict_.empty() && Below(3) != 0) {
      const Bytes& tok = dict_[Below(dict_.size())];
      if (Below(2)) {
        InsertBytes(b, tok);
      } else if (!b.empty()) {
        size_t at = Below(b.size());
        for (size_t i = 0; i < tok.size() && at + i < b.size(); ++i) b[at + i] = tok[i];
      }
      return;
    }
    const char* t = kTokens[Below(sizeof kTokens / sizeof kTokens[0])];
    size_t len = std::max<size_t>(1, std::strlen(t));
    InsertBytes(b, Bytes(t, t + len));
  }
  void Splice(Bytes& b, const Bytes& other) {
    if (other.empty()) return;
    size_t from = Below(other.size()), len = 1 + Below(other.size() - from);
    if (Below(2)) {
      b.resize(Below(b.size() + 1));  // keep a prefix of b, then a piece of other
      b.insert(b.end(), other.begin() + from, other.begin() + from + len);
    } else {
      InsertBytes(b, Bytes(other.begin() + from, other.begin() + from + len));
    }
  }
  void Erase(Bytes& b) {
    size_t at = Below(b.size()), len = 1 + Below(std::min<size_t>(b.size() - at, 64));
    b.erase(b.begin() + at, b.begin() + at + len);
  }
  void CopyChunk(Bytes& b) {
    size_t from = Below(b.size()), len = 1 + Below(std::min<size_t>(b.size() - from, 64));
    InsertBytes(b, Bytes(b.begin() + from, b.begin() + from + len));
  }
  void InterestingInteger(Bytes& b) {
    static const uint64_t kValues[] = {0,          1,           0x7f,
                                       0x80,       0xff,        0x7fff,
                                       0x8000,     0xffff,      0x7fffffff,
                                       0x80000000, 0xffffffffu, 0xffffffffffffffffull,
                                       44,         48000,       0x7fffffffffffffffull};
    uint64_t v = kValues[Below(sizeof kValues / sizeof kValues[0])];
    size_t width = size_t{1} << Below(4);  // 1, 2, 4, 8 bytes, little-endian
    if (b.size() < width) return;
    size_t at = Below(b.size() - width + 1);
    for (size_t i = 0; i < width; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  void AsciiNumber(Bytes& b) {
    static const char* kNumbers[] = {"0",
                                     "-1",
                                     "1e308",
                                     "1e-400",
                                     "-0",
                                     "nan",
                                     "1e400",
                                     "2147483648",
                                     "9223372036854775808",
                                     "0.5",
                                     "99999999999999999999",
                                     "1.7976931348623157e308",
                                     "4e-324"};
    size_t at = Below(b.size());
    while (at < b.size() && !(b[at] >= '0' && b[at] <= '9')) ++at;
    if (at == b.size()) return;
    size_t end = at;
    while (end < b.size() && ((b[end] >= '0' && b[end] <= '9') || b[end] == '.')) ++end;
    const char* n = kNumbers[Below(sizeof kNumbers / sizeof kNumbers[0])];
    b.erase(b.begin() + at, b.begin() + end);
    b.insert(b.begin() + at, n, n + std::strlen(n));
  }
  // Deep nesting, long lines, many fields: a chunk repeated up to a few thousand times.
  void RepeatChunk(Bytes& b) {
    size_t from = Below(b.size()), len = 1 + Below(std::min<size_t>(b.size() - from, 8));
    Bytes chunk(b.begin() + from, b.begin() + from + len);
    size_t times = 1 + Below(Below(2) ? 16 : 4096);
    Bytes rep;
    for (size_t i = 0; i < times && rep.size() < max_len_; ++i) {
      rep.insert(rep.end(), chunk.begin(), chunk.end());
    }
    InsertBytes(b, rep);
  }

  std::mt19937_64 rng_;
  std::vector<Bytes> dict_;
  size_t max_len_;
};

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* flag) -> const char* {
      size_t n = std::strlen(flag);
      return a.compare(0, n, flag) == 0 ? a.c_str() + n : nullptr;
    };
    if (const char* v = val("-max_total_time=")) {
      o.max_total_time = std::atof(v);
    } else if (const char* v = val("-runs=")) {
      o.runs = std::atoll(v);
    } else if (const char* v = val("-seed=")) {
      o.seed = std::strtoull(v, nullptr, 10);
    } else if (const char* v = val("-max_len=")) {
      o.max_len = std::strtoull(v, nullptr, 10);
    } else if (const char* v = val("-timeout=")) {
      o.timeout = std::atof(v);
    } else if (const char* v = val("-dict=")) {
      o.dict = v;
    } else if (const char* v = val("-artifact_prefix=")) {
      o.artifact_prefix = v;
    } else if (a.empty() || a[0] != '-') {
      o.inputs.push_back(a);
    }
  }
  return o;
}

int64_t RunOne(const Bytes& input) {
  // A copy the size of the input exactly, so that a read past its end is a real overflow.
  std::unique_ptr<uint8_t[]> copy(new uint8_t[std::max<size_t>(input.size(), 1)]);
  if (!input.empty()) std::memcpy(copy.get(), input.data(), input.size());  // data() may be null
  g_data = copy.get();
  g_size = input.size();
  g_run_started_ns = Clock::now().time_since_epoch().count();
  LLVMFuzzerTestOneInput(copy.get(), input.size());
  g_run_started_ns = 0;
  g_data = nullptr;
  g_size = 0;
  return 1;
}

// Reads every file named, or inside a directory named; `any_dir` says whether a corpus was given.
std::vector<Bytes> LoadInputs(const std::vector<std::string>& inputs, bool& any_dir) {
  std::vector<std::filesystem::path> files;
  any_dir = false;
  for (const auto& in : inputs) {
    std::error_code ec;
    if (std::filesystem::is_directory(in, ec)) {
      any_dir = true;
      for (const auto& e : std::filesystem::directory_iterator(in, ec)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else {
      files.push_back(in);
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<Bytes> out;
  for (const auto& f : files) {
    Bytes b;
    if (ReadFile(f, b)) out.push_back(std::move(b));
  }
  return out;
}

// Mutates seeds and recent mutants until the run or time limit; returns the number of runs.
int64_t FuzzLoop(const Options& o, std::vector<Bytes>& seeds, Clock::time_point start) {
  if (seeds.empty()) seeds.push_back({});
  size_t max_len = o.max_len;
  if (max_len == 0) {
    for (const auto& s : seeds) max_len = std::max(max_len, s.size() * 2);
    max_len = std::clamp<size_t>(max_len, 4096, 1 << 20);
  }
  const uint64_t seed =
      o.seed ? o.seed : static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  std::printf("INFO: mutation harness, seed %llu, %zu seeds, max_len %zu\n",
              static_cast<unsigned long long>(seed), seeds.size(), max_len);
  Mutator m(seed, o.dict.empty() ? std::vector<Bytes>{} : ReadDict(o.dict), max_len);
  std::vector<Bytes> recent;  // recent mutants, mutated further for multi-step changes
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  int64_t runs = 0;
  while ((o.runs < 0 || runs < o.runs) && (o.max_total_time <= 0 || elapsed() < o.max_total_time)) {
    const bool from_recent = !recent.empty() && m.Below(2) == 0;
    const Bytes& base = from_recent ? recent[m.Below(recent.size())] : seeds[m.Below(seeds.size())];
    Bytes input = m.Mutate(base, seeds[m.Below(seeds.size())]);
    runs += RunOne(input);
    if (recent.size() < 256) {
      recent.push_back(std::move(input));
    } else {
      recent[m.Below(recent.size())] = std::move(input);
    }
    if ((runs & (runs - 1)) == 0 && runs >= 1024) {
      std::printf("#%lld\texec/s: %lld\n", static_cast<long long>(runs),
                  static_cast<long long>(static_cast<double>(runs) / std::max(elapsed(), 1e-3)));
      std::fflush(stdout);
    }
  }
  return runs;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  Options o = ParseArgs(argc, argv);
  std::snprintf(g_artifact_prefix, sizeof g_artifact_prefix, "%s", o.artifact_prefix.c_str());
  InstallCrashHandlers();
  StartWatchdog(o.timeout);
  bool any_dir = false;
  std::vector<Bytes> seeds = LoadInputs(o.inputs, any_dir);
  const auto start = Clock::now();
  int64_t runs = 0;
  for (const auto& s : seeds) runs += RunOne(s);  // every seed or regression file once, as it is
  if (any_dir) runs += FuzzLoop(o, seeds, start);
  std::printf("Done %lld runs in %lld second(s)\n", static_cast<long long>(runs),
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count()));
  return 0;
}
