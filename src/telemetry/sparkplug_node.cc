#include "telemetry/sparkplug_node.h"

#include <mqtt/async_client.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "core/fs.h"
#include "core/log.h"
#include "telemetry/mqtt_url.h"
#include "telemetry/sparkplug.h"
#include "telemetry/spool.h"

namespace tend::sparkplug {
namespace {

using Clock = std::chrono::steady_clock;
using telemetry::MessageKind;
using telemetry::OutgoingMessage;

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// What the worker needs of a decision: no strings, so the hand-off never allocates.
struct Event {
  int device = 0;
  bool alert = false;
  bool fail_safe = false;
  Severity severity = Severity::kNone;
  float score = 0;
  double latency_ms = 0;
  uint64_t t_ms = 0;
};

// Devices as the pipeline side sees them (guarded by the node's mutex).
struct SharedDevice {
  std::string id;
  bool alive = true;
  bool model_dirty = false;
  std::string model_name, model_version;
};

// Devices as the worker sees them.
struct WorkerDevice {
  std::string id;
  bool alive = true;
  bool born = false;  // DBIRTH sent in the current session
  bool dirty = false;
  DeviceValues cur, sent;
};

// A publish's user context: connection generation (top 16 bits) and spool row id (0: none).
void* PackContext(uint64_t gen, int64_t id) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(
      ((gen & 0xffff) << 48) | (static_cast<uint64_t>(id) & ((1ull << 48) - 1))));
}
uint64_t ContextGen(void* ctx) { return reinterpret_cast<uintptr_t>(ctx) >> 48; }
int64_t ContextId(void* ctx) {
  return static_cast<int64_t>(reinterpret_cast<uintptr_t>(ctx) & ((1ull << 48) - 1));
}

constexpr int kMaxInflight = 256;
constexpr size_t kMaxPendingSpool = 10000;

}  // namespace

Status SparkplugOptions::Validate() const {
  TEND_RETURN_NOT_OK(ValidateId("group id", group_id));
  TEND_RETURN_NOT_OK(ValidateId("edge node id", edge_node_id));
  if (!primary_host_id.empty()) TEND_RETURN_NOT_OK(ValidateId("primary host id", primary_host_id));
  TEND_ASSIGN_OR_RETURN(auto addr, telemetry::ParseBrokerUrl(broker_url));
  if (addr.tls && ca_file.empty()) {
    return Fail(Error::Invalid("sparkplug: " + broker_url + " is TLS but no CA file was given"));
  }
  if (cert_file.empty() != key_file.empty()) {
    return Fail(Error::Invalid("sparkplug: give both a client certificate and its key"));
  }
  if (state_dir.empty()) return Fail(Error::Invalid("sparkplug: state_dir is empty"));
  if (!(reconnect_min_s > 0 && reconnect_max_s >= reconnect_min_s)) {
    return Fail(Error::Invalid("sparkplug: reconnect backoff needs 0 < min <= max"));
  }
  if (queue_capacity < 1 || spool_max_bytes < 4096 || keepalive_s < 1) {
    return Fail(Error::Invalid("sparkplug: queue >= 1, spool >= 4096 bytes, keepalive >= 1 s"));
  }
  return Ok();
}

void CopyBrokerSettings(const telemetry::TelemetryOptions& from, SparkplugOptions& to) {
  to.broker_url = from.broker_url;
  to.ca_file = from.ca_file;
  to.cert_file = from.cert_file;
  to.key_file = from.key_file;
  to.username = from.username;
  to.password = from.password;
}

nlohmann::json ToJson(const SparkplugStats& s) {
  nlohmann::json j = {{"connected", s.connected},
                      {"in_session", s.in_session},
                      {"waiting_for_host", s.waiting_for_host},
                      {"bd_seq", s.bd_seq},
                      {"births", s.births},
                      {"rebirths", s.rebirths},
                      {"commands_rejected", s.commands_rejected},
                      {"data_sent", s.data_sent},
                      {"historical_sent", s.historical_sent},
                      {"alerts_spooled", s.alerts_spooled},
                      {"historical_dropped", s.historical_dropped},
                      {"queue_dropped", s.queue_dropped},
                      {"spool_depth", s.spool_depth},
                      {"decisions", s.decisions}};
  if (!s.last_error.empty()) j["last_error"] = s.last_error;
  return j;
}

