#include "fleet/ingest.h"

#include <mqtt/async_client.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "core/log.h"
#include "telemetry/mqtt_url.h"

namespace tend::fleet {

std::vector<std::string> IngestTopicFilters(const std::string& group) {
  std::string prefix = group.empty() ? "" : "$share/" + group + "/";
  // The OTA state is retained and sent only on a change, and a broker need not send retained
  // messages to shared subscriptions (MQTT 5 §4.8.2): it is subscribed plainly, so that every
  // instance gets each device's current state when it (re)subscribes, and every change after.
  // A few messages per device per day; instances sharing a database store each once (msg_id).
  return {prefix + "factory/+/line/+/asset/+/alerts", prefix + "factory/+/line/+/asset/+/scores",
          prefix + "factory/+/line/+/asset/+/health", prefix + "factory/+/edge/+/status",
          "factory/+/edge/+/ota"};
}

std::string DuplicateDeviceDetector::OnOnline(const std::string& device_id,
                                              const std::string& instance, int64_t session_ms,
                                              int64_t received_ms) {
  auto& q = recent_[device_id];
  while (!q.empty() && q.front().received_ms < received_ms - window_ms_) q.pop_front();
  std::string other;
  // This instance was seen before, and another one since: it came back after being replaced.
  bool seen_before = false;
  for (const auto& s : q) {
    if (s.instance == instance) {
      if (s.session_ms >= session_ms) return "";  // a redelivery, not a new connection
      seen_before = true;
      other.clear();
    } else if (seen_before) {
      other = s.instance;
    }
  }
  q.push_back({instance, session_ms, received_ms});
  if (q.size() > 64) q.pop_front();
  if (recent_.size() > 100000) recent_.clear();  // bounded memory, whatever devices send
  return other;
}

class Ingest::Impl {
 public:
  Impl(IngestOptions o, std::unique_ptr<FleetStore> store)
      : opt_(std::move(o)), store_(std::move(store)) {}
  ~Impl() { Stop(); }

  Status Start();
  void Stop();
  IngestStats stats() const {
    IngestStats s;
    s.received = received_;
    s.stored = stored_;
    s.duplicates = duplicates_;
    s.too_large = too_large_;
    s.bad_json = bad_json_;
    s.wrong_type = wrong_type_;
    s.unknown_topic = unknown_topic_;
    s.bad_id = bad_id_;
    s.bad_timestamp = bad_timestamp_;
    s.store_errors = store_errors_;
    s.batch_dropped = batch_dropped_;
    s.batches = batches_;
    {
      std::lock_guard lk(batch_mu_);
      s.queued = static_cast<int64_t>(pending_.size());
    }
    s.duplicate_device_ids = duplicate_device_ids_;
    s.connected = connected_;
    return s;
  }

 private:
  void OnMessage(const mqtt::const_message_ptr& msg);
  Status Subscribe();
  void StoreNow(const FleetMessage& m, int64_t now_ms);
  // Batching: OnMessage queues, the writer thread commits.
  bool Batched() const { return opt_.batch_ms > 0; }
  void Enqueue(FleetMessage&& m);
  void WriterLoop();
  void FlushBatch(std::vector<FleetMessage>& batch);

  IngestOptions opt_;
  std::unique_ptr<FleetStore> store_;
  std::unique_ptr<mqtt::async_client> cli_;
  mqtt::connect_options connopts_;
  std::mutex store_mu_;
  void CheckDuplicateDevice(const FleetMessage& m, int64_t now_ms);

