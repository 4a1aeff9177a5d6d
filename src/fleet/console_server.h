// `tend fleet serve`: the fleet console over HTTP(S), served by tend itself (cpp-httplib), with
// its pages embedded in the binary (no CDN: plants are offline). Every /api/ route needs a bearer
// token or a session (401 otherwise); actions are POSTs that need the operator role (403),
// a CSRF token when the caller is a browser session (403), and are written to the audit log with
// who, what, when and the outcome. The console holds no signing key: rollouts, pins and
// rollbacks become intents in the database that the publisher side's controller signs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"

namespace tend::fleet {

struct ConsoleOptions {
  std::string db;  // sqlite:PATH or postgresql://...
  std::string host = "127.0.0.1";
  int port = 8090;                  // 0: any free port
  std::string cert_file, key_file;  // both set: HTTPS only
  int64_t session_ttl_s = 8 * 3600;
  double snapshot_max_age_s = 2;      // the device list is recomputed at most this often
  std::string evidence_dir;           // evidence images mirrored from devices: DIR/<device>/<file>
  std::function<int64_t()> clock_ms;  // default: system clock (tests move it to expire sessions)
};

class ConsoleServer {
 public:
  static Result<std::unique_ptr<ConsoleServer>> Start(const ConsoleOptions& opts);
  ~ConsoleServer();
  int port() const;
  bool tls() const;
  void Stop();
  void Wait();  // until Stop() (from another thread or a signal handler thread)

  class Impl;

 private:
  explicit ConsoleServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The embedded pages (console_assets.cc, generated from src/fleet/console/ at build time).
struct ConsoleAsset {
  const char* path;  // "/", "/app.js", ...
  const char* content_type;
  const unsigned char* data;
  size_t size;
};
const ConsoleAsset* FindConsoleAsset(const std::string& path);

}  // namespace tend::fleet
