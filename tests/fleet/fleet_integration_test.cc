// The cloud side against a real Mosquitto (and a real PostgreSQL): two ingest instances on one
// shared subscription split the traffic and store each message once; malformed messages are
// skipped; TLS with per-device certificates and ACLs from `tend pki`; a device's OTA state through
// the real `tend fleet ingest|status|ota`.
#include <gtest/gtest.h>
#include <pwd.h>

#include <csignal>
#include <ctime>
#include <set>
#include <sstream>
#include <thread>

#include "core/fs.h"
#include "fleet/console_auth.h"
#include "fleet/console_db.h"
#include "fleet/ingest.h"
#include "fleet/ota_support.h"
#include "fleet/pki.h"
#include "fleet/rollout_control.h"
#include "fleet/store.h"
#include "ota/registry.h"
#include "telemetry/payload.h"
#include "telemetry/telemetry.h"
#include "telemetry/test_support.h"

namespace tend::fleet {
namespace {

using namespace std::chrono_literals;
using tend::testing::Broker;
using tend::testing::WaitFor;

Decision MakeDecision(int64_t i, bool alert) {
  Decision d;
  d.window_index = i;
  d.timestamp = std::chrono::system_clock::now();
  d.anomaly_score = alert ? 0.9f : 0.1f;
  d.is_alert = alert;
  d.severity = alert ? Severity::kHigh : Severity::kLow;
  d.top_sensors = {"rms"};
  d.model_version = "2";
  return d;
}

// Publishes `n` decisions (every `alert_every`-th an alert) from one device and waits until
// the broker acknowledged all of them.
void RunDevice(const std::string& url, const std::string& dir, const std::string& device, int n,
               int alert_every) {
  telemetry::TelemetryOptions o;
  o.broker_url = url;
  o.spool_path = dir + "/" + device + ".spool";
  o.health_interval_s = 0;
  o.spool_durable = false;
  auto t = telemetry::Telemetry::Create({"f1", "l1", "asset-" + device, device}, o);
  ASSERT_TRUE(t) << t.error().message;
  ASSERT_TRUE(WaitFor([&] { return (*t)->stats().connected; }, 10s));
  for (int i = 0; i < n; ++i) (*t)->OnDecision(MakeDecision(i, i % alert_every == 0));
  auto st = (*t)->Flush(30s);
  ASSERT_TRUE(st) << st.error().message;
}

std::set<std::string> Ids(FleetStore& s, const std::string& table) {
  auto r = s.MessageIds(table);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  std::set<std::string> out;
  if (r) out.insert(r->begin(), r->end());
  return out;
}

class FleetIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Broker::Available()) GTEST_SKIP() << "/usr/sbin/mosquitto not installed";
    dir_ = tend::testing::MakeTempDir("fleet");
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::string dir_;
};

TEST_F(FleetIntegration, TwoInstancesOnASharedSubscriptionStoreEachMessageOnce) {
  Broker broker;
  ASSERT_TRUE(broker.Start());
  IngestOptions io;
  io.broker_url = broker.url();
  io.group = "g1";
  auto a = Ingest::Start(io, *OpenFleetStore("sqlite:" + dir_ + "/a.db"));
  ASSERT_TRUE(a) << a.error().message;
  auto b = Ingest::Start(io, *OpenFleetStore("sqlite:" + dir_ + "/b.db"));
  ASSERT_TRUE(b) << b.error().message;
  RunDevice(broker.url(), dir_, "edge-1", 300, 3);
  RunDevice(broker.url(), dir_, "edge-2", 300, 3);
  // 600 scores + 200 alerts + 4 status (online/offline x2) in all.
  ASSERT_TRUE(WaitFor([&] { return (*a)->stats().stored + (*b)->stats().stored >= 804; }, 30s))
      << (*a)->stats().stored << " + " << (*b)->stats().stored;
  auto sa = (*a)->stats(), sb = (*b)->stats();
  EXPECT_GT(sa.stored, 0);
  EXPECT_GT(sb.stored, 0);  // the load really was split
  (*a)->Stop();
  (*b)->Stop();
  a->reset();
  b->reset();
  auto da = OpenFleetStore("sqlite:" + dir_ + "/a.db");
  auto db = OpenFleetStore("sqlite:" + dir_ + "/b.db");
  for (const char* table : {"alerts", "scores"}) {
    auto ia = Ids(**da, table), ib = Ids(**db, table);
    std::set<std::string> both;
    std::set_intersection(ia.begin(), ia.end(), ib.begin(), ib.end(),
                          std::inserter(both, both.begin()));
    EXPECT_TRUE(both.empty()) << table << ": " << both.size() << " stored twice";
    EXPECT_EQ(ia.size() + ib.size(), std::string(table) == "alerts" ? 200u : 600u) << table;
  }
  std::printf("shared subscription split: instance A stored %lld, instance B stored %lld\n",
              static_cast<long long>(sa.stored), static_cast<long long>(sb.stored));
}

// #16 item 10: nothing listening at the broker address is named as such, not as Paho's
// "[-1]: TCP/TLS connect failure".
TEST_F(FleetIntegration, IngestSaysWhyItCannotConnect) {
  IngestOptions io;
  io.broker_url = "mqtt://127.0.0.1:" + std::to_string(tend::testing::FreePort());
  io.connect_timeout_s = 2;
  auto ing = Ingest::Start(io, *OpenFleetStore("sqlite:" + dir_ + "/refused.db"));
  ASSERT_FALSE(ing);
  EXPECT_EQ(ing.error().message, "fleet: connect to " + io.broker_url + ": Connection refused");
}

TEST_F(FleetIntegration, MalformedMessagesAreCountedAndSkipped) {
  Broker broker;
  ASSERT_TRUE(broker.Start());
  IngestOptions io;
  io.broker_url = broker.url();
  io.group = "";
  io.max_payload_bytes = 4096;
  auto ing = Ingest::Start(io, *OpenFleetStore("sqlite:" + dir_ + "/f.db"));
  ASSERT_TRUE(ing) << ing.error().message;
  auto pub = [&](const std::string& topic, const std::string& payload) {
    pid_t p = tend::testing::Spawn({"/usr/bin/mosquitto_pub", "-p", std::to_string(broker.port()),
                                    "-h", "127.0.0.1", "-q", "1", "-t", topic, "-m", payload});
    EXPECT_EQ(tend::testing::WaitExit(p), 0);
  };
  const std::string t = "factory/f1/line/l1/asset/a1/scores";
  pub(t, "{not json");
  pub(t, R"({"timestamp":"2024-05-01T12:00:00Z","asset_id":"a1","anomaly_score":"x",)"
         R"("is_alert":false,"severity":"LOW","top_sensors":[]})");
  pub(t, std::string(5000, '{'));
  pub(t,
      R"({"timestamp":"2024-05-01T12:00:00Z","asset_id":"a1","anomaly_score":0.5,)"
      R"("is_alert":false,"severity":"LOW","top_sensors":["rms"],"msg_id":"m1","device_id":"d1"})");
  // `received` counts a message when it arrives, the others once it is handled: wait for those.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = (*ing)->stats();
        return s.bad_json + s.wrong_type + s.too_large + s.stored + s.duplicates >= 4;
      },
      10s));
  auto s = (*ing)->stats();
  EXPECT_EQ(s.received, 4);
  EXPECT_EQ(s.bad_json, 1);
  EXPECT_EQ(s.wrong_type, 1);
  EXPECT_EQ(s.too_large, 1);
  EXPECT_EQ(s.stored, 1);  // the good one after the bad ones
}