class SparkplugNode::Impl {
 public:
  explicit Impl(SparkplugOptions o) : o_(std::move(o)) { topics_ = {o_.group_id, o_.edge_node_id}; }
  ~Impl() { Stop(); }

  Status Start();
  void Stop();
  Result<int> AddDevice(const std::string& id);
  void RemoveDevice(int index);
  void OnDecision(int index, const Decision& d);
  void OnModelInfo(int index, const ModelInfo& info);
  SparkplugStats stats() const {
    std::lock_guard lk(mu_);
    return st_;
  }
  Status Flush(std::chrono::milliseconds timeout);

 private:
  struct Listener : mqtt::iaction_listener {
    Impl* self;
    bool connect;
    Listener(Impl* s, bool c) : self(s), connect(c) {}
    void on_success(const mqtt::token& tok) override { self->OnToken(tok, connect, true); }
    void on_failure(const mqtt::token& tok) override { self->OnToken(tok, connect, false); }
  };

  void Wake() {
    std::lock_guard lk(mu_);
    wake_ = true;
    cv_.notify_one();
  }
  void OnToken(const mqtt::token& tok, bool connect, bool ok);
  void Run();
  void SyncShared(std::vector<SharedDevice>& shared);
  void ApplyEvents();
  void HandleNetwork(Clock::time_point now);
  void HandleInbox();
  void OnCommand(const std::string& payload);
  void OnHostState(const std::string& payload);
  void StartConnect(Clock::time_point now);
  Status NextBdSeq();
  void NewClient();
  void OnConnected();
  void OnLost(Clock::time_point now, const std::string& why);
  void Birth();
  void DeviceBirth(WorkerDevice& d);
  void PublishDirty();
  void PublishData(WorkerDevice& d);
  void Spool(const WorkerDevice& d);
  void DrainSpool();
  void CommitSpool();
  bool Publish(const std::string& topic, const pb::Payload& p, int qos, int64_t spool_id);
  bool PublishBytes(const std::string& topic, const std::string& bytes, int qos, int64_t id);
  uint64_t NextSeq() {
    uint64_t s = seq_;
    seq_ = (seq_ + 1) % 256;
    return s;
  }
  void Note(std::string error);
  void PublishStats();

  SparkplugOptions o_;
  Topics topics_;
  std::string paho_uri_;
  mqtt::connect_options connopts_;

  // Shared with the pipeline threads and the Paho callbacks.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, wake_ = false;
  std::vector<Event> ring_;
  size_t head_ = 0, count_ = 0;
  uint64_t received_ = 0, processed_ = 0;
  std::vector<SharedDevice> shared_;
  bool devices_dirty_ = false;
  SparkplugStats st_;
  int64_t queue_dropped_ = 0, decisions_ = 0;
  std::vector<std::pair<std::string, std::string>> inbox_;
  std::vector<int64_t> acks_;
  std::atomic<bool> connected_event_{false}, failed_event_{false}, lost_event_{false};
  std::atomic<uint64_t> gen_{1};
  std::atomic<int> inflight_{0};

