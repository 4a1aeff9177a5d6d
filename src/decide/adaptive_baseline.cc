#include "decide/adaptive_baseline.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace tend {

Status AdaptiveOptions::Validate() const {
  auto bad = [](const std::string& m) { return Fail(Error::Invalid("adaptive baseline: " + m)); };
  if (!(accept_z > 0) || !std::isfinite(accept_z)) return bad("accept_z must be finite and > 0");
  if (!(rate > 0 && rate <= 0.5)) return bad(fmt::format("rate {} must be in (0, 0.5]", rate));
  if (commit_every < 1) return bad(fmt::format("commit_every {} must be >= 1", commit_every));
  if (!(max_shift_sd >= 0) || !std::isfinite(max_shift_sd)) {
    return bad(fmt::format("max_shift_sd {} must be >= 0", max_shift_sd));
  }
  if (journal_size < 1 || journal_size > 10000) {
    return bad(fmt::format("journal_size {} must be in 1..10000", journal_size));
  }
  return Ok();
}

Result<AdaptiveBaseline> AdaptiveBaseline::Create(std::vector<float> anchor_mean,
                                                  std::vector<float> anchor_std,
                                                  const ScoreBaseline& score,
                                                  const AdaptiveOptions& opt) {
  TEND_RETURN_NOT_OK(opt.Validate());
  TEND_RETURN_NOT_OK(score.Validate());
  if (anchor_mean.empty() || anchor_mean.size() != anchor_std.size()) {
    return Fail(Error::Invalid(fmt::format("adaptive baseline: {} means for {} stds",
                                           anchor_mean.size(), anchor_std.size())));
  }
  for (size_t i = 0; i < anchor_std.size(); ++i) {
    if (!std::isfinite(anchor_mean[i]) || !(anchor_std[i] > 0) || !std::isfinite(anchor_std[i])) {
      return Fail(Error::Invalid(fmt::format("adaptive baseline: feature {} has mean {} and std {}",
                                             i, anchor_mean[i], anchor_std[i])));
    }
  }
  AdaptiveBaseline b;
  const size_t f = anchor_mean.size();
  b.opt_ = opt;
  b.score_ = score;
  b.anchor_mean_ = std::move(anchor_mean);
  b.anchor_std_ = std::move(anchor_std);
  b.mean_ = b.anchor_mean_;
  b.pending_mean_.assign(b.mean_.begin(), b.mean_.end());
  const size_t j = static_cast<size_t>(opt.journal_size);
  b.steps_.resize(j);
  b.step_mean_.resize(j * f);
  return b;
}

bool AdaptiveBaseline::Offer(std::span<const float> x, float score, HealthState state) {
  ++offered_;
  if (x.size() != mean_.size() || state != HealthState::kOk || !std::isfinite(score) ||
      std::fabs(score_.Z(score)) > opt_.accept_z) {
    return false;
  }
  for (float v : x) {
    if (!std::isfinite(v)) return false;
  }
  const double a = opt_.rate;
  for (size_t i = 0; i < x.size(); ++i) pending_mean_[i] += a * (x[i] - pending_mean_[i]);
  ++accepted_;
  if (++since_commit_ >= opt_.commit_every) Commit();
  return true;
}

void AdaptiveBaseline::Commit() {
  since_commit_ = 0;
  AdaptationStep s;
  s.step = ++step_;
  s.event = offered_;
  s.accepted = accepted_;
  const double cap = opt_.max_shift_sd;
  for (size_t i = 0; i < mean_.size(); ++i) {
    const double a_sd = anchor_std_[i];
    const double lo = anchor_mean_[i] - cap * a_sd, hi = anchor_mean_[i] + cap * a_sd;
    const double m = std::clamp(pending_mean_[i], lo, hi);
    s.capped_features += (m != pending_mean_[i]) ? 1 : 0;
    mean_[i] = static_cast<float>(m);
    const double shift = std::fabs(m - anchor_mean_[i]) / a_sd;
    if (shift > s.max_shift_sd) {
      s.max_shift_sd = shift;
      s.max_shift_feature = static_cast<int64_t>(i);
    }
  }
  const size_t f = mean_.size();
  steps_[journal_head_] = s;
  std::copy(mean_.begin(), mean_.end(), step_mean_.begin() + journal_head_ * f);
  journal_head_ = (journal_head_ + 1) % steps_.size();
  journal_count_ = std::min(journal_count_ + 1, steps_.size());
}

void AdaptiveBaseline::Apply(std::span<float> x) const {
  const size_t n = std::min(x.size(), mean_.size());
  for (size_t i = 0; i < n; ++i) {
    x[i] -= mean_[i] - anchor_mean_[i];
  }
}

double AdaptiveBaseline::MaxShiftSd() const {
  double m = 0;
  for (size_t i = 0; i < mean_.size(); ++i) {
    m = std::max(m, std::fabs(double(mean_[i]) - anchor_mean_[i]) / anchor_std_[i]);
  }
  return m;
}

std::vector<AdaptationStep> AdaptiveBaseline::Journal() const {
  std::vector<AdaptationStep> out;
  const size_t n = steps_.size();
  for (size_t k = 0; k < journal_count_; ++k)
    out.push_back(steps_[(journal_head_ + n - journal_count_ + k) % n]);
  return out;
}

Status AdaptiveBaseline::Revert(int64_t step) {
  if (step == 0) {
    RevertToAnchor();
    return Ok();
  }
  const size_t n = steps_.size(), f = mean_.size();
  for (size_t k = 0; k < journal_count_; ++k) {
    const size_t at = (journal_head_ + n - journal_count_ + k) % n;
    if (steps_[at].step != step) continue;
    std::copy_n(step_mean_.begin() + at * f, f, mean_.begin());
    std::copy(mean_.begin(), mean_.end(), pending_mean_.begin());
    journal_count_ = k + 1;  // later steps are forgotten: the baseline went back
    journal_head_ = (at + 1) % n;
    step_ = step;
    since_commit_ = 0;
    return Ok();
  }
  return Fail(Error::NotFound(fmt::format(
      "adaptive baseline: step {} is not in the journal (kept: the last {} steps, and 0 = the "
      "commissioning anchor)",
      step, steps_.size())));
}

void AdaptiveBaseline::RevertToAnchor() {
  mean_ = anchor_mean_;
  std::copy(mean_.begin(), mean_.end(), pending_mean_.begin());
  journal_count_ = 0;
  journal_head_ = 0;
  step_ = 0;
  since_commit_ = 0;
}

}  // namespace tend
