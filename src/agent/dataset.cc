#include "agent/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "sources/source.h"

namespace tend::agent {

namespace {
constexpr double kMaxInputSeconds = 1e7;
}  // namespace

Result<InputSpec> InputSpec::Parse(const std::string& text) {
  InputSpec s;
  auto at = text.rfind('@');
  if (at == std::string::npos || text.rfind("sim", 0) == 0) {
    s.source = text;
    return s;
  }
  s.source = text.substr(0, at);
  std::string range = text.substr(at + 1);
  auto colon = range.find(':');
  if (colon == std::string::npos) {
    return Fail(Error::Invalid("input '" + text + "': time range must be @START:END seconds"));
  }
  auto num = [&](const std::string& v, double& out) -> Status {
    if (v.empty()) return Ok();
    char* end = nullptr;
    out = std::strtod(v.c_str(), &end);
    // A sane range: 0 .. 10^7 s (116 days of signal). 1e300 would overflow the frame count.
    if (!end || *end || !std::isfinite(out) || out < 0 || out > kMaxInputSeconds) {
      return Fail(
          Error::Invalid(fmt::format("input '{}': bad time '{}' in range (seconds from 0 to {:g})",
                                     text, v, kMaxInputSeconds)));
    }
    return Ok();
  };
  TEND_RETURN_NOT_OK(num(range.substr(0, colon), s.start_s));
  TEND_RETURN_NOT_OK(num(range.substr(colon + 1), s.end_s));
  if (s.end_s >= 0 && s.end_s <= s.start_s) {
    return Fail(Error::Invalid("input '" + text + "': range end must be after its start"));
  }
  return s;
}

std::string InputSpec::ToString() const {
  if (start_s == 0 && end_s < 0) return source;
  return fmt::format("{}@{}:{}", source, start_s, end_s < 0 ? std::string() : fmt::format("{}", end_s));
}

double WearInWindow(const std::vector<sources::PressSimulator::StrokeLabel>& truth,
                    int64_t start_frame, int64_t length) {
  auto it = std::lower_bound(truth.begin(), truth.end(), start_frame,
                             [](const auto& l, int64_t f) { return l.onset_frame < f; });
  if (it != truth.end() && it->onset_frame < start_frame + length) return it->wear;
  if (it != truth.begin() && std::prev(it)->onset_frame + length > start_frame) return std::prev(it)->wear;
  return -1;
}

Result<sources::StreamInfo> ProbeStream(const InputSpec& input, const sources::SourceOptions& opts) {
  TEND_ASSIGN_OR_RETURN(auto src, sources::OpenSource(input.source, opts));
  return src->info();
}

Status ForEachWindow(const std::vector<InputSpec>& inputs, const sources::SourceOptions& opts,
                     const WindowingSpec& windowing, double max_duration_s,
                     const std::function<Status(std::span<const float>, const WindowInfo&)>& fn) {
  for (const auto& in : inputs) {
    sources::SourceOptions so = opts;
    if (so.sample_rate <= 0) so.sample_rate = windowing.sample_rate;
    if (so.channels <= 0) so.channels = windowing.channels;
    TEND_ASSIGN_OR_RETURN(auto src, sources::OpenSource(in.source, so));
    TEND_RETURN_NOT_OK(windowing.CheckStream(src->info(), src->Describe()));
    std::vector<sources::PressSimulator::StrokeLabel> truth;
    if (auto* sim = dynamic_cast<sources::PressSimulator*>(src.get())) truth = sim->labels();
    const double sr = src->info().sample_rate;
    const int ch = src->info().channels;
    const int64_t first = static_cast<int64_t>(std::llround(in.start_s * sr));
    int64_t last = in.end_s >= 0 ? static_cast<int64_t>(std::llround(in.end_s * sr)) : -1;
    if (max_duration_s > 0) {
      int64_t cap = first + static_cast<int64_t>(max_duration_s * sr);
      last = last < 0 ? cap : std::min(last, cap);
    }
    TEND_ASSIGN_OR_RETURN(auto windower, windowing.MakeWindower());
    std::vector<float> buf(4096 * static_cast<size_t>(ch));
    int64_t pos = 0, produced = 0;
    Status st = Ok();
    auto emit = [&](const sources::WindowView& v) {
      if (!st) return;
      WindowInfo info{&in, produced++, first + v.start_frame, (first + v.start_frame) / sr, -1};
      if (!truth.empty()) info.wear = WearInWindow(truth, first + v.start_frame, windowing.window);
      st = fn(v.samples, info);
    };
    while (st) {
      size_t want = 4096;
      if (last >= 0) {
        if (pos >= last) break;
        want = static_cast<size_t>(std::min<int64_t>(4096, last - pos));
      }
      auto r = src->Read(buf, want);
      if (!r) return Fail(r.error());
      if (*r == 0) break;
      int64_t n = static_cast<int64_t>(*r);
      // Skip what lies before the range start.
      int64_t skip = std::clamp<int64_t>(first - pos, 0, n);
      pos += n;
      if (skip < n) {
        windower->Push(std::span<const float>(buf.data() + skip * ch, static_cast<size_t>((n - skip) * ch)),
                       static_cast<size_t>(n - skip), emit);
      }
    }
    TEND_RETURN_NOT_OK(st);
    if (first > 0 && pos <= first) {
      return Fail(Error::Invalid(in.ToString() + ": the range starts after the end of the input"));
    }
  }
  return Ok();
}

}  // namespace tend::agent
