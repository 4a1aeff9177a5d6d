#include "metrics/exporter.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/log.h"
#include "core/net.h"

namespace tend::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
constexpr auto kRelaxed = std::memory_order_relaxed;

constexpr std::array<const char*, 3> kStages = {"features", "inference", "end_to_end"};

// A histogram whose Observe() is two relaxed atomic adds, so the pipeline never waits for a
// scrape. Counts are per bucket (not cumulative); the last one is +Inf.
class AtomicHistogram {
 public:
  explicit AtomicHistogram(const std::vector<double>& bounds)
      : bounds_(bounds), counts_(bounds.size() + 1) {}

  void Observe(double v) {
    if (std::isnan(v)) return;
    if (v < 0) v = 0;
    const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                         bounds_.begin());  // le semantics
    counts_[i].fetch_add(1, kRelaxed);
    sum_.fetch_add(v, kRelaxed);
  }

  void Read(std::vector<uint64_t>* counts, double* sum) const {
    counts->resize(counts_.size());
    for (size_t i = 0; i < counts_.size(); ++i) (*counts)[i] = counts_[i].load(kRelaxed);
    *sum = sum_.load(kRelaxed);
  }

  // One scrape's view. The count is the sum of the buckets read, so that +Inf == _count even while
  // the pipeline observes concurrently.
  ClientMetric::Histogram Collect() const {
    std::vector<uint64_t> counts;
    double sum = 0;
    Read(&counts, &sum);
    ClientMetric::Histogram h;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += counts[i];
      h.bucket.push_back({cumulative, bounds_[i]});
    }
    cumulative += counts.back();
    h.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
    h.sample_count = cumulative;
    h.sample_sum = sum;
    return h;
  }

  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  std::vector<std::atomic<uint64_t>> counts_;
  std::atomic<double> sum_{0};
};

// Prometheus' histogram_quantile() over non-cumulative bucket counts.
std::optional<double> BucketQuantile(double q, const std::vector<double>& bounds,
                                     const std::vector<uint64_t>& counts) {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  if (total == 0 || bounds.empty()) return std::nullopt;
  const double rank = q * static_cast<double>(total);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const uint64_t before = cumulative;
    cumulative += counts[i];
    if (static_cast<double>(cumulative) >= rank && counts[i] > 0) {
      if (i == bounds.size()) return bounds.back();  // in +Inf: the highest finite bound
      const double lower = i == 0 ? 0.0 : bounds[i - 1];
      const double upper = bounds[i];
      return lower + (upper - lower) * (rank - static_cast<double>(before)) /
                         static_cast<double>(counts[i]);
    }
  }
  return bounds.back();
}

std::vector<double> Scaled(const std::vector<double>& v, double k) {
  std::vector<double> out;
  out.reserve(v.size());
  for (double x : v) out.push_back(x * k);
  return out;
}

double UnixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

// Why binding failed, from the OS: httplib only says "no".
std::string ProbeBindError(const std::string& host, int port) { return net::ProbeBind(host, port); }

}  // namespace

const std::vector<double>& LatencyBucketsMs() {
  static const std::vector<double>* const kBuckets =
      new std::vector<double>{0.01, 0.025, 0.05, 0.1,  0.25, 0.5,  1,    2.5,  5,    10,   25,   50,
                              100,  200,   500,  1000, 1500, 2000, 2500, 3000, 3500, 5000, 10000};
  return *kBuckets;
}

double ModelMajorVersion(const std::string& version) {
  size_t i = 0;
  if (i < version.size() && (version[i] == 'v' || version[i] == 'V')) ++i;
  double major = 0;
  bool any = false;
  for (; i < version.size() && std::isdigit(static_cast<unsigned char>(version[i])); ++i) {
    major = major * 10 + (version[i] - '0');
    any = true;
  }
  return any ? major : 0;
}

// Everything the decision path of one asset touches (relaxed atomics only), and its model.
class Exporter::AssetState final : public DecisionSink {
 public:
  AssetState(std::string asset_id, double budget_ms)
      : id(std::move(asset_id)),
        latency_budget_ms(budget_ms),
        latency_ms(LatencyBucketsMs()),
        stage_s{AtomicHistogram(Scaled(LatencyBucketsMs(), 1e-3)),
                AtomicHistogram(Scaled(LatencyBucketsMs(), 1e-3)),
                AtomicHistogram(Scaled(LatencyBucketsMs(), 1e-3))} {}

