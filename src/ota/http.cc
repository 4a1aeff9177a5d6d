// The HTTP half of fetch.h: cpp-httplib stays inside this one file.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "core/fs.h"
#include "core/log.h"
#include "core/net.h"
#include "ota/fetch.h"
#include "ota/metadata.h"
#include "ota/registry.h"

namespace tend::ota {

Result<std::unique_ptr<DirFetcher>> DirFetcher::Create(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Fail(Error::NotFound(dir + ": registry directory does not exist"));
  }
  return std::unique_ptr<DirFetcher>(new DirFetcher(dir));
}

Result<std::vector<uint8_t>> DirFetcher::Fetch(const std::string& path, int64_t max_bytes) {
  TEND_RETURN_NOT_OK(CheckTargetPath(path));
  std::string full = (std::filesystem::path(dir_) / path).string();
  std::error_code ec;
  auto size = std::filesystem::file_size(full, ec);
  if (ec) {
    if (!fs::Exists(full)) return Fail(Error::NotFound(full + ": not in the registry"));
    return Fail(Error::Io(full + ": " + ec.message()));
  }
  if (static_cast<int64_t>(size) > max_bytes) {
    return Fail(Error::Security(full + ": " + std::to_string(size) + " bytes, more than the " +
                                std::to_string(max_bytes) + " allowed"));
  }
  TEND_ASSIGN_OR_RETURN(auto bytes, fs::ReadBinaryFile(full));
  if (static_cast<int64_t>(bytes.size()) > max_bytes) {
    return Fail(Error::Security(full + ": grew past the " + std::to_string(max_bytes) +
                                " bytes allowed while being read"));
  }
  return bytes;
}

Result<std::unique_ptr<HttpFetcher>> HttpFetcher::Create(const std::string& base_url,
                                                         const HttpOptions& opts) {
  const std::string scheme = "http://";
  if (base_url.rfind(scheme, 0) != 0) {
    return Fail(Error::Invalid("registry url \"" + base_url + "\": only http:// is supported"));
  }
  std::unique_ptr<HttpFetcher> f(new HttpFetcher());
  f->base_url_ = base_url;
  f->opts_ = opts;
  std::string rest = base_url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  f->prefix_ = slash == std::string::npos ? "" : rest.substr(slash);
  while (!f->prefix_.empty() && f->prefix_.back() == '/') f->prefix_.pop_back();
  size_t colon = hostport.rfind(':');
  f->host_ = hostport.substr(0, colon);
  if (colon != std::string::npos) {
    std::string p = hostport.substr(colon + 1);
    char* end = nullptr;
    long port = std::strtol(p.c_str(), &end, 10);
    if (p.empty() || *end != '\0' || port < 1 || port > 65535) {
      return Fail(Error::Invalid("registry url \"" + base_url + "\": bad port \"" + p + "\""));
    }
    f->port_ = static_cast<int>(port);
  }
  if (f->host_.empty()) return Fail(Error::Invalid("registry url \"" + base_url + "\": no host"));
  return f;
}

