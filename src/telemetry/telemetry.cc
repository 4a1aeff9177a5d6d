#include "telemetry/telemetry.h"

#include <mqtt/async_client.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "core/log.h"
#include "telemetry/mqtt_url.h"
#include "telemetry/payload.h"

namespace tend::telemetry {
namespace {

using Clock = std::chrono::steady_clock;

// A publish's user context packs the connection generation (top 16 bits) and the spool row id
// (0 = not spooled), so late acknowledgements from a dead connection are still honoured but do
// not disturb the in-flight count of the new one.
void* PackContext(uint64_t gen, int64_t id) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(
      ((gen & 0xffff) << 48) | (static_cast<uint64_t>(id) & ((1ull << 48) - 1))));
}
uint64_t ContextGen(void* ctx) { return reinterpret_cast<uintptr_t>(ctx) >> 48; }
int64_t ContextId(void* ctx) {
  return static_cast<int64_t>(reinterpret_cast<uintptr_t>(ctx) & ((1ull << 48) - 1));
}

Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

class Telemetry::Impl {
 public:
  Impl(Identity id, TelemetryOptions opt) : id_(std::move(id)), opt_(std::move(opt)) {}
  ~Impl() { Stop(); }

  Status Start();
  void Stop();
  void OnDecision(const Decision& d);
  void OnModelInfo(const ModelInfo& info) {
    std::lock_guard lk(mu_);
    model_version_ = info.version;
    model_name_ = info.name;
  }
  void SetHealthProvider(std::function<nlohmann::json()> fn) {
    std::lock_guard lk(mu_);
    health_provider_ = std::move(fn);
  }
  void PublishDeviceState(const std::string& name, nlohmann::json payload);
  Stats stats() const;
  Status Flush(std::chrono::milliseconds timeout);
  Status Commit(std::chrono::milliseconds timeout);
  const SpoolOpenReport& spool_report() const { return report_; }

 private:
  enum class ConnState { kDisconnected, kConnecting, kConnected };

  struct PublishListener : mqtt::iaction_listener {
    Impl* self;
    explicit PublishListener(Impl* s) : self(s) {}
    void on_success(const mqtt::token& tok) override { self->OnPublished(tok, true); }
    void on_failure(const mqtt::token& tok) override { self->OnPublished(tok, false); }
  };
  struct ConnectListener : mqtt::iaction_listener {
    Impl* self;
    explicit ConnectListener(Impl* s) : self(s) {}
    void on_success(const mqtt::token&) override {
      self->connected_event_ = true;
      self->Wake();
    }
    void on_failure(const mqtt::token& tok) override {
      self->connect_failed_rc_ = tok.get_return_code();
      self->connect_failed_reason_ = tok.get_reason_code();
      self->connect_failed_event_ = true;
      self->Wake();
    }
  };

  void Run();
  void Wake() {
    if (!wake_posted_.exchange(true)) {
      std::lock_guard lk(mu_);
      cv_.notify_one();
    }
  }
  void OnPublished(const mqtt::token& tok, bool ok);
  void BuildMessages(size_t n, const std::string& model_version);
  void MaybeBuildHealth(Clock::time_point now, bool force);
  void NetworkStep(Clock::time_point now);
  void StartConnect();
  void NewClient();
  bool Publish(const OutgoingMessage& m, int64_t spool_id);
  void ApplyCommitResult(const CommitResult& r);
  void Hold(OutgoingMessage&& m);
  void BuildStates();
  bool ApplyRefusals(Clock::time_point now);
  void MaybeEnqueueDropReport(Clock::time_point now, bool force);
  void TryDiskSpool(Clock::time_point now);
  void SetSpoolError(std::string e) {
    std::lock_guard lk(mu_);
    spool_error_ = std::move(e);
  }
  void CountDropped(MessageKind k, int64_t n);
  Clock::duration NextBackoff();

  Identity id_;
  TelemetryOptions opt_;
  // Topics from PublishedTopics(id_), fixed at Start: the ACL `tend pki` writes grants the same.
  std::string scores_topic_, alerts_topic_, health_topic_, status_topic_;
  std::map<std::string, std::string, std::less<>> state_topics_;  // device state name -> topic
  std::unique_ptr<Spool> spool_;
  SpoolOpenReport report_;
  SpoolOptions spool_options_;
  Clock::time_point next_disk_retry_{};
  std::vector<OutgoingMessage> held_;  // alerts a full disk refused, committed first next time
  int64_t held_bytes_ = 0;
  int64_t commit_errors_ = 0;
  static constexpr auto kAckCommitDelay = std::chrono::milliseconds(50);
  Clock::time_point last_ack_commit_{};
  uint64_t flushed_seq_ = 0;
  Clock::time_point last_commit_error_log_{};
  int64_t boot_ = 0;
  int64_t seq_ = 0;
  // The status of each connection (see StatusSession): this process's instance id and the
  // current connection's session stamp, shared by its Will, `online` and graceful `offline`.
  const std::string instance_ = NewInstanceId();
  int64_t session_ms_ = 0;

  // Pipeline -> worker hand-off (double buffer of preallocated decisions).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::vector<Decision> front_, back_;
  size_t front_n_ = 0;
  int64_t queue_dropped_scores_ = 0, queue_dropped_alerts_ = 0;
  bool stop_ = false;
  uint64_t flush_requested_ = 0, flush_done_ = 0;
  std::string model_version_, model_name_;
  std::string spool_error_;
  std::function<nlohmann::json()> health_provider_;
  std::atomic<bool> wake_posted_{false};

  // Worker-only state.
  std::thread worker_;
  std::vector<OutgoingMessage> batch_, direct_;
  Clock::time_point next_health_;
  bool health_due_ = false;
  std::array<float, 3> thresholds_{};  // LOW, MEDIUM, HIGH of the latest decision