  void OnDecision(const Decision& d) override;
  void OnModelInfo(const ModelInfo& info) override {
    std::lock_guard<std::mutex> lock(mu);
    model = info;
  }
  std::optional<ModelInfo> Model() const {
    std::lock_guard<std::mutex> lock(mu);
    return model;
  }

  const std::string id;
  const double latency_budget_ms;
  AtomicHistogram latency_ms;
  std::array<AtomicHistogram, 3> stage_s;  // kStages order
  std::atomic<uint64_t> inferences{0};
  std::array<std::atomic<uint64_t>, kSeverityCount> decisions{};  // by Severity (NONE too)
  std::array<std::atomic<uint64_t>, kSeverityCount> alerts{};     // by Severity (never NONE)
  std::atomic<uint64_t> deadline_misses{0};
  std::atomic<uint64_t> fail_safe{0};
  std::atomic<uint64_t> invalid_events{0};
  std::atomic<double> anomaly_score{0};
  std::atomic<int64_t> backlog{0};
  std::atomic<double> last_decision_unix{0};
  std::atomic<bool> any_decision{false};
  std::atomic<bool> any_score{false};

 private:
  mutable std::mutex mu;  // rarely written (model changes), read by scrapes
  std::optional<ModelInfo> model;
};

void Exporter::AssetState::OnDecision(const Decision& d) {
  latency_ms.Observe(d.latency_ms);
  if (!d.fail_safe) {  // a fail-safe window never ran its stages: zeros would flatter them
    stage_s[0].Observe(d.features_ms * 1e-3);
    stage_s[1].Observe(d.inference_ms * 1e-3);
  }
  stage_s[2].Observe(d.latency_ms * 1e-3);
  inferences.fetch_add(1, kRelaxed);
  const auto sev = static_cast<size_t>(d.severity);
  if (sev < decisions.size()) {
    decisions[sev].fetch_add(1, kRelaxed);
    if (d.is_alert) alerts[sev].fetch_add(1, kRelaxed);
  }
  // An event the source could not produce (an undecodable image) was not late: it is counted on
  // its own.
  const bool invalid = d.fail_safe && d.fail_safe_reason == kFailSafeInvalidEvent;
  if ((d.fail_safe && !invalid) || d.latency_ms > latency_budget_ms) {
    deadline_misses.fetch_add(1, kRelaxed);
  }
  if (d.fail_safe) fail_safe.fetch_add(1, kRelaxed);
  if (invalid) invalid_events.fetch_add(1, kRelaxed);
  // A fail-safe decision has no score (NaN): the gauge keeps the latest real one.
  if (!d.fail_safe && !std::isnan(d.anomaly_score)) {
    anomaly_score.store(d.anomaly_score, kRelaxed);
    any_score.store(true, std::memory_order_release);
  }
  backlog.store(d.backlog_windows, kRelaxed);
  const auto ts =
      d.timestamp.time_since_epoch().count() != 0 ? d.timestamp : std::chrono::system_clock::now();
  last_decision_unix.store(UnixSeconds(ts), kRelaxed);
  any_decision.store(true, std::memory_order_release);
}

struct Exporter::State {
  mutable std::mutex assets_mu;                     // the list; each asset's figures are atomics
  std::vector<std::unique_ptr<AssetState>> assets;  // [0]: Labels::asset_id

  mutable std::mutex mu;  // system figures: rarely written, read by scrapes
  SystemSnapshot system;

  std::mutex collector_mu;  // SystemCollector keeps previous samples

  mutable std::mutex provider_mu;
  std::function<TelemetryFigures()> provider;
  std::function<OtaFigures()> ota_provider;  // guarded by provider_mu
  struct Component {
    int id;
    std::string health_key;
    std::function<ComponentFigures()> fn;
  };
  std::vector<Component> components;  // guarded by provider_mu
  int next_component_id = 1;
  // Per asset, in the order set (guarded by provider_mu).
  std::vector<std::pair<std::string, std::function<MonitorFigures()>>> monitor_providers;

  std::mutex health_mu;
  std::vector<uint64_t> health_prev_counts;
};

