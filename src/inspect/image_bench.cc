#include "inspect/image_bench.h"

#include <fmt/format.h>

#include <chrono>

#include "core/fs.h"
#include "decide/decider.h"
#include "sources/image_files.h"
#include "vision/decode.h"

namespace tend::inspect {

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// The encoded frames, in memory: the files as they are, or resized and re-encoded.
Result<std::vector<std::string>> LoadFrames(const ImageBenchOptions& o) {
  std::vector<std::string> frames;
  vision::Decoder dec;
  vision::Image img, small;
  vision::PreprocessSpec spec;
  spec.width = o.frame_width;
  spec.height = o.frame_height;
  spec.color = "rgb";
  for (const auto& in : o.inputs) {
    TEND_ASSIGN_OR_RETURN(auto set, sources::ImageSetSpec::Parse(in));
    TEND_ASSIGN_OR_RETURN(auto list, sources::ListImages(set));
    for (const auto& e : list) {
      TEND_ASSIGN_OR_RETURN(std::string bytes, fs::ReadFile(e.path));
      if (o.frame_width > 0) {
        const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
        TEND_RETURN_NOT_OK(dec.Decode({p, bytes.size()}, {}, img));
        spec.color = img.channels() == 3 ? "rgb" : "grey";
        spec.channels = img.channels() == 3 ? 3 : 1;
        vision::Preprocessor pre(spec);
        TEND_RETURN_NOT_OK(pre.RunU8(img.view(), small));
        TEND_ASSIGN_OR_RETURN(bytes, vision::EncodeJpeg(small.view(), 90));
      }
      frames.push_back(std::move(bytes));
    }
  }
  if (frames.empty()) return Fail(Error::Invalid("bench: no images"));
  return frames;
}

}  // namespace

Result<ImageBenchSamples> BenchImagePipeline(ImageModel& model, const ImageBenchOptions& o) {
  if (o.frames < 1 || o.warmup < 0)
    return Fail(Error::Invalid("bench: frames must be >= 1, warmup >= 0"));
  if ((o.frame_width > 0) != (o.frame_height > 0))
    return Fail(Error::Invalid("bench: give both frame width and height"));
  TEND_ASSIGN_OR_RETURN(auto frames, LoadFrames(o));
  ImageBenchSamples r;
  r.images = static_cast<int64_t>(frames.size());
  for (auto* v : {&r.decode, &r.preprocess, &r.inference, &r.scoring, &r.decision, &r.total}) {
    v->reserve(static_cast<size_t>(o.frames));
  }
  vision::Decoder dec;
  vision::Image img;
  ImageScore s;
  model.PrepareOut(s);
  Decider decider(model.thresholds(), DebounceOptions{1, 1});
  Decision d;
  d.model_name = model.card().name;
  d.model_version = model.card().version;
  for (int i = 0; i < o.warmup + o.frames; ++i) {
    const std::string& bytes = frames[static_cast<size_t>(i) % frames.size()];
    const auto t0 = Clock::now();
    TEND_RETURN_NOT_OK(
        dec.Decode({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, {}, img));
    const auto t1 = Clock::now();
    TEND_RETURN_NOT_OK(model.Score(img.view(), s));
    const auto t2 = Clock::now();
    d.window_index = i;
    d.anomaly_score = s.score;
    d.timestamp = std::chrono::system_clock::now();
    d.inference_ms = s.inference_ms + s.scoring_ms;
    d.features_ms = s.preprocess_ms;
    decider.Decide(d);
    const auto t3 = Clock::now();
    d.latency_ms = Ms(t3 - t0);
    if (i < o.warmup) continue;
    r.decode.push_back(Ms(t1 - t0));
    r.preprocess.push_back(s.preprocess_ms);
    r.inference.push_back(s.inference_ms);
    r.scoring.push_back(s.scoring_ms);
    r.decision.push_back(Ms(t3 - t2));
    r.total.push_back(Ms(t3 - t0));
  }
  r.frame_width = img.width();
  r.frame_height = img.height();
  return r;
}

}  // namespace tend::inspect
