// The HTTP side: the registry server (static files + SPEC's latest endpoint), an update over
// HTTP, and misbehaving servers: endless data, a lying Content-Length, 1 byte/s, silence.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "ota/fetch.h"
#include "ota/updater.h"
#include "ota_test_util.h"

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

}  // namespace
}  // namespace tend::ota
