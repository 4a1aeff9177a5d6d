#include "fleet/simulate.h"

#include <mqtt/async_client.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "core/log.h"
#include "decide/decider.h"
#include "ota/fetch.h"
#include "ota/updater.h"
#include "telemetry/identity.h"
#include "telemetry/mqtt_url.h"
#include "telemetry/payload.h"

namespace tend::fleet {

std::string SimulatedDeviceId(const std::string& prefix, int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d", i + 1);
  return prefix + "-" + buf;
}

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr double kStrokesPerMinute = 18;
constexpr double kHealthPeriodS = 15;
constexpr SeverityThresholds kThresholds{1.0f, 1.5f, 2.0f};
const char* const kFeatures[] = {"band_200_400_rms",  "kurtosis",     "crest_factor",
                                 "spectral_centroid", "peak_to_peak", "envelope_rms"};

// Which state change a status is (the agent's OtaSupervisor names them the same way).
std::string OtaEvent(const json& prev, const json& cur) {
  if (prev.is_null()) return "startup";
  auto grew = [&](const char* k) { return cur["updates"][k] > prev["updates"][k]; };
  if (grew("rolled_back")) return "rolled_back";
  if (grew("installed")) return "installed";
  if (grew("refused")) return "refused";
  if (prev["current_version"] != cur["current_version"]) return "changed";
  if (prev["in_probation"] == true && cur["in_probation"] == false) return "probation_ended";
  return "";
}

int64_t VersionOfModelFile(const std::string& path) {
  std::string name = std::filesystem::path(path).filename().string();
  auto v = name.rfind("-v");
  if (v == std::string::npos) return 0;
  return std::strtoll(name.c_str() + v + 2, nullptr, 10);
}

struct SimDevice {
  telemetry::Identity id;
  size_t conn = 0;
  bool wearing = false;
  std::mt19937_64 rng;
  std::unique_ptr<Decider> decider;
  double next_score_s = 0, next_health_s = 0, next_ota_s = 0;
  int64_t seq = 0, window = 0;
  std::atomic<int64_t> version{0};
  std::atomic<bool> misbehaving{false};
  double misbehave_at_s = -1;
  std::unique_ptr<ota::Updater> updater;
  json prev_ota;
};

}  // namespace

class Simulator::Impl {
 public:
  explicit Impl(SimulateOptions o) : opt_(std::move(o)) {}
  ~Impl() { Stop(); }

  Status Start();
  void Stop();
  SimulateStats stats() const {
    SimulateStats s;
    s.scores = scores_;
    s.alerts = alerts_;
    s.health = health_;
    s.states = states_;
    s.publish_errors = errors_;
    s.installs = installs_;
    s.rollbacks = rollbacks_;
    s.elapsed_s = std::chrono::duration<double>(Clock::now() - start_).count();
    return s;
  }
  bool Done() const { return done_; }

 private:
  Status Connect();
  Status MakeDevices();
  Status StartUpdater(SimDevice& d, const std::string& dir);
  void Loop();
  void Tick(SimDevice& d, double now_s);
  void PublishScore(SimDevice& d);
  void PublishHealth(SimDevice& d);
  void PublishOta(SimDevice& d, json status, const std::string& event);
  void Publish(size_t conn, const std::string& topic, const std::string& payload, int qos,
               bool retained);
  std::chrono::system_clock::time_point WallNow() const { return std::chrono::system_clock::now(); }

  SimulateOptions opt_;
  std::vector<std::unique_ptr<mqtt::async_client>> clients_;
  std::vector<std::unique_ptr<SimDevice>> devices_;
  int64_t boot_ = 0;
  Clock::time_point start_;
  std::thread thread_;
  std::atomic<bool> stop_{false}, done_{false}, stopped_{false};
  std::atomic<int64_t> scores_{0}, alerts_{0}, health_{0}, states_{0}, errors_{0}, installs_{0},
      rollbacks_{0};
};

