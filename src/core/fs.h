// File-system helpers with crash-safety in mind: whole-file reads with clear errors, and atomic
// replacement (write temp, fsync, rename, fsync the directory) so that a power cut leaves either
// the old or the new file, never a torn one.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::fs {

Result<std::string> ReadFile(const std::string& path);
Result<std::vector<uint8_t>> ReadBinaryFile(const std::string& path);

// Atomically replaces `path` with `data`: <path>.tmp.<pid>, fsync, rename, fsync(dir).
Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> data);
Status WriteFileAtomic(const std::string& path, const std::string& data);

Status FsyncDir(const std::string& dir);
Status MakeDirs(const std::string& dir);
bool Exists(const std::string& path);

// "OS said no" message for errno: "open x: Permission denied".
Error ErrnoError(const std::string& what, int err);

}  // namespace tend::fs
