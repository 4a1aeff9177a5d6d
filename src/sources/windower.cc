#include "sources/windower.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numbers>
#include <vector>

namespace tend::sources {
namespace {

Status CheckStream(int channels, double sample_rate) {
  if (channels < 1 || channels > 1024) {
    return Fail(Error::Invalid(fmt::format("windowing: {} channels (expected 1..1024)", channels)));
  }
  if (!(sample_rate > 0) || !std::isfinite(sample_rate)) {
    return Fail(
        Error::Invalid(fmt::format("windowing: sample rate {} Hz must be > 0", sample_rate)));
  }
  return Ok();
}

class FixedWindower final : public Windower {
 public:
  FixedWindower(int channels, double sample_rate, int length, int hop)
      : ch_(channels),
        fs_(sample_rate),
        len_(length),
        hop_(hop),
        win_(static_cast<size_t>(channels) * length) {}

  void Push(std::span<const float> in, size_t frames,
            const std::function<void(const WindowView&)>& emit) override {
    assert(in.size() >= frames * ch_);
    size_t i = 0;
    while (i < frames) {
      if (skip_ > 0) {
        const size_t k = std::min<size_t>(skip_, frames - i);
        i += k;
        skip_ -= static_cast<int64_t>(k);
        continue;
      }
      const size_t k = std::min<size_t>(len_ - fill_, frames - i);
      for (int c = 0; c < ch_; ++c) {
        float* dst = win_.data() + static_cast<size_t>(c) * len_ + fill_;
        const float* src = in.data() + i * ch_ + c;
        for (size_t j = 0; j < k; ++j) dst[j] = src[j * ch_];
      }
      fill_ += static_cast<int>(k);
      i += k;
      if (fill_ == len_) {
        emit(WindowView{index_++, start_, static_cast<double>(start_) / fs_, win_});
        if (hop_ < len_) {
          // Keep the overlap: slide each channel's tail to its front.
          for (int c = 0; c < ch_; ++c) {
            float* row = win_.data() + static_cast<size_t>(c) * len_;
            std::memmove(row, row + hop_, sizeof(float) * (len_ - hop_));
          }
          fill_ = len_ - hop_;
        } else {
          fill_ = 0;
          skip_ = hop_ - len_;
        }
        start_ += hop_;
      }
    }
  }

 private:
  const int ch_;
  const double fs_;
  const int len_, hop_;
  std::vector<float> win_;  // planar
  int fill_ = 0;
  int64_t skip_ = 0;
  int64_t start_ = 0;
  int64_t index_ = 0;
};

class StrokeTrigger final : public Windower {
 public:
  StrokeTrigger(int channels, double fs, const TriggerOptions& o)
      : ch_(channels),
        fs_(fs),
        len_(o.length),
        pre_(o.pretrigger),
        trig_ch_(o.channel),
        thr2_(o.threshold * o.threshold),
        rearm2_(o.rearm_ratio * o.rearm_ratio * o.threshold * o.threshold),
        floor2_(o.min_rms * o.min_rms),
        a_short_(1 - std::exp(-1.0 / (o.energy_ms * 1e-3 * fs))),
        a_mid_(1 - std::exp(-1.0 / (0.05 * fs))),
        a_bg_(1 - std::exp(-1.0 / (o.background_s * fs))),
        dc_pole_(std::exp(-2 * std::numbers::pi * 5.0 / fs)),
        warmup_(std::max<int64_t>({std::llround(o.warmup_s * fs), o.pretrigger, 1})),
        holdoff_(std::max<int64_t>(std::llround(o.holdoff_s * fs), o.length - o.pretrigger)),
        ring_(static_cast<size_t>(channels) * std::max(o.pretrigger, 1)),
        win_(static_cast<size_t>(channels) * o.length) {}

  void Push(std::span<const float> in, size_t frames,
            const std::function<void(const WindowView&)>& emit) override {
    assert(in.size() >= frames * ch_);
    for (size_t f = 0; f < frames; ++f) {
      const float* fr = in.data() + f * ch_;
      Detect(fr[trig_ch_]);
      if (collecting_) {
        for (int c = 0; c < ch_; ++c) win_[static_cast<size_t>(c) * len_ + fill_] = fr[c];
        if (++fill_ == len_) {
          collecting_ = false;
          emit(WindowView{index_++, start_, static_cast<double>(start_) / fs_, win_});
        }
      }
      if (pre_ > 0) {
        std::copy_n(fr, ch_, ring_.data() + static_cast<size_t>(ring_pos_) * ch_);
        if (++ring_pos_ == pre_) ring_pos_ = 0;
      }
      ++frame_;
    }
  }