// The connections are opened together (each takes about a second to be acknowledged, mostly
// Paho's own pacing), then waited for.
Status Simulator::Impl::Connect() {
  TEND_ASSIGN_OR_RETURN(auto addr, telemetry::ParseBrokerUrl(opt_.broker_url));
  const int n = std::max(1, std::min(opt_.connections, opt_.devices));
  std::vector<mqtt::token_ptr> pending;
  try {
    for (int i = 0; i < n; ++i) {
      mqtt::create_options co(opt_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1, 100000);
      auto cli = std::make_unique<mqtt::async_client>(
          addr.paho_uri, opt_.prefix + "_sim_" + std::to_string(boot_) + "_" + std::to_string(i),
          co, nullptr);
      mqtt::connect_options c;
      c.set_mqtt_version(opt_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
      c.set_keep_alive_interval(telemetry::kKeepAliveS);
      c.set_max_inflight(1000);
      c.set_automatic_reconnect(1, 10);
      if (opt_.mqtt_version == 5) c.set_clean_start(true);
      if (addr.tls) {
        c.set_ssl(telemetry::BrokerSslOptions(opt_.ca_file, opt_.cert_file, opt_.key_file));
      }
      pending.push_back(cli->connect(c));
      clients_.push_back(std::move(cli));
    }
    for (auto& tok : pending) {
      if (!tok->wait_for(std::chrono::seconds(20))) {
        return Fail(Error::Timeout("simulate: connect to " + opt_.broker_url + " timed out"));
      }
    }
  } catch (const mqtt::exception& e) {
    return Fail(Error::Io("simulate: connect to " + opt_.broker_url + ": " + e.what()));
  }
  return Ok();
}

Status Simulator::Impl::StartUpdater(SimDevice& d, const std::string& dir) {
  ota::UpdaterOptions uo;
  uo.model_dir = dir;
  uo.model_name = opt_.model_name;
  uo.profile = opt_.profile;
  uo.pinned_root_path = opt_.root_path;
  uo.device_id = d.id.device_id;
  uo.interval_s = opt_.ota_interval_s;
  uo.control_interval_s = opt_.ota_interval_s;
  uo.state_watch_s = 0;
  uo.probation_s = 3600;
  uo.quality_gate = [this](const std::string& path) -> Result<double> {
    const int64_t v = VersionOfModelFile(path);
    const auto& r = opt_.refuse_versions;
    return std::find(r.begin(), r.end(), v) != r.end() ? 0.2 : 0.97;
  };
  SimDevice* dev = &d;
  uo.on_commit = [this, dev](const std::string& path) -> Status {
    const int64_t v = VersionOfModelFile(path);
    dev->version = v;
    const auto& m = opt_.misbehave_versions;
    dev->misbehaving = std::find(m.begin(), m.end(), v) != m.end();
    return Ok();
  };
  std::unique_ptr<ota::Fetcher> fetcher;
  if (opt_.registry.rfind("http://", 0) == 0) {
    TEND_ASSIGN_OR_RETURN(fetcher, ota::HttpFetcher::Create(opt_.registry));
  } else {
    TEND_ASSIGN_OR_RETURN(fetcher, ota::DirFetcher::Create(opt_.registry));
  }
  TEND_ASSIGN_OR_RETURN(d.updater, ota::Updater::Create(uo, std::move(fetcher)));
  const std::string current = d.updater->CurrentModelPath();
  d.version = current.empty() ? 0 : VersionOfModelFile(current);
  return Ok();
}

Status Simulator::Impl::MakeDevices() {
  const int wearing = opt_.wearing_devices >= 0
                          ? opt_.wearing_devices
                          : std::max(1, static_cast<int>(std::lround(opt_.devices * 0.02)));
  const double score_period = 60.0 / kStrokesPerMinute / opt_.rate;
  const double health_period = kHealthPeriodS / opt_.rate;
  for (int i = 0; i < opt_.devices; ++i) {
    auto d = std::make_unique<SimDevice>();
    const int f = i % std::max(1, opt_.factories);
    const int l = (i / std::max(1, opt_.factories)) % std::max(1, opt_.lines);
    d->id = {"plant-" + std::string(1, static_cast<char>('a' + f % 26)),
             "line-" + std::to_string(l + 1), "press-" + std::to_string(i + 1),
             SimulatedDeviceId(opt_.prefix, i)};
    TEND_RETURN_NOT_OK(d->id.Validate());
    d->conn = static_cast<size_t>(i) % clients_.size();
    d->wearing = i < wearing;
    d->rng.seed(opt_.seed * 1000003 + static_cast<uint64_t>(i));
    d->decider = std::make_unique<Decider>(kThresholds, DebounceOptions{1, 1});
    // Devices are out of phase, as real presses are.
    std::uniform_real_distribution<double> phase(0, 1);
    d->next_score_s = phase(d->rng) * score_period;
    d->next_health_s = phase(d->rng) * health_period;
    d->version = opt_.model_version;
    if (!opt_.registry.empty()) {
      const std::string dir = (std::filesystem::path(opt_.state_dir) / d->id.device_id).string();
      TEND_RETURN_NOT_OK(StartUpdater(*d, dir));
    }
    devices_.push_back(std::move(d));
  }
  return Ok();
}

void Simulator::Impl::Publish(size_t conn, const std::string& topic, const std::string& payload,
                              int qos, bool retained) {
  try {
    clients_[conn]->publish(topic, payload.data(), payload.size(), qos, retained);
  } catch (const mqtt::exception& e) {
    if (errors_++ == 0) TEND_LOG_WARN("simulate: publish failed: {}", e.what());
  }
}

void Simulator::Impl::PublishScore(SimDevice& d) {
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> normal(0.35, 0.12);
  std::exponential_distribution<double> tail(2.0);
  const double p_alert = d.misbehaving ? 0.6 : (d.wearing ? 0.25 : opt_.alert_fraction);
  double score = u(d.rng) < p_alert ? kThresholds.low + tail(d.rng)
                                    : std::clamp(normal(d.rng), 0.01, kThresholds.low * 0.95);
  Decision dec;
  dec.window_index = d.window++;
  dec.timestamp = WallNow();
  dec.anomaly_score = static_cast<float>(score);
  dec.model_name = opt_.model_name;
  dec.model_version = std::to_string(d.version.load());
  dec.latency_ms = 2 + 4 * u(d.rng);
  const size_t first = static_cast<size_t>(u(d.rng) * 6) % 6;
  dec.top_sensors = {kFeatures[first], kFeatures[(first + 1) % 6], kFeatures[(first + 3) % 6]};
  d.decider->Decide(dec);
  const std::string payload = telemetry::ScorePayload(dec, d.id, {boot_, ++d.seq});
  if (dec.is_alert) {
    Publish(d.conn, d.id.AlertsTopic(), payload, telemetry::kAlertsQos, false);
    ++alerts_;
  }
  Publish(d.conn, d.id.ScoresTopic(), payload, telemetry::kScoresQos, false);
  ++scores_;
}

void Simulator::Impl::PublishHealth(SimDevice& d) {
  std::uniform_real_distribution<double> u(0, 1);
  json extra = {
      {"cpu_pct", 15 + 30 * u(d.rng)},
      {"gpu_pct", nullptr},
      {"temp_c", 45 + 15 * u(d.rng)},
      {"memory_pct", 30 + 10 * u(d.rng)},
      {"model_version", std::to_string(d.version.load())},
      {"spool_depth", d.wearing ? static_cast<int64_t>(u(d.rng) * 400) : 0},
      {"dropped", {{"scores", d.wearing ? 12 : 0}, {"alerts", 0}, {"health", 0}}},
      {"connected", true},
      {"thresholds",
       {{"LOW", kThresholds.low}, {"MEDIUM", kThresholds.medium}, {"HIGH", kThresholds.high}}}};
  Publish(d.conn, d.id.HealthTopic(),
          telemetry::HealthPayload(WallNow(), d.id, {boot_, ++d.seq}, extra), telemetry::kHealthQos,
          false);
  ++health_;
}

void Simulator::Impl::PublishOta(SimDevice& d, json st, const std::string& event) {
  st["event"] = event;
  st["device_id"] = d.id.device_id;
  st["msg_id"] = telemetry::FormatMessageId(d.id.device_id, {boot_, ++d.seq});
  st["timestamp"] = telemetry::FormatIso8601(WallNow());
  Publish(d.conn, d.id.EdgeTopic("ota"), st.dump(), 1, true);
  ++states_;
  if (event == "installed") ++installs_;
  if (event == "rolled_back") ++rollbacks_;
}

namespace {

// A synthetic OTA state for devices without a registry: serving the configured version.
json SyntheticOta(const SimulateOptions& o, int64_t now) {
  ota::OtaState s;
  s.model_name = o.model_name;
  s.current = ota::ModelSlot{o.model_name + "-v" + std::to_string(o.model_version) + ".onnx",
                             o.model_version,
                             std::string(64, '0'),
                             1,
                             now - 7 * 86400,
                             0.97};
  s.highest_version = o.model_version;
  json j = ota::StateStatusJson(s, now, 8 * 7 * 86400);
  j["profile"] = o.profile;
  j["updates"] = {{"installed", 0}, {"refused", 0}, {"rolled_back", 0}, {"failed", 0}};
  return j;
}

}  // namespace

void Simulator::Impl::Tick(SimDevice& d, double now_s) {
  const double score_period = 60.0 / kStrokesPerMinute / opt_.rate;
  const double health_period = kHealthPeriodS / opt_.rate;
  while (d.next_score_s <= now_s) {
    PublishScore(d);
    d.next_score_s += score_period;
  }
  while (d.next_health_s <= now_s) {
    PublishHealth(d);
    d.next_health_s += health_period;
  }
  if (!d.updater || d.next_ota_s > now_s) return;
  d.next_ota_s = now_s + 0.25;
  // Probation on the simulated device: a misbehaving release is reported after a while.
  if (d.misbehaving && d.misbehave_at_s < 0) d.misbehave_at_s = now_s + opt_.misbehave_after_s;
  if (d.misbehaving && now_s >= d.misbehave_at_s) {
    d.misbehaving = false;
    d.misbehave_at_s = -1;
    Status st = d.updater->ReportMisbehaviour("simulated alert storm");
    if (!st) TEND_LOG_WARN("simulate {}: {}", d.id.device_id, st.error().message);
  }
  json cur = d.updater->StatusJson();
  std::string event = OtaEvent(d.prev_ota, cur);
  d.prev_ota = cur;
  if (!event.empty()) PublishOta(d, cur, event);
}

void Simulator::Impl::Loop() {
  while (!stop_) {
    const double now_s = std::chrono::duration<double>(Clock::now() - start_).count();
    if (opt_.duration_s > 0 && now_s >= opt_.duration_s) {
      done_ = true;
      return;
    }
    for (auto& d : devices_) Tick(*d, now_s);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Status Simulator::Impl::Start() {
  if (opt_.devices < 1 || !(opt_.rate > 0) || opt_.connections < 1) {
    return Fail(Error::Invalid("simulate: --devices, --rate and --connections must be > 0"));
  }
  if (!opt_.registry.empty() && (opt_.state_dir.empty() || opt_.root_path.empty())) {
    return Fail(Error::Invalid("simulate: --registry needs --state-dir and --root"));
  }
  boot_ = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count();
  TEND_RETURN_NOT_OK(Connect());
  TEND_RETURN_NOT_OK(MakeDevices());
  const int64_t now = boot_ / 1000;
  for (auto& d : devices_) {
    Publish(d->conn, d->id.StatusTopic(), telemetry::StatusPayload(WallNow(), d->id, true),
            telemetry::kStatusQos, telemetry::kStatusRetained);
    if (!d->updater) PublishOta(*d, SyntheticOta(opt_, now), "startup");
  }
  for (auto& d : devices_) {
    if (d->updater) d->updater->Start();
  }
  start_ = Clock::now();
  thread_ = std::thread([this] { Loop(); });
  TEND_LOG_INFO("simulate: {} devices on {} connections to {} at {}x the real rate", opt_.devices,
                clients_.size(), opt_.broker_url, opt_.rate);
  return Ok();
}

void Simulator::Impl::Stop() {
  if (stopped_.exchange(true)) return;
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (auto& d : devices_) {
    if (d->updater) d->updater->Stop();
  }
  for (auto& d : devices_) {
    if (clients_.empty()) break;
    Publish(d->conn, d->id.StatusTopic(), telemetry::StatusPayload(WallNow(), d->id, false),
            telemetry::kStatusQos, telemetry::kStatusRetained);
  }
  std::vector<mqtt::token_ptr> pending;  // all at once, then waited for (as in Connect)
  for (auto& c : clients_) {
    try {
      pending.push_back(c->disconnect(std::chrono::seconds(5)));
    } catch (const mqtt::exception& e) {
      TEND_LOG_DEBUG("simulate: disconnect: {}", e.what());
    }
  }
  for (auto& tok : pending) {
    try {
      tok->wait_for(std::chrono::seconds(10));
    } catch (const mqtt::exception& e) {
      TEND_LOG_DEBUG("simulate: disconnect: {}", e.what());
    }
  }
  clients_.clear();
}

Simulator::Simulator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Simulator::~Simulator() = default;

Result<std::unique_ptr<Simulator>> Simulator::Start(const SimulateOptions& opts) {
  auto impl = std::make_unique<Impl>(opts);
  TEND_RETURN_NOT_OK(impl->Start());
  return std::unique_ptr<Simulator>(new Simulator(std::move(impl)));
}

SimulateStats Simulator::stats() const { return impl_->stats(); }
bool Simulator::Done() const { return impl_->Done(); }
void Simulator::Stop() { impl_->Stop(); }

}  // namespace tend::fleet