// The families of one scrape, with the labels every series carries.
class Exporter::Families {
 public:
  explicit Families(const Labels& l)
      : base_{{"device_id", l.device_id}, {"asset_id", l.asset_id}, {"factory_id", l.factory_id}} {
    out_.reserve(64);  // family() hands out references into out_ (fewer than 40 families)
  }
  // Labels of a device-wide series, or of one asset's, plus extras.
  std::vector<ClientMetric::Label> With(std::initializer_list<ClientMetric::Label> extra,
                                        const std::string* asset = nullptr) const {
    std::vector<ClientMetric::Label> l = base_;
    if (asset) l[1].value = *asset;
    l.insert(l.end(), extra.begin(), extra.end());
    return l;
  }
  MetricFamily& Family(const char* name, const char* help, MetricType type) {
    out_.push_back(MetricFamily{name, help, type, {}});
    return out_.back();
  }
  void Gauge(MetricFamily& f, double v, std::vector<ClientMetric::Label> labels) {
    ClientMetric m;
    m.label = std::move(labels);
    m.gauge.value = v;
    f.metric.push_back(std::move(m));
  }
  void Counter(MetricFamily& f, double v, std::vector<ClientMetric::Label> labels) {
    ClientMetric m;
    m.label = std::move(labels);
    m.counter.value = v;
    f.metric.push_back(std::move(m));
  }
  void Histogram(MetricFamily& f, ClientMetric::Histogram h,
                 std::vector<ClientMetric::Label> labels) {
    ClientMetric m;
    m.label = std::move(labels);
    m.histogram = std::move(h);
    f.metric.push_back(std::move(m));
  }
  // A device-wide series with the base labels.
  void Gauge1(const char* name, const char* help, double v) {
    Gauge(Family(name, help, MetricType::Gauge), v, base_);
  }
  void Counter1(const char* name, const char* help, double v) {
    Counter(Family(name, help, MetricType::Counter), v, base_);
  }
  // A family built elsewhere (components): added whole, no reference handed out.
  void Add(MetricFamily f) { out_.push_back(std::move(f)); }
  void Append(std::vector<MetricFamily> more) {
    for (auto& f : more) out_.push_back(std::move(f));
  }
  std::string Serialize() const { return prometheus::TextSerializer().Serialize(out_); }

 private:
  std::vector<ClientMetric::Label> base_;
  std::vector<MetricFamily> out_;
};

Exporter::Exporter(const Labels& labels, const Options& options)
    : labels_(labels), options_(options), state_(std::make_unique<State>()) {
  state_->assets.push_back(
      std::make_unique<AssetState>(labels.asset_id, options.latency_budget_ms));
}

Result<std::unique_ptr<Exporter>> Exporter::Create(const Labels& labels, const Options& options) {
  if (labels.device_id.empty()) return Fail(Error::Invalid("metrics: device_id must not be empty"));
  if (!(options.system_interval_s > 0)) {
    return Fail(Error::Invalid("metrics: system_interval_s must be > 0 (got " +
                               std::to_string(options.system_interval_s) + ")"));
  }
  if (!(options.latency_budget_ms > 0)) {
    return Fail(Error::Invalid("metrics: latency_budget_ms must be > 0 (got " +
                               std::to_string(options.latency_budget_ms) + ")"));
  }
  if (options.port != kAnyPortForTest && (options.port < 0 || options.port > 65535)) {
    return Fail(Error::Invalid("metrics: port must be 0..65535 (got " +
                               std::to_string(options.port) + ")"));
  }
  if (options.http_threads < 1) {
    return Fail(Error::Invalid("metrics: http_threads must be >= 1"));
  }

  std::unique_ptr<Exporter> e(new Exporter(labels, options));
  TEND_ASSIGN_OR_RETURN(e->collector_, SystemCollector::Create(options.sys));
  e->RefreshSystemNow();

  if (options.port != 0) {
    e->server_ = std::make_unique<httplib::Server>();
    e->server_->set_socket_options([](int fd) { net::ExclusiveListenOptions(fd); });
    const int threads = options.http_threads;
    e->server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    Exporter* self = e.get();
    e->server_->Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
      res.set_content(self->ScrapeText(), "text/plain; version=0.0.4; charset=utf-8");
    });
    e->server_->Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("tend metrics exporter: see /metrics\n", "text/plain");
    });
    const std::string where = options.bind + ":" + std::to_string(options.port);
    if (options.port == kAnyPortForTest) {
      e->port_ = e->server_->bind_to_any_port(options.bind);
      if (e->port_ <= 0) {
        return Fail(Error::Io("metrics: cannot listen on " + options.bind +
                              " (any port): " + ProbeBindError(options.bind, 0)));
      }
    } else {
      if (!e->server_->bind_to_port(options.bind, options.port)) {
        return Fail(Error::Io("metrics: cannot listen on " + where + ": " +
                              ProbeBindError(options.bind, options.port)));
      }
      e->port_ = options.port;
    }
    e->http_thread_ = std::thread([self] { self->server_->listen_after_bind(); });
    // stop() is a no-op until the accept loop runs; wait for it so that the destructor can always
    // stop the server.
    for (int i = 0; i < 5000 && !e->server_->is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!e->server_->is_running()) {
      e->http_thread_.join();  // listen_after_bind() returned: the socket is unusable
      return Fail(Error::Io("metrics: HTTP server on " + where + " did not start"));
    }
    TEND_LOG_INFO("metrics: serving http://{}:{}/metrics", options.bind, e->port_);
  }
  e->system_thread_ = std::thread([self = e.get()] { self->SystemLoop(); });
  return e;
}

