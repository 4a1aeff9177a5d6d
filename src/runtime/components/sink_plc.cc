// Sink "plc": rejects reach the PLC over Modbus TCP (io::PlcRejectSink). Each asset with a plc
// URL gets its own link: on each alert (fail-safe decisions included) a coil is pulsed and a
// holding-register counter incremented; optionally the last score and severity are written. A
// lost link never blocks decisions: misses are counted (edge_plc_rejects_missed_total, the health
// message's "plc" figures) and the optional line-unsafe coil is set on reconnect. Off unless some
// asset has plc.url.
#include <algorithm>
#include <cmath>

#include "core/log.h"
#include "io/plc_sink.h"
#include "metrics/exporter.h"
#include "runtime/registry.h"
#include "runtime/spec.h"

namespace tend::runtime {
namespace {

io::PlcSinkOptions PlcOptionsFrom(const Settings& s, const std::string& asset_id) {
  io::PlcSinkOptions o;
  o.link.url = s.GetString("plc.url");
  o.link.timeout_s = static_cast<double>(s.GetInt("plc.timeout_ms")) / 1000.0;
  o.link.reconnect_max_s = s.GetFloat("plc.reconnect_max_s");
  o.link.reconnect_min_s = std::min(o.link.reconnect_min_s, o.link.reconnect_max_s);
  o.asset_id = asset_id;
  o.reject_coil = static_cast<int>(s.GetInt("plc.reject_coil"));
  o.pulse_s = static_cast<double>(s.GetInt("plc.pulse_ms")) / 1000.0;
  o.reject_counter = static_cast<int>(s.GetInt("plc.reject_counter"));
  o.score_register = static_cast<int>(s.GetInt("plc.score_register"));
  o.severity_register = static_cast<int>(s.GetInt("plc.severity_register"));
  o.line_unsafe_coil = static_cast<int>(s.GetInt("plc.line_unsafe_coil"));
  o.reject_part_register = static_cast<int>(s.GetInt("plc.reject_part_register"));
  o.queue_capacity = static_cast<int>(s.GetInt("plc.queue"));
  return o;
}

class PlcSink final : public Sink {
 public:
  explicit PlcSink(metrics::Exporter* exporter) : exporter_(exporter) {}
  ~PlcSink() override {
    if (provider_ > 0) exporter_->RemoveComponentProvider(provider_);
    Stop();
  }

  Result<DecisionSink*> ForAsset(const AssetContext& asset) override {
    const Settings& s = *asset.settings;
    if (s.GetString("plc.url").empty()) return static_cast<DecisionSink*>(nullptr);
    io::PlcSinkOptions o = PlcOptionsFrom(s, asset.spec->id);
    if (o.reject_coil < 0 && o.reject_counter < 0 && o.score_register < 0 &&
        o.severity_register < 0) {
      return Fail(Error::Invalid(
          "plc: " + o.link.url +
          " is set but nothing to write: give --plc-reject-coil and/or --plc-reject-counter "
          "(plc.reject_coil, plc.reject_counter)"));
    }
    TEND_ASSIGN_OR_RETURN(
        auto sink, io::PlcRejectSink::Create(o).map_error([](Error e) { return e.Wrap("plc"); }));
    TEND_LOG_INFO("plc: asset {} rejects to {} (coil {}, counter {})", o.asset_id, o.link.url,
                  o.reject_coil, o.reject_counter);
    std::lock_guard<std::mutex> lock(mu_);
    links_.push_back({o.asset_id, std::move(sink), {}});
    return static_cast<DecisionSink*>(links_.back().sink.get());
  }

  Status Start() override {
    if (exporter_ && provider_ == 0) {
      provider_ = exporter_->AddComponentProvider("plc", [this] { return Figures(); });
    }
    return Ok();
  }

  // Every decision received is written or counted as missed (bounded: a dead link times out).
  void Stop() override {
    // links_ itself only changes before Start(); mu_ guards each link's sink against Figures().
    for (auto& l : links_) {
      if (!l.sink) continue;
      auto st = l.sink->Drain(std::chrono::seconds(3));
      if (!st) TEND_LOG_WARN("plc ({}): {}", l.asset_id, st.error().message);
      std::unique_ptr<io::PlcRejectSink> gone;
      {
        std::lock_guard<std::mutex> lock(mu_);
        l.final_stats = l.sink->stats();
        l.coil_latency = LatencySummary(l.sink->RecentRejectLatenciesMs());
        gone = std::move(l.sink);
      }
      gone.reset();  // finishes a pulse in flight, then disconnects (scrapes do not wait)
    }
  }

  void Report(nlohmann::json& summary) const override {
    std::lock_guard<std::mutex> lock(mu_);
    nlohmann::json j;
    for (const auto& l : links_) {
      j[l.asset_id] = io::ToJson(Stats(l));
      if (!l.coil_latency.is_null()) j[l.asset_id]["coil_latency_ms"] = l.coil_latency;
    }
    summary["plc"] = std::move(j);
  }

 private:
  struct Link {
    std::string asset_id;
    std::unique_ptr<io::PlcRejectSink> sink;
    io::PlcSinkStats final_stats;
    nlohmann::json coil_latency;  // decision handed over -> coil write acknowledged, after Stop
  };
  // {"n", "p50", "p99", "max"} of the most recent rejects (ms); null when none was written.
  static nlohmann::json LatencySummary(std::vector<double> ms) {
    if (ms.empty()) return nullptr;
    std::sort(ms.begin(), ms.end());
    auto q = [&](double p) {
      const size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(ms.size()))) - 1;
      return std::round(ms[std::min(i, ms.size() - 1)] * 1000) / 1000;
    };
    return {{"n", ms.size()}, {"p50", q(0.50)}, {"p99", q(0.99)}, {"max", q(1.0)}};
  }
  static io::PlcSinkStats Stats(const Link& l) { return l.sink ? l.sink->stats() : l.final_stats; }

