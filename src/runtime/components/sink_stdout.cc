// Sink "stdout": a line per decision on standard output, as text or JSON (--json), written and
// flushed by its own thread as each decision is made (a consumer on a pipe sees every line at
// once, and a slow consumer never blocks a pipeline). --quiet turns it off.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>

#include "agent/decision_log.h"
#include "decide/drift.h"
#include "runtime/decision_queue.h"
#include "runtime/registry.h"
#include "runtime/spec.h"

namespace tend::runtime {
namespace {

class StdoutSink final : public Sink, public DecisionSink {
 public:
  StdoutSink(bool json, bool multi_asset)
      : json_(json),
        multi_asset_(multi_asset),
        queue_("stdout", 4096, [this](const Decision& d, int) { Write(d); }) {}

  Result<DecisionSink*> ForAsset(const AssetContext& asset) override {
    lossless_ = lossless_ || asset.lossless;
    return static_cast<DecisionSink*>(this);
  }
  Status Start() override {
    queue_.Start();
    return Ok();
  }
  void Stop() override { queue_.Stop(); }
  void OnDecision(const Decision& d) override { queue_.Push(d, 0, lossless_); }
  void Report(nlohmann::json& summary) const override {
    if (queue_.dropped() > 0) summary["stdout_dropped"] = queue_.dropped();
  }

 private:
  void Write(const Decision& d) {
    if (json_) {
      line_ = agent::DecisionJson(d, d.asset_id).dump();
    } else {
      top_.clear();
      for (size_t i = 0; i < d.top_sensors.size(); ++i) {
        if (i) top_ += ',';
        top_ += d.top_sensors[i];
      }
      // Every column is one whitespace-free token, padded after it so that columns line up
      // ("score=12345.6789" and "score=1.2345    " split the same way).
      line_.clear();
      auto out = std::back_inserter(line_);
      if (multi_asset_) fmt::format_to(out, "{} ", d.asset_id);
      const size_t t0 = line_.size();
      fmt::format_to(out, "#{:06d} t={:.3f}s", d.window_index, d.t_start_s);
      Pad(t0 + 22);
      const size_t s0 = line_.size();
      fmt::format_to(out, "score={:.4f}", static_cast<double>(d.anomaly_score));
      Pad(s0 + 17);
      fmt::format_to(out, "{:<6} {:<9} {:7.3f}ms  ", SeverityName(d.severity),
                     d.fail_safe ? "FAILSAFE" : (d.is_alert ? "ALERT" : "ok"), d.latency_ms);
      // The asset's health over many events (monitors), one column when it has a monitor.
      if (d.has_health) fmt::format_to(out, "health={:<8} ", HealthStateName(d.health));
      line_ += top_;
      // Markers only when there is something to say.
      if (d.input_problems != 0) {
        fmt::format_to(out, "  input={}", InputProblemNames(d.input_problems));
      }
      if (d.baseline_adapted) fmt::format_to(out, "  baseline_step={}", d.baseline_step);
    }
    line_ += '\n';
    std::fwrite(line_.data(), 1, line_.size(), stdout);
    std::fflush(stdout);
  }

  void Pad(size_t width) {
    line_ += ' ';
    if (line_.size() < width) line_.append(width - line_.size(), ' ');
  }

  const bool json_, multi_asset_;
  bool lossless_ = false;
  std::string line_, top_;  // writer thread only
  DecisionQueue queue_;
};

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(sink_stdout) {
  using namespace tend;
  runtime::SinkDescriptor d;
  d.name = "stdout";
  d.description = "a line per decision on standard output (text, or JSON with --json)";
  d.keys = {SettingDef::Bool("output.json", false, "Print decisions as JSON lines").Flag("--json"),
            SettingDef::Bool("output.quiet", false, "No line per decision (summary only)")
                .Flag("--quiet,-q")};
  d.create = [](runtime::DeviceContext& ctx) -> Result<std::unique_ptr<runtime::Sink>> {
    if (ctx.settings->GetBool("output.quiet")) return std::unique_ptr<runtime::Sink>();
    return std::unique_ptr<runtime::Sink>(std::make_unique<runtime::StdoutSink>(
        ctx.settings->GetBool("output.json"), ctx.assets->size() > 1));
  };
  return registry.AddSink(std::move(d));
}
