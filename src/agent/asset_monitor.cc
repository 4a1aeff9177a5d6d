#include "agent/asset_monitor.h"

#include <fmt/format.h>

#include <cmath>

#include "agent/monitors.h"
#include "agent/served_model.h"
#include "core/log.h"

namespace tend::agent {

Status MonitorOptions::Validate() const {
  TEND_RETURN_NOT_OK(health_options.Validate());
  TEND_RETURN_NOT_OK(drift_options.Validate().map_error(
      [](Error e) { return e.Wrap("drift monitor (monitors.drift_*)"); }));
  TEND_RETURN_NOT_OK(input_options.Validate());
  TEND_RETURN_NOT_OK(adaptive_options.Validate().map_error(
      [](Error e) { return e.Wrap("adaptive baseline (monitors.adaptive_*)"); }));
  if (!(adaptive_max_cusum_share > 0 && adaptive_max_cusum_share <= 1)) {
    return Fail(Error::Invalid("adaptive baseline: the cusum share must be in (0, 1]"));
  }
  return Ok();
}

// The monitors of one model.
struct AssetMonitor::State {
  std::string model_name, model_version;
  std::vector<std::string> names;
  std::optional<HealthMonitor> health;
  std::optional<DriftMonitor> drift;
  std::optional<InputHealth> input;
  std::optional<AdaptiveBaseline> baseline;
  int64_t window = 0;        // frames per window (the source-clock rate check)
  int64_t rate_frame0 = -1;  // sample-rate check: first frame and arrival of the interval
  std::chrono::steady_clock::time_point rate_t0;
};

namespace {

// Each channel's commissioning std: the training mean of its "<channel>.std" feature, when the
// model has one per channel (else empty: only an exactly constant channel counts as flat).
std::vector<float> ChannelStds(const detect::ModelCard& card, int channels) {
  std::vector<float> out;
  for (size_t i = 0; i < card.feature_names.size() && i < card.train_mean.size(); ++i) {
    const std::string& n = card.feature_names[i];
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".std") == 0) out.push_back(card.train_mean[i]);
  }
  if (out.size() != static_cast<size_t>(channels)) out.clear();
  return out;
}

}  // namespace

std::unique_ptr<AssetMonitor::State> AssetMonitor::Build(const std::string& id,
                                                         const MonitorOptions& o, Model& model) {
  auto st = std::make_unique<State>();
  st->model_name = model.name();
  st->model_version = model.version();
  auto* served = dynamic_cast<ServedModel*>(&model);
  if (!served) {
    TEND_LOG_INFO("{}: no health or drift monitors (a {} model has no commissioning baseline)", id,
                  model.kind());
    return st;
  }
  const detect::ModelCard& card = served->card();
  st->names = card.feature_names;
  auto baseline = ScoreBaselineOf(card);
  if (o.health || o.adaptive) {
    auto alarm = HealthOptionsFor(card);
    if (baseline && alarm) {
      HealthOptions ho = o.health_options;
      ho.alarm_z = alarm->alarm_z;
      if (auto h = HealthMonitor::Create(*baseline, ho)) st->health.emplace(std::move(*h));
    } else {
      TEND_LOG_WARN("{}: no health monitor: {}", id,
                    (baseline ? alarm.error() : baseline.error()).message);
    }
  }
  if (o.drift) {
    auto ref = FeatureReferenceOf(card);
    if (!ref) TEND_LOG_WARN("{}: no drift monitor: {}", id, ref.error().message);
    if (ref) {
      if (auto d = DriftMonitor::Create(std::move(*ref), o.drift_options)) {
        st->drift.emplace(std::move(*d));
      }
    }
  }
  const WindowingSpec& w = served->windowing();
  st->window = w.window;
  if (o.input && model.input().event.type == ElementType::kF32) {
    if (auto ih = InputHealth::Create(w.channels, w.sample_rate, ChannelStds(card, w.channels),
                                      o.input_options)) {
      st->input.emplace(std::move(*ih));
    }
  }
  if (o.adaptive) {
    const size_t f = card.feature_names.size();
    auto ab = served->raw_input() || !baseline || !st->health || card.train_mean.size() != f ||
                      card.train_std.size() != f
                  ? Result<AdaptiveBaseline>(Fail(Error::Unsupported(
                        "the model has no feature standardisation or health baseline")))
                  : AdaptiveBaseline::Create(card.train_mean, card.train_std, *baseline,
                                             o.adaptive_options);
    if (ab) {
      st->baseline.emplace(std::move(*ab));
    } else {
      TEND_LOG_WARN("{}: no adaptive baseline: {}", id, ab.error().message);
    }
  }
  return st;
}