  // Network.
  std::string paho_uri_;  // empty: spool only
  std::unique_ptr<mqtt::async_client> cli_;
  mqtt::connect_options connopts_;
  PublishListener publish_listener_{this};
  ConnectListener connect_listener_{this};
  ConnState state_ = ConnState::kDisconnected;
  Clock::time_point next_attempt_{};
  double backoff_s_ = 0;
  std::minstd_rand rng_;
  bool ever_connected_ = false;
  std::atomic<uint64_t> gen_{1};
  std::atomic<int64_t> inflight_{0};
  std::atomic<bool> connected_event_{false}, connect_failed_event_{false}, lost_event_{false};
  std::atomic<bool> rewind_needed_{false};
  // Each connection starts with one spooled message in flight and opens the full window at its
  // first acknowledgement or refusal. A broker may close the connection right after refusing a
  // publish (MQTT 3.1.1 allows it; Mosquitto 2.0.11 does it in some configurations): with a full
  // window behind the refused message, its close resets the TCP stream and destroys the PUBACK
  // that says why, so the client could only resend, be refused again, and loop. Alone in flight,
  // the refused message's PUBACK arrives before the close, and it is never sent again.
  std::atomic<bool> window_open_{false};
  std::atomic<int> connect_failed_rc_{0}, connect_failed_reason_{0};
  BrokerAddress broker_;
  std::string connect_error_;  // why the last attempt failed ("" once connected); guarded by mu_
  int last_probe_rc_ = 0;      // worker-only: the probe's answer is reused for 30 s per rc
  Clock::time_point last_probe_{};
  void NoteConnectFailure(Clock::time_point now);
  std::mutex ack_mu_;
  std::vector<int64_t> acks_, acks_work_;
  struct Refusal {
    int64_t id;  // spool row (0: not spooled, e.g. the online status)
    int reason_code;
    std::string topic;
  };
  std::vector<Refusal> refusals_, refusals_work_;    // guarded by ack_mu_ / worker-only
  std::map<std::string, int64_t> refused_by_topic_;  // guarded by mu_
  std::map<std::pair<std::string, int>, int64_t> refused_unlogged_;  // worker-only
  Clock::time_point last_refusal_log_{};
  Clock::time_point next_drop_report_{};
  // Device states (PublishDeviceState): newest per name, guarded by mu_.
  std::map<std::string, nlohmann::json> pending_states_;

  // Stats (written by worker and callbacks, read by anyone).
  std::atomic<int64_t> st_spooled_{0}, st_delivered_{0}, st_drop_score_{0}, st_drop_alert_{0},
      st_drop_health_{0}, st_bytes_{0}, st_depth_{0}, st_reconnects_{0}, st_decisions_{0};
  std::atomic<bool> st_connected_{false}, st_disk_full_{false}, st_in_memory_{false};
  std::atomic<int64_t> st_held_{0}, st_refused_{0};
};