Exporter::~Exporter() {
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (system_thread_.joinable()) system_thread_.join();
  if (server_) server_->stop();
  if (http_thread_.joinable()) http_thread_.join();
}

void Exporter::SystemLoop() {
  // CPU % needs a second sample; take it after a second rather than a whole period.
  double wait_s = std::min(1.0, options_.system_interval_s);
  std::unique_lock<std::mutex> lock(stop_mutex_);
  while (!stopping_) {
    if (stop_cv_.wait_for(lock, std::chrono::duration<double>(wait_s),
                          [this] { return stopping_; })) {
      break;
    }
    lock.unlock();
    RefreshSystemNow();
    lock.lock();
    wait_s = options_.system_interval_s;
  }
}

void Exporter::RefreshSystemNow() {
  SystemSnapshot snap;
  {
    std::lock_guard<std::mutex> lock(state_->collector_mu);
    snap = collector_->Collect();
  }
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->system = std::move(snap);
}

SystemSnapshot Exporter::LatestSystem() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->system;
}

std::vector<Exporter::AssetState*> Exporter::Assets() const {
  std::lock_guard<std::mutex> lock(state_->assets_mu);
  std::vector<AssetState*> v;
  for (const auto& a : state_->assets) v.push_back(a.get());
  return v;
}

DecisionSink* Exporter::ForAsset(const std::string& asset_id, double latency_budget_ms) {
  std::lock_guard<std::mutex> lock(state_->assets_mu);
  for (const auto& a : state_->assets) {
    if (a->id == asset_id) return a.get();
  }
  const double budget = latency_budget_ms > 0 ? latency_budget_ms : options_.latency_budget_ms;
  state_->assets.push_back(std::make_unique<AssetState>(asset_id, budget));
  return state_->assets.back().get();
}

void Exporter::OnDecision(const Decision& d) { state_->assets[0]->OnDecision(d); }

void Exporter::OnModelInfo(const ModelInfo& info) { state_->assets[0]->OnModelInfo(info); }

void Exporter::SetTelemetryStatsProvider(std::function<TelemetryFigures()> fn) {
  std::lock_guard<std::mutex> lock(state_->provider_mu);
  state_->provider = std::move(fn);
}

void Exporter::SetOtaStatusProvider(std::function<OtaFigures()> fn) {
  std::lock_guard<std::mutex> lock(state_->provider_mu);
  state_->ota_provider = std::move(fn);
}

int Exporter::AddComponentProvider(std::string health_key, std::function<ComponentFigures()> fn) {
  std::lock_guard<std::mutex> lock(state_->provider_mu);
  const int id = state_->next_component_id++;
  state_->components.push_back({id, std::move(health_key), std::move(fn)});
  return id;
}

void Exporter::RemoveComponentProvider(int id) {
  std::lock_guard<std::mutex> lock(state_->provider_mu);
  auto& c = state_->components;
  c.erase(std::remove_if(c.begin(), c.end(), [id](const auto& e) { return e.id == id; }), c.end());
}

void Exporter::SetMonitorProvider(const std::string& asset_id, std::function<MonitorFigures()> fn) {
  std::lock_guard<std::mutex> lock(state_->provider_mu);
  auto& v = state_->monitor_providers;
  auto it = std::find_if(v.begin(), v.end(), [&](const auto& p) { return p.first == asset_id; });
  if (it != v.end() && fn) {
    it->second = std::move(fn);
  } else if (it != v.end()) {
    v.erase(it);
  } else if (fn) {
    v.emplace_back(asset_id, std::move(fn));
  }
}

