#include "agent/model_watch.h"

#include <fmt/format.h>

namespace tend::agent {

Status ModelWatchOptions::Validate() const {
  if (max_fail_safe < 0) return Fail(Error::Invalid("probation: max fail-safe must be >= 0"));
  if (storm_windows < 1) return Fail(Error::Invalid("probation: storm windows must be >= 1"));
  if (storm_alerts < 0) return Fail(Error::Invalid("probation: storm alerts must be >= 0"));
  if (storm_alerts >= storm_windows) {
    return Fail(Error::Invalid("probation: storm alerts (" + std::to_string(storm_alerts) +
                               ") must be below storm windows (" + std::to_string(storm_windows) +
                               ")"));
  }
  if (!(storm_ratio >= 1)) return Fail(Error::Invalid("probation: storm ratio must be >= 1"));
  return Ok();
}

nlohmann::json ModelHealth::ToJson() const {
  return {{"generation", generation},
          {"model", model_name},
          {"version", model_version},
          {"windows", windows},
          {"fail_safe", fail_safe},
          {"alerts", alerts},
          {"recent_windows", recent_windows},
          {"recent_alerts", recent_alerts},
          {"previous_windows", previous_windows},
          {"previous_alerts", previous_alerts}};
}

Result<std::unique_ptr<ModelWatch>> ModelWatch::Create(const ModelWatchOptions& options) {
  TEND_RETURN_NOT_OK(options.Validate());
  return std::unique_ptr<ModelWatch>(new ModelWatch(options));
}

ModelWatch::ModelWatch(const ModelWatchOptions& options)
    : opts_(options), ring_(static_cast<size_t>(options.storm_windows), 0) {}

void ModelWatch::OnDecision(const Decision& d) {
  std::lock_guard<std::mutex> lock(mu_);
  h_.windows++;
  const bool alert = d.is_alert && !d.fail_safe;
  if (d.fail_safe) h_.fail_safe++;
  if (alert) h_.alerts++;
  // Sliding count over the last storm_windows windows.
  if (h_.recent_windows == static_cast<int64_t>(ring_.size())) {
    h_.recent_alerts -= ring_[next_];
  } else {
    h_.recent_windows++;
  }
  ring_[next_] = alert ? 1 : 0;
  h_.recent_alerts += ring_[next_];
  next_ = (next_ + 1) % ring_.size();
}

void ModelWatch::OnModelInfo(const ModelInfo& info) {
  // Called at start and at every swap (rare): the strings may allocate.
  std::lock_guard<std::mutex> lock(mu_);
  ModelHealth next;
  next.generation = h_.generation + 1;
  next.model_name = info.name;
  next.model_version = info.version;
  if (h_.generation >= 0) {
    next.previous_windows = h_.recent_windows;
    next.previous_alerts = h_.recent_alerts;
  }
  h_ = std::move(next);
  std::fill(ring_.begin(), ring_.end(), 0);
  next_ = 0;
}

ModelHealth ModelWatch::Health() const {
  std::lock_guard<std::mutex> lock(mu_);
  return h_;
}

int64_t ModelWatch::generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return h_.generation;
}

std::string ModelWatch::Judge(const ModelHealth& h, const ModelWatchOptions& o) {
  const std::string who = h.model_name + " v" + h.model_version;
  if (o.max_fail_safe > 0 && h.fail_safe >= o.max_fail_safe) {
    return fmt::format(
        "{}: {} fail-safe decisions (scoring errors or missed deadlines) in {} "
        "windows since it took over",
        who, h.fail_safe, h.windows);
  }
  if (o.storm_alerts > 0 && h.recent_alerts > o.storm_alerts) {
    const double rate = double(h.recent_alerts) / double(h.recent_windows);
    if (h.previous_windows == 0) {
      return fmt::format(
          "{}: alert storm, {} alerts in its last {} windows (limit {}; no "
          "previous model to compare)",
          who, h.recent_alerts, h.recent_windows, o.storm_alerts);
    }
    const double before = double(h.previous_alerts) / double(h.previous_windows);
    if (rate > o.storm_ratio * before) {
      return fmt::format(
          "{}: alert storm, {} alerts in its last {} windows ({:.0f} %) against "
          "{} in the previous model's last {} ({:.0f} %)",
          who, h.recent_alerts, h.recent_windows, 100 * rate, h.previous_alerts, h.previous_windows,
          100 * before);
    }
  }
  return "";
}

}  // namespace tend::agent
