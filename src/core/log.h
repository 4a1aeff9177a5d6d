// Process-wide logging through spdlog: human-readable lines on stderr by default, JSON lines
// (one object per line: ts, level, msg) with --log-json, for journald/Loki/Fluent Bit.
#pragma once

#include <string>

#include <spdlog/spdlog.h>

namespace tend::log {

// Installs the default logger. Safe to call more than once (the last call wins).
void Init(bool json, const std::string& level = "info");

}  // namespace tend::log

// Thin aliases so call sites read TEND_LOG_INFO("loaded {}", path).
#define TEND_LOG_TRACE(...) ::spdlog::trace(__VA_ARGS__)
#define TEND_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define TEND_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define TEND_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define TEND_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