std::vector<std::pair<std::string, MonitorFigures>> Exporter::PollMonitors() const {
  std::lock_guard<std::mutex> lock(state_->provider_mu);
  std::vector<std::pair<std::string, MonitorFigures>> out;
  for (const auto& [asset, fn] : state_->monitor_providers) out.emplace_back(asset, fn());
  return out;
}

std::string Exporter::ScrapeText() const {
  Families out(labels_);
  AppendDecisionFamilies(out);
  AppendModelFamilies(out);
  AppendSystemFamilies(out);
  AppendTelemetryFamilies(out);
  AppendOtaFamilies(out);
  if (auto mon = PollMonitors(); !mon.empty()) {
    std::vector<LabelledMonitorFigures> all;
    for (auto& [asset, f] : mon) {
      all.push_back({{{"device_id", labels_.device_id},
                      {"asset_id", asset},
                      {"factory_id", labels_.factory_id}},
                     std::move(f)});
    }
    out.Append(AppendMonitorFamilies(all));
  }
  out.Gauge(out.Family("edge_build_info", "tend version (always 1).", MetricType::Gauge), 1,
            out.With({{"version", TEND_VERSION}}));
  AppendComponentFamilies(out);
  return out.Serialize();
}

void Exporter::AppendComponentFamilies(Families& out) const {
  std::vector<ComponentFigures> figures;
  {
    std::lock_guard<std::mutex> lock(state_->provider_mu);
    for (const auto& c : state_->components) figures.push_back(c.fn());
  }
  for (auto& f : figures) {
    for (auto& fam : f.families) {
      MetricFamily mf{
          fam.name, fam.help, fam.counter ? MetricType::Counter : MetricType::Gauge, {}};
      for (const auto& s : fam.series) {
        ClientMetric m;
        m.label = out.With({}, s.asset_id.empty() ? nullptr : &s.asset_id);
        (fam.counter ? m.counter.value : m.gauge.value) = s.value;
        mf.metric.push_back(std::move(m));
      }
      out.Add(std::move(mf));
    }
  }
}

void Exporter::AppendDecisionFamilies(Families& out) const {
  const auto assets = Assets();
  auto& lat = out.Family("edge_inference_latency_ms",
                         "Per-window decision latency in milliseconds (window complete to decision "
                         "out: features + inference + decide), the figure the deadline applies to.",
                         MetricType::Histogram);
  for (const auto* a : assets) out.Histogram(lat, a->latency_ms.Collect(), out.With({}, &a->id));
  auto& stage =
      out.Family("edge_stage_latency_seconds",
                 "Per-window latency by pipeline stage (features, inference, end_to_end).",
                 MetricType::Histogram);
  for (const auto* a : assets) {
    for (size_t i = 0; i < kStages.size(); ++i) {
      out.Histogram(stage, a->stage_s[i].Collect(), out.With({{"stage", kStages[i]}}, &a->id));
    }
  }
  auto per_asset_counter = [&](const char* name, const char* help, auto value) {
    auto& f = out.Family(name, help, MetricType::Counter);
    for (const auto* a : assets) out.Counter(f, value(*a), out.With({}, &a->id));
  };
  per_asset_counter("edge_inference_total", "Decisions made (one per window).",
                    [](const AssetState& a) { return double(a.inferences.load(kRelaxed)); });
  auto& dec = out.Family("edge_decisions_total", "Decisions by severity tier of the score.",
                         MetricType::Counter);
  auto& alerts = out.Family("edge_anomaly_alerts_total",
                            "Alerts raised (after debounce), by severity.", MetricType::Counter);
  for (const auto* a : assets) {
    for (Severity sev : {Severity::kNone, Severity::kLow, Severity::kMedium, Severity::kHigh}) {
      const auto i = static_cast<size_t>(sev);
      out.Counter(dec, double(a->decisions[i].load(kRelaxed)),
                  out.With({{"severity", SeverityName(sev)}}, &a->id));
      if (sev == Severity::kNone) continue;  // an alert always has an alert tier
      out.Counter(alerts, double(a->alerts[i].load(kRelaxed)),
                  out.With({{"severity", SeverityName(sev)}}, &a->id));
    }
  }
  per_asset_counter(
      "edge_deadline_misses_total",
      "Windows whose decision came after the deadline (fail-safe or latency over budget).",
      [](const AssetState& a) { return double(a.deadline_misses.load(kRelaxed)); });
  per_asset_counter("edge_fail_safe_decisions_total",
                    "Windows answered with the configured fail-safe decision (deadline, scoring "
                    "error, invalid event).",
                    [](const AssetState& a) { return double(a.fail_safe.load(kRelaxed)); });
  per_asset_counter(
      "edge_invalid_events_total",
      "Events the source could not produce (e.g. an undecodable image), decided fail-safe.",
      [](const AssetState& a) { return double(a.invalid_events.load(kRelaxed)); });
  auto per_asset_gauge = [&](const char* name, const char* help, auto has, auto value) {
    MetricFamily* f = nullptr;
    for (const auto* a : assets) {
      if (!has(*a)) continue;
      if (!f) f = &out.Family(name, help, MetricType::Gauge);
      out.Gauge(*f, value(*a), out.With({}, &a->id));
    }
  };
  auto scored = [](const AssetState& a) { return a.any_score.load(std::memory_order_acquire); };
  auto decided = [](const AssetState& a) { return a.any_decision.load(std::memory_order_acquire); };
  per_asset_gauge("edge_anomaly_score", "Anomaly score of the latest scored window.", scored,
                  [](const AssetState& a) { return a.anomaly_score.load(kRelaxed); });
  per_asset_gauge("edge_backlog_windows", "Windows waiting behind the latest decision.", decided,
                  [](const AssetState& a) { return double(a.backlog.load(kRelaxed)); });
  per_asset_gauge("edge_last_decision_timestamp_seconds", "Unix time of the latest decision.",
                  decided, [](const AssetState& a) { return a.last_decision_unix.load(kRelaxed); });
  per_asset_gauge(
      "edge_latency_budget_seconds", "Per-window deadline this device runs under.",
      [](const AssetState&) { return true; },
      [](const AssetState& a) { return a.latency_budget_ms * 1e-3; });
}