Result<std::unique_ptr<AssetMonitor>> AssetMonitor::Create(std::string asset_id,
                                                           const MonitorOptions& options,
                                                           Model& model) {
  TEND_RETURN_NOT_OK(options.Validate().map_error([&](Error e) { return e.Wrap(asset_id); }));
  std::unique_ptr<AssetMonitor> m(new AssetMonitor(std::move(asset_id), options));
  m->OnModel(model);
  return m;
}

AssetMonitor::AssetMonitor(std::string asset_id, const MonitorOptions& o)
    : asset_id_(std::move(asset_id)), opt_(o) {}
AssetMonitor::~AssetMonitor() = default;

void AssetMonitor::OnModel(Model& model) {
  auto next = Build(asset_id_, opt_, model);
  std::lock_guard<std::mutex> lock(mu_);
  // The previous model is gone (the agent replaced it): nothing to detach from it.
  if (models_ > 0) {
    TEND_LOG_INFO("{}: monitors rebuilt from {} v{} (were {} v{}); health back to ok{}", asset_id_,
                  next->model_name, next->model_version, st_->model_name, st_->model_version,
                  st_->baseline ? ", adaptive baseline back to commissioning" : "");
  }
  ++models_;
  st_ = std::move(next);
  if (st_->baseline && !model.SetAdaptiveBaseline(&*st_->baseline)) st_->baseline.reset();
}

bool AssetMonitor::monitoring() const {
  std::lock_guard<std::mutex> lock(mu_);
  return st_->health || st_->drift || st_->input;
}

void AssetMonitor::OnDecision(const EventView& event, Decision& d) {
  std::lock_guard<std::mutex> lock(mu_);
  UpdateInput(event, d);
  UpdateHealth(d);
  if (st_->drift && !d.fail_safe && d.features.size() == st_->drift->features()) {
    const DriftLevel before = st_->drift->Level();
    st_->drift->Observe(d.features);
    if (st_->drift->Level() != before) {
      TEND_LOG_INFO("{}: feature drift {} at window {}", asset_id_,
                    DriftLevelName(st_->drift->Level()), d.window_index);
    }
  }
  UpdateBaseline(d);
}

void AssetMonitor::UpdateHealth(Decision& d) {
  d.has_health = false;
  if (!st_->health) return;  // also kept for the adaptive baseline's guard when not reported
  const HealthStatus& h =
      d.fail_safe ? st_->health->UpdateFailSafe() : st_->health->Update(d.anomaly_score);
  if (!opt_.health) return;
  d.has_health = true;
  d.health = h.state;
  d.health_cusum = static_cast<float>(h.cusum);
  d.health_alarm_cusum = static_cast<float>(h.alarm_cusum);
  if (h.changed) OnHealthChange(h.state, d);
}

void AssetMonitor::UpdateInput(const EventView& event, Decision& d) {
  d.input_problems = kInputOk;
  // An invalid event (the source could not produce it) has no samples of its own to judge.
  if (!st_->input || !event.error.empty()) return;
  auto samples = event.as<float>();
  if (samples.empty()) return;
  InputHealth& in = *st_->input;
  const uint32_t before = in.status().problems;
  uint32_t problems = in.Observe(samples).problems;
  // A recording's own clock (a CSV time column): the window's frames against the time they span.
  // Only for windows long enough that timestamps good to half a sample (what the CSV source
  // accepts) cannot fake a glitch: 2 samples of error stay under the tolerance.
  if (event.source_span_s > 0 &&
      static_cast<double>(st_->window - 1) * opt_.input_options.rate_tolerance >= 2) {
    problems |= in.ObserveTiming(st_->window - 1, event.source_span_s).problems & kRateGlitch;
  }
  if (opt_.live && event.start_frame >= 0) {
    if (st_->rate_frame0 < 0 || event.start_frame < st_->rate_frame0) {
      st_->rate_frame0 = event.start_frame;
      st_->rate_t0 = event.arrival;
    } else if (const double s = std::chrono::duration<double>(event.arrival - st_->rate_t0).count();
               s >= opt_.rate_check_s) {
      problems |= in.ObserveTiming(event.start_frame - st_->rate_frame0, s).problems & kRateGlitch;
      st_->rate_frame0 = event.start_frame;
      st_->rate_t0 = event.arrival;
    }
  }
  d.input_problems = problems;
  if (problems != before && problems != kInputOk) {
    TEND_LOG_WARN("{}: input {} at window {}", asset_id_, InputProblemNames(problems),
                  d.window_index);
  }
}

