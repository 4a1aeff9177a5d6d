// File-system helpers with crash-safety in mind: whole-file reads with clear errors, and atomic
// replacement (write temp, fsync, rename, fsync the directory) so that a power cut leaves either
// the old or the new file, never a torn one.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::fs {

Result<std::string> ReadFile(const std::string& path);
Result<std::vector<uint8_t>> ReadBinaryFile(const std::string& path);

// Where output for `path` really goes. A symlink is followed to its final target (the link stays,
// its target is what gets replaced). `special` when that target exists and is not a regular file:
// a device, FIFO or socket (/dev/null, /dev/stdout, a named pipe) is written straight through and
// never renamed over — as root, renaming over /dev/null would replace the device node with a file.
struct OutputTarget {
  std::string path;
  bool special = false;
};
Result<OutputTarget> ResolveOutput(const std::string& path);

// Atomically replaces `path` with `data`: <target>.tmp.<pid>, fsync, rename, fsync(dir), where
// the target is ResolveOutput(path); a special target is written straight through.
Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> data);
Status WriteFileAtomic(const std::string& path, const std::string& data);

// Writes the whole file `from` into the special file `to` (no create, no truncate), e.g. a
// finished temporary file into a named pipe.
Status CopyInto(const std::string& from, const std::string& to);

// A streamed output file with the same rules: a regular target is written to
// <target>.partial and renamed over it by Commit() (removed if never committed); a special
// target is written directly.
class OutputFile {
 public:
  static Result<std::unique_ptr<OutputFile>> Open(const std::string& path);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  std::FILE* stream() const { return file_; }
  // Flushes; for a regular target also fsyncs and renames into place.
  Status Commit();

 private:
  OutputFile() = default;
  std::string target_, tmp_;
  bool special_ = false;
  std::FILE* file_ = nullptr;
};

Status FsyncDir(const std::string& dir);
Status MakeDirs(const std::string& dir);
bool Exists(const std::string& path);
// dir/name with one separator (std::filesystem's operator/).
std::string JoinPath(const std::string& dir, const std::string& name);
// The file name's extension without the dot, in lower case ("WAV" -> "wav"); "" when the last
// path component has none.
std::string LowerExtension(const std::string& path);

// "OS said no" message for errno: "open x: Permission denied".
Error ErrnoError(const std::string& what, int err);

}  // namespace tend::fs