void Exporter::AppendModelFamilies(Families& out) const {
  std::vector<std::pair<const AssetState*, ModelInfo>> models;
  for (const auto* a : Assets()) {
    if (auto m = a->Model()) models.emplace_back(a, *m);
  }
  if (models.empty()) return;
  auto& version =
      out.Family("edge_model_version",
                 "Model in service: numeric major version; version_string carries the full one.",
                 MetricType::Gauge);
  for (const auto& [a, m] : models) {
    out.Gauge(version, ModelMajorVersion(m.version),
              out.With({{"version_string", m.version}}, &a->id));
  }
  auto& info = out.Family("edge_model_info", "Model in service (always 1).", MetricType::Gauge);
  for (const auto& [a, m] : models) {
    out.Gauge(
        info, 1,
        out.With({{"model_name", m.name}, {"version_string", m.version}, {"provider", m.provider}},
                 &a->id));
  }
  MetricFamily* age = nullptr;
  MetricFamily* loaded = nullptr;
  const double now = UnixSeconds(std::chrono::system_clock::now());
  for (const auto& [a, m] : models) {
    const int64_t born = m.created_unix > 0 ? m.created_unix : m.loaded_unix;
    if (born <= 0) continue;
    if (!age) {
      age = &out.Family("edge_model_age_seconds",
                        "Age of the model in service: since its creation date, or since it was "
                        "loaded when the model carries none.",
                        MetricType::Gauge);
    }
    out.Gauge(*age, std::max(0.0, now - double(born)), out.With({}, &a->id));
  }
  for (const auto& [a, m] : models) {
    if (m.loaded_unix <= 0) continue;
    if (!loaded) {
      loaded = &out.Family("edge_model_loaded_timestamp_seconds",
                           "Unix time the model in service was loaded.", MetricType::Gauge);
    }
    out.Gauge(*loaded, double(m.loaded_unix), out.With({}, &a->id));
  }
}