Status Telemetry::Impl::Start() {
  TEND_RETURN_NOT_OK(id_.Validate());
  for (auto& t : PublishedTopics(id_)) {
    switch (t.kind) {
      case TopicKind::kScores:
        scores_topic_ = std::move(t.topic);
        break;
      case TopicKind::kAlerts:
        alerts_topic_ = std::move(t.topic);
        break;
      case TopicKind::kHealth:
        health_topic_ = std::move(t.topic);
        break;
      case TopicKind::kStatus:
        status_topic_ = std::move(t.topic);
        break;
      default:  // a device state: factory/{f}/edge/{d}/{name}
        state_topics_[t.topic.substr(t.topic.rfind('/') + 1)] = t.topic;
    }
  }
  if (opt_.spool_path.empty()) return Fail(Error::Invalid("telemetry: spool_path is empty"));
  if (opt_.mqtt_version != 4 && opt_.mqtt_version != 5) {
    return Fail(Error::Invalid("telemetry: mqtt_version " + std::to_string(opt_.mqtt_version) +
                               " is not 4 (3.1.1) or 5"));
  }
  if (opt_.max_inflight < 1 || opt_.queue_capacity < 1) {
    return Fail(Error::Invalid("telemetry: max_inflight and queue_capacity must be >= 1"));
  }
  if (opt_.reconnect_min_s <= 0 || opt_.reconnect_max_s < opt_.reconnect_min_s) {
    return Fail(Error::Invalid("telemetry: reconnect backoff needs 0 < min <= max"));
  }
  if (opt_.memory_queue_bytes < 512 || opt_.disk_retry_s <= 0) {
    return Fail(Error::Invalid("telemetry: memory_queue_bytes must be >= 512, disk_retry_s > 0"));
  }
  SpoolOptions so;
  so.max_bytes = opt_.spool_max_bytes;
  so.durable = opt_.spool_durable;
  spool_options_ = so;
  auto opened = Spool::Open(opt_.spool_path, so);
  if (opened) {
    spool_ = std::move(*opened);
  } else if (opened.error().code == ErrorCode::kInvalidArgument) {
    return Fail(opened.error());
  } else {
    // The agent always starts: keep deciding and buffer in memory until the disk comes back.
    SpoolOptions mo = so;
    mo.max_bytes = std::min(so.max_bytes, opt_.memory_queue_bytes);
    TEND_ASSIGN_OR_RETURN(spool_, Spool::OpenMemory(opt_.spool_path, mo));
    st_in_memory_ = true;
    spool_error_ = opened.error().message;
    next_disk_retry_ = Clock::now() + Seconds(opt_.disk_retry_s);
    TEND_LOG_ERROR(
        "telemetry: spool unusable ({}); DEGRADED: buffering up to {} bytes in memory (lost on "
        "exit), retrying the disk every {} s",
        spool_error_, mo.max_bytes, opt_.disk_retry_s);
  }
  report_ = spool_->open_report();
  boot_ = spool_->boot_epoch();
  st_bytes_ = spool_->bytes();
  st_depth_ = spool_->depth();
  const auto& rep = spool_->open_report();
  if (rep.state == SpoolOpenReport::State::kQuarantined) {
    TEND_LOG_WARN("telemetry: spool was unreadable ({}); quarantined as {}, salvaged {}",
                  rep.detail, rep.quarantine_path, rep.salvaged);
  }
  TEND_LOG_INFO("telemetry: spool {} boot {} holds {} messages ({} bytes)", opt_.spool_path, boot_,
                spool_->depth(), spool_->bytes());

  front_.resize(static_cast<size_t>(opt_.queue_capacity));
  back_.resize(static_cast<size_t>(opt_.queue_capacity));
  rng_.seed(static_cast<unsigned>(std::hash<std::string>{}(id_.device_id)) ^
            static_cast<unsigned>(Clock::now().time_since_epoch().count()));
  backoff_s_ = opt_.reconnect_min_s;

  if (!opt_.broker_url.empty()) {
    TEND_ASSIGN_OR_RETURN(auto addr, ParseBrokerUrl(opt_.broker_url));
    if (addr.tls && opt_.ca_file.empty()) {
      return Fail(Error::Invalid("telemetry: " + opt_.broker_url +
                                 " is TLS but no CA file was given to verify the broker"));
    }
    if (opt_.cert_file.empty() != opt_.key_file.empty()) {
      return Fail(Error::Invalid("telemetry: give both a client certificate and its key"));
    }
    paho_uri_ = addr.paho_uri;
    broker_ = addr;
    try {
      connopts_.set_mqtt_version(opt_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
      if (opt_.mqtt_version == 5) {
        connopts_.set_clean_session(false);
        connopts_.set_clean_start(true);
      } else {
        connopts_.set_clean_start(false);
        connopts_.set_clean_session(true);
      }
      connopts_.set_keep_alive_interval(opt_.keepalive_s);
      connopts_.set_connect_timeout(std::max(1, static_cast<int>(opt_.connect_timeout_s)));
      connopts_.set_automatic_reconnect(
          false);  // our own backoff loop also covers the first connect
      connopts_.set_max_inflight(std::max(opt_.max_inflight, 10) + 16);
      if (!opt_.username.empty()) connopts_.set_user_name(opt_.username);
      if (!opt_.password.empty()) connopts_.set_password(opt_.password);
      if (addr.tls) {
        mqtt::ssl_options ssl = BrokerSslOptions(opt_.ca_file, opt_.cert_file, opt_.key_file);
        ssl.set_error_handler(
            [](const std::string& msg) { TEND_LOG_WARN("telemetry: TLS: {}", msg); });
        connopts_.set_ssl(std::move(ssl));
      }
      // Fail now on a bad URI or client id rather than on the first connect.
      NewClient();
    } catch (const mqtt::exception& e) {
      return Fail(
          Error::Invalid("telemetry: MQTT client for " + opt_.broker_url + ": " + e.what()));
    }
  }
  if (opt_.health_interval_s > 0) next_health_ = Clock::now() + Seconds(opt_.health_interval_s);
  worker_ = std::thread([this] { Run(); });
  return Ok();
}

// A fresh client per connection: publishes still queued inside a dead client must not go out
// after the reconnect, ahead of the spool's replay, or per-topic order would break.
void Telemetry::Impl::NewClient() {
  cli_.reset();
  // Paho's own queue must hold a whole in-flight window plus the non-spooled messages.
  mqtt::create_options co(opt_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1,
                          opt_.max_inflight + 4096);
  cli_ = std::make_unique<mqtt::async_client>(paho_uri_, id_.ClientId(), co, nullptr);
  cli_->set_connection_lost_handler([this](const std::string& cause) {
    TEND_LOG_WARN("telemetry: connection to broker lost{}{}", cause.empty() ? "" : ": ", cause);
    lost_event_ = true;
    Wake();
  });
}

void Telemetry::Impl::Stop() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard lk(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  worker_.join();
  if (cli_) {
    try {
      if (state_ == ConnState::kConnected && cli_->is_connected()) {
        auto payload = StatusPayload(std::chrono::system_clock::now(), id_, false,
                                     {session_ms_, instance_, /*will=*/false});
        auto tok = cli_->publish(status_topic_, payload.data(), payload.size(), kStatusQos,
                                 kStatusRetained);
        tok->wait_for(std::chrono::seconds(2));
        cli_->disconnect(std::chrono::seconds(1))->wait_for(std::chrono::seconds(2));
      } else if (state_ == ConnState::kConnecting) {
        cli_->disconnect(0)->wait_for(std::chrono::seconds(2));
      }
    } catch (const mqtt::exception& e) {
      TEND_LOG_DEBUG("telemetry: disconnect: {}", e.what());
    }
    cli_.reset();  // no callbacks after this point
  }
  if (spool_ && (spool_->in_memory() || !held_.empty())) {
    TEND_LOG_ERROR("telemetry: stopping with {} messages in memory only ({}); they are lost",
                   (spool_->in_memory() ? spool_->depth() : 0) + static_cast<int64_t>(held_.size()),
                   spool_->in_memory() ? "spool file unusable" : "disk full");
    for (const auto& m : held_) CountDropped(m.kind, 1);
    held_.clear();
    st_held_ = 0;
  }
}

void Telemetry::Impl::OnDecision(const Decision& d) {
  st_decisions_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lk(mu_);
    if (front_n_ == front_.size()) {
      // The worker is stuck (disk stalled); count instead of waiting.
      ++queue_dropped_scores_;
      if (d.is_alert) ++queue_dropped_alerts_;
      return;
    }
    Decision& slot = front_[front_n_++];
    slot = d;            // copy-assignment reuses the slot's string/vector capacity
    slot.features = {};  // points into the model's buffers: never kept
  }
  wake_posted_ = true;
  cv_.notify_one();
}