Result<std::vector<uint8_t>> HttpFetcher::Fetch(const std::string& path, int64_t max_bytes) {
  TEND_RETURN_NOT_OK(CheckTargetPath(path));
  const std::string url = base_url_ + "/" + path;
  httplib::Client cli(host_, port_);
  auto secs = [](double s) {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::duration<double>(s));
  };
  cli.set_connection_timeout(secs(opts_.connect_timeout_s));
  cli.set_read_timeout(secs(opts_.read_timeout_s));
  cli.set_follow_location(false);
  cli.set_keep_alive(false);

  std::vector<uint8_t> body;
  int status = 0;
  std::string why;  // set when we abort the transfer ourselves
  const auto start = std::chrono::steady_clock::now();
  // Even a server that keeps the average just above the floor must finish by then.
  const double deadline_s = opts_.grace_s + static_cast<double>(max_bytes) / opts_.min_bytes_per_s;
  auto on_response = [&](const httplib::Response& res) {
    status = res.status;
    if (status != 200) return false;
    if (res.has_header("Content-Length")) {
      const std::string cl = res.get_header_value("Content-Length");
      char* end = nullptr;
      unsigned long long n = std::strtoull(cl.c_str(), &end, 10);
      if (cl.empty() || *end != '\0' || n > static_cast<unsigned long long>(max_bytes)) {
        why = "announces " + cl + " bytes, more than the " + std::to_string(max_bytes) + " allowed";
        return false;
      }
      body.reserve(n);
    }
    return true;
  };
  auto on_data = [&](const char* data, size_t n) {
    if (static_cast<int64_t>(body.size() + n) > max_bytes) {
      why = "sent more than the " + std::to_string(max_bytes) + " bytes allowed";
      return false;
    }
    body.insert(body.end(), data, data + n);
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (el > opts_.grace_s && static_cast<double>(body.size()) < opts_.min_bytes_per_s * el) {
      why = "too slow (" + std::to_string(body.size()) + " bytes in " +
            std::to_string(static_cast<int>(el)) + " s, floor " +
            std::to_string(static_cast<int64_t>(opts_.min_bytes_per_s)) + " B/s)";
      return false;
    }
    if (el > deadline_s) {
      why = "took longer than " + std::to_string(static_cast<int>(deadline_s)) + " s";
      return false;
    }
    return true;
  };
  auto res = cli.Get(prefix_ + "/" + path, on_response, on_data);
  if (!why.empty()) return Fail(Error::Security(url + ": " + why));
  if (status == 404) return Fail(Error::NotFound(url + ": 404 Not Found"));
  if (status != 0 && status != 200) {
    return Fail(Error::Io(url + ": HTTP status " + std::to_string(status)));
  }
  if (!res) {
    auto err = res.error();
    if (err == httplib::Error::Read) {
      return Fail(Error::Timeout(url + ": read failed or no data for " +
                                 std::to_string(static_cast<int>(opts_.read_timeout_s)) + " s"));
    }
    if (err == httplib::Error::Connection) {  // httplib: "Could not establish connection"
      auto why = net::ProbeConnect(
          host_, port_,
          std::chrono::duration_cast<std::chrono::milliseconds>(secs(opts_.connect_timeout_s)));
      if (!why.empty()) return Fail(Error::Io(url + ": cannot connect: " + why));
    }
    return Fail(Error::Io(url + ": " + httplib::to_string(err)));
  }
  return body;
}

struct RegistryServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::string dir;
  std::atomic<bool> done{false};
};

Result<std::unique_ptr<RegistryServer>> RegistryServer::Start(const std::string& dir,
                                                              const std::string& host, int port) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Fail(Error::NotFound(dir + ": registry directory does not exist"));
  }
  std::unique_ptr<RegistryServer> rs(new RegistryServer());
  rs->impl_ = std::make_unique<Impl>();
  Impl& impl = *rs->impl_;
  impl.dir = dir;
  impl.server.set_socket_options([](int fd) { net::ExclusiveListenOptions(fd); });
  if (!impl.server.set_mount_point("/", dir)) {
    return Fail(Error::Io(dir + ": cannot serve this directory"));
  }
  impl.server.Get(R"(/models/([^/]+)/latest)", [&impl](const httplib::Request& req,
                                                       httplib::Response& res) {
    std::string name = req.matches[1];
    std::string profile = req.get_param_value("profile");
    if (profile.empty()) {
      res.status = 400;
      res.set_content(R"({"error":"missing query parameter profile"})", "application/json");
      return;
    }
    auto latest = LatestRelease(impl.dir, name, profile);
    if (!latest) {
      res.status = latest.error().code == ErrorCode::kNotFound ? 404 : 400;
      res.set_content(nlohmann::json{{"error", latest.error().message}}.dump(), "application/json");
      return;
    }
    res.set_content(latest->dump(), "application/json");
  });
  // httplib only says "no"; net::ProbeBind asks the OS why (e.g. "Address already in use").
  if (port == 0) {
    port = impl.server.bind_to_any_port(host);
    if (port <= 0) {
      return Fail(
          Error::Io("registry server: cannot bind " + host + ": " + net::ProbeBind(host, 0)));
    }
  } else if (!impl.server.bind_to_port(host, port)) {
    return Fail(Error::Io("registry server: cannot bind " + host + ":" + std::to_string(port) +
                          ": " + net::ProbeBind(host, port)));
  }
  rs->port_ = port;
  impl.thread = std::thread([&impl] {
    impl.server.listen_after_bind();
    impl.done = true;
  });
  TEND_LOG_INFO("registry {} served on http://{}:{}", dir, host, port);
  return rs;
}

void RegistryServer::Stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  // stop() is a no-op until the listener runs: wait for it (or for its failure) first.
  while (!impl_->server.is_running() && !impl_->done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void RegistryServer::Wait() {
  if (impl_ && impl_->thread.joinable()) impl_->thread.join();
}

RegistryServer::~RegistryServer() { Stop(); }

}  // namespace tend::ota
