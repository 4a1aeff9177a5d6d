#include "core/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace tend::fs {

Error ErrnoError(const std::string& what, int err) {
  std::string msg = what + ": " + std::strerror(err);
  if (err == ENOENT) return Error::NotFound(msg);
  return Error::Io(msg);
}

Result<std::vector<uint8_t>> ReadBinaryFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(ErrnoError(path, errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return Fail(ErrnoError(path, e));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Fail(Error::Invalid(path + ": is a directory, expected a file"));
  }
  std::vector<uint8_t> data;
  data.reserve(static_cast<size_t>(st.st_size));
  uint8_t buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return Fail(ErrnoError("read " + path, e));
    }
    if (n == 0) break;
    data.insert(data.end(), buf, buf + n);
  }
  ::close(fd);
  return data;
}

Result<std::string> ReadFile(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(auto bytes, ReadBinaryFile(path));
  return std::string(bytes.begin(), bytes.end());
}

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Fail(ErrnoError("open directory " + dir, errno));
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return Fail(ErrnoError("fsync directory " + dir, e));
  return Ok();
}

namespace {

Status WriteAll(int fd, std::span<const uint8_t> data, const std::string& name) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoError("write " + name, errno));
    }
    off += static_cast<size_t>(n);
  }
  return Ok();
}

Status WriteSpecial(const std::string& path, std::span<const uint8_t> data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Fail(ErrnoError("open " + path, errno));
  Status st = WriteAll(fd, data, path);
  ::close(fd);
  return st;
}

}  // namespace

std::string JoinPath(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

Result<OutputTarget> ResolveOutput(const std::string& path) {
  if (path.empty()) return Fail(Error::Invalid("output path is empty"));
  std::filesystem::path p(path);
  for (int hops = 0;; ++hops) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) {
      if (errno == ENOENT) return OutputTarget{p.string(), false};  // a new file
      return Fail(ErrnoError(p.string(), errno));
    }
    if (S_ISLNK(st.st_mode)) {
      if (hops >= 40) return Fail(Error::Invalid(path + ": too many levels of symbolic links"));
      std::error_code ec;
      std::filesystem::path to = std::filesystem::read_symlink(p, ec);
      if (ec) return Fail(Error::Io(p.string() + ": " + ec.message()));
      p = to.is_absolute() ? to : p.parent_path() / to;
      continue;
    }
    if (S_ISDIR(st.st_mode)) return Fail(Error::Invalid(path + ": is a directory"));
    return OutputTarget{p.string(), !S_ISREG(st.st_mode)};
  }
}

Status CopyInto(const std::string& from, const std::string& to) {
  TEND_ASSIGN_OR_RETURN(auto bytes, ReadBinaryFile(from));
  return WriteSpecial(to, bytes);
}

Result<std::unique_ptr<OutputFile>> OutputFile::Open(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(OutputTarget t, ResolveOutput(path));
  std::unique_ptr<OutputFile> f(new OutputFile());
  f->target_ = t.path;
  f->special_ = t.special;
  f->tmp_ = t.special ? t.path : t.path + ".partial";
  f->file_ = std::fopen(f->tmp_.c_str(), t.special ? "ab" : "wb");
  if (!f->file_) return Fail(ErrnoError("open " + f->tmp_, errno));
  return f;
}

OutputFile::~OutputFile() {
  if (!file_) return;
  std::fclose(file_);
  if (!special_) ::unlink(tmp_.c_str());
}

Status OutputFile::Commit() {
  if (!file_) return Fail(Error::Internal(target_ + ": committed twice"));
  std::FILE* f = file_;
  file_ = nullptr;
  bool ok = std::fflush(f) == 0;
  int e = errno;
  if (ok && !special_ && ::fsync(fileno(f)) != 0) ok = false, e = errno;
  if (std::fclose(f) != 0 && ok) ok = false, e = errno;
  if (!ok) {
    if (!special_) ::unlink(tmp_.c_str());
    return Fail(ErrnoError("write " + tmp_, e));
  }
  if (special_) return Ok();
  if (::rename(tmp_.c_str(), target_.c_str()) != 0) {
    e = errno;
    ::unlink(tmp_.c_str());
    return Fail(ErrnoError("rename " + tmp_ + " -> " + target_, e));
  }
  std::string dir = std::filesystem::path(target_).parent_path().string();
  return FsyncDir(dir.empty() ? "." : dir);
}

Status WriteFileAtomic(const std::string& path_in, std::span<const uint8_t> data) {
  TEND_ASSIGN_OR_RETURN(OutputTarget target, ResolveOutput(path_in));
  if (target.special) return WriteSpecial(target.path, data);
  const std::string& path = target.path;
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Fail(ErrnoError("create " + tmp, errno));
  if (auto st = WriteAll(fd, data, tmp); !st) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return Fail(ErrnoError("fsync " + tmp, e));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return Fail(ErrnoError("rename " + tmp + " -> " + path, e));
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  return FsyncDir(dir.empty() ? "." : dir);
}

Status WriteFileAtomic(const std::string& path, const std::string& data) {
  return WriteFileAtomic(
      path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Fail(Error::Io("create directory " + dir + ": " + ec.message()));
  return Ok();
}

bool Exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

std::string LowerExtension(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

}  // namespace tend::fs