void Telemetry::Impl::OnPublished(const mqtt::token& tok, bool ok) {
  void* ctx = tok.get_user_context();
  int64_t id = ContextId(ctx);
  bool current = ContextGen(ctx) == (gen_.load() & 0xffff);
  size_t pending_acks = 0;
  if (ok) {
    st_delivered_.fetch_add(1, std::memory_order_relaxed);
    if (id != 0 && current) window_open_ = true;
    if (id != 0) {
      std::lock_guard lk(ack_mu_);
      acks_.push_back(id);
      pending_acks = acks_.size();
    }
  } else {
    int rc = tok.get_reason_code();
    // Only an MQTT 5 PUBACK carries a refusal; failures while a connection dies (any version)
    // must lead to a resend, never to deletion.
    if (opt_.mqtt_version == 5 && current && st_connected_ && rc >= 0x80 &&
        tok.get_return_code() != MQTTASYNC_DISCONNECTED) {
      // The broker refused this message for good (MQTT 5 PUBACK reason code, e.g. 0x87 not
      // authorized): resending would be refused again, so it leaves the spool; it is not
      // delivered, it is counted as refused per topic and reported.
      std::string topic;
      if (auto* dt = dynamic_cast<const mqtt::delivery_token*>(&tok); dt && dt->get_message()) {
        topic = dt->get_message()->get_topic();
      }
      st_refused_.fetch_add(1);
      if (id != 0) window_open_ = true;
      std::lock_guard lk(ack_mu_);
      refusals_.push_back({id, rc, std::move(topic)});
    } else if (id != 0 && current) {
      TEND_LOG_DEBUG("telemetry: publish of {} failed (rc {}); will resend", id,
                     tok.get_return_code());
      rewind_needed_ = true;
    }
  }
  int64_t left = (id != 0 && current) ? inflight_.fetch_sub(1) - 1 : inflight_.load();
  // Batch the worker's wake-ups: one per half window of acknowledgements (or when the window
  // runs dry), not one per message.
  if (!ok || left <= opt_.max_inflight / 2 || pending_acks >= 512) Wake();
}

Telemetry::Stats Telemetry::Impl::stats() const {
  Stats s;
  s.spooled = st_spooled_;
  s.delivered = st_delivered_;
  s.dropped_scores = st_drop_score_;
  s.dropped_alerts = st_drop_alert_;
  s.dropped_health = st_drop_health_;
  s.spool_bytes = st_bytes_;
  s.spool_depth = st_depth_;
  s.reconnects = st_reconnects_;
  s.connected = st_connected_;
  s.disk_full = st_disk_full_;
  s.decisions = st_decisions_;
  s.spool_in_memory = st_in_memory_;
  s.held_alerts = st_held_;
  s.refused = st_refused_;
  {
    std::lock_guard lk(mu_);
    s.spool_error = spool_error_;
    s.connect_error = connect_error_;
    s.refused_by_topic = refused_by_topic_;
  }
  return s;
}

void Telemetry::Impl::CountDropped(MessageKind k, int64_t n) {
  switch (k) {
    case MessageKind::kAlert:
      st_drop_alert_ += n;
      break;
    case MessageKind::kScore:
      st_drop_score_ += n;
      break;
    case MessageKind::kHealth:
      st_drop_health_ += n;
      break;
    case MessageKind::kReport:
    case MessageKind::kState:
      break;
  }
}

void Telemetry::Impl::ApplyCommitResult(const CommitResult& r) {
  st_spooled_ += r.appended;
  for (int k = 0; k < kMessageKinds; ++k) {
    CountDropped(static_cast<MessageKind>(k), r.dropped_by_kind[k]);
  }
  // Sticky until a commit with messages succeeds without hitting ENOSPC.
  if (r.disk_full || r.appended > 0) st_disk_full_ = r.disk_full;
  st_bytes_ = spool_->bytes();
  st_depth_ = spool_->depth();
}

void Telemetry::Impl::BuildMessages(size_t n, const std::string& model_version) {
  for (size_t i = 0; i < n; ++i) {
    Decision& d = back_[i];
    if (d.model_version.empty()) d.model_version = model_version;
    if (d.threshold_high > 0) {
      thresholds_ = {d.threshold_low, d.threshold_medium, d.threshold_high};
    }
    MessageId mid{boot_, ++seq_};
    // Each decision on its own asset's topics (an agent may run several assets).
    const Identity id = d.asset_id.empty() ? id_ : id_.ForAsset(d.asset_id);
    std::string payload = ScorePayload(d, id, mid);
    if (d.is_alert) {
      batch_.push_back({MessageKind::kAlert, id.AlertsTopic(), kAlertsQos, false, payload});
    }
    OutgoingMessage score{MessageKind::kScore, id.ScoresTopic(), kScoresQos, false,
                          std::move(payload)};
    (opt_.spool_scores ? batch_ : direct_).push_back(std::move(score));
  }
}

