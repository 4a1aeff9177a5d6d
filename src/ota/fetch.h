// Where the updater gets registry files from: a directory (a USB stick, a mounted share, tests) or
// plain HTTP (metadata signatures, not the transport, are what the device trusts).
// Every fetch has a byte cap: the signed length for targets, a fixed bound for metadata; the HTTP
// fetcher also caps the response headers and aborts an exchange (connect, headers and body alike)
// whose throughput stays under a floor or that passes its overall deadline (slow-retrieval
// attacks), and can be interrupted from another thread so that shutdown never waits on it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::ota {

class Fetcher {
 public:
  virtual ~Fetcher() = default;
  // `path` is relative to the registry base (a checked target path or a metadata file name).
  // kNotFound when the registry has no such file; kSecurity when more than max_bytes arrive.
  virtual Result<std::vector<uint8_t>> Fetch(const std::string& path, int64_t max_bytes) = 0;
  virtual std::string Describe() const = 0;
  // Makes a Fetch in flight, and every later one, return promptly (kTimeout, "interrupted") until
  // Resume(). Thread-safe. A directory read is bounded by its byte cap and needs nothing.
  virtual void Interrupt() {}
  virtual void Resume() {}
};

class DirFetcher : public Fetcher {
 public:
  static Result<std::unique_ptr<DirFetcher>> Create(const std::string& dir);
  Result<std::vector<uint8_t>> Fetch(const std::string& path, int64_t max_bytes) override;
  std::string Describe() const override { return dir_; }

 private:
  explicit DirFetcher(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

struct HttpOptions {
  double connect_timeout_s = 10;
  double read_timeout_s = 10;     // silence on the socket longer than this aborts
  double min_bytes_per_s = 4096;  // after the grace period, the average must stay above this
  double grace_s = 5;
  // Status line and headers (1xx interim responses included). The exchange as a whole must end
  // within grace_s + (max_bytes + max_header_bytes) / min_bytes_per_s.
  size_t max_header_bytes = 32 << 10;
};

// A minimal HTTP/1.1 client for GETs of registry files (no keep-alive, no redirects, no content
// coding), on a non-blocking socket polled together with an eventfd that Interrupt() signals.
class HttpFetcher : public Fetcher {
 public:
  // base_url: http://host[:port][/prefix]
  static Result<std::unique_ptr<HttpFetcher>> Create(const std::string& base_url,
                                                     const HttpOptions& opts = {});
  ~HttpFetcher() override;
  Result<std::vector<uint8_t>> Fetch(const std::string& path, int64_t max_bytes) override;
  std::string Describe() const override { return base_url_; }
  void Interrupt() override;
  void Resume() override;

 private:
  struct Exchange;
  HttpFetcher() = default;
  Result<int> Connect(Exchange& ex);
  Status Send(Exchange& ex, int fd, const std::string& request);
  Status Receive(Exchange& ex, int fd);
  Status Wait(Exchange& ex, int fd, short events, bool connecting);
  Status CheckThroughput(const Exchange& ex) const;
  std::string base_url_, host_, prefix_;
  int port_ = 80;
  HttpOptions opts_;
  int cancel_fd_ = -1;  // eventfd: readable while interrupted
  std::atomic<bool> interrupted_{false};
};

// Serves a registry directory over HTTP: its files as they are, plus SPEC's
// GET /models/{name}/latest?profile=P. Binds host:port (port 0: any free port).
class RegistryServer {
 public:
  static Result<std::unique_ptr<RegistryServer>> Start(const std::string& dir,
                                                       const std::string& host, int port);
  ~RegistryServer();
  int port() const { return port_; }
  void Stop();
  // Blocks until Stop() (or the process ends); for `tend registry serve`.
  void Wait();

 private:
  RegistryServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace tend::ota
