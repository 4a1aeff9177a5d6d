// Source "images": camera frames for an image model — a folder or glob of JPEG/PNG files
// ("images:DIR", "images:DIR/*.png", "images:DIR@every=5") replayed at images.fps x agent.speed
// (agent.speed 0: as fast as the pipeline takes them, every image decided), a watched folder
// ("watch:DIR": each new file as a smart camera drops it), a V4L2 camera ("v4l2:/dev/videoN") or,
// built with TEND_WITH_ARAVIS, a GigE/USB3 Vision camera ("aravis:" or "aravis:DEVICE_ID").
//
// Every event is u8 [height, width, channels] exactly as the model takes it: a frame of another
// size or colour is fitted with the same antialiased resampler as the model's preprocessing,
// after cropping the model's ROI (ModelInput::roi), exactly as the model was fitted. A frame
// that cannot be decoded still becomes an event, with EventView::error saying why (and zero
// pixels), so the agent decides that part fail-safe and counts it.
//
// The deadline counts from each frame's arrival (Frame::arrival_mono: the camera driver's
// timestamp, the moment a watched file appeared, the moment a replayed file was due); a replay
// at agent.speed 0 is due whenever the pipeline takes the next frame.
#include <algorithm>
#include <thread>

#include "core/log.h"
#include "runtime/component_util.h"
#include "runtime/frame_fit.h"
#include "sources/frame_source.h"

namespace tend::runtime {
namespace {

class FrameEventReader final : public agent::EventReader {
 public:
  FrameEventReader(std::unique_ptr<sources::FrameSource> src, const agent::ModelInput& in,
                   bool paced)
      : src_(std::move(src)),
        spec_(in.event),
        zeros_(in.event.bytes(), std::byte{0}),
        paced_(paced),
        fit_(in) {}
  const EventSpec& spec() const override { return spec_; }
  bool live() const override { return src_->live(); }
  bool due_when_taken() const override { return !src_->live() && !paced_; }
  std::string Describe() const override { return src_->Describe(); }

  Status Run(const std::atomic<bool>& stop, const agent::EmitEvent& emit) override {
    std::atomic<bool> done{false};
    std::thread stopper([&] {  // Next() may wait (pacing, a watch, a camera): stop it promptly
      while (!done.load() && !stop.load())
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      src_->Stop();
    });
    Status st = Loop(stop, emit);
    done.store(true);
    stopper.join();
    return st;
  }

 private:
  Status Loop(const std::atomic<bool>& stop, const agent::EmitEvent& emit) {
    sources::Frame f;
    while (!stop.load()) {
      auto more = src_->Next(f);
      if (!more) return Fail(more.error());
      if (!*more) break;
      EventView v;
      v.index = f.index;
      v.event_id = f.index;
      if (f.index == 0) first_ = f.arrival_mono;
      v.t_start_s = std::chrono::duration<double>(f.arrival_mono - first_).count();
      v.arrival = f.arrival_mono;
      v.spec = spec_;
      auto fitted = f.status ? fit_.Fit(f.image.view())
                             : Result<std::span<const std::byte>>(Fail(f.status.error()));
      if (fitted) {
        v.bytes = *fitted;
      } else {
        error_.assign(f.status ? f.name + ": " + fitted.error().message : fitted.error().message);
        v.error = error_;
        v.bytes = zeros_;
      }
      emit(v);
    }
    return Ok();
  }

  std::unique_ptr<sources::FrameSource> src_;
  EventSpec spec_;
  std::vector<std::byte> zeros_;
  bool paced_;         // a replay at a rate, a watch or a camera: frames carry their arrival
  std::string error_;  // the current frame's error (EventView::error points here)
  FrameFitter fit_;
  std::chrono::steady_clock::time_point first_;
};

Result<std::unique_ptr<agent::EventReader>> Open(const SourceRequest& req) {
  const EventSpec& e = req.input->event;
  if (!TakesFrames(*req.input)) {
    return Fail(Error::Invalid("source '" + req.spec +
                               "' delivers camera frames u8[h,w,c], but the model takes " +
                               req.input->Describe()));
  }
  sources::FrameSourceOptions o;
  const double speed = req.settings->GetFloat("agent.speed");
  o.fps = speed > 0 ? req.settings->GetFloat("images.fps") * speed : 0;
  o.channels = static_cast<int>(e.dims[2]);
  o.allow_16bit = req.settings->GetBool("images.allow_16bit");
  o.watch_existing = req.settings->GetBool("images.watch_existing");
  std::string spec = req.spec;
  if (spec.rfind("images:", 0) != 0 && spec.find(':') == std::string::npos) spec = "images:" + spec;
  TEND_ASSIGN_OR_RETURN(auto src, sources::OpenFrameSource(spec, o));
  return std::unique_ptr<agent::EventReader>(
      new FrameEventReader(std::move(src), *req.input, o.fps > 0));
}

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(source_images) {
  using namespace tend;
  using D = SettingDef;
  runtime::SourceDescriptor d;
  d.name = "images";
  d.description =
      "camera frames: images:DIR|GLOB (replayed at images.fps x agent.speed), watch:DIR, "
      "v4l2:/dev/videoN, aravis:[ID] (with TEND_WITH_ARAVIS)";
  d.extensions = {"jpg", "jpeg", "png"};
  d.schemes = {"watch", "v4l2", "aravis"};
  d.keys = {
      D::Float("images.fps", 10, 0.001, 10000, "Image files: replay rate at agent.speed 1")
          .Flag("--fps")
          .PerAsset("fps"),
      D::Bool("images.allow_16bit", false,
              "16-bit PNGs: keep the high byte instead of deciding the part fail-safe")
          .PerAsset("allow_16bit"),
      D::Bool("images.watch_existing", false,
              "watch:DIR also decides the images already in the folder")
          .PerAsset("watch_existing"),
  };
  d.open = runtime::Open;
  return registry.AddSource(std::move(d));
}