void Telemetry::Impl::MaybeBuildHealth(Clock::time_point now, bool force) {
  if (opt_.health_interval_s <= 0) return;
  if (!force && now < next_health_) return;
  next_health_ = now + Seconds(opt_.health_interval_s);
  nlohmann::json extra = nlohmann::json::object();
  std::function<nlohmann::json()> provider;
  std::string model_version;
  {
    std::lock_guard lk(mu_);
    provider = health_provider_;
    model_version = model_version_;
  }
  if (provider) {
    try {
      nlohmann::json p = provider();
      if (p.is_object()) extra = std::move(p);
    } catch (const std::exception& e) {
      TEND_LOG_WARN("telemetry: health provider failed: {}", e.what());
    }
  }
  extra["model_version"] = model_version;
  if (thresholds_[2] > 0) {
    // What the scores since the last health message were judged against, for the fleet's plots.
    auto r = [](float v) { return RoundTo(v, 4); };
    extra["thresholds"] = {
        {"LOW", r(thresholds_[0])}, {"MEDIUM", r(thresholds_[1])}, {"HIGH", r(thresholds_[2])}};
  }
  extra["spool_depth"] = spool_->depth();
  extra["spool_bytes"] = spool_->bytes();
  extra["spool_disk_full"] = st_disk_full_.load();
  if (st_in_memory_) {
    extra["spool_in_memory"] = true;
    std::lock_guard lk(mu_);
    extra["spool_error"] = spool_error_;
  }
  if (!held_.empty()) extra["held_alerts"] = static_cast<int64_t>(held_.size());
  extra["dropped"] = {{"scores", st_drop_score_.load()},
                      {"alerts", st_drop_alert_.load()},
                      {"health", st_drop_health_.load()}};
  extra["connected"] = st_connected_.load();
  MessageId mid{boot_, ++seq_};
  OutgoingMessage m{MessageKind::kHealth, health_topic_, kHealthQos, false,
                    HealthPayload(std::chrono::system_clock::now(), id_, mid, extra)};
  (opt_.spool_health ? batch_ : direct_).push_back(std::move(m));
}

Clock::duration Telemetry::Impl::NextBackoff() {
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  double s = backoff_s_ * jitter(rng_);
  backoff_s_ = std::min(backoff_s_ * 2, opt_.reconnect_max_s);
  return Seconds(s);
}

void Telemetry::Impl::StartConnect() {
  // The Last Will is fixed at CONNECT time, so its timestamp is that of the connection attempt;
  // the session stamp (strictly increasing within the process) is what makes it win over this
  // connection's `online` and lose to the next connection's.
  const auto now = std::chrono::system_clock::now();
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  session_ms_ = std::max(now_ms, session_ms_ + 1);
  auto will_payload = StatusPayload(now, id_, false, {session_ms_, instance_, /*will=*/true});
  connopts_.set_will(
      mqtt::will_options(status_topic_, will_payload, kStatusQos, kStatusRetained));
  try {
    NewClient();
    cli_->connect(connopts_, nullptr, connect_listener_);
    state_ = ConnState::kConnecting;
  } catch (const mqtt::exception& e) {
    TEND_LOG_WARN("telemetry: connect to {}: {}", opt_.broker_url, e.what());
    state_ = ConnState::kDisconnected;
    next_attempt_ = Clock::now() + NextBackoff();
  }
}

bool Telemetry::Impl::Publish(const OutgoingMessage& m, int64_t spool_id) {
  void* ctx = PackContext(gen_.load(), spool_id);
  if (spool_id != 0) inflight_.fetch_add(1);
  try {
    cli_->publish(m.topic, m.payload.data(), m.payload.size(), m.qos, m.retained, ctx,
                  publish_listener_);
  } catch (const mqtt::exception& e) {
    if (spool_id != 0) {
      inflight_.fetch_sub(1);
      rewind_needed_ = true;
    }
    TEND_LOG_DEBUG("telemetry: publish on {}: {} (rc {})", m.topic, e.what(), e.get_return_code());
    return false;
  }
  return true;
}

void Telemetry::Impl::NetworkStep(Clock::time_point now) {
  if (paho_uri_.empty()) {
    // Spool-only: non-spooled messages have nowhere to go.
    for (auto& m : direct_) {
      if (m.kind == MessageKind::kScore)
        spool_->NoteDropped(m.topic, m.kind, 1), CountDropped(m.kind, 1);
    }
    direct_.clear();
    return;
  }
  if (connect_failed_event_.exchange(false)) {
    NoteConnectFailure(now);
    state_ = ConnState::kDisconnected;
    next_attempt_ = now + NextBackoff();
  }
  if (connected_event_.exchange(false)) {
    state_ = ConnState::kConnected;
    st_connected_ = true;
    {
      std::lock_guard lk(mu_);
      connect_error_.clear();
    }
    last_probe_rc_ = 0;
    backoff_s_ = opt_.reconnect_min_s;
    if (ever_connected_) st_reconnects_ += 1;
    ever_connected_ = true;
    gen_.fetch_add(1);
    inflight_ = 0;
    window_open_ = false;
    spool_->Rewind();
    TEND_LOG_INFO("telemetry: connected to {} as {}; {} messages to deliver", opt_.broker_url,
                  id_.ClientId(), spool_->depth());
    Publish({MessageKind::kReport, status_topic_, kStatusQos, kStatusRetained,
             StatusPayload(std::chrono::system_clock::now(), id_, true,
                           {session_ms_, instance_, /*will=*/false})},
            0);
    MaybeEnqueueDropReport(now, /*force=*/true);
  }
  // A connection can be lost right after it was made (another client took the session over):
  // the loss may be seen here before the connect is. It was dropped then, and the worker believed
  // a dead connection alive and never reconnected (seen with two agents sharing a client id,
  // issue 17). Each connection has its own client, so a loss seen while connecting is this
  // connection's: it waits until the connect has been handled.
  if (state_ != ConnState::kConnecting && lost_event_.exchange(false) &&
      state_ == ConnState::kConnected) {
    state_ = ConnState::kDisconnected;
    st_connected_ = false;
    gen_.fetch_add(1);
    inflight_ = 0;
    spool_->Rewind();
    next_attempt_ = now + NextBackoff();
  }
  if (state_ == ConnState::kConnected) MaybeEnqueueDropReport(now, /*force=*/false);
  if (state_ == ConnState::kDisconnected && now >= next_attempt_) StartConnect();
  if (state_ != ConnState::kConnected) {
    for (auto& m : direct_) {
      if (m.kind == MessageKind::kScore) {
        spool_->NoteDropped(m.topic, m.kind, 1);
        CountDropped(m.kind, 1);
      }
    }
    direct_.clear();
    return;
  }
  if (rewind_needed_.exchange(false)) {
    TEND_LOG_INFO("telemetry: a publish failed; resending everything not yet acknowledged");
    gen_.fetch_add(1);
    inflight_ = 0;
    window_open_ = false;
    spool_->Rewind();
  }
  for (auto& m : direct_) Publish(m, 0);
  direct_.clear();
  for (;;) {
    const int64_t window = window_open_.load() ? opt_.max_inflight : 1;
    if (inflight_.load() >= window) break;
    size_t room = static_cast<size_t>(window - inflight_.load());
    auto next = spool_->Next(std::min<size_t>(room, 512));
    if (!next) {
      TEND_LOG_ERROR("telemetry: reading the spool: {}", next.error().message);
      break;
    }
    if (next->empty()) break;
    bool ok = true;
    for (auto& s : *next) {
      // Stop at the first refusal: later messages must not overtake it (rewind resends it).
      if (!(ok = Publish(s.msg, s.id))) break;
    }
    if (!ok) break;
  }
}

