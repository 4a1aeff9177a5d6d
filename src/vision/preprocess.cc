#include "vision/preprocess.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace tend::vision {

Result<Roi> Roi::Resolve(int frame_width, int frame_height) const {
  if (whole()) return Roi{0, 0, frame_width, frame_height};
  if (x < 0 || y < 0 || width <= 0 || height <= 0 || x + width > frame_width ||
      y + height > frame_height) {
    return Fail(Error::Invalid(fmt::format("ROI {},{} {}x{} does not fit the {}x{} frame", x, y,
                                           width, height, frame_width, frame_height)));
  }
  return *this;
}

nlohmann::json PreprocessSpec::ToJson() const {
  nlohmann::json j;
  j["roi"] = roi.whole() ? nlohmann::json(nullptr)
                         : nlohmann::json::array({roi.x, roi.y, roi.width, roi.height});
  j["width"] = width;
  j["height"] = height;
  j["color"] = color;
  j["channels"] = channels;
  j["mean"] = std::vector<float>(mean.begin(), mean.begin() + channels);
  j["std"] = std::vector<float>(std.begin(), std.begin() + channels);
  j["resize"] = resize;
  j["intensity"] = intensity;
  // Only when not the default, so a stretched model stays readable by agents from before "fit".
  if (fit != "stretch") j["fit"] = fit;
  return j;
}

namespace {

template <typename T>
Status Get(const nlohmann::json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end()) return Fail(Error::Invalid(fmt::format("preprocess: missing key '{}'", key)));
  try {
    out = it->get<T>();
  } catch (const nlohmann::json::exception&) {
    return Fail(Error::Invalid(
        fmt::format("preprocess: '{}' has the wrong type ({})", key, it->type_name())));
  }
  return Ok();
}

}  // namespace

Result<PreprocessSpec> PreprocessSpec::FromJson(const nlohmann::json& j) {
  if (!j.is_object()) return Fail(Error::Invalid("preprocess: not a JSON object"));
  static const std::set<std::string> kKeys = {"roi",  "width", "height", "color",     "channels",
                                              "mean", "std",   "resize", "intensity", "fit"};
  for (const auto& [k, _] : j.items()) {
    if (!kKeys.count(k))
      return Fail(Error::Invalid(fmt::format("preprocess: unknown key '{}'", k)));
  }
  PreprocessSpec s;
  std::vector<int> roi;
  if (j.contains("roi") && !j["roi"].is_null()) {
    TEND_RETURN_NOT_OK(Get(j, "roi", roi));
    if (roi.size() != 4)
      return Fail(Error::Invalid("preprocess: 'roi' must be [x, y, width, height]"));
    s.roi = {roi[0], roi[1], roi[2], roi[3]};
  }
  TEND_RETURN_NOT_OK(Get(j, "width", s.width));
  TEND_RETURN_NOT_OK(Get(j, "height", s.height));
  TEND_RETURN_NOT_OK(Get(j, "color", s.color));
  TEND_RETURN_NOT_OK(Get(j, "channels", s.channels));
  TEND_RETURN_NOT_OK(Get(j, "resize", s.resize));
  TEND_RETURN_NOT_OK(Get(j, "intensity", s.intensity));
  if (j.contains("fit")) TEND_RETURN_NOT_OK(Get(j, "fit", s.fit));  // older files: "stretch"
  std::vector<float> mean, sd;
  TEND_RETURN_NOT_OK(Get(j, "mean", mean));
  TEND_RETURN_NOT_OK(Get(j, "std", sd));
  if (mean.size() != static_cast<size_t>(std::clamp(s.channels, 0, 3)) ||
      sd.size() != mean.size()) {
    return Fail(Error::Invalid(
        fmt::format("preprocess: 'mean' and 'std' need one value per channel ({})", s.channels)));
  }
  for (size_t c = 0; c < mean.size(); ++c) {
    s.mean[c] = mean[c];
    s.std[c] = sd[c];
  }
  TEND_RETURN_NOT_OK(s.Validate());
  return s;
}