// ---- TLS, per-device certificates, ACLs, expiry, rotation -----------------------------------

class FleetTls : public FleetIntegration {
 protected:
  std::string pki_;
  int Pub(int port, const std::string& who_crt, const std::string& who_key,
          const std::string& topic) {
    std::vector<std::string> argv = {"/usr/bin/mosquitto_pub",
                                     "-h",
                                     "localhost",
                                     "-p",
                                     std::to_string(port),
                                     "--cafile",
                                     pki_ + "/ca.crt",
                                     "-q",
                                     "1",
                                     "-t",
                                     topic,
                                     "-m",
                                     "{}"};
    if (!who_crt.empty()) {
      argv.insert(argv.end(), {"--cert", who_crt, "--key", who_key});
    }
    pid_t p = tend::testing::Spawn(argv, dir_ + "/pub.txt");
    return tend::testing::WaitExit(p);
  }
  // mosquitto_pub over MQTT 5 with a device's certificate: its output says "Not authorized"
  // when the broker's PUBACK refuses the publish (the exit code is 0 either way).
  std::string Pub5(int port, const std::string& device, const std::string& topic,
                   const std::string& payload) {
    const std::string base = pki_ + "/devices/" + device;
    pid_t p = tend::testing::Spawn(
        {"/usr/bin/mosquitto_pub", "-h", "localhost", "-p", std::to_string(port), "--cafile",
         pki_ + "/ca.crt", "--cert", base + ".crt", "--key", base + ".key", "-V", "mqttv5", "-q",
         "1", "-t", topic, "-m", payload},
        dir_ + "/pub5.txt");
    tend::testing::WaitExit(p);
    return tend::testing::ReadAll(dir_ + "/pub5.txt");
  }
  // A TLS-only broker that takes the username from the client certificate and applies the ACL
  // `tend pki` wrote, as deploy/mosquitto/mosquitto.conf does.
  std::unique_ptr<Broker> StartTlsBroker() {
    auto tls = std::make_unique<Broker>("", /*tls_only=*/true);
    tls->set_extra("listener " + std::to_string(tls->port()) + " 127.0.0.1\ncafile " + pki_ +
                   "/ca.crt\ncertfile " + pki_ + "/broker.crt\nkeyfile " + pki_ +
                   "/broker.key\nrequire_certificate true\nuse_identity_as_username true\n"
                   "allow_anonymous false\nacl_file " +
                   pki_ + "/acl\nmax_queued_messages 1000\n");
    EXPECT_TRUE(tls->Start()) << tls->log();
    return tls;
  }
  // Publishes on A's status until the fleet reader shows it: the TLS reader is subscribed.
  bool WaitReaderLive(int port, const tend::testing::Subscriber& reader) {
    return WaitFor(
        [&] {
          Pub(port, pki_ + "/devices/edge-a.crt", pki_ + "/devices/edge-a.key",
              "factory/f1/edge/edge-a/status");
          for (const auto& m : reader.Messages()) {
            if (m.topic == "factory/f1/edge/edge-a/status") return true;
          }
          return false;
        },
        15s);
  }
};

TEST_F(FleetTls, DevicesWriteOnlyTheirOwnTopicsAndBadCertificatesCannotConnect) {
  pki_ = dir_ + "/pki";
  pki::CertOptions co;
  ASSERT_TRUE(pki::InitCa(pki_, "test CA", co));
  ASSERT_TRUE(pki::IssueBroker(pki_, "localhost", {"DNS:localhost", "IP:127.0.0.1"}, co));
  ASSERT_TRUE(pki::IssueDevice(pki_, {"edge-a", "f1", "l1", {"press-a"}}, co));
  ASSERT_TRUE(pki::IssueDevice(pki_, {"edge-b", "f1", "l1", {"press-b"}}, co));
  ASSERT_TRUE(pki::IssueClient(pki_, "fleet-1", co));
  pki::CertOptions expired;
  expired.days = 1;
  expired.backdate_days = 10;
  ASSERT_TRUE(pki::IssueDevice(pki_, {"edge-x", "f1", "l1", {"press-x"}}, expired));
  auto info = pki::ReadCert(pki_ + "/devices/edge-x.crt");
  ASSERT_TRUE(info);
  EXPECT_LT(info->not_after, std::time(nullptr));
  EXPECT_EQ(info->subject_cn, "edge-x");

  auto broker = StartTlsBroker();
  const Broker& tls = *broker;
  const int port = tls.port();
  const std::string url = "mqtts://localhost:" + std::to_string(port);

  // Independent reader with the fleet certificate.
  tend::testing::Subscriber reader(
      port, {"factory/#"}, "fleet-1",
      {"-h", "localhost", "--cafile", pki_ + "/ca.crt", "--cert", pki_ + "/clients/fleet-1.crt",
       "--key", pki_ + "/clients/fleet-1.key"});
  // Subscriber() hard-codes -h 127.0.0.1; the later -h localhost wins for certificate checks.
  reader.Start();
  ASSERT_TRUE(WaitReaderLive(port, reader)) << tls.log();

  // Device A through the real telemetry stack over mutual TLS.
  {
    telemetry::TelemetryOptions o;
    o.broker_url = url;
    o.ca_file = pki_ + "/ca.crt";
    o.cert_file = pki_ + "/devices/edge-a.crt";
    o.key_file = pki_ + "/devices/edge-a.key";
    o.spool_path = dir_ + "/a.spool";
    o.health_interval_s = 0;
    auto t = telemetry::Telemetry::Create({"f1", "l1", "press-a", "edge-a"}, o);
    ASSERT_TRUE(t) << t.error().message;
    ASSERT_TRUE(WaitFor([&] { return (*t)->stats().connected; }, 15s)) << tls.log();
    (*t)->OnDecision(MakeDecision(1, true));
    ASSERT_TRUE((*t)->Flush(15s));
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& m : reader.Messages()) {
          if (m.topic == "factory/f1/line/l1/asset/press-a/alerts") return true;
        }
        return false;
      },
      10s));

  // A's certificate cannot write B's topics (the broker drops it; nothing reaches the reader).
  EXPECT_EQ(Pub(port, pki_ + "/devices/edge-a.crt", pki_ + "/devices/edge-a.key",
                "factory/f1/line/l1/asset/press-b/alerts"),
            0);
  EXPECT_EQ(Pub(port, pki_ + "/devices/edge-a.crt", pki_ + "/devices/edge-a.key",
                "factory/f1/edge/edge-b/status"),
            0);
  // B's own publish is the marker that everything before it has been routed.
  EXPECT_EQ(Pub(port, pki_ + "/devices/edge-b.crt", pki_ + "/devices/edge-b.key",
                "factory/f1/line/l1/asset/press-b/health"),
            0);
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& m : reader.Messages()) {
          if (m.topic == "factory/f1/line/l1/asset/press-b/health") return true;
        }
        return false;
      },
      10s));
  for (const auto& m : reader.Messages()) {
    EXPECT_NE(m.topic, "factory/f1/line/l1/asset/press-b/alerts") << "ACL let A write B's topic";
    EXPECT_NE(m.topic, "factory/f1/edge/edge-b/status") << "ACL let A write B's status";
  }

  // No certificate, and an expired certificate: the TLS handshake fails, mosquitto_pub exits
  // non-zero.
  EXPECT_NE(Pub(port, "", "", "factory/f1/edge/edge-a/status"), 0);
  EXPECT_NE(Pub(port, pki_ + "/devices/edge-x.crt", pki_ + "/devices/edge-x.key",
                "factory/f1/edge/edge-x/status"),
            0);

  // Rotation: a new key and certificate with the same CN works at once, under the same ACL.
  ASSERT_TRUE(pki::Rotate(pki_, "edge-a", co));
  EXPECT_EQ(Pub(port, pki_ + "/devices/edge-a.crt", pki_ + "/devices/edge-a.key",
                "factory/f1/line/l1/asset/press-a/health"),
            0);
  bool old_kept = false;
  for (const auto& e : std::filesystem::directory_iterator(pki_ + "/devices")) {
    if (e.path().filename().string().rfind("edge-a.crt.", 0) == 0) old_kept = true;
  }
  EXPECT_TRUE(old_kept);
  reader.Stop();
}

