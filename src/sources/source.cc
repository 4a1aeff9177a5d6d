#include "sources/source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "core/fs.h"
#include "sources/internal.h"

namespace tend::sources {

Result<internal::UniqueFd> internal::OpenInputFile(const std::string& path, const char* kind,
                                                  int64_t* size) {
  internal::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Fail(fs::ErrnoError(path, errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Fail(fs::ErrnoError(path, errno));
  if (S_ISDIR(st.st_mode)) {
    return Fail(Error::Invalid(path + ": is a directory, expected a " + kind + " file"));
  }
  if (size) *size = st.st_size;
  return fd;
}
namespace {

constexpr const char* kSpecHelp =
    "expected a .wav or .csv path, '-' (raw float32 from stdin), 'fd:N' or 'sim[:key=value,...]'";

}  // namespace

Result<std::unique_ptr<Source>> OpenSource(const std::string& spec, const SourceOptions& opts) {
  if (spec.empty()) return Fail(Error::Invalid(std::string("empty source (") + kSpecHelp + ")"));
  if (spec == "sim" || spec.rfind("sim:", 0) == 0) {
    SimulatorOptions base;
    if (opts.sample_rate > 0) base.sample_rate = opts.sample_rate;
    if (opts.channels > 0) base.channels = opts.channels;
    TEND_ASSIGN_OR_RETURN(auto so,
                          SimulatorOptions::Parse(spec.size() > 4 ? spec.substr(4) : "", base));
    TEND_ASSIGN_OR_RETURN(auto sim, PressSimulator::Create(so));
    return std::unique_ptr<Source>(std::move(sim));
  }
  if (spec == "-") return OpenRawFd(STDIN_FILENO, opts, "stdin");
  if (spec.rfind("fd:", 0) == 0) {
    int fd = -1;
    const char* b = spec.data() + 3;
    const char* e = spec.data() + spec.size();
    auto [p, ec] = std::from_chars(b, e, fd);
    if (b == e || ec != std::errc() || p != e || fd < 0) {
      return Fail(Error::Invalid("source '" + spec + "': fd:N needs a file descriptor number"));
    }
    return OpenRawFd(fd, opts, spec);
  }
  const std::string ext = fs::LowerExtension(spec);
  if (ext == "wav" || ext == "wave") return OpenWav(spec, opts);
  if (ext == "csv" || ext == "tsv") return OpenCsv(spec, opts);
  // Anything else: a WAV by content, or an error that says what is accepted.
  internal::UniqueFd fd(::open(spec.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) {
      return Fail(Error::NotFound(fmt::format("source '{}': no such file ({})", spec, kSpecHelp)));
    }
    return Fail(fs::ErrnoError(spec, errno));
  }
  char magic[4] = {};
  if (::read(fd.get(), magic, 4) == 4 && std::memcmp(magic, "RIFF", 4) == 0) {
    return OpenWav(spec, opts);
  }
  return Fail(Error::Unsupported(fmt::format("source '{}': unknown kind ({})", spec, kSpecHelp)));
}

}  // namespace tend::sources