Status PreprocessSpec::Validate() const {
  if (width < 8 || height < 8 || width > 8192 || height > 8192) {
    return Fail(
        Error::Invalid(fmt::format("preprocess: input size {}x{} outside 8..8192", width, height)));
  }
  if (color != "grey" && color != "rgb") {
    return Fail(
        Error::Invalid("preprocess: color must be \"grey\" or \"rgb\", not \"" + color + "\""));
  }
  if (channels != 1 && channels != 3) {
    return Fail(
        Error::Invalid(fmt::format("preprocess: channels must be 1 or 3, not {}", channels)));
  }
  if (color == "rgb" && channels != 3)
    return Fail(Error::Invalid("preprocess: rgb needs 3 channels"));
  if (resize != "bilinear-antialias") {
    return Fail(Error::Invalid("preprocess: resize must be \"bilinear-antialias\", not \"" +
                               resize + "\""));
  }
  if (intensity != "standardize" && intensity != "raw") {
    return Fail(Error::Invalid("preprocess: intensity must be \"standardize\" or \"raw\", not \"" +
                               intensity + "\""));
  }
  if (fit != "stretch" && fit != "letterbox") {
    return Fail(Error::Invalid("preprocess: fit must be \"stretch\" or \"letterbox\", not \"" +
                               fit + "\""));
  }
  if (!roi.whole() && (roi.x < 0 || roi.y < 0 || roi.width <= 0 || roi.height <= 0)) {
    return Fail(Error::Invalid(
        fmt::format("preprocess: bad ROI {},{} {}x{}", roi.x, roi.y, roi.width, roi.height)));
  }
  for (int c = 0; c < channels; ++c) {
    if (!std::isfinite(mean[static_cast<size_t>(c)]) || !(std[static_cast<size_t>(c)] > 0) ||
        !std::isfinite(std[static_cast<size_t>(c)])) {
      return Fail(Error::Invalid("preprocess: mean must be finite and std positive"));
    }
  }
  return Ok();
}

// Antialiased bilinear (a triangle filter widened by the reduction factor), as PIL's BILINEAR
// resize: downscaling averages every input pixel instead of skipping some.
void Preprocessor::MakeTaps(int in, int out, Taps& t) {
  if (t.in == in && t.out == out) return;
  t.in = in;
  t.out = out;
  const double scale = static_cast<double>(in) / out;
  const double filter_scale = std::max(1.0, scale);
  const double support = filter_scale;
  t.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.assign(static_cast<size_t>(out), 0);
  t.count.assign(static_cast<size_t>(out), 0);
  t.weights.assign(static_cast<size_t>(out) * static_cast<size_t>(t.max_taps), 0.0f);
  for (int i = 0; i < out; ++i) {
    const double center = (i + 0.5) * scale;
    const int lo = std::max(0, static_cast<int>(center - support + 0.5));
    const int hi = std::min(in, static_cast<int>(center + support + 0.5));
    double sum = 0;
    float* w = &t.weights[static_cast<size_t>(i) * static_cast<size_t>(t.max_taps)];
    const int n = std::min(hi - lo, t.max_taps);
    for (int k = 0; k < n; ++k) {
      const double x = (lo + k - center + 0.5) / filter_scale;
      const double v = std::max(0.0, 1.0 - std::abs(x));
      w[k] = static_cast<float>(v);
      sum += v;
    }
    for (int k = 0; k < n; ++k) w[k] = sum > 0 ? static_cast<float>(w[k] / sum) : 1.0f / n;
    // Taps of weight 0 at either end add nothing (0 * a u8 level): dropped, which leaves an
    // unscaled axis (in == out) one tap of weight 1 per output, a copy.
    int first = 0, count = n;
    while (count > 1 && w[first] == 0.0f) ++first, --count;
    while (count > 1 && w[first + count - 1] == 0.0f) --count;
    if (first > 0) std::copy(w + first, w + first + count, w);
    t.first[static_cast<size_t>(i)] = lo + first;
    t.count[static_cast<size_t>(i)] = count;
  }
  t.identity = true;
  for (int i = 0; i < out && t.identity; ++i) {
    t.identity = t.first[static_cast<size_t>(i)] == i && t.count[static_cast<size_t>(i)] == 1 &&
                 t.weights[static_cast<size_t>(i) * static_cast<size_t>(t.max_taps)] == 1.0f;
  }
}

namespace {

// std::round (half away from zero) of v in [0, 255], without a libm call per pixel: v - trunc(v)
// is exact in float, so this is the same value.
inline float RoundLevel(float v) {
  const float t = static_cast<float>(static_cast<int>(v));
  return t + (v - t >= 0.5f ? 1.0f : 0.0f);
}

}  // namespace