  std::atomic<int64_t> received_{0}, stored_{0}, duplicates_{0}, too_large_{0}, bad_json_{0},
      wrong_type_{0}, unknown_topic_{0}, bad_id_{0}, bad_timestamp_{0}, store_errors_{0},
      duplicate_device_ids_{0};
  std::atomic<bool> connected_{false};
  int64_t last_warn_ms_ = 0;
  std::atomic<int64_t> batch_dropped_{0}, batches_{0};
  mutable std::mutex batch_mu_;
  std::condition_variable batch_cv_;
  std::vector<FleetMessage> pending_;
  bool writer_stop_ = false;
  std::thread writer_;
  std::mutex duplicates_mu_;  // the detector runs for every message, batched or not
  DuplicateDeviceDetector duplicates_detector_{opt_.duplicate_window_ms};  // under duplicates_mu_
  std::map<std::string, int64_t> duplicate_logged_ms_;                     // under duplicates_mu_
};

void Ingest::Impl::CheckDuplicateDevice(const FleetMessage& m, int64_t now_ms) {
  if (m.kind != telemetry::TopicKind::kStatus || m.status != "online" || m.instance.empty()) return;
  std::lock_guard lk(duplicates_mu_);
  const std::string other =
      duplicates_detector_.OnOnline(m.device_id, m.instance, m.session_ms, now_ms);
  if (other.empty()) return;
  ++duplicate_device_ids_;
  auto& last = duplicate_logged_ms_[m.device_id];
  if (last != 0 && now_ms - last < opt_.duplicate_window_ms) return;  // loud, not a flood
  last = now_ms;
  TEND_LOG_ERROR(
      "fleet: TWO LIVE DEVICES claim device id '{}' (processes {} and {} keep replacing each "
      "other on the broker): give each its own --device-id (a cloned image keeps the host name); "
      "their messages are kept apart by asset, their status flaps",
      m.device_id, other, m.instance);
}

void Ingest::Impl::OnMessage(const mqtt::const_message_ptr& msg) {
  ++received_;
  const std::string& topic = msg->get_topic();
  const std::string& payload = msg->get_payload_str();
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto parsed = ParseFleetMessage(topic, payload, opt_.max_payload_bytes);
  if (parsed.reason == Malformed::kNone) {
    parsed.reason = CheckClock(parsed.message, now_ms, opt_.max_clock_skew_ms, &parsed.detail);
  }
  if (parsed.reason != Malformed::kNone) {
    switch (parsed.reason) {
      case Malformed::kTooLarge:
        ++too_large_;
        break;
      case Malformed::kBadJson:
        ++bad_json_;
        break;
      case Malformed::kWrongType:
        ++wrong_type_;
        break;
      case Malformed::kBadId:
        ++bad_id_;
        break;
      case Malformed::kBadTimestamp:
        ++bad_timestamp_;
        break;
      default:
        ++unknown_topic_;
        break;
    }
    // One warning per second at most: a misbehaving device must not flood the log.
    if (now_ms - last_warn_ms_ > 1000) {
      last_warn_ms_ = now_ms;
      TEND_LOG_WARN("fleet: skipped malformed message ({}): {}", MalformedName(parsed.reason),
                    parsed.detail);
    }
    return;
  }
  CheckDuplicateDevice(parsed.message, now_ms);
  if (Batched()) {
    Enqueue(std::move(parsed.message));
    return;
  }
  StoreNow(parsed.message, now_ms);
}

void Ingest::Impl::StoreNow(const FleetMessage& m, int64_t now_ms) {
  std::lock_guard lk(store_mu_);
  auto r = store_->Store(m, now_ms);
  if (!r) {
    ++store_errors_;
    TEND_LOG_ERROR("fleet: {}", r.error().message);
  } else if (*r) {
    ++stored_;
  } else {
    ++duplicates_;
  }
}

void Ingest::Impl::Enqueue(FleetMessage&& m) {
  std::lock_guard lk(batch_mu_);
  const bool qos0 =
      m.kind == telemetry::TopicKind::kScores || m.kind == telemetry::TopicKind::kHealth;
  if (qos0 && pending_.size() >= opt_.batch_queue_max) {
    ++batch_dropped_;  // a stalled database: QoS 0 goes, alerts/status/OTA states wait
    return;
  }
  pending_.push_back(std::move(m));
  if (pending_.size() >= opt_.batch_max) batch_cv_.notify_one();
}

void Ingest::Impl::FlushBatch(std::vector<FleetMessage>& batch) {
  if (batch.empty()) return;
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  std::lock_guard lk(store_mu_);
  auto r = store_->StoreBatch(batch, now_ms);
  ++batches_;
  const auto n = static_cast<int64_t>(batch.size());
  if (!r) {
    store_errors_ += n;
    TEND_LOG_ERROR("fleet: batch of {} messages: {}", n, r.error().message);
  } else {
    stored_ += *r;
    duplicates_ += n - *r;
  }
  batch.clear();
}

void Ingest::Impl::WriterLoop() {
  std::vector<FleetMessage> batch;
  const auto period = std::chrono::duration<double, std::milli>(opt_.batch_ms);
  for (;;) {
    bool stop;
    {
      std::unique_lock lk(batch_mu_);
      batch_cv_.wait_for(lk, period,
                         [&] { return writer_stop_ || pending_.size() >= opt_.batch_max; });
      stop = writer_stop_;
      const size_t n = std::min(pending_.size(), opt_.batch_max);
      batch.assign(std::make_move_iterator(pending_.begin()),
                   std::make_move_iterator(pending_.begin() + static_cast<std::ptrdiff_t>(n)));
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    FlushBatch(batch);
    if (stop) {
      std::unique_lock lk(batch_mu_);
      if (pending_.empty()) return;
    }
  }
}

Status Ingest::Impl::Subscribe() {
  auto filters = IngestTopicFilters(opt_.group);
  auto coll = mqtt::string_collection::create(filters);
  std::vector<int> qos(filters.size(), 1);
  auto tok = cli_->subscribe(coll, qos);
  if (!tok->wait_for(std::chrono::seconds(10))) {
    return Fail(Error::Timeout("fleet: subscribe to " + opt_.broker_url + " timed out"));
  }
  return Ok();
}

Status Ingest::Impl::Start() {
  TEND_ASSIGN_OR_RETURN(auto addr, telemetry::ParseBrokerUrl(opt_.broker_url));
  if (opt_.batch_ms > 0) {
    if (opt_.batch_max == 0) return Fail(Error::Invalid("fleet: batch_max must be > 0"));
    writer_ = std::thread([this] { WriterLoop(); });
  }
  if (opt_.client_id.empty()) {
    // Unique per instance: two ingest processes (or two in one process) must not share an id,
    // or the broker disconnects one whenever the other connects.
    std::random_device rd;
    opt_.client_id = "fleet_" + (opt_.group.empty() ? std::string("solo") : opt_.group) + "_" +
                     std::to_string(::getpid()) + "_" + std::to_string(rd() % 1000000);
  }
  try {
    mqtt::create_options co(opt_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    cli_ = std::make_unique<mqtt::async_client>(addr.paho_uri, opt_.client_id, co, nullptr);
    connopts_.set_mqtt_version(opt_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    if (opt_.mqtt_version == 5) {
      connopts_.set_clean_session(false);
      connopts_.set_clean_start(true);
    } else {
      connopts_.set_clean_start(false);
      connopts_.set_clean_session(true);
    }
    connopts_.set_keep_alive_interval(60);
    connopts_.set_connect_timeout(std::max(1, static_cast<int>(opt_.connect_timeout_s)));
    connopts_.set_automatic_reconnect(1, 30);
    if (!opt_.username.empty()) connopts_.set_user_name(opt_.username);
    if (!opt_.password.empty()) connopts_.set_password(opt_.password);
    if (addr.tls) {
      if (opt_.ca_file.empty()) {
        return Fail(Error::Invalid("fleet: " + opt_.broker_url + " is TLS but no --ca was given"));
      }
      connopts_.set_ssl(telemetry::BrokerSslOptions(opt_.ca_file, opt_.cert_file, opt_.key_file));
    }
    cli_->set_message_callback([this](mqtt::const_message_ptr m) { OnMessage(m); });
    cli_->set_connection_lost_handler([this](const std::string& cause) {
      connected_ = false;
      TEND_LOG_WARN("fleet: connection lost{}{}; reconnecting", cause.empty() ? "" : ": ", cause);
    });
    // Clean sessions: subscriptions must be made again after every automatic reconnect.
    cli_->set_connected_handler([this](const std::string&) {
      connected_ = true;
      try {
        auto filters = IngestTopicFilters(opt_.group);
        cli_->subscribe(mqtt::string_collection::create(filters),
                        std::vector<int>(filters.size(), 1));
      } catch (const mqtt::exception& e) {
        TEND_LOG_ERROR("fleet: resubscribe: {}", e.what());
      }
    });
    auto tok = cli_->connect(connopts_);
    if (!tok->wait_for(
            std::chrono::milliseconds(static_cast<int64_t>((opt_.connect_timeout_s + 1) * 1000)))) {
      return Fail(Error::Timeout("fleet: connect to " + opt_.broker_url + " timed out"));
    }
  } catch (const mqtt::exception& e) {  // Paho says "[-1]: TCP/TLS connect failure": say why
    return Fail(
        Error::Io("fleet: connect to " + opt_.broker_url + ": " +
                  telemetry::DescribeConnectFailure(addr, e.get_return_code(), e.get_reason_code(),
                                                    std::chrono::seconds(1))));
  }
  // The connected handler subscribed; wait for it to take effect before reporting ready.
  try {
    TEND_RETURN_NOT_OK(Subscribe());
  } catch (const mqtt::exception& e) {
    return Fail(Error::Io("fleet: subscribe on " + opt_.broker_url + ": " + e.what()));
  }
  TEND_LOG_INFO("fleet: ingesting from {} as {} (group '{}')", opt_.broker_url, opt_.client_id,
                opt_.group);
  return Ok();
}

void Ingest::Impl::Stop() {
  if (cli_) {
    try {
      if (cli_->is_connected())
        cli_->disconnect(std::chrono::seconds(1))->wait_for(std::chrono::seconds(2));
    } catch (const mqtt::exception& e) {
      TEND_LOG_DEBUG("fleet: disconnect: {}", e.what());
    }
    cli_.reset();  // no callbacks after this point
  }
  if (writer_.joinable()) {
    {
      std::lock_guard lk(batch_mu_);
      writer_stop_ = true;
    }
    batch_cv_.notify_all();
    writer_.join();  // flushes what was queued
  }
}

Ingest::Ingest(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Ingest::~Ingest() = default;

Result<std::unique_ptr<Ingest>> Ingest::Start(const IngestOptions& options,
                                              std::unique_ptr<FleetStore> store) {
  if (!store) return Fail(Error::Invalid("fleet: no store"));
  auto impl = std::make_unique<Impl>(options, std::move(store));
  TEND_RETURN_NOT_OK(impl->Start());
  return std::unique_ptr<Ingest>(new Ingest(std::move(impl)));
}

IngestStats Ingest::stats() const { return impl_->stats(); }
void Ingest::Stop() { impl_->Stop(); }

}  // namespace tend::fleet
