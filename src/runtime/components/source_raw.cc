// Source "raw": interleaved little-endian float32 frames from stdin ("-") or an inherited file
// descriptor ("fd:N"), with --sample-rate and --channels. Replayed as fast as possible
// (--speed 0) it is waited for like a file; otherwise it is a live sensor (overruns counted).
#include <unistd.h>

#include <charconv>

#include "runtime/component_util.h"

TEND_COMPONENT(source_raw) {
  using namespace tend;
  runtime::SourceDescriptor d;
  d.name = "raw";
  d.description = "float32 frames from stdin ('-') or a file descriptor ('fd:N')";
  d.schemes = {"-", "fd"};
  d.open = [](const runtime::SourceRequest& req) -> Result<std::unique_ptr<agent::EventReader>> {
    const sources::SourceOptions so = runtime::SourceOptionsFor(req);
    int fd = STDIN_FILENO;
    std::string name = "stdin";
    if (req.spec != "-") {
      std::string num = req.spec.substr(req.spec.find(':') + 1);
      auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), fd);
      if (num.empty() || ec != std::errc() || p != num.data() + num.size() || fd < 0) {
        return Fail(
            Error::Invalid("source '" + req.spec + "': fd:N needs a file descriptor number"));
      }
      name = req.spec;
    }
    const bool live = req.settings->GetFloat("agent.speed") > 0;
    return runtime::OpenStreamReader(req, sources::OpenRawFd(fd, so, name), live);
  };
  return registry.AddSource(std::move(d));
}