Status Preprocessor::Resample(const ImageView& frame) {
  if (frame.empty() || (frame.channels != 1 && frame.channels != 3)) {
    return Fail(Error::Invalid(fmt::format("preprocess: frame {}x{}x{} is not a grey or RGB image",
                                           frame.width, frame.height, frame.channels)));
  }
  TEND_ASSIGN_OR_RETURN(Roi roi, spec_.roi.Resolve(frame.width, frame.height));
  const int W = spec_.width, H = spec_.height;
  content_ = {0, 0, W, H};
  if (spec_.fit == "letterbox") {
    const double s =
        std::min(static_cast<double>(W) / roi.width, static_cast<double>(H) / roi.height);
    content_.width = std::clamp(static_cast<int>(std::lround(roi.width * s)), 1, W);
    content_.height = std::clamp(static_cast<int>(std::lround(roi.height * s)), 1, H);
    content_.x = (W - content_.width) / 2;
    content_.y = (H - content_.height) / 2;
  }
  const int cw = content_.width, ch = content_.height;
  const int src_planes = (spec_.color == "rgb" && frame.channels == 3) ? 3 : 1;
  MakeTaps(roi.width, cw, h_);
  MakeTaps(roi.height, ch, v_);
  horiz_.resize(static_cast<size_t>(roi.height) * src_planes * cw);
  row_.resize(static_cast<size_t>(roi.width));
  const int fc = frame.channels;
  for (int y = 0; y < roi.height; ++y) {
    const uint8_t* src = frame.row(roi.y + y) + static_cast<size_t>(roi.x) * fc;
    int stride = fc;
    if (src_planes == 1 && fc == 3) {
      for (int x = 0; x < roi.width; ++x)
        row_[x] = Luma(src[3 * x], src[3 * x + 1], src[3 * x + 2]);
      src = row_.data();
      stride = 1;
    }
    for (int p = 0; p < src_planes; ++p) {
      float* dst = &horiz_[(static_cast<size_t>(y) * src_planes + p) * cw];
      if (h_.identity) {  // the same values as the taps below give, without the tap loop
        for (int ox = 0; ox < cw; ++ox) dst[ox] = src[static_cast<size_t>(ox) * stride + p];
        continue;
      }
      for (int ox = 0; ox < cw; ++ox) {
        const float* w = &h_.weights[static_cast<size_t>(ox) * h_.max_taps];
        const uint8_t* s = src + static_cast<size_t>(h_.first[ox]) * stride + p;
        float acc = 0;
        for (int k = 0; k < h_.count[ox]; ++k) acc += w[k] * s[static_cast<size_t>(k) * stride];
        dst[ox] = acc;
      }
    }
  }
  const int planes = spec_.color == "rgb" ? 3 : 1;
  const size_t hw = static_cast<size_t>(W) * H;
  planes_.resize(planes * hw);
  if (spec_.fit == "letterbox")  // stretched content covers the whole canvas
    std::fill(planes_.begin(), planes_.end(), static_cast<float>(PreprocessSpec::kPadLevel));
  for (int p = 0; p < src_planes; ++p) {
    for (int oy = 0; oy < ch; ++oy) {
      float* dst = &planes_[p * hw + static_cast<size_t>(oy + content_.y) * W + content_.x];
      if (v_.identity) {
        const float* s = &horiz_[(static_cast<size_t>(oy) * src_planes + p) * cw];
        std::copy(s, s + cw, dst);
        continue;
      }
      std::fill(dst, dst + cw, 0.0f);
      const float* w = &v_.weights[static_cast<size_t>(oy) * v_.max_taps];
      for (int k = 0; k < v_.count[oy]; ++k) {
        const float* s = &horiz_[(static_cast<size_t>(v_.first[oy] + k) * src_planes + p) * cw];
        for (int ox = 0; ox < cw; ++ox) dst[ox] += w[k] * s[ox];
      }
    }
  }
  for (int p = src_planes; p < planes; ++p) {
    std::copy(planes_.begin(), planes_.begin() + static_cast<std::ptrdiff_t>(hw),
              planes_.begin() + static_cast<std::ptrdiff_t>(p * hw));
  }
  // An unscaled frame holds whole levels already.
  if (!h_.identity || !v_.identity) {
    for (float& v : planes_) v = RoundLevel(std::clamp(v, 0.0f, 255.0f));
  }
  if (spec_.fit == "letterbox") LetterboxLevels();
  return Ok();
}

