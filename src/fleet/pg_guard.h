// libpqxx reports errors by throwing; nothing leaves tend_fleet as an exception. Both PostgreSQL
// users (the ingest store and the console's SQL layer) run each libpqxx call inside PgGuard,
// which turns an exception into an Io error on one line: "postgresql WHAT: MESSAGE".
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "core/status.h"

namespace tend::fleet {

inline Error PgError(const std::string& what, const std::exception& e) {
  std::string msg = e.what();
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  for (auto& c : msg) {
    if (c == '\n') c = ' ';
  }
  return Error::Io("postgresql " + what + ": " + msg);
}

template <typename F>
Status PgGuard(const std::string& what, F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (const std::exception& e) {
    return Fail(PgError(what, e));
  }
}

}  // namespace tend::fleet