void Exporter::AppendSystemFamilies(Families& out) const {
  const SystemSnapshot sys = LatestSystem();
  if (sys.cpu_pct)
    out.Gauge1("edge_cpu_usage_percent", "CPU busy, all cores, percent.", *sys.cpu_pct);
  if (sys.mem_pct) {
    out.Gauge1("edge_memory_usage_percent", "Memory in use (total - available), percent.",
               *sys.mem_pct);
  }
  if (sys.gpu_pct) {
    out.Gauge1("edge_gpu_usage_percent", "GPU load, busiest GPU, percent.", *sys.gpu_pct);
  }
  if (sys.temp_c) {
    out.Gauge1("edge_device_temperature_c", "Hottest CPU/GPU/SoC sensor, degrees Celsius.",
               *sys.temp_c);
  }
  if (!sys.temperatures.empty()) {
    auto& f =
        out.Family("edge_sensor_temperature_celsius",
                   "Every temperature sensor that answered, degrees Celsius.", MetricType::Gauge);
    for (const auto& t : sys.temperatures)
      out.Gauge(f, t.celsius, out.With({{"sensor", t.sensor}}));
  }
  if (sys.cpu_freq_mhz) {
    out.Gauge1("edge_cpu_frequency_hertz", "Mean current CPU frequency.", *sys.cpu_freq_mhz * 1e6);
  }
  if (sys.cpu_max_freq_mhz) {
    out.Gauge1("edge_cpu_max_frequency_hertz", "Highest CPU frequency the hardware allows.",
               *sys.cpu_max_freq_mhz * 1e6);
  }
  if (sys.throttled) {
    out.Gauge1("edge_thermal_throttled", "1 while a CPU/GPU throttling indicator is active.",
               *sys.throttled ? 1 : 0);
  }
  if (sys.throttle_events) {
    out.Counter1("edge_thermal_throttle_events_total",
                 "CPU thermal throttling events counted by the kernel (core + package).",
                 double(*sys.throttle_events));
  }
  if (sys.process_rss_bytes > 0) {
    out.Gauge1("process_resident_memory_bytes", "Resident memory of the tend process.",
               sys.process_rss_bytes);
  }
}

void Exporter::AppendTelemetryFamilies(Families& out) const {
  std::optional<TelemetryFigures> tel;
  {
    std::lock_guard<std::mutex> lock(state_->provider_mu);
    if (state_->provider) tel = state_->provider();
  }
  if (!tel) return;
  if (tel->spool_depth) {
    out.Gauge1("edge_spool_messages", "Messages waiting in the durable spool.",
               double(*tel->spool_depth));
  }
  if (tel->spool_bytes) {
    out.Gauge1("edge_spool_bytes", "Size of the durable spool.", double(*tel->spool_bytes));
  }
  if (tel->spool_dropped_total) {
    out.Counter1("edge_spool_dropped_total", "Messages dropped because the spool was full.",
                 double(*tel->spool_dropped_total));
  }
  if (tel->mqtt_connected) {
    out.Gauge1("edge_mqtt_connected", "1 while connected to the MQTT broker.",
               *tel->mqtt_connected ? 1 : 0);
  }
  if (tel->mqtt_reconnects_total) {
    out.Counter1("edge_mqtt_reconnects_total", "Reconnections to the MQTT broker.",
                 double(*tel->mqtt_reconnects_total));
  }
  if (tel->mqtt_refused_total) {
    out.Counter1("edge_mqtt_refused_total",
                 "QoS 1 messages the broker refused (MQTT 5 reason code >= 0x80, e.g. ACL).",
                 double(*tel->mqtt_refused_total));
  }
  if (tel->spool_in_memory) {
    out.Gauge1("edge_spool_in_memory",
               "1 while the spool file is unusable and telemetry is held in memory only.",
               *tel->spool_in_memory ? 1 : 0);
  }
  if (tel->spool_disk_full) {
    out.Gauge1("edge_spool_disk_full", "1 when the last spool commit found the disk full.",
               *tel->spool_disk_full ? 1 : 0);
  }
  if (tel->spool_held_alerts) {
    out.Gauge1("edge_spool_held_alerts", "Alerts the full disk refused, held in memory.",
               double(*tel->spool_held_alerts));
  }
}

