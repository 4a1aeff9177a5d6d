// Without libFuzzer (GCC builds): runs a fuzz target over its seed corpus and then over a fixed
// number of deterministic mutations of the seeds (bit flips, truncations, insertions), so every
// build exercises the target and a crash found by libFuzzer, saved into the corpus, stays fixed.
//   <target>_replay CORPUS_DIR [MUTATIONS]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [MUTATIONS]\n", argv[0]);
    return 2;
  }
  std::vector<std::string> seeds;
  for (const auto& e : std::filesystem::directory_iterator(argv[1])) {
    std::ifstream f(e.path(), std::ios::binary);
    seeds.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "%s: no seeds in %s\n", argv[0], argv[1]);
    return 1;
  }
  long mutations = argc > 2 ? std::atol(argv[2]) : 20000;
  for (const auto& s : seeds) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  std::mt19937 rng(12345);
  for (long i = 0; i < mutations; ++i) {
    std::string s = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      switch (rng() % 4) {
        case 0:
          if (!s.empty()) s[rng() % s.size()] ^= static_cast<char>(1u << (rng() % 8));
          break;
        case 1:
          if (!s.empty()) s.resize(rng() % s.size());
          break;
        case 2:
          s.insert(s.begin() + static_cast<long>(s.empty() ? 0 : rng() % s.size()),
                   static_cast<char>(rng() % 256));
          break;
        default:
          if (!s.empty()) s[rng() % s.size()] = static_cast<char>(rng() % 256);
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  std::printf("%zu seeds and %ld mutations: no crash\n", seeds.size(), mutations);
  return 0;
}
