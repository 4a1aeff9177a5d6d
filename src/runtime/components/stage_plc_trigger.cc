// Stage "plc_trigger": the PLC's part numbers on the events of an asset. io::PlcTrigger polls a
// "part present" coil/discrete input or a part/stroke counter on its own thread and link;
// io::PartMatcher gives each event the part whose detection time it covers (a camera frame: the
// part detected up to the tolerance before it; a sample window: a part detected inside the window
// or up to the tolerance before it). The event carries it as part_id to the decision, its JSON,
// the MQTT payload and the PLC reject sink. Events without a part (unmatched) and parts without an
// event (missed) are counted: metrics, health message, run summary, a log line at most every
// 10 s. Runs on the acquisition thread and never waits for the network (TryPop only). Off unless
// an asset has plc.trigger.
#include <algorithm>
#include <mutex>

#include "core/log.h"
#include "io/part_matcher.h"
#include "io/plc_trigger.h"
#include "metrics/exporter.h"
#include "runtime/registry.h"
#include "runtime/spec.h"

namespace tend::runtime {
namespace {

using Clock = std::chrono::steady_clock;

Result<io::TriggerOptions> TriggerOptionsFrom(const Settings& s) {
  io::TriggerOptions o;
  TEND_ASSIGN_OR_RETURN(o.trigger, io::ParseTriggerSpec(s.GetString("plc.trigger")));
  o.link.url = s.GetString("plc.trigger_url");
  if (o.link.url.empty()) o.link.url = s.GetString("plc.url");
  if (o.link.url.empty()) {
    return Fail(Error::Invalid("plc trigger '" + s.GetString("plc.trigger") +
                               "': no PLC to poll: give --plc or --plc-trigger-url"));
  }
  o.link.timeout_s = static_cast<double>(s.GetInt("plc.timeout_ms")) / 1000.0;
  o.link.reconnect_max_s = s.GetFloat("plc.reconnect_max_s");
  o.link.reconnect_min_s = std::min(o.link.reconnect_min_s, o.link.reconnect_max_s);
  o.poll_interval_s = static_cast<double>(s.GetInt("plc.trigger_poll_ms")) / 1000.0;
  o.part_register = static_cast<int>(s.GetInt("plc.part_register"));
  return o;
}

struct Figures {
  io::TriggerStats trigger;
  io::PartMatchStats match;
  int64_t parts_missed() const {
    return match.parts_missed + trigger.parts_missed + trigger.queue_dropped;
  }
  nlohmann::json ToJson() const {
    nlohmann::json j = {{"connected", trigger.connected},
                        {"parts", trigger.parts},
                        {"events", match.events},
                        {"matched", match.matched},
                        {"unmatched", match.unmatched},
                        {"parts_missed", parts_missed()},
                        {"parts_without_event", match.parts_missed},
                        {"parts_while_link_down", trigger.parts_missed},
                        {"parts_dropped", trigger.queue_dropped},
                        {"resyncs", trigger.resyncs},
                        {"exceptions", trigger.exceptions},
                        {"link_errors", trigger.link_errors},
                        {"connects", trigger.connects},
                        {"connect_failures", trigger.connect_failures}};
    if (!trigger.last_error.empty()) j["last_error"] = trigger.last_error;
    return j;
  }
};

// One asset's trigger and matcher. The matcher belongs to the acquisition thread; its figures
// are copied under mu_ for scrapes and the summary.
class AssetTrigger final : public EventStage {
 public:
  AssetTrigger(std::string asset_id, std::string url, double tolerance_s,
               std::unique_ptr<io::PlcTrigger> trigger)
      : asset_id_(std::move(asset_id)),
        url_(std::move(url)),
        tolerance_ms_(tolerance_s * 1000),
        trigger_(std::move(trigger)),
        matcher_(io::PartMatchOptions{tolerance_s, 1024}) {}