// Only a scored window judged well inside normal teaches the baseline: health ok AND the warning
// CUSUM far below its level (AdaptiveBaseline::Offer then checks the score's evidence).
void AssetMonitor::UpdateBaseline(Decision& d) {
  d.baseline_adapted = false;
  d.baseline_step = -1;
  if (!st_->baseline) return;
  AdaptiveBaseline& b = *st_->baseline;
  if (!d.fail_safe && st_->health) {
    const HealthStatus& h = st_->health->status();
    const bool calm = h.state == HealthState::kOk &&
                      h.cusum < opt_.adaptive_max_cusum_share * st_->health->options().h_warning;
    const int64_t step = b.step();
    b.Offer(d.features, d.anomaly_score, calm ? HealthState::kOk : HealthState::kWarning);
    if (b.step() != step) {
      d.baseline_adapted = true;
      const auto journal = b.Journal();
      const AdaptationStep& s = journal.back();
      const size_t f = static_cast<size_t>(s.max_shift_feature);
      TEND_LOG_INFO(
          "{}: adaptive baseline step {} at window {} ({} windows accepted): largest shift "
          "{:.3f} sd ({}), {} features at the cap",
          asset_id_, s.step, d.window_index, s.accepted, s.max_shift_sd,
          f < st_->names.size() ? st_->names[f] : "-", s.capped_features);
    }
  }
  d.baseline_step = b.step();
}

void AssetMonitor::OnHealthChange(HealthState state, const Decision& d) {
  if (state == HealthState::kWarning && !first_warning_) first_warning_ = d.window_index;
  if (state == HealthState::kAlarm && !first_alarm_) first_alarm_ = d.window_index;
  if (state == HealthState::kOk) {
    TEND_LOG_INFO("{}: health ok again at window {}", asset_id_, d.window_index);
    return;
  }
  TEND_LOG_WARN("{}: health {} at window {} (score {:.4f})", asset_id_, HealthStateName(state),
                d.window_index, static_cast<double>(d.anomaly_score));
}

metrics::MonitorFigures AssetMonitor::Figures() const {
  std::lock_guard<std::mutex> lock(mu_);
  const State& s = *st_;
  return metrics::MonitorFiguresOf(
      opt_.health && s.health ? &*s.health : nullptr, s.drift ? &*s.drift : nullptr, s.names,
      s.input ? &*s.input : nullptr, s.baseline ? &*s.baseline : nullptr);
}

nlohmann::json AssetMonitor::Summary() const {
  nlohmann::json j = nlohmann::json::object();
  metrics::AddMonitorHealthFields(Figures(), j);
  std::lock_guard<std::mutex> lock(mu_);
  j["first_warning_window"] = first_warning_ ? nlohmann::json(*first_warning_) : nullptr;
  j["first_alarm_window"] = first_alarm_ ? nlohmann::json(*first_alarm_) : nullptr;
  j["model"] = st_->model_name + " v" + st_->model_version;
  if (models_ > 1) j["monitor_rebuilds"] = models_ - 1;
  if (st_->input) {
    const InputHealthStatus& in = st_->input->status();
    j["input_windows"] = {{"flat_line", in.flat_windows},
                          {"clipping", in.clipped_windows},
                          {"non_finite", in.non_finite_windows},
                          {"rate_glitch", in.rate_glitches},
                          {"non_finite_samples", in.non_finite_samples}};
  }
  if (st_->baseline) {
    nlohmann::json steps = nlohmann::json::array();
    for (const AdaptationStep& s : st_->baseline->Journal()) {
      steps.push_back({{"step", s.step},
                       {"event", s.event},
                       {"accepted", s.accepted},
                       {"max_shift_sd", s.max_shift_sd},
                       {"capped_features", s.capped_features}});
    }
    j["baseline_journal"] = std::move(steps);
    j["baseline_accepted"] = st_->baseline->accepted();
  }
  return j;
}

}  // namespace tend::agent