  // Worker only.
  std::thread worker_;
  std::unique_ptr<telemetry::Spool> spool_;
  std::unique_ptr<mqtt::async_client> cli_;
  Listener connect_listener_{this, true}, publish_listener_{this, false};
  std::vector<Event> batch_;
  std::vector<WorkerDevice> devs_;
  std::vector<OutgoingMessage> pending_spool_;
  std::vector<int64_t> acks_work_;
  std::vector<std::pair<std::string, std::string>> inbox_work_;
  enum class Conn { kDown, kConnecting, kUp } conn_ = Conn::kDown;
  bool in_session_ = false, waiting_for_host_ = false;
  int64_t last_host_ts_ = -1;
  int64_t bd_seq_ = -1;
  uint64_t seq_ = 0;
  double backoff_s_ = 0;
  Clock::time_point next_attempt_{};
  Clock::time_point last_error_log_{};
  int64_t unlogged_errors_ = 0;
  SparkplugStats w_;  // the worker's counters, published into st_ after each turn
};

Status SparkplugNode::Impl::Start() {
  TEND_RETURN_NOT_OK(o_.Validate());
  std::string dir = o_.state_dir + "/sparkplug";
  TEND_RETURN_NOT_OK(fs::MakeDirs(dir));
  telemetry::SpoolOptions so;
  so.max_bytes = o_.spool_max_bytes;
  TEND_ASSIGN_OR_RETURN(spool_, telemetry::Spool::Open(dir + "/historical.db", so));
  w_.spool_depth = spool_->depth();
  TEND_ASSIGN_OR_RETURN(auto addr, telemetry::ParseBrokerUrl(o_.broker_url));
  paho_uri_ = addr.paho_uri;
  try {
    connopts_.set_mqtt_version(MQTTVERSION_3_1_1);
    connopts_.set_clean_session(true);  // Sparkplug 3.0: clean session for edge nodes
    connopts_.set_keep_alive_interval(o_.keepalive_s);
    connopts_.set_connect_timeout(std::max(1, static_cast<int>(o_.connect_timeout_s)));
    connopts_.set_automatic_reconnect(false);
    if (!o_.username.empty()) connopts_.set_user_name(o_.username);
    if (!o_.password.empty()) connopts_.set_password(o_.password);
    if (addr.tls) {
      auto ssl = telemetry::BrokerSslOptions(o_.ca_file, o_.cert_file, o_.key_file);
      ssl.set_error_handler([](const std::string& m) { TEND_LOG_WARN("sparkplug: TLS: {}", m); });
      connopts_.set_ssl(std::move(ssl));
    }
    NewClient();
  } catch (const mqtt::exception& e) {
    return Fail(Error::Invalid("sparkplug: MQTT client for " + o_.broker_url + ": " + e.what()));
  }
  ring_.resize(static_cast<size_t>(o_.queue_capacity));
  batch_.reserve(ring_.size());
  backoff_s_ = o_.reconnect_min_s;
  TEND_LOG_INFO("sparkplug: edge node {}/{}; {} historical alert(s) spooled", o_.group_id,
                o_.edge_node_id, spool_->depth());
  worker_ = std::thread([this] { Run(); });
  return Ok();
}

void SparkplugNode::Impl::NewClient() {
  cli_.reset();
  mqtt::create_options co(MQTTVERSION_3_1_1, 100000);
  cli_ = std::make_unique<mqtt::async_client>(paho_uri_, "edge_" + o_.edge_node_id + "_spb", co,
                                              nullptr);
  cli_->set_connection_lost_handler([this](const std::string&) {
    lost_event_ = true;
    Wake();
  });
  cli_->set_message_callback([this](mqtt::const_message_ptr m) {
    std::lock_guard lk(mu_);
    inbox_.emplace_back(m->get_topic(), m->get_payload_str());
    wake_ = true;
    cv_.notify_one();
  });
}

void SparkplugNode::Impl::OnToken(const mqtt::token& tok, bool connect, bool ok) {
  if (connect) {
    (ok ? connected_event_ : failed_event_) = true;
    Wake();
    return;
  }
  void* ctx = tok.get_user_context();
  if (ContextGen(ctx) == (gen_.load() & 0xffff)) inflight_.fetch_sub(1);
  int64_t id = ContextId(ctx);
  if (ok && id != 0) {
    std::lock_guard lk(mu_);
    acks_.push_back(id);
    wake_ = true;
    cv_.notify_one();
  }
}