namespace {

// Mean and standard deviation of the u8 levels (whole numbers 0..255 held as floats) in rectangle
// `c` of every plane, from their histogram: one integer pass instead of two double passes.
std::pair<double, double> LevelStats(const std::vector<float>& planes, int planes_n, int W, int H,
                                     const Roi& c) {
  const size_t hw = static_cast<size_t>(W) * H;
  std::array<int64_t, 256> hist{};
  for (int p = 0; p < planes_n; ++p) {
    for (int y = c.y; y < c.y + c.height; ++y) {
      const float* r = &planes[p * hw + static_cast<size_t>(y) * W];
      for (int x = c.x; x < c.x + c.width; ++x) ++hist[static_cast<size_t>(static_cast<int>(r[x]))];
    }
  }
  const double n = static_cast<double>(planes_n) * c.width * c.height;
  int64_t sum = 0;
  for (int k = 0; k < 256; ++k) sum += k * hist[static_cast<size_t>(k)];
  const double m = static_cast<double>(sum) / n;
  double sq = 0;
  for (int k = 0; k < 256; ++k)
    sq += static_cast<double>(hist[static_cast<size_t>(k)]) * (k - m) * (k - m);
  return {m, std::sqrt(sq / n)};
}

}  // namespace

void Preprocessor::LetterboxLevels() {
  const int W = spec_.width, H = spec_.height;
  const int planes = spec_.color == "rgb" ? 3 : 1;
  const size_t hw = static_cast<size_t>(W) * H;
  const Roi& c = content_;
  double k = 1, b = 0;  // level -> k * level + b on the content
  if (spec_.intensity == "standardize") {
    const auto [m, sd] = LevelStats(planes_, planes, W, H, c);
    k = PreprocessSpec::kStandardizedStd * 255.0 / std::max(sd, 1.0);
    b = PreprocessSpec::kPadLevel - k * m;  // the content's mean lands on the pad level
  }
  constexpr float kPad = PreprocessSpec::kPadLevel;
  for (int p = 0; p < planes; ++p) {
    for (int y = c.y; y < c.y + c.height; ++y) {
      float* r = &planes_[p * hw + static_cast<size_t>(y) * W];
      for (int x = c.x; x < c.x + c.width; ++x) {
        float v = std::round(std::clamp(static_cast<float>(k * r[x] + b), 0.0f, 255.0f));
        r[x] = v == kPad ? kPad + 1 : v;
      }
    }
  }
}

Status Preprocessor::Run(const ImageView& frame, std::span<float> out) {
  if (out.size() != spec_.InputSize()) {
    return Fail(Error::Internal(fmt::format("preprocess: output holds {} floats, the spec needs {}",
                                            out.size(), spec_.InputSize())));
  }
  // Resampled values are rounded to u8 levels, as RunU8 does: a frame that was fitted to the
  // network size elsewhere first (the runtime's image source, a camera delivering that size)
  // then gives exactly the input that fitting saw, not one off by rounding.
  TEND_RETURN_NOT_OK(Resample(frame));
  const size_t hw = static_cast<size_t>(spec_.width) * spec_.height;
  const int planes = spec_.color == "rgb" ? 3 : 1;
  // x = scale * v + offset, then (x - mean_c) / std_c. Letterbox standardised already, in levels.
  float scale = 1.0f / 255.0f, offset = 0.0f;
  if (spec_.intensity == "standardize" && spec_.fit != "letterbox") {
    const auto [m, sd] = LevelStats(planes_, planes, spec_.width, spec_.height,
                                    Roi{0, 0, spec_.width, spec_.height});
    // A flat frame (sd ~ 0) stays flat at 0.5 instead of amplifying noise without bound.
    const double k = PreprocessSpec::kStandardizedStd / std::max(sd, 1.0);
    scale = static_cast<float>(k);
    offset = static_cast<float>(0.5 - k * m);
  }
  for (int c = 0; c < spec_.channels; ++c) {
    const float a = scale / spec_.std[static_cast<size_t>(c)];
    const float b =
        (offset - spec_.mean[static_cast<size_t>(c)]) / spec_.std[static_cast<size_t>(c)];
    const float* s = &planes_[(planes == 1 ? 0 : static_cast<size_t>(c)) * hw];
    float* d = out.data() + static_cast<size_t>(c) * hw;
    for (size_t i = 0; i < hw; ++i) d[i] = s[i] * a + b;
  }
  return Ok();
}

Status Preprocessor::RunU8(const ImageView& frame, Image& out) {
  TEND_RETURN_NOT_OK(Resample(frame));
  const int planes = spec_.color == "rgb" ? 3 : 1;
  const size_t hw = static_cast<size_t>(spec_.width) * spec_.height;
  out.Reset(spec_.width, spec_.height, planes);
  uint8_t* d = out.data();
  for (size_t i = 0; i < hw; ++i) {
    for (int p = 0; p < planes; ++p) {
      const float v = std::clamp(planes_[p * hw + i], 0.0f, 255.0f);
      d[i * planes + p] = static_cast<uint8_t>(std::lround(v));
    }
  }
  return Ok();
}

}  // namespace tend::vision