// Paho reports a refused TCP connection, a DNS failure and a TLS failure alike as rc -1: ask the
// broker address why (a TCP probe on this worker thread, at most once per 30 s for the same rc,
// so an outage does not stall the spool writer on every retry).
void Telemetry::Impl::NoteConnectFailure(Clock::time_point now) {
  const int rc = connect_failed_rc_.load(), reason = connect_failed_reason_.load();
  std::string why;
  {
    std::lock_guard lk(mu_);
    why = connect_error_;
  }
  if (why.empty() || rc != last_probe_rc_ || now - last_probe_ >= std::chrono::seconds(30)) {
    why = DescribeConnectFailure(broker_, rc, reason, std::chrono::seconds(1));
    last_probe_rc_ = rc;
    last_probe_ = now;
    std::lock_guard lk(mu_);
    connect_error_ = why;
  }
  TEND_LOG_WARN("telemetry: cannot connect to {}: {}; retrying with backoff", opt_.broker_url, why);
}

void Telemetry::Impl::Run() {
  for (;;) {
    size_t n = 0;
    bool stopping;
    uint64_t flush_seq;
    int64_t qd_scores, qd_alerts;
    std::string model_version;
    {
      std::unique_lock lk(mu_);
      auto now = Clock::now();
      auto deadline = now + std::chrono::milliseconds(200);
      if (!acks_work_.empty()) deadline = std::min(deadline, last_ack_commit_ + kAckCommitDelay);
      if (opt_.health_interval_s > 0) deadline = std::min(deadline, next_health_);
      if (!paho_uri_.empty() && state_ == ConnState::kDisconnected) {
        deadline = std::min(deadline, std::max(next_attempt_, now));
      }
      cv_.wait_until(lk, deadline, [&] {
        return stop_ || front_n_ > 0 || wake_posted_.load() || flush_requested_ > flush_done_;
      });
      wake_posted_ = false;
      std::swap(front_, back_);
      n = front_n_;
      front_n_ = 0;
      stopping = stop_;
      flush_seq = flush_requested_;
      qd_scores = queue_dropped_scores_;
      qd_alerts = queue_dropped_alerts_;
      queue_dropped_scores_ = queue_dropped_alerts_ = 0;
      model_version = model_version_;
    }
    if (qd_scores > 0) {
      spool_->NoteDropped(scores_topic_, MessageKind::kScore, qd_scores);
      CountDropped(MessageKind::kScore, qd_scores);
    }
    if (qd_alerts > 0) {
      spool_->NoteDropped(alerts_topic_, MessageKind::kAlert, qd_alerts);
      CountDropped(MessageKind::kAlert, qd_alerts);
    }
    BuildMessages(n, model_version);
    auto now = Clock::now();
    MaybeBuildHealth(now, false);
    BuildStates();
    {
      std::lock_guard lk(ack_mu_);
      if (acks_work_.empty()) {
        std::swap(acks_, acks_work_);
      } else {  // a previous commit failed: keep its acks
        acks_work_.insert(acks_work_.end(), acks_.begin(), acks_.end());
        acks_.clear();
      }
      std::swap(refusals_, refusals_work_);
    }
    // Mosquitto 2.0 closes the connection after refusing a publish: remove the refused rows now,
    // before the reconnect replays the spool, or they would be refused again and again.
    const bool refused = ApplyRefusals(now);
    if (!held_.empty()) {
      // Alerts the disk refused last time go first, in their order.
      batch_.insert(batch_.begin(), std::make_move_iterator(held_.begin()),
                    std::make_move_iterator(held_.end()));
      held_.clear();
      held_bytes_ = 0;
    }
    // Acknowledgements alone are committed in bulk (every 4,096 or 50 ms): the window is refilled
    // without waiting for a transaction, and an ack lost in a crash only means a resend.
    const bool commit_now = !batch_.empty() || refused || stopping || flush_seq != flushed_seq_ ||
                            acks_work_.size() >= 4096 || spool_->in_memory() ||
                            (!acks_work_.empty() && now - last_ack_commit_ >= kAckCommitDelay);
    if (!commit_now) {
      NetworkStep(now);
      continue;
    }
    flushed_seq_ = flush_seq;
    last_ack_commit_ = now;
    auto r = spool_->Commit(batch_, acks_work_);
    if (r) {
      ApplyCommitResult(*r);
      if (r->committed) {
        acks_work_.clear();
      } else {
        // Full disk, nothing written: batch_ now holds only its alerts (and reports).
        for (auto& m : batch_) Hold(std::move(m));
      }
    } else {
      ++commit_errors_;
      if (now - last_commit_error_log_ >= std::chrono::seconds(10)) {
        TEND_LOG_ERROR("telemetry: spool commit failed ({} times): {}", commit_errors_,
                       r.error().message);
        last_commit_error_log_ = now;
        commit_errors_ = 0;
      }
      // Acks are retried with the next commit; alerts are held, the rest counted as dropped.
      for (auto& m : batch_) {
        if (m.kind == MessageKind::kAlert || m.kind == MessageKind::kReport ||
            m.kind == MessageKind::kState) {
          Hold(std::move(m));
        } else {
          spool_->NoteDropped(m.topic, m.kind, 1);
          CountDropped(m.kind, 1);
        }
      }
    }
    batch_.clear();
    st_held_ = static_cast<int64_t>(held_.size());
    if (st_in_memory_ && now >= next_disk_retry_) TryDiskSpool(now);
    NetworkStep(now);
    {
      std::lock_guard lk(mu_);
      flush_done_ = flush_seq;
    }
    done_cv_.notify_all();
    if (stopping) break;
  }
}