void SparkplugNode::Impl::Stop() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard lk(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  worker_.join();
  if (!cli_) return;
  try {
    if (conn_ == Conn::kUp && cli_->is_connected()) {
      // Intentional disconnect (3.1.1): NDEATH first, then DISCONNECT (which drops the Will).
      auto bytes = NDeath(bd_seq_, NowMs()).SerializeAsString();
      cli_->publish(topics_.Node("NDEATH"), bytes.data(), bytes.size(), 1, false)
          ->wait_for(std::chrono::seconds(2));
      cli_->disconnect(std::chrono::seconds(1))->wait_for(std::chrono::seconds(2));
    } else if (conn_ == Conn::kConnecting) {
      cli_->disconnect(0)->wait_for(std::chrono::seconds(2));
    }
  } catch (const mqtt::exception& e) {
    TEND_LOG_DEBUG("sparkplug: disconnect: {}", e.what());
  }
  cli_.reset();
  CommitSpool();
}

Result<int> SparkplugNode::Impl::AddDevice(const std::string& id) {
  TEND_RETURN_NOT_OK(ValidateId("device id", id));
  std::lock_guard lk(mu_);
  for (const auto& d : shared_) {
    if (d.alive && d.id == id) {
      return Fail(Error::Invalid("sparkplug: device '" + id + "' already exists on this node"));
    }
  }
  shared_.push_back({id, true, false, "", ""});
  devices_dirty_ = true;
  wake_ = true;
  cv_.notify_one();
  return static_cast<int>(shared_.size() - 1);
}

void SparkplugNode::Impl::RemoveDevice(int index) {
  std::lock_guard lk(mu_);
  shared_[static_cast<size_t>(index)].alive = false;
  devices_dirty_ = true;
  wake_ = true;
  cv_.notify_one();
}

void SparkplugNode::Impl::OnDecision(int index, const Decision& d) {
  Event e{index,
          d.is_alert,
          d.fail_safe,
          d.severity,
          d.anomaly_score,
          d.latency_ms,
          static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::milliseconds>(d.timestamp.time_since_epoch())
                  .count())};
  {
    std::lock_guard lk(mu_);
    ++decisions_;
    ++received_;
    if (count_ == ring_.size()) {
      ++queue_dropped_;
      ++processed_;
      return;
    }
    ring_[(head_ + count_) % ring_.size()] = e;
    ++count_;
  }
  cv_.notify_one();
}

void SparkplugNode::Impl::OnModelInfo(int index, const ModelInfo& info) {
  std::lock_guard lk(mu_);
  auto& d = shared_[static_cast<size_t>(index)];
  d.model_name = info.name;
  d.model_version = info.version;
  d.model_dirty = true;
  devices_dirty_ = true;
  wake_ = true;
  cv_.notify_one();
}