  metrics::ComponentFigures Figures() const {
    std::lock_guard<std::mutex> lock(mu_);
    metrics::ComponentFamily rejects{
        "edge_plc_rejects_total",
        "Rejects written to the PLC (coil pulsed, counter incremented).",
        true,
        {}};
    metrics::ComponentFamily missed{"edge_plc_rejects_missed_total",
                                    "Rejects that could not be written to the PLC (link down, "
                                    "Modbus exception, queue full).",
                                    true,
                                    {}};
    metrics::ComponentFamily up{
        "edge_plc_link_up", "1 while the Modbus TCP link to the PLC is up.", false, {}};
    metrics::ComponentFamily errors{
        "edge_plc_errors_total",
        "Modbus exception responses and link errors (timeouts, resets).",
        true,
        {}};
    metrics::ComponentFigures f;
    for (const auto& l : links_) {
      const auto s = Stats(l);
      rejects.series.push_back({l.asset_id, static_cast<double>(s.rejects_written)});
      missed.series.push_back(
          {l.asset_id, static_cast<double>(s.rejects_missed + s.queue_dropped)});
      up.series.push_back({l.asset_id, s.connected ? 1.0 : 0.0});
      errors.series.push_back({l.asset_id, static_cast<double>(s.exceptions + s.link_errors)});
      f.health[l.asset_id] = io::ToJson(s);
    }
    f.families = {std::move(rejects), std::move(missed), std::move(up), std::move(errors)};
    return f;
  }

  metrics::Exporter* exporter_;
  int provider_ = 0;
  mutable std::mutex mu_;
  std::vector<Link> links_;
};

Result<std::unique_ptr<Sink>> CreatePlcSink(DeviceContext& ctx) {
  bool any = false;
  for (const auto& a : *ctx.assets) any = any || !a.settings.GetString("plc.url").empty();
  if (!any) return std::unique_ptr<Sink>();
  return std::unique_ptr<Sink>(std::make_unique<PlcSink>(ctx.services->exporter));
}

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(sink_plc) {
  using namespace tend;
  using D = SettingDef;
  runtime::SinkDescriptor d;
  d.name = "plc";
  d.description =
      "Rejects to a PLC over Modbus TCP: coil pulse and reject counter; off unless plc.url";
  d.keys = {
      D::String("plc.url", "", "PLC: modbus://HOST[:PORT][?unit=N] (\"\": no PLC)")
          .Flag("--plc")
          .PerAsset("plc"),
      D::Int("plc.reject_coil", -1, 0, 65535, "Coil pulsed on each reject (-1 = none)")
          .Special({-1})
          .Flag("--plc-reject-coil")
          .PerAsset("plc_reject_coil"),
      D::Int("plc.pulse_ms", 200, 1, 60000, "Reject pulse width in milliseconds")
          .Flag("--plc-pulse-ms")
          .PerAsset("plc_pulse_ms"),
      D::Int("plc.reject_counter", -1, 0, 65535,
             "Holding register counting rejects, wrapping at 65,536 (-1 = none)")
          .Special({-1})
          .Flag("--plc-reject-counter")
          .PerAsset("plc_reject_counter"),
      D::Int("plc.score_register", -1, 0, 65534,
             "Holding registers (2, float32 big-endian) for the last score (-1 = none)")
          .Special({-1})
          .Flag("--plc-score-register")
          .PerAsset("plc_score_register"),
      D::Int("plc.severity_register", -1, 0, 65535,
             "Holding register for the last severity: 0 none, 1 LOW, 2 MEDIUM, 3 HIGH (-1 = none)")
          .Special({-1})
          .Flag("--plc-severity-register")
          .PerAsset("plc_severity_register"),
      D::Int("plc.line_unsafe_coil", -1, 0, 65535,
             "Fail-safe: coil set on reconnect when rejects were missed while the link was down; "
             "the PLC stops the line until an operator clears it (-1 = none)")
          .Special({-1})
          .Flag("--plc-line-unsafe-coil")
          .PerAsset("plc_line_unsafe_coil"),
      D::Int("plc.reject_part_register", -1, 0, 65534,
             "Holding registers (2, int32 big-endian) for each reject's part number from the "
             "part trigger, written before its coil and counter (-1 = none)")
          .Special({-1})
          .Flag("--plc-reject-part-register")
          .PerAsset("plc_reject_part_register"),
      D::Int("plc.timeout_ms", 500, 10, 60000, "Connect and response timeout of one request")
          .Flag("--plc-timeout-ms")
          .PerAsset("plc_timeout_ms"),
      D::Float("plc.reconnect_max_s", 5, 0.1, 3600, "Longest wait between reconnect attempts")
          .Flag("--plc-reconnect-max-s")
          .PerAsset("plc_reconnect_max_s"),
      D::Int("plc.queue", 1024, 1, 1 << 20,
             "Decisions waiting for the PLC worker; beyond it they are dropped and counted")
          .Flag("--plc-queue")
          .PerAsset("plc_queue"),
  };
  d.create = runtime::CreatePlcSink;
  return registry.AddSink(std::move(d));
}