// #16 item 4: the ACL `tend pki` writes grants every topic the agent publishes
// (telemetry::PublishedTopics: scores, alerts, health, status and the OTA state), checked with the
// real telemetry stack over MQTT 5 (a refusal is a PUBACK reason code it counts) and with an
// independent client; another device's topics are refused. Before the fix the ACL lacked
// factory/{f}/edge/{device}/ota and every OTA state was refused (0x87).
TEST_F(FleetTls, PkiAclGrantsEveryTopicTheAgentPublishesAndNoOtherDevicesTopic) {
  pki_ = dir_ + "/pki";
  pki::CertOptions co;
  ASSERT_TRUE(pki::InitCa(pki_, "test CA", co));
  ASSERT_TRUE(pki::IssueBroker(pki_, "localhost", {"DNS:localhost", "IP:127.0.0.1"}, co));
  ASSERT_TRUE(pki::IssueDevice(pki_, {"edge-a", "f1", "l1", {"press-a", "press-a2"}}, co));
  ASSERT_TRUE(pki::IssueDevice(pki_, {"edge-b", "f1", "l1", {"press-b"}}, co));
  ASSERT_TRUE(pki::IssueClient(pki_, "fleet-1", co));
  auto broker = StartTlsBroker();
  const int port = broker->port();
  tend::testing::Subscriber reader(
      port, {"factory/#"}, "fleet-1",
      {"-h", "localhost", "--cafile", pki_ + "/ca.crt", "--cert", pki_ + "/clients/fleet-1.crt",
       "--key", pki_ + "/clients/fleet-1.key"});
  reader.Start();
  ASSERT_TRUE(WaitReaderLive(port, reader)) << broker->log();
  auto seen = [&](const std::string& topic, const std::string& needle) {
    for (const auto& m : reader.Messages()) {
      if (m.topic == topic && m.payload.find(needle) != std::string::npos) return true;
    }
    return false;
  };

  // The real agent stack of device A running both its assets in one agent (the runtime's
  // multi-asset case: one client, each decision on its own asset's topics, health on the first
  // asset's), every kind of message it sends.
  std::vector<telemetry::TopicSpec> expected;  // every topic A may publish
  for (const std::string asset : {"press-a", "press-a2"}) {
    auto topics = telemetry::PublishedTopics({"f1", "l1", asset, "edge-a"});
    expected.insert(expected.end(), topics.begin(), topics.end());
  }
  const telemetry::Identity id{"f1", "l1", "press-a", "edge-a"};
  {
    telemetry::TelemetryOptions o;
    o.broker_url = "mqtts://localhost:" + std::to_string(port);
    o.ca_file = pki_ + "/ca.crt";
    o.cert_file = pki_ + "/devices/edge-a.crt";
    o.key_file = pki_ + "/devices/edge-a.key";
    o.spool_path = dir_ + "/edge-a.spool";
    o.health_interval_s = 0.1;
    auto t = telemetry::Telemetry::Create(id, o);
    ASSERT_TRUE(t) << t.error().message;
    ASSERT_TRUE(WaitFor([&] { return (*t)->stats().connected; }, 15s)) << broker->log();
    for (const std::string asset : {"press-a", "press-a2"}) {
      Decision d = MakeDecision(1, true);  // on scores and alerts
      d.asset_id = asset;
      (*t)->OnDecision(d);
    }
    (*t)->PublishDeviceState("ota", {{"state", "installed"}, {"version", "2"}});
    ASSERT_TRUE(WaitFor([&] { return seen(id.HealthTopic(), "edge-a"); }, 10s));
    ASSERT_TRUE((*t)->Flush(15s));
    auto s = (*t)->stats();
    EXPECT_EQ(s.refused, 0) << "the broker refused " << s.refused_by_topic.begin()->first;
  }  // a graceful stop publishes "offline" on the status topic
  const std::string unused = telemetry::Identity{"f1", "l1", "press-a2", "edge-a"}.HealthTopic();
  for (const auto& t : expected) {
    if (t.topic == unused) continue;  // health goes to the first asset's topic only
    EXPECT_TRUE(WaitFor([&] { return seen(t.topic, "edge-a"); }, 10s))
        << t.topic << " never reached the fleet reader";
  }

  // An independent client with A's certificate: A's own topics pass, B's are refused.
  for (const auto& t : expected) {
    EXPECT_EQ(Pub5(port, "edge-a", t.topic, "{\"by\":\"edge-a\"}").find("Not authorized"),
              std::string::npos)
        << t.topic;
  }
  const auto b_topics = telemetry::PublishedTopics({"f1", "l1", "press-b", "edge-b"});
  for (const auto& t : b_topics) {
    EXPECT_NE(Pub5(port, "edge-a", t.topic, "{\"by\":\"intruder-a\"}").find("Not authorized"),
              std::string::npos)
        << "A may write B's " << t.topic;
  }
  // B's own publish is the marker that everything before it has been routed.
  const std::string marker = b_topics[2].topic;  // B's health
  EXPECT_EQ(Pub5(port, "edge-b", marker, "{\"by\":\"edge-b\"}").find("Not authorized"),
            std::string::npos);
  ASSERT_TRUE(WaitFor([&] { return seen(marker, "\"edge-b\""); }, 10s));
  for (const auto& m : reader.Messages()) {
    EXPECT_EQ(m.payload.find("intruder-a"), std::string::npos) << "A wrote " << m.topic;
  }
  reader.Stop();
}

// ---- PostgreSQL ----------------------------------------------------------------------------

std::string StatusOf(FleetStore& s, const std::string& device) {
  auto d = s.Devices();
  if (!d) return "error: " + d.error().message;
  for (const auto& row : *d) {
    if (row.device_id == device) return row.status;
  }
  return "";
}