  void OnEvent(EventView& ev, Clock::duration span) override {
    TakeParts();
    ev.part_id = matcher_.Match(ev.arrival, span);
    if (ev.part_id < 0) ++unlogged_unmatched_;
    Publish();
    MaybeLog(ev.index);
  }
  void OnEnd() override {
    TakeParts();
    matcher_.Finish();
    Publish();
  }

  // The run is over: the link closes (outside the lock: a request in flight may take up to its
  // timeout), its last figures stay.
  void Stop() {
    std::unique_ptr<io::PlcTrigger> gone;
    {
      std::lock_guard lk(mu_);
      if (!trigger_) return;
      shown_.trigger = trigger_->stats();
      gone = std::move(trigger_);
    }
  }
  Figures figures() const {
    std::lock_guard lk(mu_);
    Figures f = shown_;
    if (trigger_) f.trigger = trigger_->stats();
    return f;
  }
  const std::string& asset_id() const { return asset_id_; }

 private:
  // Acquisition thread; trigger_ is only reset by Stop(), after every source has ended.
  void TakeParts() {
    if (!trigger_) return;
    io::PartEvent p;
    while (trigger_->TryPop(p)) matcher_.AddPart(p.part_number, p.detected);
  }
  void Publish() {
    std::lock_guard lk(mu_);
    shown_.match = matcher_.stats();
  }
  void MaybeLog(int64_t index) {
    const auto now = Clock::now();
    if (unlogged_unmatched_ == 0 || now - last_log_ < std::chrono::seconds(10)) return;
    last_log_ = now;
    TEND_LOG_WARN(
        "plc trigger ({}): {} event(s) without a part from {} within {:.0f} ms (event {}); "
        "they are decided without a part number",
        asset_id_, unlogged_unmatched_, url_, tolerance_ms_, index);
    unlogged_unmatched_ = 0;
  }

  const std::string asset_id_, url_;
  const double tolerance_ms_;
  std::unique_ptr<io::PlcTrigger> trigger_;
  io::PartMatcher matcher_;  // acquisition thread
  int64_t unlogged_unmatched_ = 0;
  Clock::time_point last_log_{};
  mutable std::mutex mu_;
  Figures shown_;
};

class PlcTriggerStage final : public Stage {
 public:
  explicit PlcTriggerStage(DeviceServices* services) : services_(services) {}
  ~PlcTriggerStage() override {
    if (provider_ > 0) services_->exporter->RemoveComponentProvider(provider_);
  }

  Result<EventStage*> ForAsset(const AssetContext& asset) override {
    const Settings& s = *asset.settings;
    if (s.GetString("plc.trigger").empty()) return static_cast<EventStage*>(nullptr);
    TEND_ASSIGN_OR_RETURN(auto o, TriggerOptionsFrom(s));
    TEND_ASSIGN_OR_RETURN(auto trigger, io::PlcTrigger::Start(o).map_error(
                                            [](Error e) { return e.Wrap("plc trigger"); }));
    const double tolerance_s = static_cast<double>(s.GetInt("plc.trigger_tolerance_ms")) / 1000;
    TEND_LOG_INFO("plc trigger: asset {} takes part numbers from {} {} (tolerance {} ms)",
                  asset.spec->id, o.link.url, s.GetString("plc.trigger"),
                  s.GetInt("plc.trigger_tolerance_ms"));
    assets_.push_back(std::make_unique<AssetTrigger>(asset.spec->id, o.link.url, tolerance_s,
                                                     std::move(trigger)));
    return static_cast<EventStage*>(assets_.back().get());
  }

  Status Start() override {
    if (services_->exporter && provider_ == 0) {
      provider_ =
          services_->exporter->AddComponentProvider("plc_trigger", [this] { return Metrics(); });
    }
    return Ok();
  }
  void Stop() override {
    for (auto& a : assets_) a->Stop();
  }
  void Report(nlohmann::json& summary) const override {
    nlohmann::json j;
    for (const auto& a : assets_) j[a->asset_id()] = a->figures().ToJson();
    summary["plc_trigger"] = std::move(j);
  }

