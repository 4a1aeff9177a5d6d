// The HTTP side: the registry server (static files + SPEC's latest endpoint), an update over
// HTTP, and misbehaving servers: endless data, a lying Content-Length, 1 byte/s, silence, and
// (issue 17, defect 2) servers that misbehave in the status line and headers, plus an updater
// whose Stop() must not wait for a fetch in flight.
#include <gtest/gtest.h>
#include <httplib.h>
#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "ota/fetch.h"
#include "ota/updater.h"
#include "ota_test_util.h"
#include "raw_server.h"

namespace tend::ota {
namespace {

using namespace testing;
using nlohmann::json;

// An httplib server on a free loopback port, run on its own thread.
class TestServer {
 public:
  TestServer() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    EXPECT_GT(port_, 0);
  }
  ~TestServer() { Stop(); }
  httplib::Server& server() { return server_; }
  void Run() {
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  void Stop() {
    stopping_ = true;
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::atomic<bool>& stopping() const { return stopping_; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
};

HttpOptions FastOptions() {
  HttpOptions o;
  o.connect_timeout_s = 2;
  o.read_timeout_s = 1;
  o.min_bytes_per_s = 1000;
  o.grace_s = 1;
  return o;
}

void ExpectError(const Result<std::vector<uint8_t>>& r, ErrorCode code, const std::string& needle) {
  ASSERT_FALSE(r) << "expected an error containing " << needle;
  EXPECT_EQ(r.error().code, code) << r.error().message;
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
}

TEST(OtaHttp, RegistryServerAndAnUpdateOverHttp) {
  ScratchDir d;
  std::string reg = d / "registry";
  KeyPair k = NewKey();
  ASSERT_TRUE(WriteRoot(reg, MakeRoot({k}, 1, 1, kT0 + 365 * kDay), {k}));
  TargetInfo v1 = PublishFake(reg, d, 1, 1, {kProfile}, {k});
  auto server = RegistryServer::Start(reg, "127.0.0.1", 0);
  ASSERT_TRUE(server) << server.error().message;
  const std::string base = "http://127.0.0.1:" + std::to_string((*server)->port());

  httplib::Client cli("127.0.0.1", (*server)->port());
  auto res = cli.Get("/models/press-ae/latest?profile=x86-cpu-fp32");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json latest = json::parse(res->body);
  EXPECT_EQ(latest["version"], 1);
  EXPECT_EQ(latest["checksum"], v1.sha256);
  EXPECT_EQ(latest["url"], "/" + v1.path);
  EXPECT_TRUE(latest["metadata"].contains("targets"));
  auto file = cli.Get(latest["url"].get<std::string>());
  ASSERT_TRUE(file);
  EXPECT_EQ(Sha256Hex(file->body), v1.sha256);
  EXPECT_EQ(cli.Get("/models/press-ae/latest?profile=jetson-agx-orin-int8")->status, 404);
  EXPECT_EQ(cli.Get("/models/press-ae/latest")->status, 400);

  auto fetcher = HttpFetcher::Create(base, FastOptions());
  ASSERT_TRUE(fetcher);
  EXPECT_EQ((*fetcher)->Fetch("2.root.json", 1 << 20).error().code, ErrorCode::kNotFound);
  ExpectError((*fetcher)->Fetch(v1.path, 100), ErrorCode::kSecurity, "more than the 100");

  WriteText(d / "pinned.json", ReadText(reg + "/root.json"));
  UpdaterOptions o;
  o.model_dir = d / "device";
  o.model_name = kModel;
  o.profile = kProfile;
  o.pinned_root_path = d / "pinned.json";
  o.clock = [] { return kT0 + 60; };
  o.quality_gate = [](const std::string&) -> Result<double> { return 1.0; };
  auto u = Updater::Create(o, std::move(*fetcher));
  ASSERT_TRUE(u) << u.error().message;
  auto r = (*u)->CheckOnce();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->outcome, UpdateOutcome::kInstalled);
  EXPECT_EQ(ReadText((*u)->CurrentModelPath()), FakeModel(1));
  (*server)->Stop();
}

TEST(OtaHttp, UrlParsing) {
  EXPECT_TRUE(HttpFetcher::Create("http://registry.local:8080/tend/"));
  EXPECT_TRUE(HttpFetcher::Create("http://registry.local"));
  EXPECT_EQ(HttpFetcher::Create("ftp://x").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(HttpFetcher::Create("http://x:99999").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(HttpFetcher::Create("http://:80").error().code, ErrorCode::kInvalidArgument);
  auto f = HttpFetcher::Create("http://127.0.0.1:1");
  EXPECT_EQ((*f)->Fetch("../etc/passwd", 10).error().code, ErrorCode::kSecurity);
}

TEST(OtaHttp, EndlessDataIsCutAtTheSignedLength) {
  TestServer s;
  s.server().Get("/endless", [&](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider(
        "application/octet-stream", [&](size_t, httplib::DataSink& sink) {
          std::string chunk(4096, 'x');
          return !s.stopping() && sink.write(chunk.data(), chunk.size());
        });
  });
  s.server().Get("/liar", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(20000, 'x'), "application/octet-stream");
  });
  s.Run();
  auto f = HttpFetcher::Create(s.url(), FastOptions());
  ASSERT_TRUE(f);
  ExpectError((*f)->Fetch("endless", 10000), ErrorCode::kSecurity,
              "sent more than the 10000 bytes allowed");
  ExpectError((*f)->Fetch("liar", 10000), ErrorCode::kSecurity, "announces 20000 bytes");
}

TEST(OtaHttp, SlowRetrievalIsAborted) {
  TestServer s;
  s.server().Get("/slow", [&](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("application/octet-stream",
                                     [&](size_t, httplib::DataSink& sink) {
                                       // 1 byte per second, in short sleeps so Stop() is quick.
                                       for (int i = 0; i < 20 && !s.stopping(); ++i) {
                                         std::this_thread::sleep_for(std::chrono::milliseconds(50));
                                       }
                                       return !s.stopping() && sink.write("x", 1);
                                     });
  });
  s.server().Get("/silent", [&](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("application/octet-stream", [&](size_t, httplib::DataSink&) {
      for (int i = 0; i < 60 && !s.stopping(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      return false;
    });
  });
  s.Run();
  HttpOptions slow_opts = FastOptions();
  slow_opts.read_timeout_s = 3;  // each byte arrives in time: only the throughput floor catches it
  auto slow = HttpFetcher::Create(s.url(), slow_opts);
  ASSERT_TRUE(slow);
  ExpectError((*slow)->Fetch("slow", 100000), ErrorCode::kSecurity, "too slow");
  auto f = HttpFetcher::Create(s.url(), FastOptions());
  ASSERT_TRUE(f);
  auto silent = (*f)->Fetch("silent", 100000);
  ASSERT_FALSE(silent);
  EXPECT_TRUE(silent.error().code == ErrorCode::kTimeout ||
              silent.error().code == ErrorCode::kIoError)
      << silent.error().message;
}

// Issue 17, defect 2: the status line and headers had no time or size limit. Each of these servers
// kept `tend ota check` running forever (or grew its memory by 140 MB/s); now each exchange ends
// with an error, limited by the throughput floor and deadline or by the header cap.
TEST(OtaHttp, MisbehavingHeadersEndTheExchange) {
  struct Case {
    const char* name;
    RawServer::Script script;
    ErrorCode code;
    const char* needle;
  } cases[] = {
      {"one header line every 200 ms",
       [](int fd, const std::atomic<bool>& stop) {
         RawServer::Send(fd, "HTTP/1.1 200 OK\r\n");
         for (int i = 0; RawServer::Nap(200, stop); ++i) {
           if (!RawServer::Send(fd, "X-Drip-" + std::to_string(i) + ": y\r\n")) return;
         }
       },
       ErrorCode::kSecurity, "too slow"},
      {"a dripped status line",
       [](int fd, const std::atomic<bool>& stop) {
         const std::string line = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
         for (char c : line) {
           if (!RawServer::Nap(300, stop) || !RawServer::Send(fd, std::string(1, c))) return;
         }
       },
       ErrorCode::kSecurity, "too slow"},
      {"a header line that grows forever",
       [](int fd, const std::atomic<bool>& stop) {
         RawServer::Send(fd, "HTTP/1.1 200 OK\r\nX-Big: ");
         while (!stop && RawServer::Send(fd, std::string(4096, 'a'))) {
         }
       },
       ErrorCode::kSecurity, "response headers exceed"},
      {"endless 100 Continue",
       [](int fd, const std::atomic<bool>& stop) {
         while (!stop && RawServer::Send(fd, "HTTP/1.1 100 Continue\r\n\r\n")) {
         }
       },
       ErrorCode::kSecurity, "response headers exceed"},
      {"a fast endless header stream",
       [](int fd, const std::atomic<bool>& stop) {
         RawServer::Send(fd, "HTTP/1.1 200 OK\r\n");
         for (int i = 0; !stop; ++i) {
           if (!RawServer::Send(fd, "X-" + std::to_string(i) + ": v\r\n")) return;
         }
       },
       ErrorCode::kSecurity, "response headers exceed"},
      {"a chunked body with a chunk-size line that never ends",
       [](int fd, const std::atomic<bool>& stop) {
         RawServer::Send(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1");
         while (!stop && RawServer::Send(fd, std::string(4096, '0'))) {
         }
       },
       ErrorCode::kCorrupt, "chunk size line longer than"},
      {"gzip that was never asked for",
       [](int fd, const std::atomic<bool>&) {
         RawServer::Send(fd, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n");
       },
       ErrorCode::kUnsupported, "Content-Encoding"},
  };
  for (auto& c : cases) {
    RawServer server(c.script);
    auto f = HttpFetcher::Create(server.url(), FastOptions());
    ASSERT_TRUE(f);
    auto r = (*f)->Fetch("timestamp.json", 1 << 20);
    ASSERT_FALSE(r) << c.name;
    EXPECT_EQ(r.error().code, c.code) << c.name << ": " << r.error().message;
    EXPECT_NE(r.error().message.find(c.needle), std::string::npos)
        << c.name << ": " << r.error().message;
    server.Stop();
  }
}

TEST(OtaHttp, WellFormedResponsesInEveryFraming) {
  const std::string body = "0123456789abcdef";
  struct Case {
    const char* name;
    std::string response;
    int64_t max;
    bool ok;
  } cases[] = {
      {"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" + body, 16, true},
      {"chunked",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6;x=y\r\n012345\r\n"
       "a\r\n6789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n",
       16, true},
      {"close-delimited, after a 100 Continue",
       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\n\n" + body, 16, true},
      {"chunked, over the cap",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
       "10\r\n" +
           body + "\r\n0\r\n\r\n",
       15, false},
      {"truncated", "HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n" + body, 17, false},
  };
  for (auto& c : cases) {
    RawServer server([&](int fd, const std::atomic<bool>&) { RawServer::Send(fd, c.response); });
    auto f = HttpFetcher::Create(server.url(), FastOptions());
    ASSERT_TRUE(f);
    auto r = (*f)->Fetch("file.bin", c.max);
    EXPECT_EQ(r.has_value(), c.ok) << c.name << ": " << (r ? "ok" : r.error().message);
    if (r && c.ok) {
      EXPECT_EQ(std::string(r->begin(), r->end()), body) << c.name;
    }
  }
}

// The agent's shutdown must never wait on a fetch: Stop() interrupts the one in flight. The
// server drips a header byte every 100 ms for a minute, slow enough never to finish and fast
// enough for the generous limits below; Stop() returns while it is still dripping.
TEST(OtaHttp, UpdaterStopInterruptsAFetchInFlight) {
  ScratchDir d;
  std::string reg = d / "registry";
  KeyPair k = NewKey();
  ASSERT_TRUE(WriteRoot(reg, MakeRoot({k}, 1, 1, kT0 + 365 * kDay), {k}));
  WriteText(d / "pinned.json", ReadText(reg + "/root.json"));
  RawServer server([](int fd, const std::atomic<bool>& stop) {
    RawServer::Send(fd, "HTTP/1.1 200 OK\r\nX-Slow: ");
    for (int i = 0; i < 600 && RawServer::Nap(100, stop); ++i) {
      if (!RawServer::Send(fd, "z")) return;
    }
  });
  HttpOptions patient;
  patient.read_timeout_s = 30;
  patient.min_bytes_per_s = 1;
  patient.grace_s = 120;
  auto fetcher = HttpFetcher::Create(server.url(), patient);
  ASSERT_TRUE(fetcher);
  UpdaterOptions o;
  o.model_dir = d / "device";
  o.model_name = kModel;
  o.profile = kProfile;
  o.pinned_root_path = d / "pinned.json";
  o.clock = [] { return kT0 + 60; };
  o.interval_s = 3600;
  auto u = Updater::Create(o, std::move(*fetcher));
  ASSERT_TRUE(u) << u.error().message;
  (*u)->Start();
  for (int i = 0; i < 3000 && !server.in_script(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(server.in_script()) << "the updater never fetched";
  (*u)->Stop();
  EXPECT_TRUE(server.in_script()) << "Stop() waited until the server gave up";
  EXPECT_NE((*u)->StatusJson()["last_error"].get<std::string>().find("interrupted"),
            std::string::npos)
      << (*u)->StatusJson().dump();
  server.Stop();
}

}  // namespace
}  // namespace tend::ota
