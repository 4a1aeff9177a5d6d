// A minimal mutation fuzzer with libFuzzer's command line, for compilers without libFuzzer (g++):
// runs every seed file once, then random byte-level mutations of the seeds until
// -max_total_time seconds have passed. No coverage feedback. A crash is the test's failure; the
// input that caused it is written to <artifact_prefix>crash-<n> first.
//   target [-max_total_time=S] [-seed=N] [-artifact_prefix=P] DIR_OR_FILE...
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

namespace {

std::vector<uint8_t> g_current;
std::string g_prefix = "./";

void OnCrash(int sig) {
  std::string path = g_prefix + "crash-input";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f) {
    std::fwrite(g_current.data(), 1, g_current.size(), f);
    std::fclose(f);
  }
  std::signal(sig, SIG_DFL);
  ::raise(sig);
}

void Run(const std::vector<uint8_t>& in) {
  g_current = in;
  LLVMFuzzerTestOneInput(in.data(), in.size());
}

std::vector<uint8_t> Mutate(std::vector<uint8_t> s, std::mt19937_64& rng,
                            const std::vector<std::vector<uint8_t>>& seeds) {
  const int n = 1 + static_cast<int>(rng() % 6);
  for (int i = 0; i < n; ++i) {
    const size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 6) {
      case 0:  // flip a bit
        if (!s.empty()) s[at % s.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:  // insert a random byte
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), static_cast<uint8_t>(rng()));
        break;
      case 2:  // delete a run
        if (!s.empty()) {
          const size_t len = std::min(s.size() - at % s.size(), 1 + rng() % 8);
          s.erase(s.begin() + static_cast<std::ptrdiff_t>(at % s.size()),
                  s.begin() + static_cast<std::ptrdiff_t>(at % s.size() + len));
        }
        break;
      case 3: {  // an interesting character
        const char* special = "{}[]\",:0123456789-.\\eE\n&=%";
        if (!s.empty())
          s[at % s.size()] = static_cast<uint8_t>(special[rng() % std::strlen(special)]);
        break;
      }
      case 4: {  // splice from another seed
        const auto& o = seeds[rng() % seeds.size()];
        if (!o.empty()) {
          const size_t from = rng() % o.size(), len = std::min(o.size() - from, 1 + rng() % 32);
          s.insert(s.begin() + static_cast<std::ptrdiff_t>(at),
                   o.begin() + static_cast<std::ptrdiff_t>(from),
                   o.begin() + static_cast<std::ptrdiff_t>(from + len));
        }
        break;
      }
      default:  // duplicate a run
        if (!s.empty() && s.size() < 1 << 16) {
          const size_t from = at % s.size(), len = std::min(s.size() - from, 1 + rng() % 16);
          std::vector<uint8_t> run(s.begin() + static_cast<std::ptrdiff_t>(from),
                                   s.begin() + static_cast<std::ptrdiff_t>(from + len));
          s.insert(s.begin() + static_cast<std::ptrdiff_t>(from), run.begin(), run.end());
        }
        break;
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  double seconds = 0;
  uint64_t seed = 1;
  std::vector<std::vector<uint8_t>> seeds;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("-max_total_time=", 0) == 0)
      seconds = std::stod(a.substr(16));
    else if (a.rfind("-seed=", 0) == 0)
      seed = std::stoull(a.substr(6));
    else if (a.rfind("-artifact_prefix=", 0) == 0)
      g_prefix = a.substr(17);
    else if (a[0] == '-')
      continue;  // other libFuzzer flags
    else {
      std::vector<std::filesystem::path> files;
      if (std::filesystem::is_directory(a)) {
        for (const auto& e : std::filesystem::directory_iterator(a)) files.push_back(e.path());
      } else {
        files.push_back(a);
      }
      for (const auto& f : files) {
        std::ifstream in(f, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        const std::string s = ss.str();
        seeds.emplace_back(s.begin(), s.end());
      }
    }
  }
  for (int sig : {SIGSEGV, SIGABRT, SIGFPE, SIGBUS, SIGILL}) std::signal(sig, OnCrash);
  if (seeds.empty()) seeds.emplace_back();
  for (const auto& s : seeds) Run(s);
  std::mt19937_64 rng(seed);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int64_t runs = static_cast<int64_t>(seeds.size());
  while (std::chrono::steady_clock::now() < end) {
    Run(Mutate(seeds[rng() % seeds.size()], rng, seeds));
    ++runs;
  }
  std::printf("fuzz: %lld inputs, no crash\n", static_cast<long long>(runs));
  return 0;
}