void Exporter::AppendOtaFamilies(Families& out) const {
  std::optional<OtaFigures> ota;
  {
    std::lock_guard<std::mutex> lock(state_->provider_mu);
    if (state_->ota_provider) ota = state_->ota_provider();
  }
  if (!ota) return;
  auto& f = out.Family("edge_ota_updates_total",
                       "Over-the-air update outcomes since start: installed, refused (load check "
                       "or reference-set gate), rolled_back (after a commit: failed hand-over, "
                       "misbehaviour in probation, operator), failed (registry, network or trust "
                       "error).",
                       MetricType::Counter);
  out.Counter(f, double(ota->installed_total), out.With({{"result", "installed"}}));
  out.Counter(f, double(ota->refused_total), out.With({{"result", "refused"}}));
  out.Counter(f, double(ota->rolled_back_total), out.With({{"result", "rolled_back"}}));
  out.Counter(f, double(ota->failed_total), out.With({{"result", "failed"}}));
  if (ota->last_check_unix) {
    out.Gauge1("edge_ota_last_check_timestamp_seconds", "Unix time of the latest registry check.",
               *ota->last_check_unix);
  }
  out.Gauge1("edge_ota_probation",
             "1 while a newly installed model runs on probation (misbehaviour rolls it back).",
             ota->in_probation ? 1 : 0);
  if (ota->model_installed_unix) {
    out.Gauge1("edge_ota_model_installed_timestamp_seconds",
               "Unix time the model in service was installed over the air.",
               *ota->model_installed_unix);
  }
  out.Gauge1("edge_ota_max_model_age_seconds",
             "Staleness limit: a device that received no model for this long is stale.",
             ota->max_model_age_s);
  out.Gauge1("edge_model_stale",
             "1 when the device has received no model for longer than its staleness limit.",
             ota->stale ? 1 : 0);
}

nlohmann::json Exporter::HealthFigures() {
  State& s = *state_;
  const auto assets = Assets();
  nlohmann::json j = HealthFields(LatestSystem());
  uint64_t inferences = 0, alerts = 0, misses = 0;
  for (const auto* a : assets) {
    inferences += a->inferences.load(kRelaxed);
    for (const auto& n : a->alerts) alerts += n.load(kRelaxed);
    misses += a->deadline_misses.load(kRelaxed);
  }
  j["inferences_total"] = inferences;
  j["alerts_total"] = alerts;
  j["deadline_misses_total"] = misses;
  j["latency_budget_ms"] = options_.latency_budget_ms;
  {
    // Latency quantiles of the decisions since the previous call, all assets together.
    std::lock_guard<std::mutex> lock(s.health_mu);
    std::vector<uint64_t> counts(LatencyBucketsMs().size() + 1, 0), one;
    for (const auto* a : assets) {
      double sum = 0;
      a->latency_ms.Read(&one, &sum);
      for (size_t i = 0; i < counts.size(); ++i) counts[i] += one[i];
    }
    std::vector<uint64_t> delta(counts.size());
    for (size_t i = 0; i < counts.size(); ++i) {
      const uint64_t prev = i < s.health_prev_counts.size() ? s.health_prev_counts[i] : 0;
      delta[i] = counts[i] - prev;
    }
    s.health_prev_counts = std::move(counts);
    auto round3 = [](double v) { return std::round(v * 1000.0) / 1000.0; };
    auto q = [&](double quantile) -> nlohmann::json {
      auto v = BucketQuantile(quantile, LatencyBucketsMs(), delta);
      return v ? nlohmann::json(round3(*v)) : nlohmann::json(nullptr);
    };
    j["latency_p95_ms"] = q(0.95);
    j["latency_p99_ms"] = q(0.99);
  }
  if (auto m = assets[0]->Model()) {
    j["model_version"] = m->version;
    j["model_provider"] = m->provider;
    const int64_t born = m->created_unix > 0 ? m->created_unix : m->loaded_unix;
    if (born > 0) {
      j["model_age_s"] = static_cast<int64_t>(UnixSeconds(std::chrono::system_clock::now())) - born;
    }
  }
  std::optional<TelemetryFigures> tel;
  {
    std::lock_guard<std::mutex> lock(s.provider_mu);
    if (s.provider) tel = s.provider();
  }
  if (tel) {
    if (tel->spool_depth) j["spool_depth"] = *tel->spool_depth;
    if (tel->spool_bytes) j["spool_bytes"] = *tel->spool_bytes;
    if (tel->spool_dropped_total) j["spool_dropped_total"] = *tel->spool_dropped_total;
    if (tel->mqtt_connected) j["mqtt_connected"] = *tel->mqtt_connected;
    if (tel->mqtt_reconnects_total) j["mqtt_reconnects_total"] = *tel->mqtt_reconnects_total;
    if (tel->mqtt_refused_total) j["mqtt_refused_total"] = *tel->mqtt_refused_total;
  }
  AddMonitorFields(PollMonitors(), labels_.asset_id, j);
  std::lock_guard<std::mutex> lock(s.provider_mu);
  for (const auto& c : s.components) {
    auto f = c.fn();
    if (!f.health.is_null()) j[c.health_key] = std::move(f.health);
  }
  return j;
}

}  // namespace tend::metrics