namespace {
// Refusals are counted in the spool's drop table under "<topic>#<reason code>": '#' cannot occur
// in a topic name, so the key is unambiguous.
std::string RefusalKey(const std::string& topic, int reason_code) {
  return topic + "#" + std::to_string(reason_code);
}
std::string ReasonText(int reason_code) {
  const char* s = MQTTReasonCode_toString(static_cast<enum MQTTReasonCodes>(reason_code));
  return s ? s : "unknown";
}
}  // namespace

void Telemetry::Impl::PublishDeviceState(const std::string& name, nlohmann::json payload) {
  if (auto v = ValidateEdgeStateName(name); !v) {
    TEND_LOG_WARN("telemetry: device state ignored: {}", v.error().message);
    return;
  }
  if (state_topics_.find(name) == state_topics_.end()) {
    TEND_LOG_WARN(
        "telemetry: device state '{}' ignored: not in kDeviceStateNames (telemetry/identity.h), "
        "so the broker ACL from `tend pki` would refuse it",
        name);
    return;
  }
  if (!payload.is_object()) {
    TEND_LOG_WARN("telemetry: device state '{}' ignored: payload is not a JSON object", name);
    return;
  }
  if (!payload.contains("timestamp")) {
    payload["timestamp"] = FormatIso8601(std::chrono::system_clock::now());
  }
  {
    std::lock_guard lk(mu_);
    pending_states_[name] = std::move(payload);  // a newer state replaces an unsent one
  }
  Wake();
}

void Telemetry::Impl::BuildStates() {
  std::map<std::string, nlohmann::json> states;
  {
    std::lock_guard lk(mu_);
    if (pending_states_.empty()) return;
    states.swap(pending_states_);
  }
  for (auto& [name, p] : states) {
    if (!p.contains("device_id")) p["device_id"] = id_.device_id;
    if (!p.contains("msg_id")) p["msg_id"] = FormatMessageId(id_.device_id, {boot_, ++seq_});
    auto topic = state_topics_.find(name);  // always there: PublishDeviceState checked it
    if (topic == state_topics_.end()) continue;
    batch_.push_back({MessageKind::kState, topic->second, kStatusQos, /*retained=*/true, p.dump()});
  }
}

bool Telemetry::Impl::ApplyRefusals(Clock::time_point now) {
  const bool any = !refusals_work_.empty();
  for (auto& r : refusals_work_) {
    if (r.id != 0) {
      acks_work_.push_back(r.id);  // leaves the spool with this commit
      // Reports go QoS 1 on the health topic: a refused report is logged, not re-reported.
      if (r.topic != health_topic_) {
        spool_->NoteDropped(RefusalKey(r.topic, r.reason_code), MessageKind::kAlert, 1);
      }
    }
    {
      std::lock_guard lk(mu_);
      refused_by_topic_[r.topic] += 1;
    }
    refused_unlogged_[{r.topic, r.reason_code}] += 1;
  }
  refusals_work_.clear();
  if (!refused_unlogged_.empty() && now - last_refusal_log_ >= std::chrono::seconds(10)) {
    for (const auto& [k, n] : refused_unlogged_) {
      TEND_LOG_WARN(
          "telemetry: broker refused {} message(s) on {} (MQTT 5 reason code {:#04x} {}); "
          "removed from the spool, not resent",
          n, k.first, k.second, ReasonText(k.second));
    }
    refused_unlogged_.clear();
    last_refusal_log_ = now;
  }
  return any;
}