class Postgres {
 public:
  bool Start(std::string* why) {
    const std::string bin = "/usr/lib/postgresql/15/bin";
    if (::access((bin + "/initdb").c_str(), X_OK) != 0) {
      *why = "PostgreSQL 15 binaries not installed";
      return false;
    }
    passwd* pw = ::getpwnam("postgres");
    if (!pw) {
      *why = "no postgres user";
      return false;
    }
    dir_ = tend::testing::MakeTempDir("pg");
    if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      *why = "cannot chown the data directory to postgres (not root?)";
      return false;
    }
    port_ = tend::testing::FreePort();
    auto run = [&](std::vector<std::string> argv) {
      std::vector<std::string> full = {"/usr/sbin/runuser", "-u", "postgres", "--"};
      full.insert(full.end(), argv.begin(), argv.end());
      return tend::testing::WaitExit(tend::testing::Spawn(full, dir_ + "/cmd.log"));
    };
    if (run({bin + "/initdb", "-D", dir_ + "/data", "-A", "trust", "-U", "postgres"}) != 0) {
      *why = "initdb failed: " + tend::testing::ReadAll(dir_ + "/cmd.log");
      return false;
    }
    if (run({bin + "/pg_ctl", "-D", dir_ + "/data", "-w", "-l", dir_ + "/pg.log", "-o",
             "-p " + std::to_string(port_) + " -k " + dir_ + " -c listen_addresses=127.0.0.1",
             "start"}) != 0) {
      *why = "pg_ctl start failed: " + tend::testing::ReadAll(dir_ + "/pg.log");
      return false;
    }
    started_ = true;
    return true;
  }
  ~Postgres() {
    if (started_) {
      std::vector<std::string> argv = {
          "/usr/sbin/runuser", "-u", "postgres",  "--",  "/usr/lib/postgresql/15/bin/pg_ctl", "-D",
          dir_ + "/data",      "-m", "immediate", "stop"};
      tend::testing::WaitExit(tend::testing::Spawn(argv, "/dev/null"));
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::string url() const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/postgres";
  }
  // Runs SQL with psql; true on success.
  bool Exec(const std::string& sql) {
    return tend::testing::WaitExit(tend::testing::Spawn(
               {"/usr/lib/postgresql/15/bin/psql", "-v", "ON_ERROR_STOP=1", "-q", "-d", url(),
                "-c", sql},
               dir_ + "/psql.log")) == 0;
  }
  std::string log() const { return tend::testing::ReadAll(dir_ + "/psql.log"); }

 private:
  std::string dir_;
  int port_ = 0;
  bool started_ = false;
};

TEST_F(FleetIntegration, PostgresSharedByTwoInstancesStoresEachMessageOnce) {
  Postgres pg;
  std::string why;
  if (!pg.Start(&why)) GTEST_SKIP() << "PostgreSQL test skipped: " << why;
  Broker broker;
  ASSERT_TRUE(broker.Start());
  IngestOptions io;
  io.broker_url = broker.url();
  io.group = "pg";
  auto s1 = OpenFleetStore(pg.url());
  ASSERT_TRUE(s1) << s1.error().message;
  auto s2 = OpenFleetStore(pg.url());
  ASSERT_TRUE(s2) << s2.error().message;
  auto a = Ingest::Start(io, std::move(*s1));
  ASSERT_TRUE(a) << a.error().message;
  auto b = Ingest::Start(io, std::move(*s2));
  ASSERT_TRUE(b) << b.error().message;
  RunDevice(broker.url(), dir_, "edge-pg", 200, 2);
  ASSERT_TRUE(WaitFor([&] { return (*a)->stats().stored + (*b)->stats().stored >= 302; }, 30s));
  EXPECT_EQ((*a)->stats().store_errors + (*b)->stats().store_errors, 0);
  auto check = OpenFleetStore(pg.url());
  ASSERT_TRUE(check);
  EXPECT_EQ(Ids(**check, "alerts").size(), 100u);
  EXPECT_EQ(Ids(**check, "scores").size(), 200u);
  auto devices = (*check)->Devices();
  ASSERT_TRUE(devices);
  ASSERT_EQ(devices->size(), 1u);
  EXPECT_EQ((*devices)[0].status, "offline");  // graceful stop published offline
  EXPECT_EQ((*devices)[0].model_version, "2");
  auto alerts = (*check)->Alerts(0, 1000);
  ASSERT_TRUE(alerts);
  EXPECT_EQ(alerts->size(), 100u);
  // A redelivered message is a duplicate for whichever instance gets it.
  auto again =
      ParseFleetMessage("factory/f1/line/l1/asset/asset-edge-pg/alerts",
                        telemetry::ScorePayload(MakeDecision(0, true),
                                                {"f1", "l1", "asset-edge-pg", "edge-pg"}, {1, 1}));
  ASSERT_EQ(again.reason, Malformed::kNone) << again.detail;
  again.message.msg_id = *Ids(**check, "alerts").begin();
  auto r = (*check)->Store(again.message, 1);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(*r);
}

