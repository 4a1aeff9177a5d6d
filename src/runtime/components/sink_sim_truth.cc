// Sink "sim_truth": for an asset fed by the press simulator, compares decisions with the ground
// truth (each stroke's die wear): the first degraded stroke, the first alert and the false alerts
// on healthy strokes, for the run summary.
#include <cmath>
#include <mutex>

#include "agent/dataset.h"
#include "agent/stream_reader.h"
#include "runtime/registry.h"
#include "runtime/spec.h"

namespace tend::runtime {
namespace {

constexpr double kDegradedWear = 0.3;  // from this wear on a stroke counts as degraded
constexpr double kHealthyWear = 0.1;   // below it, an alert is a false alert

class TruthCounter final : public DecisionSink {
 public:
  TruthCounter(std::string asset, std::vector<sources::PressSimulator::StrokeLabel> truth,
               double sample_rate, int64_t window)
      : asset_(std::move(asset)), truth_(std::move(truth)), sr_(sample_rate), window_(window) {}

  void OnDecision(const Decision& d) override {
    if (d.fail_safe) return;
    const auto start = static_cast<int64_t>(std::llround(d.t_start_s * sr_));
    const double wear = agent::WearInWindow(truth_, start, window_);
    std::lock_guard<std::mutex> lk(mu_);
    if (wear >= 0 && wear < kHealthyWear) {
      healthy_windows_++;
      if (d.is_alert) healthy_false_alerts_++;
    }
    if (wear >= kDegradedWear && first_degraded_window_ < 0) {
      first_degraded_window_ = d.window_index;
      first_degraded_t_ = d.t_start_s;
      first_degraded_wear_ = wear;
    }
    if (d.is_alert && first_alert_window_ < 0) {
      first_alert_window_ = d.window_index;
      first_alert_t_ = d.t_start_s;
      first_alert_wear_ = wear;
    }
  }

  nlohmann::json ToJson() const {
    std::lock_guard<std::mutex> lk(mu_);
    return {{"asset_id", asset_},
            {"degraded_wear", kDegradedWear},
            {"first_degraded_window", first_degraded_window_},
            {"first_degraded_t", first_degraded_t_},
            {"first_degraded_wear", first_degraded_wear_},
            {"first_alert_window", first_alert_window_},
            {"first_alert_t", first_alert_t_},
            {"first_alert_wear", first_alert_wear_},
            {"healthy_windows", healthy_windows_},
            {"healthy_false_alerts", healthy_false_alerts_}};
  }

 private:
  const std::string asset_;
  const std::vector<sources::PressSimulator::StrokeLabel> truth_;
  const double sr_;
  const int64_t window_;
  mutable std::mutex mu_;
  double first_degraded_t_ = -1, first_degraded_wear_ = -1;
  int64_t first_degraded_window_ = -1;
  double first_alert_t_ = -1, first_alert_wear_ = -1;
  int64_t first_alert_window_ = -1;
  int64_t healthy_windows_ = 0, healthy_false_alerts_ = 0;
};

class SimTruthSink final : public Sink {
 public:
  Result<DecisionSink*> ForAsset(const AssetContext& asset) override {
    const auto* stream = dynamic_cast<const agent::StreamEventReader*>(asset.reader);
    const auto* sim =
        stream ? dynamic_cast<const sources::PressSimulator*>(&stream->source()) : nullptr;
    if (!sim || !asset.model->input().windowing) return static_cast<DecisionSink*>(nullptr);
    counters_.push_back(std::make_unique<TruthCounter>(asset.spec->id, sim->labels(),
                                                       sim->info().sample_rate,
                                                       asset.model->input().windowing->window));
    return static_cast<DecisionSink*>(counters_.back().get());
  }
  void Report(nlohmann::json& summary) const override {
    for (const auto& c : counters_) summary["truth"].push_back(c->ToJson());
  }

 private:
  std::vector<std::unique_ptr<TruthCounter>> counters_;
};

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(sink_sim_truth) {
  using namespace tend;
  runtime::SinkDescriptor d;
  d.name = "sim_truth";
  d.description = "simulator ground truth: first degraded stroke, first alert, false alerts";
  d.create = [](runtime::DeviceContext&) -> Result<std::unique_ptr<runtime::Sink>> {
    return std::unique_ptr<runtime::Sink>(std::make_unique<runtime::SimTruthSink>());
  };
  return registry.AddSink(std::move(d));
}