// Sends what was dropped or refused and not yet reported as one QoS 1 message on the health
// topic: {"type":"spool_drop_report","dropped":{topic:n},"refused":[{topic,reason_code,...}]}.
void Telemetry::Impl::MaybeEnqueueDropReport(Clock::time_point now, bool force) {
  if (spool_->unreported_drops().empty()) return;
  if (!force && (opt_.drop_report_interval_s <= 0 || now < next_drop_report_)) return;
  next_drop_report_ = now + Seconds(std::max(opt_.drop_report_interval_s, 0.0));
  nlohmann::json j;
  j["type"] = "spool_drop_report";
  j["timestamp"] = FormatIso8601(std::chrono::system_clock::now());
  j["device_id"] = id_.device_id;
  j["asset_id"] = id_.asset_id;
  j["boot"] = boot_;
  j["msg_id"] = FormatMessageId(id_.device_id, {boot_, ++seq_});
  int64_t total = 0, refused_total = 0;
  nlohmann::json dropped = nlohmann::json::object(), refused = nlohmann::json::array();
  nlohmann::json damage = nlohmann::json::object();
  const std::string damage_prefix = Spool::kDamagePrefix;
  for (const auto& [key, n] : spool_->unreported_drops()) {
    if (key.rfind(damage_prefix, 0) == 0) {
      // Losses the spool cannot count in messages (emptied file, cut-short log, quarantine).
      damage[key.substr(damage_prefix.size())] = n;
      continue;
    }
    size_t hash = key.rfind('#');
    if (hash == std::string::npos) {
      dropped[key] = n;
      total += n;
      continue;
    }
    int code = std::atoi(key.c_str() + hash + 1);
    refused.push_back({{"topic", key.substr(0, hash)},
                       {"reason_code", code},
                       {"reason", ReasonText(code)},
                       {"count", n}});
    refused_total += n;
  }
  j["dropped"] = dropped;
  j["dropped_total"] = total;
  if (!refused.empty()) {
    j["refused"] = refused;
    j["refused_total"] = refused_total;
  }
  if (!damage.empty()) j["spool_damage"] = damage;
  auto st = spool_->EnqueueDropReport(health_topic_, 1, j.dump());
  if (!st) {
    TEND_LOG_WARN("telemetry: drop report: {}", st.error().message);
    return;
  }
  TEND_LOG_WARN("telemetry: reporting {} dropped and {} refused messages: {} {}{}{}", total,
                refused_total, dropped.dump(), refused.dump(),
                damage.empty() ? "" : "; spool damage: ", damage.empty() ? "" : damage.dump());
}

void Telemetry::Impl::Hold(OutgoingMessage&& m) {
  int64_t b = SpoolRowBytes(m);
  if (held_bytes_ + b > opt_.memory_queue_bytes) {
    spool_->NoteDropped(m.topic, m.kind, 1);
    CountDropped(m.kind, 1);
    return;
  }
  held_bytes_ += b;
  held_.push_back(std::move(m));
}

// Degraded mode: try the spool file again; on success it takes over what memory holds.
void Telemetry::Impl::TryDiskSpool(Clock::time_point now) {
  next_disk_retry_ = now + Seconds(opt_.disk_retry_s);
  auto f = Spool::Open(opt_.spool_path, spool_options_);
  CommitResult moved;
  Status st = f ? (*f)->Absorb(*spool_, moved) : Status(Fail(f.error()));
  if (!st) {
    TEND_LOG_DEBUG("telemetry: spool {} still unusable: {}", opt_.spool_path, st.error().message);
    SetSpoolError(st.error().message);
    return;
  }
  for (int k = 0; k < kMessageKinds; ++k) {
    CountDropped(static_cast<MessageKind>(k), moved.dropped_by_kind[k]);
  }
  TEND_LOG_WARN("telemetry: spool {} usable again; moved {} messages from memory to it",
                opt_.spool_path, moved.appended);
  spool_ = std::move(*f);
  // Messages in flight carry memory row ids (>= 2^40): their late acks match no file row; the
  // messages themselves are resent from the file (receivers deduplicate on msg_id).
  gen_.fetch_add(1);
  inflight_ = 0;
  spool_->Rewind();
  st_in_memory_ = false;
  SetSpoolError("");
  st_bytes_ = spool_->bytes();
  st_depth_ = spool_->depth();
}

Status Telemetry::Impl::Commit(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::unique_lock lk(mu_);
  uint64_t want = ++flush_requested_;
  cv_.notify_one();
  if (!done_cv_.wait_until(lk, deadline, [&] { return flush_done_ >= want; })) {
    return Fail(Error::Timeout("telemetry: the spool writer did not commit in time"));
  }
  return Ok();
}

Status Telemetry::Impl::Flush(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  TEND_RETURN_NOT_OK(Commit(timeout));
  if (paho_uri_.empty()) return Ok();
  while (Clock::now() < deadline) {
    if (st_connected_ && st_depth_.load() == 0) return Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    Wake();
  }
  if (st_in_memory_) {
    // Degraded mode: nothing is on disk, so nothing is kept for the next run.
    return Fail(Error::Timeout(
        "telemetry flush: " + std::to_string(st_depth_.load()) +
        " messages not yet delivered, held in memory only (the spool file is unusable): they are "
        "lost when the agent exits"));
  }
  return Fail(Error::Timeout("telemetry flush: " + std::to_string(st_depth_.load()) +
                             " messages not yet delivered (kept in the spool file for the next "
                             "run)"));
}

Telemetry::Telemetry(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Telemetry::~Telemetry() = default;

Result<std::unique_ptr<Telemetry>> Telemetry::Create(const Identity& identity,
                                                     const TelemetryOptions& options) {
  auto impl = std::make_unique<Impl>(identity, options);
  TEND_RETURN_NOT_OK(impl->Start());
  return std::unique_ptr<Telemetry>(new Telemetry(std::move(impl)));
}

void Telemetry::OnDecision(const Decision& d) { impl_->OnDecision(d); }
void Telemetry::OnModelInfo(const ModelInfo& info) { impl_->OnModelInfo(info); }
void Telemetry::SetHealthProvider(std::function<nlohmann::json()> fn) {
  impl_->SetHealthProvider(std::move(fn));
}
void Telemetry::PublishDeviceState(const std::string& name, nlohmann::json payload) {
  impl_->PublishDeviceState(name, std::move(payload));
}
Telemetry::Stats Telemetry::stats() const { return impl_->stats(); }
const SpoolOpenReport& Telemetry::spool_report() const { return impl_->spool_report(); }
Status Telemetry::Flush(std::chrono::milliseconds timeout) { return impl_->Flush(timeout); }
Status Telemetry::Commit(std::chrono::milliseconds timeout) { return impl_->Commit(timeout); }

}  // namespace tend::telemetry