// Issue 17: a PostgreSQL fleet database from before schema versions (a global UNIQUE(msg_id), no
// status order) keeps its rows and gets the per-device dedup key and the status order on open.
TEST_F(FleetIntegration, PostgresDatabaseFromBeforeVersionsIsMigrated) {
  Postgres pg;
  std::string why;
  if (!pg.Start(&why)) GTEST_SKIP() << "PostgreSQL test skipped: " << why;
  ASSERT_TRUE(pg.Exec(R"sql(
CREATE TABLE devices(device_id TEXT PRIMARY KEY, factory_id TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT '', status_ms BIGINT NOT NULL DEFAULT 0,
  last_seen_ms BIGINT NOT NULL DEFAULT 0, model_version TEXT NOT NULL DEFAULT '');
CREATE TABLE alerts(msg_id TEXT UNIQUE, device_id TEXT NOT NULL, factory_id TEXT NOT NULL,
  line_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms BIGINT NOT NULL, timestamp TEXT NOT NULL,
  anomaly_score DOUBLE PRECISION, severity TEXT NOT NULL, top_sensors TEXT NOT NULL,
  model_version TEXT NOT NULL, seq BIGINT NOT NULL, received_ms BIGINT NOT NULL);
INSERT INTO alerts VALUES('dev-1-1', 'dev', 'f1', 'l1', 'a1', 1, '1970', 0.5, 'HIGH', '[]', '1',
  1, 2);
INSERT INTO devices(device_id, status, status_ms) VALUES('dev', 'online', 1800000000000);
)sql")) << pg.log();
  for (int open = 0; open < 2; ++open) {  // the second open finds version 3 and changes nothing
    auto store = OpenFleetStore(pg.url());
    ASSERT_TRUE(store) << store.error().message;
    EXPECT_EQ((*store)->Alerts(0, 100)->size(), 1u + open);  // both rows say "dev-1-1"
    if (open == 1) break;
    const telemetry::Identity other{"f1", "l1", "a2", "dev2"};
    auto m = ParseFleetMessage(other.AlertsTopic(),
                               telemetry::ScorePayload(MakeDecision(0, true), other, {1, 1}));
    ASSERT_EQ(m.reason, Malformed::kNone) << m.detail;
    m.message.msg_id = "dev-1-1";  // the id another device already used
    auto r = (*store)->Store(m.message, 1800000000001);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(*r) << "dropped as a duplicate of another device's message";
    EXPECT_EQ(StatusOf(**store, "dev"), "online");
  }
  // Version 3: the console's tables and an alert's evidence columns.
  EXPECT_TRUE(pg.Exec("SELECT event_id, image_ref FROM alerts; SELECT hash FROM console_tokens;"
                      " SELECT id FROM audit_log; SELECT name FROM rollout_status"))
      << pg.log();
}

TEST_F(FleetIntegration, PostgresKeepsOtaStateAndHistory) {
  Postgres pg;
  std::string why;
  if (!pg.Start(&why)) GTEST_SKIP() << "PostgreSQL test skipped: " << why;
  auto s = OpenFleetStore(pg.url());
  ASSERT_TRUE(s) << s.error().message;
  testing::ExpectOtaStoreBehaviour(**s);
  // Another instance opening the same (already migrated) database sees the same state.
  auto other = OpenFleetStore(pg.url());
  ASSERT_TRUE(other) << other.error().message;
  auto d = (*other)->Devices();
  ASSERT_TRUE(d) << d.error().message;
  ASSERT_EQ(d->size(), 1u);
  EXPECT_TRUE((*d)[0].has_ota);
  EXPECT_EQ((*d)[0].ota.ota.current_version, 3);
  auto ev = (*other)->OtaEvents(0, "", 100);
  ASSERT_TRUE(ev) << ev.error().message;
  EXPECT_EQ(ev->size(), 5u);
}

// Two instances in one shared-subscription group each get every OTA state (it is subscribed
// plainly, for its retained messages), while they split the SPEC topics.
TEST_F(FleetIntegration, EveryIngestInstanceGetsEveryOtaState) {
  Broker broker;
  ASSERT_TRUE(broker.Start());
  IngestOptions io;
  io.broker_url = broker.url();
  io.group = "g1";
  auto a = Ingest::Start(io, *OpenFleetStore("sqlite:" + dir_ + "/a.db"));
  ASSERT_TRUE(a) << a.error().message;
  auto b = Ingest::Start(io, *OpenFleetStore("sqlite:" + dir_ + "/b.db"));
  ASSERT_TRUE(b) << b.error().message;
  telemetry::TelemetryOptions o;
  o.broker_url = broker.url();
  o.spool_path = dir_ + "/edge.spool";
  o.health_interval_s = 0;
  o.spool_durable = false;
  auto t = telemetry::Telemetry::Create({"f1", "l1", "press-ota", "edge-ota"}, o);
  ASSERT_TRUE(t) << t.error().message;
  ASSERT_TRUE(WaitFor([&] { return (*t)->stats().connected; }, 10s));
  const int64_t now = std::time(nullptr);
  for (const char* event : {"startup", "installed", "probation_ended", "stale"}) {
    testing::OtaShape shape;
    shape.event = event;
    (*t)->PublishDeviceState("ota", testing::AgentOtaState(shape, now));
    ASSERT_TRUE((*t)->Flush(30s));  // one message each: a newer unsent state replaces an older
  }
  // Each instance stores 4 OTA states (+ the online status, which only one of them gets).
  ASSERT_TRUE(WaitFor([&] { return (*a)->stats().stored + (*b)->stats().stored >= 9; }, 30s))
      << (*a)->stats().stored << " + " << (*b)->stats().stored;
  (*a)->Stop();
  (*b)->Stop();
  for (const char* name : {"a", "b"}) {
    auto s = OpenFleetStore("sqlite:" + dir_ + "/" + name + ".db");
    ASSERT_TRUE(s);
    auto ev = (*s)->OtaEvents(0, "", 100);
    ASSERT_TRUE(ev) << ev.error().message;
    EXPECT_EQ(ev->size(), 4u) << name;
  }
}

// ---- OTA state end to end: device -> Mosquitto -> `tend fleet ingest` -> status / ota ---------

struct CmdOut {
  int rc = -1;
  std::string out;
};

CmdOut RunTend(std::vector<std::string> args, const std::string& out_path) {
  args.insert(args.begin(), std::string(std::getenv("TEND_BINARY_DIR")) + "/tend");
  int rc = tend::testing::WaitExit(tend::testing::Spawn(args, out_path, /*merge_stderr=*/false));
  return {rc, tend::testing::ReadAll(out_path)};
}

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line, nullptr, false));
  }
  return out;
}

