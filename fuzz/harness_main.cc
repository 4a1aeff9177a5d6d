// A libFuzzer-compatible driver for builds without libFuzzer (g++): runs every seed of a corpus
// directory through LLVMFuzzerTestOneInput, then random mutations of them (bit flips, byte
// insertions and deletions, splices of two seeds, and inserted tokens from a dictionary) for a
// time budget. Usage: HARNESS CORPUS_DIR [SECONDS] [SEED]. Exit 0 when every input returned.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

const char* const kTokens[] = {"[[asset]]\n", "[agent]\n", "=", "\"", "nan", "inf", "-inf",
                               "1e300", "-7", "2147483647", "9223372036854775807", "[", "]",
                               "{", "}", ",", "\n", "id = \"a\"\n", "source = \"sim\"\n",
                               "deadline_s = ", "\"../x.wav@1e300:\"", "true", "0x10", "#"};

std::string Mutate(std::string s, const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng() % n); };
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    switch (rng() % 5) {
      case 0:
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:
        s.insert(pick(s.size() + 1), 1, static_cast<char>(rng() % 256));
        break;
      case 2:
        if (!s.empty()) s.erase(pick(s.size()), 1 + pick(8));
        break;
      case 3: {
        const std::string& o = seeds[pick(seeds.size())];
        const size_t at = pick(o.size() + 1);
        s = s.substr(0, pick(s.size() + 1)) + o.substr(at);
        break;
      }
      default:
        s.insert(pick(s.size() + 1), kTokens[pick(sizeof kTokens / sizeof kTokens[0])]);
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [SECONDS] [SEED]\n", argv[0]);
    return 2;
  }
  const double seconds = argc > 2 ? std::atof(argv[2]) : 3;
  std::mt19937_64 rng(argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1);
  std::vector<std::string> seeds;
  for (const auto& e : std::filesystem::directory_iterator(argv[1])) {
    std::ifstream f(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    seeds.push_back(ss.str());
  }
  if (seeds.empty()) seeds.push_back("");
  long runs = 0;
  for (const auto& s : seeds) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    ++runs;
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    const std::string m = Mutate(seeds[rng() % seeds.size()], seeds, rng);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(m.data()), m.size());
    ++runs;
  }
  std::printf("%s: %ld inputs, no crash\n", argv[1], runs);
  return 0;
}