 private:
  metrics::ComponentFigures Metrics() const {
    metrics::ComponentFamily parts{"edge_plc_trigger_parts_total",
                                   "Parts the PLC reported (part present edges, counter steps).",
                                   true,
                                   {}};
    metrics::ComponentFamily unmatched{
        "edge_plc_trigger_unmatched_total",
        "Events decided without a part number (no part from the PLC within the tolerance).",
        true,
        {}};
    metrics::ComponentFamily missed{
        "edge_plc_trigger_parts_missed_total",
        "Parts no event was matched to (no event within the tolerance, link down, queue full).",
        true,
        {}};
    metrics::ComponentFamily up{"edge_plc_trigger_link_up",
                                "1 while the Modbus TCP link to the trigger PLC is up.",
                                false,
                                {}};
    metrics::ComponentFigures f;
    for (const auto& a : assets_) {
      const Figures x = a->figures();
      parts.series.push_back({a->asset_id(), static_cast<double>(x.trigger.parts)});
      unmatched.series.push_back({a->asset_id(), static_cast<double>(x.match.unmatched)});
      missed.series.push_back({a->asset_id(), static_cast<double>(x.parts_missed())});
      up.series.push_back({a->asset_id(), x.trigger.connected ? 1.0 : 0.0});
      f.health[a->asset_id()] = x.ToJson();
    }
    f.families = {std::move(parts), std::move(unmatched), std::move(missed), std::move(up)};
    return f;
  }

  DeviceServices* services_;
  int provider_ = 0;
  std::vector<std::unique_ptr<AssetTrigger>> assets_;  // fixed once the assets are built
};

Result<std::unique_ptr<Stage>> CreatePlcTriggerStage(DeviceContext& ctx) {
  bool any = false;
  for (const auto& a : *ctx.assets) any = any || !a.settings.GetString("plc.trigger").empty();
  if (!any) return std::unique_ptr<Stage>();
  return std::unique_ptr<Stage>(std::make_unique<PlcTriggerStage>(ctx.services));
}

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(stage_plc_trigger) {
  using namespace tend;
  using D = SettingDef;
  runtime::StageDescriptor d;
  d.name = "plc_trigger";
  d.description =
      "Part numbers from a PLC (Modbus TCP) on the events they belong to; off unless plc.trigger";
  d.keys = {
      D::String("plc.trigger", "",
                "Part trigger: coil:ADDR or discrete:ADDR (rising edge), counter:ADDR (holding "
                "register) or ir:ADDR (\"\": none)")
          .Flag("--plc-trigger")
          .PerAsset("plc_trigger"),
      D::String("plc.trigger_url", "",
                "The trigger's PLC when it is not the reject PLC: modbus://HOST[:PORT][?unit=N]")
          .Flag("--plc-trigger-url")
          .PerAsset("plc_trigger_url"),
      D::Int("plc.trigger_poll_ms", 5, 1, 10000, "How often the trigger is read")
          .Flag("--plc-trigger-poll-ms")
          .PerAsset("plc_trigger_poll_ms"),
      D::Int("plc.trigger_tolerance_ms", 100, 0, 60000,
             "How long before an event (or its window) a part may be detected and still match")
          .Flag("--plc-trigger-tolerance-ms")
          .PerAsset("plc_trigger_tolerance_ms"),
      D::Int("plc.part_register", -1, 0, 65535,
             "Edge trigger: holding register with the PLC's part number, read at each edge "
             "(-1 = tend numbers the parts 1, 2, ...)")
          .Special({-1})
          .Flag("--plc-part-register")
          .PerAsset("plc_part_register"),
  };
  d.create = runtime::CreatePlcTriggerStage;
  return registry.AddStage(std::move(d));
}