TEST_F(FleetIntegration, OtaStateFromADeviceShowsInFleetStatusAndEvents) {
  const char* bin_dir = std::getenv("TEND_BINARY_DIR");
  if (!bin_dir || ::access((std::string(bin_dir) + "/tend").c_str(), X_OK) != 0) {
    GTEST_SKIP() << "tend binary not built";
  }
  Broker broker;
  ASSERT_TRUE(broker.Start());
  // The device side as `tend run --mqtt ... --ota-registry ...` publishes it: the updater's
  // status JSON plus event, through Telemetry::PublishDeviceState (retained, QoS 1).
  const telemetry::Identity id{"f1", "l1", "press-ota", "edge-ota"};
  telemetry::TelemetryOptions o;
  o.broker_url = broker.url();
  o.spool_path = dir_ + "/edge.spool";
  o.health_interval_s = 0;
  o.spool_durable = false;
  auto t = telemetry::Telemetry::Create(id, o);
  ASSERT_TRUE(t) << t.error().message;
  ASSERT_TRUE(WaitFor([&] { return (*t)->stats().connected; }, 10s));
  const int64_t now = std::time(nullptr);
  auto publish = [&](const testing::OtaShape& shape) {
    (*t)->PublishDeviceState("ota", testing::AgentOtaState(shape, now));
    auto st = (*t)->Flush(30s);
    ASSERT_TRUE(st) << st.error().message;
  };
  // Published before ingest runs: only the retained message can tell ingest about it.
  publish({});

  const std::string db = "sqlite:" + dir_ + "/fleet.db";
  pid_t ingest = tend::testing::Spawn({std::string(bin_dir) + "/tend", "fleet", "ingest", "--mqtt",
                                       broker.url(), "--group", "g1", "--db", db},
                                      dir_ + "/ingest.log");
  ASSERT_GT(ingest, 0);
  auto ota_state = [&]() -> nlohmann::json {
    std::this_thread::sleep_for(100ms);  // each poll is a process: go easy on the cores
    auto r = RunTend({"fleet", "status", "--db", db, "--json"}, dir_ + "/status.out");
    if (r.rc != 0) return nullptr;
    for (const auto& j : JsonLines(r.out)) {
      if (j.is_object() && j.value("device_id", "") == "edge-ota") return j["ota"];
    }
    return nullptr;
  };
  nlohmann::json seen;
  auto wait_event = [&](const std::string& event) {
    return WaitFor(
        [&] {
          seen = ota_state();
          return seen.is_object() && seen["event"] == event;
        },
        30s);
  };
  ASSERT_TRUE(wait_event("startup")) << tend::testing::ReadAll(dir_ + "/ingest.log");
  EXPECT_EQ(seen["current_version"], 1);
  EXPECT_EQ(seen["state"], "serving");
  EXPECT_EQ(seen["stale"], false);

  publish({"installed", 2, 1, true, 0, "", 1, 0, 0});
  ASSERT_TRUE(wait_event("installed")) << seen.dump();
  EXPECT_EQ(seen["current_version"], 2);
  EXPECT_EQ(seen["backup_version"], 1);
  EXPECT_EQ(seen["state"], "probation");

  // A malformed OTA state (version as a string) is counted and skipped; ingest goes on.
  pid_t p = tend::testing::Spawn(
      {"/usr/bin/mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(broker.port()), "-q", "1",
       "-t", id.EdgeTopic("ota"), "-m",
       R"({"device_id":"edge-ota","timestamp":"2024-05-01T12:00:00Z","event":"installed",)"
       R"("state":"serving","current_version":"two","stale":false})"});
  ASSERT_EQ(tend::testing::WaitExit(p), 0);

  const std::string reason = "misbehaviour during probation: press-anomaly v2: alert storm";
  publish({"rolled_back", 1, 2, false, 1, reason, 1, 0, 1});
  ASSERT_TRUE(wait_event("rolled_back")) << seen.dump();
  EXPECT_EQ(seen["current_version"], 1);
  EXPECT_EQ(seen["state"], "serving");
  EXPECT_EQ(seen["last_rollback_reason"], reason);
  EXPECT_EQ(seen["rollbacks"], 1);

  auto text = RunTend({"fleet", "status", "--db", db}, dir_ + "/status.txt");
  ASSERT_EQ(text.rc, 0);
  EXPECT_NE(text.out.find("LAST ROLLBACK"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(reason), std::string::npos) << text.out;

  auto events = RunTend({"fleet", "ota", "--db", db, "--json"}, dir_ + "/ota.out");
  ASSERT_EQ(events.rc, 0);
  auto rows = JsonLines(events.out);
  ASSERT_EQ(rows.size(), 3u) << events.out;
  EXPECT_EQ(rows[0]["event"], "startup");
  EXPECT_EQ(rows[1]["event"], "installed");
  EXPECT_EQ(rows[2]["event"], "rolled_back");
  EXPECT_EQ(rows[2]["device_id"], "edge-ota");
  EXPECT_EQ(rows[2]["current_version"], 1);
  EXPECT_EQ(rows[2]["backup_version"], 2);
  EXPECT_EQ(rows[2]["reason"], reason);
  auto only =
      RunTend({"fleet", "ota", "--db", db, "--event", "rolled_back", "--json"}, dir_ + "/ota2.out");
  ASSERT_EQ(only.rc, 0);
  EXPECT_EQ(JsonLines(only.out).size(), 1u) << only.out;

  ::kill(ingest, SIGTERM);
  EXPECT_EQ(tend::testing::WaitExit(ingest), 0);
  auto log = tend::testing::ReadAll(dir_ + "/ingest.log");
  EXPECT_NE(log.find("wrong_type 1 "), std::string::npos) << log;
  EXPECT_NE(log.find("store errors 0"), std::string::npos) << log;
}

// The PostgreSQL batch path (multi-row inserts, upserts per table in key order) stores what one
// message at a time stores: the same rows, devices, OTA state and dedup, checked against SQLite
// fed message by message.
TEST_F(FleetIntegration, PostgresBatchesStoreWhatSingleMessagesStore) {
  Postgres pg;
  std::string why;
  if (!pg.Start(&why)) GTEST_SKIP() << "PostgreSQL test skipped: " << why;
  const int64_t t0 = 1714564800000;
  std::vector<FleetMessage> msgs;
  auto add = [&](const std::string& topic, const std::string& payload) {
    auto o = ParseFleetMessage(topic, payload);
    ASSERT_EQ(o.reason, Malformed::kNone) << o.detail;
    msgs.push_back(o.message);
  };
  for (int d = 0; d < 6; ++d) {
    const telemetry::Identity id{"f1", "l" + std::to_string(d % 2), "a" + std::to_string(d),
                                 "edge-b" + std::to_string(5 - d)};
    auto at = [&](int64_t ms) {
      return std::chrono::system_clock::time_point{std::chrono::milliseconds(ms)};
    };
    add(id.StatusTopic(), telemetry::StatusPayload(at(t0 + 5000), id, d % 3 != 0));
    add(id.StatusTopic(),
        telemetry::StatusPayload(at(t0 + 1000), id, true));  // older, arrives late
    for (int k = 0; k < 20; ++k) {
      Decision dec;
      dec.timestamp = at(t0 + k * 100);
      dec.anomaly_score = k % 7 == 0 ? 2.5f : 0.3f;
      dec.is_alert = k % 7 == 0;
      dec.severity = dec.is_alert ? Severity::kHigh : Severity::kLow;
      dec.top_sensors = {"rms"};
      dec.model_version = std::to_string(1 + k / 10);
      auto p = telemetry::ScoreJson(dec, id, telemetry::MessageId{1, k + 1});
      if (dec.is_alert) {
        auto a = p;
        a["image_ref"] = "/ev/" + std::to_string(k) + ".png";
        a["event_id"] = k;
        add(id.AlertsTopic(), a.dump());
      }
      add(id.ScoresTopic(), p.dump());
    }
    add(id.HealthTopic(), telemetry::HealthPayload(at(t0 + 3000), id, telemetry::MessageId{1, 50},
                                                   {{"cpu_pct", 3.0}, {"spool_depth", d}}));
    testing::OtaShape s;
    s.current = 2;
    s.backup = 1;
    add(id.EdgeTopic("ota"),
        testing::WirePayload(testing::AgentOtaState(s, t0 / 1000), id, t0 + 4000, 60));
  }
  // Redeliveries inside and across batches.
  std::vector<FleetMessage> first(msgs.begin(), msgs.begin() + 70),
      second(msgs.begin() + 50, msgs.end());
  second.insert(second.end(), msgs.begin(), msgs.begin() + 10);

  auto pgs = OpenFleetStore(pg.url());
  ASSERT_TRUE(pgs) << pgs.error().message;
  auto n1 = (*pgs)->StoreBatch(first, t0 + 9000);
  ASSERT_TRUE(n1) << n1.error().message;
  auto n2 = (*pgs)->StoreBatch(second, t0 + 9500);
  ASSERT_TRUE(n2) << n2.error().message;
  auto ref = OpenFleetStore("sqlite:" + dir_ + "/ref.db");
  ASSERT_TRUE(ref);
  int64_t fresh = 0;  // the same deliveries, one message at a time
  for (const auto* part : {&first, &second}) {
    for (const auto& m : *part) {
      auto r = (*ref)->Store(m, t0 + 9000);
      ASSERT_TRUE(r) << r.error().message;
      fresh += *r ? 1 : 0;
    }
  }
  EXPECT_EQ(*n1 + *n2, fresh);
  for (const char* table : {"alerts", "scores", "health", "ota_events"}) {
    EXPECT_EQ(Ids(**pgs, table), Ids(**ref, table)) << table;
  }
  auto a = (*pgs)->Devices(), b = (*ref)->Devices();
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->size(), b->size());
  for (size_t i = 0; i < a->size(); ++i) {
    const DeviceRow &x = (*a)[i], &y = (*b)[i];
    EXPECT_EQ(x.device_id, y.device_id);
    EXPECT_EQ(x.status, y.status) << x.device_id;  // the newest status wins
    EXPECT_EQ(x.status_ms, y.status_ms) << x.device_id;
    EXPECT_EQ(x.model_version, y.model_version) << x.device_id;
    EXPECT_EQ(x.factory_id, y.factory_id);
    EXPECT_GT(x.last_seen_ms, 0);
    EXPECT_EQ(x.has_ota, y.has_ota);
    EXPECT_EQ(x.ota.ota.current_version, y.ota.ota.current_version);
    EXPECT_EQ(x.ota.msg_id, y.ota.msg_id);
  }
  auto ax = (*pgs)->Alerts(0, 1000), ay = (*ref)->Alerts(0, 1000);
  ASSERT_TRUE(ax && ay);
  EXPECT_EQ(ax->size(), ay->size());
  EXPECT_EQ((*pgs)->StatusHistoryCount().value_or(-1), (*ref)->StatusHistoryCount().value_or(-2));
}

