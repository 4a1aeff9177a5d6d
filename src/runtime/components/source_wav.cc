// Source "wav": a WAV recording (PCM 8/16/24/32-bit, float32/64, WAVE_FORMAT_EXTENSIBLE, any
// channel count and rate), replayed as a sample stream.
#include <cstring>
#include <fstream>

#include "runtime/component_util.h"

TEND_COMPONENT(source_wav) {
  using namespace tend;
  runtime::SourceDescriptor d;
  d.name = "wav";
  d.description = "WAV recording (PCM 8-32 bit, float 32/64, any channels), replayed";
  d.extensions = {"wav", "wave"};
  d.sniff = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    char magic[4] = {};
    return f.read(magic, 4) && std::memcmp(magic, "RIFF", 4) == 0;
  };
  d.open = [](const runtime::SourceRequest& req) {
    return runtime::OpenStreamReader(
        req, sources::OpenWav(req.spec, runtime::SourceOptionsFor(req)), false);
  };
  return registry.AddSource(std::move(d));
}