Status SparkplugNode::Impl::Flush(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  uint64_t want;
  {
    std::lock_guard lk(mu_);
    want = received_;
  }
  while (Clock::now() < deadline) {
    {
      std::lock_guard lk(mu_);
      if (processed_ >= want && st_.spool_depth == 0 && st_.in_session) return Ok();
      wake_ = true;
      cv_.notify_one();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Fail(Error::Timeout("sparkplug flush: not everything was sent in time"));
}

void SparkplugNode::Impl::Run() {
  for (;;) {
    bool stopping;
    std::vector<SharedDevice> shared;
    {
      std::unique_lock lk(mu_);
      auto now = Clock::now();
      auto deadline = now + std::chrono::milliseconds(200);
      if (conn_ == Conn::kDown) deadline = std::min(deadline, std::max(next_attempt_, now));
      cv_.wait_until(lk, deadline, [&] { return stop_ || wake_ || count_ > 0; });
      wake_ = false;
      batch_.clear();
      for (; count_ > 0; --count_) {
        batch_.push_back(ring_[head_]);
        head_ = (head_ + 1) % ring_.size();
      }
      if (devices_dirty_) {
        shared = shared_;  // devices change rarely: copying them here is fine
        for (auto& d : shared_) d.model_dirty = false;
        devices_dirty_ = false;
      }
      inbox_work_.swap(inbox_);
      acks_work_.insert(acks_work_.end(), acks_.begin(), acks_.end());
      acks_.clear();
      stopping = stop_;
    }
    auto now = Clock::now();
    HandleNetwork(now);
    if (!shared.empty()) SyncShared(shared);
    HandleInbox();
    ApplyEvents();
    if (in_session_) {
      PublishDirty();
      DrainSpool();
    }
    CommitSpool();
    if (conn_ == Conn::kDown && now >= next_attempt_ && !stopping) StartConnect(now);
    {
      std::lock_guard lk(mu_);
      processed_ += batch_.size();
    }
    PublishStats();
    if (stopping) break;
  }
}

// Devices added, stopped or given a new model since the last turn.
void SparkplugNode::Impl::SyncShared(std::vector<SharedDevice>& shared) {
  for (size_t i = 0; i < shared.size(); ++i) {
    if (i == devs_.size()) {
      devs_.push_back({});
      devs_.back().id = shared[i].id;
    }
    WorkerDevice& d = devs_[i];
    if (shared[i].model_dirty || d.cur.model_name.empty()) {
      d.cur.model_name = shared[i].model_name;
      d.cur.model_version = shared[i].model_version;
      d.dirty = true;
    }
    if (d.alive && !shared[i].alive) {
      d.alive = false;
      if (in_session_ && d.born) {
        Publish(topics_.Device("DDEATH", d.id), DDeath(NextSeq(), NowMs()), 0, 0);
      }
      d.born = false;
    } else if (d.alive && in_session_ && !d.born) {
      DeviceBirth(d);
    }
  }
}

void SparkplugNode::Impl::ApplyEvents() {
  for (const Event& e : batch_) {
    if (e.device < 0 || static_cast<size_t>(e.device) >= devs_.size()) continue;
    WorkerDevice& d = devs_[static_cast<size_t>(e.device)];
    if (!d.alive) continue;
    d.cur.score = e.score;
    d.cur.severity = SeverityName(e.severity);
    d.cur.is_alert = e.alert;
    d.cur.latency_ms = e.latency_ms;
    d.cur.timestamp_ms = e.t_ms;
    if (e.alert) ++d.cur.alert_count;
    if (e.fail_safe) ++d.cur.deadline_misses;
    d.dirty = true;
    if (!e.alert) continue;
    // An alert goes out live only when nothing older is waiting; otherwise it is history.
    if (in_session_ && d.born && spool_->depth() == 0 && pending_spool_.empty()) {
      PublishData(d);
    } else {
      Spool(d);
    }
  }
}

void SparkplugNode::Impl::Spool(const WorkerDevice& d) {
  if (pending_spool_.size() >= kMaxPendingSpool) {
    Note("sparkplug: historical spool unusable and the memory buffer is full; alert dropped");
    return;
  }
  pending_spool_.push_back({MessageKind::kAlert, topics_.Device("DDATA", d.id), 0, false,
                            DData(d.cur, nullptr, /*historical=*/true).SerializeAsString()});
  ++w_.alerts_spooled;
}

void SparkplugNode::Impl::CommitSpool() {
  if (pending_spool_.empty() && acks_work_.empty()) return;
  auto r = spool_->Commit(pending_spool_, acks_work_);
  if (!r) {
    Note("sparkplug: spool commit: " + r.error().message);
    return;  // acks and alerts are retried with the next commit
  }
  acks_work_.clear();
  if (r->committed) pending_spool_.clear();
  w_.spool_depth = spool_->depth();
}

void SparkplugNode::Impl::HandleNetwork(Clock::time_point now) {
  if (failed_event_.exchange(false) && conn_ == Conn::kConnecting) {
    conn_ = Conn::kDown;
    next_attempt_ = now + Seconds(backoff_s_);
    backoff_s_ = std::min(backoff_s_ * 2, o_.reconnect_max_s);
    Note("sparkplug: cannot connect to " + o_.broker_url + "; retrying with backoff");
  }
  if (lost_event_.exchange(false) && conn_ == Conn::kUp) OnLost(now, "connection lost");
  if (connected_event_.exchange(false) && conn_ == Conn::kConnecting) OnConnected();
}

void SparkplugNode::Impl::OnLost(Clock::time_point now, const std::string& why) {
  TEND_LOG_WARN("sparkplug: {} ({}); alerts are spooled as history until the next session", why,
                o_.broker_url);
  conn_ = Conn::kDown;
  in_session_ = waiting_for_host_ = false;
  for (auto& d : devs_) d.born = false;
  gen_.fetch_add(1);
  inflight_ = 0;
  spool_->Rewind();
  next_attempt_ = now + Seconds(backoff_s_);
  backoff_s_ = std::min(backoff_s_ * 2, o_.reconnect_max_s);
}

Status SparkplugNode::Impl::NextBdSeq() {
  std::string path = o_.state_dir + "/sparkplug/bdseq";
  if (bd_seq_ < 0) {  // the first connect of this process continues from the last run's
    auto text = fs::ReadFile(path);
    int64_t last = -1;
    if (text) last = std::atoll(text->c_str());
    bd_seq_ = (last < 0 || last > 255) ? 0 : (last + 1) % 256;
  } else {
    bd_seq_ = (bd_seq_ + 1) % 256;
  }
  return fs::WriteFileAtomic(path, std::to_string(bd_seq_) + "\n");
}

void SparkplugNode::Impl::StartConnect(Clock::time_point now) {
  if (auto st = NextBdSeq(); !st) Note("sparkplug: persisting bdSeq: " + st.error().message);
  try {
    NewClient();
    auto will = NDeath(bd_seq_, NowMs()).SerializeAsString();
    connopts_.set_will(mqtt::will_options(topics_.Node("NDEATH"), will.data(), will.size(),
                                          /*qos=*/1, /*retained=*/false));
    conn_ = Conn::kConnecting;
    cli_->connect(connopts_, nullptr, connect_listener_);
  } catch (const mqtt::exception& e) {
    conn_ = Conn::kDown;
    next_attempt_ = now + Seconds(backoff_s_);
    Note(std::string("sparkplug: connect: ") + e.what());
  }
}

void SparkplugNode::Impl::OnConnected() {
  conn_ = Conn::kUp;
  backoff_s_ = o_.reconnect_min_s;
  gen_.fetch_add(1);
  inflight_ = 0;
  try {
    cli_->subscribe(topics_.Node("NCMD"), 1);
    if (!o_.primary_host_id.empty()) cli_->subscribe(StateTopic(o_.primary_host_id), 1);
  } catch (const mqtt::exception& e) {
    Note(std::string("sparkplug: subscribe: ") + e.what());
  }
  TEND_LOG_INFO("sparkplug: connected to {} (bdSeq {}){}", o_.broker_url, bd_seq_,
                o_.primary_host_id.empty() ? "" : "; waiting for the primary host");
  if (o_.primary_host_id.empty()) {
    Birth();
  } else {
    waiting_for_host_ = true;  // its retained STATE arrives right after the subscription
  }
}

void SparkplugNode::Impl::Birth() {
  waiting_for_host_ = false;
  seq_ = 0;
  CommitSpool();     // what was already sent leaves the spool before it is rewound
  spool_->Rewind();  // history goes after the births, from the start
  gen_.fetch_add(1);
  inflight_ = 0;
  Publish(topics_.Node("NBIRTH"), NBirth(bd_seq_, NextSeq(), NowMs()), 0, 0);
  ++w_.births;
  in_session_ = true;
  for (auto& d : devs_) {
    d.born = false;
    if (d.alive) DeviceBirth(d);
  }
}

void SparkplugNode::Impl::DeviceBirth(WorkerDevice& d) {
  Publish(topics_.Device("DBIRTH", d.id), DBirth(d.cur, NextSeq(), NowMs()), 0, 0);
  d.born = true;
  d.sent = d.cur;
  d.dirty = false;
}

void SparkplugNode::Impl::PublishDirty() {
  for (auto& d : devs_) {
    if (d.alive && d.born && d.dirty) PublishData(d);
  }
}

void SparkplugNode::Impl::PublishData(WorkerDevice& d) {
  pb::Payload p = DData(d.cur, &d.sent, /*historical=*/false);
  d.dirty = false;
  if (p.metrics_size() == 0) return;
  p.set_seq(NextSeq());
  p.set_timestamp(NowMs());
  if (Publish(topics_.Device("DDATA", d.id), p, 0, 0)) ++w_.data_sent;
  d.sent = d.cur;
}

// Historical alerts, oldest first, each with the next seq; a row leaves the spool once Paho has
// written it (QoS 0, as Sparkplug requires for DDATA).
void SparkplugNode::Impl::DrainSpool() {
  while (inflight_.load() < kMaxInflight) {
    auto next = spool_->Next(64);
    if (!next || next->empty()) return;
    for (auto& row : *next) {
      const std::string& topic = row.msg.topic;
      std::string dev = topic.substr(topic.rfind('/') + 1);
      bool known = false;
      for (const auto& d : devs_) known = known || (d.alive && d.born && d.id == dev);
      if (!known) {  // the asset stopped: nobody to attribute it to in this session
        acks_work_.push_back(row.id);
        ++w_.historical_dropped;
        continue;
      }
      auto bytes = Restamp(row.msg.payload, NextSeq(), NowMs());
      if (!bytes) {
        acks_work_.push_back(row.id);
        ++w_.historical_dropped;
        Note(bytes.error().message);
        continue;
      }
      if (!PublishBytes(topic, *bytes, 0, row.id)) return;
      ++w_.historical_sent;
    }
  }
}

bool SparkplugNode::Impl::Publish(const std::string& topic, const pb::Payload& p, int qos,
                                  int64_t spool_id) {
  return PublishBytes(topic, p.SerializeAsString(), qos, spool_id);
}

bool SparkplugNode::Impl::PublishBytes(const std::string& topic, const std::string& bytes, int qos,
                                       int64_t id) {
  try {
    inflight_.fetch_add(1);
    cli_->publish(topic, bytes.data(), bytes.size(), qos, false, PackContext(gen_.load(), id),
                  publish_listener_);
    return true;
  } catch (const mqtt::exception& e) {
    inflight_.fetch_sub(1);
    OnLost(Clock::now(), std::string("publish failed: ") + e.what());
    return false;
  }
}

void SparkplugNode::Impl::HandleInbox() {
  for (auto& [topic, payload] : inbox_work_) {
    if (topic == topics_.Node("NCMD")) {
      OnCommand(payload);
    } else if (!o_.primary_host_id.empty() && topic == StateTopic(o_.primary_host_id)) {
      OnHostState(payload);
    }
  }
  inbox_work_.clear();
}

void SparkplugNode::Impl::OnCommand(const std::string& payload) {
  auto cmd = DecodeNodeCommand(payload);
  if (!cmd) {
    ++w_.commands_rejected;
    Note("sparkplug: rejected an NCMD: " + cmd.error().message);
    return;
  }
  for (const auto& name : cmd->ignored) {
    TEND_LOG_INFO("sparkplug: NCMD metric '{}' is not writable on this node; ignored", name);
  }
  if (cmd->rebirth && conn_ == Conn::kUp && !waiting_for_host_) {
    TEND_LOG_INFO("sparkplug: rebirth requested by NCMD");
    ++w_.rebirths;
    Birth();
  }
}

void SparkplugNode::Impl::OnHostState(const std::string& payload) {
  auto st = DecodeHostState(payload);
  if (!st) {
    Note("sparkplug: primary host " + o_.primary_host_id + ": " + st.error().message);
    return;
  }
  if (st->timestamp < last_host_ts_) return;  // older than what we know: ignore
  last_host_ts_ = st->timestamp;
  if (st->online) {
    if (waiting_for_host_ && conn_ == Conn::kUp) Birth();
    return;
  }
  if (conn_ != Conn::kUp) return;
  if (in_session_) {
    // The primary host went offline: end the session (NDEATH, disconnect) and start over.
    TEND_LOG_WARN("sparkplug: primary host {} is offline; ending the session", o_.primary_host_id);
    try {
      auto bytes = NDeath(bd_seq_, NowMs()).SerializeAsString();
      cli_->publish(topics_.Node("NDEATH"), bytes.data(), bytes.size(), 1, false)
          ->wait_for(std::chrono::seconds(1));
      cli_->disconnect(std::chrono::milliseconds(200))->wait_for(std::chrono::seconds(1));
    } catch (const mqtt::exception& e) {
      TEND_LOG_DEBUG("sparkplug: disconnect: {}", e.what());
    }
    OnLost(Clock::now(), "primary host offline");
    next_attempt_ = Clock::now();
  }
  waiting_for_host_ = true;
}

// Errors: counted, and one log line at most every 10 s.
void SparkplugNode::Impl::Note(std::string error) {
  ++unlogged_errors_;
  auto now = Clock::now();
  if (now - last_error_log_ >= std::chrono::seconds(10)) {
    TEND_LOG_WARN("{}{}", error,
                  unlogged_errors_ > 1
                      ? " (and " + std::to_string(unlogged_errors_ - 1) + " more since the last)"
                      : std::string());
    last_error_log_ = now;
    unlogged_errors_ = 0;
  }
  w_.last_error = std::move(error);
}

void SparkplugNode::Impl::PublishStats() {
  w_.connected = conn_ == Conn::kUp;
  w_.in_session = in_session_;
  w_.waiting_for_host = waiting_for_host_;
  w_.bd_seq = bd_seq_;
  w_.spool_depth = spool_->depth() + static_cast<int64_t>(pending_spool_.size());
  std::lock_guard lk(mu_);
  int64_t dropped = queue_dropped_, decisions = decisions_;
  st_ = w_;
  st_.queue_dropped = dropped;
  st_.decisions = decisions;
}

SparkplugNode::SparkplugNode(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
SparkplugNode::~SparkplugNode() { impl_->Stop(); }

Result<std::unique_ptr<SparkplugNode>> SparkplugNode::Create(const SparkplugOptions& options) {
  auto impl = std::make_shared<Impl>(options);
  TEND_RETURN_NOT_OK(impl->Start());
  return std::unique_ptr<SparkplugNode>(new SparkplugNode(std::move(impl)));
}

Result<std::unique_ptr<SparkplugDevice>> SparkplugNode::AddDevice(const std::string& asset_id) {
  TEND_ASSIGN_OR_RETURN(int index, impl_->AddDevice(asset_id));
  return std::unique_ptr<SparkplugDevice>(new SparkplugDevice(impl_, index, asset_id));
}
SparkplugStats SparkplugNode::stats() const { return impl_->stats(); }
Status SparkplugNode::Flush(std::chrono::milliseconds timeout) { return impl_->Flush(timeout); }

SparkplugDevice::SparkplugDevice(std::shared_ptr<SparkplugNode::Impl> node, int index,
                                 std::string id)
    : node_(std::move(node)), index_(index), id_(std::move(id)) {}
SparkplugDevice::~SparkplugDevice() { node_->RemoveDevice(index_); }
void SparkplugDevice::OnDecision(const Decision& d) { node_->OnDecision(index_, d); }
void SparkplugDevice::OnModelInfo(const ModelInfo& info) { node_->OnModelInfo(index_, info); }

}  // namespace tend::sparkplug