// The console's and the controller's statements, written once for both dialects, on PostgreSQL:
// tokens, sessions, the audit log, intents, pins, rollback requests (INSERT ... RETURNING), the
// device summaries and one controller tick that signs a control statement.
TEST_F(FleetIntegration, PostgresServesTheConsoleAndTheController) {
  Postgres pg;
  std::string why;
  if (!pg.Start(&why)) GTEST_SKIP() << "PostgreSQL test skipped: " << why;
  {
    auto store = OpenFleetStore(pg.url());
    ASSERT_TRUE(store) << store.error().message;
    const telemetry::Identity id{"f1", "l1", "a1", "edge-pg-1"};
    testing::OtaShape s;
    s.current = 1;
    s.backup = 0;
    auto o = ParseFleetMessage(
        id.EdgeTopic("ota"),
        testing::WirePayload(testing::AgentOtaState(s, 1800000000), id, 1800000000000, 1));
    ASSERT_EQ(o.reason, Malformed::kNone) << o.detail;
    ASSERT_TRUE((*store)->Store(o.message, 1800000001000));
  }
  auto db = ConsoleDb::Open(pg.url());
  ASSERT_TRUE(db) << db.error().message;
  auto token = CreateToken(**db, "pg-operator", Role::kOperator, 0, 1800000000000);
  ASSERT_TRUE(token) << token.error().message;
  auto who = PrincipalFromToken(**db, token->token, 1800000000000);
  ASSERT_TRUE(who && *who);
  EXPECT_EQ((*who)->role, Role::kOperator);
  auto session = OpenSession(**db, token->token, 60, 1800000000000);
  ASSERT_TRUE(session && *session) << (session ? "" : session.error().message);
  EXPECT_TRUE(*PrincipalFromSession(**db, (*session)->id, 1800000030000));
  EXPECT_FALSE(*PrincipalFromSession(**db, (*session)->id, 1800000061000));
  ASSERT_TRUE(
      (*db)->Audit({0, 1800000000000, "pg-operator", "operator", "pin", "edge-pg-1", "{}", "ok"}));
  int64_t total = 0;
  auto audit = (*db)->AuditLog(0, 10, &total);
  ASSERT_TRUE(audit) << audit.error().message;
  EXPECT_EQ(total, 1);
  auto id1 = (*db)->AddRollbackRequest(
      {0, "edge-pg-1", "press-anomaly", 1, "why", "pg-operator", 1800000000000, "requested", 0});
  auto id2 = (*db)->AddRollbackRequest(
      {0, "edge-pg-1", "press-anomaly", 1, "again", "pg-operator", 1800000000000, "requested", 0});
  ASSERT_TRUE(id1 && id2) << (id1 ? "" : id1.error().message);
  EXPECT_GT(*id2, *id1);
  ASSERT_TRUE((*db)->SetPin({"edge-pg-1", "press-anomaly", 1, "pg-operator", 1800000000000}));
  ASSERT_TRUE((*db)->SetTags("edge-pg-1", {"canary", "hall-2"}, {}));
  auto summaries = (*db)->DeviceSummaries(1800000000000);
  ASSERT_TRUE(summaries) << summaries.error().message;
  ASSERT_EQ(summaries->size(), 1u);
  EXPECT_EQ((*summaries)[0].tags.size(), 2u);
  EXPECT_EQ((*summaries)[0].pins.size(), 1u);
  EXPECT_TRUE((*summaries)[0].device.has_ota);

  // One controller tick against a registry with a staged release.
  const std::string reg = dir_ + "/registry";
  auto key = ota::GenerateKeyPair();
  ASSERT_TRUE(ota::WriteRoot(reg, ota::MakeRoot({*key}, 1, 1, 1800000000 + 86400), {*key}));
  ASSERT_TRUE(fs::WriteFileAtomic(dir_ + "/m.onnx", std::string(64, 'm')));
  ota::PublishOptions po;
  po.model_path = dir_ + "/m.onnx";
  po.name = "press-anomaly";
  po.version = 2;
  po.profiles = {"x86-cpu-fp32"};
  po.now = 1800000000;
  po.rollout = *ota::MakeRolloutPlan("10,100", "1h", 20, 1, "press-anomaly");
  ASSERT_TRUE(ota::Publish(reg, po, {*key}));
  ASSERT_TRUE(
      (*db)->SetRolloutIntent({"press-anomaly", 2, "running", "pg-operator", 1800000000000}));
  ControllerOptions co;
  co.registry_dir = reg;
  co.keys = {*key};
  co.clock = [] { return int64_t{1800000000}; };
  auto tick = RunControlOnce(co, **db);
  ASSERT_TRUE(tick) << tick.error().message;
  EXPECT_EQ(tick->control.FindRollout("press-anomaly", 2)->open_waves, 1);
  EXPECT_EQ(tick->control.rollbacks.size(), 2u);
  EXPECT_EQ(*tick->control.PinFor("edge-pg-1", "press-anomaly"), 1);
  auto statuses = (*db)->RolloutStatuses();
  ASSERT_TRUE(statuses);
  ASSERT_EQ(statuses->size(), 1u);
  EXPECT_EQ((*statuses)[0].state, "running");
}

// ---- Issue 17: status order, spool resets, two devices sharing an id ---------------------------

// A fleet store in this process fed by a real ingest over a real Mosquitto.
struct IngestFixture {
  std::unique_ptr<Ingest> ingest;
  std::string db;
  void Start(const Broker& broker, const std::string& dir) {
    db = "sqlite:" + dir + "/fleet.db";
    IngestOptions io;
    io.broker_url = broker.url();
    io.group = "g1";
    auto store = OpenFleetStore(db);
    ASSERT_TRUE(store) << store.error().message;
    auto i = Ingest::Start(io, std::move(*store));
    ASSERT_TRUE(i) << i.error().message;
    ingest = std::move(*i);
  }
  // A second connection to the same database, to look without stopping ingest.
  std::string Status(const std::string& device) {
    auto s = OpenFleetStore(db);
    return s ? StatusOf(**s, device) : "error";
  }
  size_t AlertCount() {
    auto s = OpenFleetStore(db);
    if (!s) return 0;
    auto a = (*s)->Alerts(0, 100000);
    return a ? a->size() : 0;
  }
};