 private:
  // Updates the detector with the trigger channel's sample of frame_; starts a window on onset.
  void Detect(float xf) {
    // A NaN/Inf sample must not poison the detector for good: it holds the previous value (the
    // window that contains it is refused by the model and decided fail-safe).
    const double x = std::isfinite(xf) ? static_cast<double>(xf) : (frame_ == 0 ? 0.0 : x_prev_);
    if (frame_ == 0) x_prev_ = x;  // start the DC blocker without a step
    const double y = x - x_prev_ + dc_pole_ * y_prev_;
    x_prev_ = x;
    y_prev_ = y;
    const double e2 = y * y;
    e_short_ += a_short_ * (e2 - e_short_);
    e_mid_ += a_mid_ * (e2 - e_mid_);
    if (frame_ < warmup_) {
      bg_sum_ += e2;
      e_bg_ = bg_sum_ / static_cast<double>(frame_ + 1);
      return;
    }
    const double ref = std::max(e_bg_, floor2_);
    if (armed_ && e_short_ > thr2_ * ref && !collecting_) {
      armed_ = false;
      holdoff_left_ = holdoff_;
      StartWindow();
    } else if (holdoff_left_ == 0) {
      // Background: a slow average whose input is clipped at 9x (3x in RMS), so a knock below
      // the threshold barely moves it; when the 50 ms energy is lower, the machine got quieter
      // and the background follows at once.
      const double target = e_bg_ > 1e-20 ? std::min(e2, 9 * ref) : e2;
      e_bg_ += a_bg_ * (target - e_bg_);
      e_bg_ = std::min(e_bg_, e_mid_);
      // Re-arm on the 50 ms energy: the 1 ms one fluctuates too much to be a hysteresis.
      if (!armed_ && e_mid_ < rearm2_ * std::max(e_bg_, floor2_)) armed_ = true;
    }
    if (holdoff_left_ > 0) --holdoff_left_;
  }

  void StartWindow() {
    // The ring holds the pre_ frames before this one; ring_pos_ is the oldest.
    for (int j = 0; j < pre_; ++j) {
      const float* fr = ring_.data() + static_cast<size_t>((ring_pos_ + j) % pre_) * ch_;
      for (int c = 0; c < ch_; ++c) win_[static_cast<size_t>(c) * len_ + j] = fr[c];
    }
    fill_ = pre_;
    start_ = frame_ - pre_;
    collecting_ = true;
  }

  const int ch_;
  const double fs_;
  const int len_, pre_, trig_ch_;
  const double thr2_, rearm2_, floor2_;
  const double a_short_, a_mid_, a_bg_, dc_pole_;
  const int64_t warmup_, holdoff_;
  std::vector<float> ring_;  // interleaved, pre_ frames
  std::vector<float> win_;   // planar
  int ring_pos_ = 0;
  int fill_ = 0;
  bool collecting_ = false;
  bool armed_ = true;
  int64_t holdoff_left_ = 0;
  int64_t frame_ = 0;
  int64_t start_ = 0;
  int64_t index_ = 0;
  double x_prev_ = 0, y_prev_ = 0;
  double e_short_ = 0, e_mid_ = 0, e_bg_ = 0, bg_sum_ = 0;
};

[[noreturn]] void Abort(const Error& e) {
  std::fprintf(stderr, "tend: programmer error: %s\n", e.message.c_str());
  std::abort();
}

}  // namespace

Status TriggerOptions::Validate(int channels, double sample_rate) const {
  TEND_RETURN_NOT_OK(CheckStream(channels, sample_rate));
  auto bad = [](const std::string& m) { return Fail(Error::Invalid("trigger: " + m)); };
  if (length < 2) return bad(fmt::format("window length {} must be >= 2", length));
  if (pretrigger < 0 || pretrigger >= length) {
    return bad(fmt::format("pretrigger {} must be in [0, {})", pretrigger, length));
  }
  if (!(threshold > 0) || !std::isfinite(threshold)) {
    return bad(fmt::format("threshold {} must be > 0", threshold));
  }
  if (channel < 0 || channel >= channels) {
    return bad(fmt::format("channel {} out of range (stream has {})", channel, channels));
  }
  if (!(holdoff_s >= 0) || !std::isfinite(holdoff_s)) return bad("holdoff_s must be >= 0");
  if (!(energy_ms > 0) || !std::isfinite(energy_ms)) return bad("energy_ms must be > 0");
  if (!(background_s > 0) || !std::isfinite(background_s)) return bad("background_s must be > 0");
  if (!(warmup_s >= 0) || !std::isfinite(warmup_s)) return bad("warmup_s must be >= 0");
  if (!(rearm_ratio > 0 && rearm_ratio <= 1)) return bad("rearm_ratio must be in (0, 1]");
  if (!(min_rms >= 0) || !std::isfinite(min_rms)) return bad("min_rms must be >= 0");
  return Ok();
}

Result<std::unique_ptr<Windower>> CreateFixedWindower(int channels, double sample_rate, int length,
                                                      int hop) {
  TEND_RETURN_NOT_OK(CheckStream(channels, sample_rate));
  if (length < 1)
    return Fail(Error::Invalid(fmt::format("windowing: length {} must be >= 1", length)));
  if (hop < 1) return Fail(Error::Invalid(fmt::format("windowing: hop {} must be >= 1", hop)));
  return std::unique_ptr<Windower>(new FixedWindower(channels, sample_rate, length, hop));
}

std::unique_ptr<Windower> MakeFixedWindower(int channels, double sample_rate, int length, int hop) {
  auto w = CreateFixedWindower(channels, sample_rate, length, hop);
  if (!w) Abort(w.error());
  return std::move(*w);
}

Result<std::unique_ptr<Windower>> CreateStrokeTrigger(int channels, double sample_rate,
                                                      const TriggerOptions& opts) {
  TEND_RETURN_NOT_OK(opts.Validate(channels, sample_rate));
  return std::unique_ptr<Windower>(new StrokeTrigger(channels, sample_rate, opts));
}

std::unique_ptr<Windower> MakeStrokeTrigger(int channels, double sample_rate,
                                            const TriggerOptions& opts) {
  auto w = CreateStrokeTrigger(channels, sample_rate, opts);
  if (!w) Abort(w.error());
  return std::move(*w);
}

}  // namespace tend::sources