// Defect 4: a SIGKILLed agent's Last Will carried its connect time, older than the `online` sent
// just after, so "newer status wins" kept the device online forever. A real `tend run` is killed
// with a real Mosquitto up, and the fleet must show it offline; restarted it is online again,
// and a graceful stop is offline too.
TEST_F(FleetIntegration, KilledAgentShowsOfflineAndComesBackOnline) {
  const char* bin_dir = std::getenv("TEND_BINARY_DIR");
  if (!bin_dir || ::access((std::string(bin_dir) + "/tend").c_str(), X_OK) != 0) {
    GTEST_SKIP() << "tend binary not built";
  }
  const std::string tend = std::string(bin_dir) + "/tend";
  ASSERT_EQ(RunTend({"train", "--input", "sim:strokes=60,wear=0,seed=5", "--out", dir_ + "/m.onnx"},
                    dir_ + "/train.out")
                .rc,
            0)
      << tend::testing::ReadAll(dir_ + "/train.out");
  Broker broker;
  ASSERT_TRUE(broker.Start());
  IngestFixture fleet;
  ASSERT_NO_FATAL_FAILURE(fleet.Start(broker, dir_));
  auto agent = [&](const std::string& log) {
    return tend::testing::Spawn({tend,          "run",
                                 "--model",     dir_ + "/m.onnx",
                                 "--source",    "sim:strokes=100000,wear=0,seed=3",
                                 "--speed",     "1",
                                 "--mqtt",      broker.url(),
                                 "--factory",   "f1",
                                 "--line",      "l1",
                                 "--asset",     "press-k",
                                 "--device-id", "edge-kill",
                                 "--state-dir", dir_ + "/state"},
                                log);
  };
  auto status_is = [&](const char* want) {
    return WaitFor([&] { return fleet.Status("edge-kill") == want; }, 30s);
  };
  for (int round = 0; round < 2; ++round) {
    pid_t pid = agent(dir_ + "/agent" + std::to_string(round) + ".log");
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(status_is("online")) << tend::testing::ReadAll(dir_ + "/agent0.log");
    std::this_thread::sleep_for(500ms);  // let the `online` be the latest thing the fleet saw
    ::kill(pid, SIGKILL);
    EXPECT_EQ(tend::testing::WaitExit(pid), 128 + SIGKILL);
    ASSERT_TRUE(status_is("offline"))
        << "round " << round << ": a killed agent still shows " << fleet.Status("edge-kill");
  }
  pid_t pid = agent(dir_ + "/agent-graceful.log");
  ASSERT_TRUE(status_is("online"));
  ::kill(pid, SIGTERM);
  EXPECT_EQ(tend::testing::WaitExit(pid), 0)
      << tend::testing::ReadAll(dir_ + "/agent-graceful.log");
  EXPECT_TRUE(status_is("offline"));
  EXPECT_EQ(fleet.ingest->stats().duplicate_device_ids, 0);
  fleet.ingest->Stop();
}

// Runs `n` decisions (every third an alert) through a Telemetry with its own spool and waits
// until the broker has them.
void RunAgentOnce(const std::string& url, const std::string& spool, const telemetry::Identity& id,
                  int n) {
  telemetry::TelemetryOptions o;
  o.broker_url = url;
  o.spool_path = spool;
  o.health_interval_s = 0;
  o.spool_durable = false;
  auto t = telemetry::Telemetry::Create(id, o);
  ASSERT_TRUE(t) << t.error().message;
  ASSERT_TRUE(WaitFor([&] { return (*t)->stats().connected; }, 10s));
  for (int i = 0; i < n; ++i) (*t)->OnDecision(MakeDecision(i, i % 3 == 0));
  auto st = (*t)->Flush(30s);
  ASSERT_TRUE(st) << st.error().message;
}

// Defect 3: after a spool reset (a wiped state directory here; a 0-byte or quarantined file is
// the same) message ids started again at boot 1, and the fleet dropped the new alerts as
// duplicates after acknowledging them: 29 of 58 stored.
TEST_F(FleetIntegration, AlertsAfterASpoolResetAreNotDuplicates) {
  Broker broker;
  ASSERT_TRUE(broker.Start());
  IngestFixture fleet;
  ASSERT_NO_FATAL_FAILURE(fleet.Start(broker, dir_));
  const telemetry::Identity id{"f1", "l1", "press-1", "edge-reset"};
  const std::string spool = dir_ + "/state/spool.db";
  ASSERT_NO_FATAL_FAILURE(RunAgentOnce(broker.url(), spool, id, 87));  // 29 alerts
  ASSERT_TRUE(WaitFor([&] { return fleet.AlertCount() >= 29; }, 30s)) << fleet.AlertCount();
  std::filesystem::remove_all(dir_ + "/state");
  ASSERT_NO_FATAL_FAILURE(RunAgentOnce(broker.url(), spool, id, 87));
  EXPECT_TRUE(WaitFor([&] { return fleet.AlertCount() >= 58; }, 30s))
      << fleet.AlertCount() << " of 58 alerts stored";
  fleet.ingest->Stop();
  EXPECT_EQ(fleet.AlertCount(), 58u);
}

// Defect 5: two agents with the same device id (a cloned image keeps the host name) on two
// assets lost about half of each one's alerts to dedup, silently. Both run at once here, their
// connections replacing each other on the broker: every alert is stored, and ingest reports two
// live devices claiming one id.
TEST_F(FleetIntegration, TwoDevicesSharingAnIdKeepTheirAlertsAndAreReported) {
  Broker broker;
  ASSERT_TRUE(broker.Start());
  IngestFixture fleet;
  ASSERT_NO_FATAL_FAILURE(fleet.Start(broker, dir_));
  std::vector<std::unique_ptr<telemetry::Telemetry>> agents;
  for (const char* asset : {"press-1", "press-2"}) {
    telemetry::TelemetryOptions o;
    o.broker_url = broker.url();
    o.spool_path = dir_ + "/" + asset + "/spool.db";
    o.health_interval_s = 0;
    o.spool_durable = false;
    o.reconnect_min_s = 0.1;
    o.reconnect_max_s = 0.3;
    auto t = telemetry::Telemetry::Create({"f1", "l1", asset, "clone"}, o);
    ASSERT_TRUE(t) << t.error().message;
    agents.push_back(std::move(*t));
  }
  // They keep taking the connection from each other.
  ASSERT_TRUE(WaitFor(
      [&] { return agents[0]->stats().reconnects >= 2 && agents[1]->stats().reconnects >= 2; },
      30s));
  for (auto& a : agents) {
    for (int i = 0; i < 60; ++i) a->OnDecision(MakeDecision(i, i % 3 == 0));  // 20 alerts each
  }
  for (auto& a : agents) {
    auto st = a->Flush(60s);
    ASSERT_TRUE(st) << st.error().message;
  }
  EXPECT_TRUE(WaitFor([&] { return fleet.AlertCount() >= 40; }, 30s))
      << fleet.AlertCount() << " of 40 alerts stored";
  EXPECT_TRUE(WaitFor([&] { return fleet.ingest->stats().duplicate_device_ids > 0; }, 10s))
      << "two live devices with one id went unreported";
  agents.clear();
  fleet.ingest->Stop();
  EXPECT_EQ(fleet.AlertCount(), 40u);
}

}  // namespace
}  // namespace tend::fleet
