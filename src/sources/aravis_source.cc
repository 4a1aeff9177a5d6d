// GigE Vision and USB3 Vision cameras through Aravis (LGPL-2.1+, linked dynamically; built where
// libaravis-dev is found, -DTEND_WITH_ARAVIS=OFF leaves it out). Aravis receives frames on its own
// stream thread into a ring of buffers; Next() pops one, copies it into the frame and gives the
// buffer back.
#include <fmt/format.h>

#include "sources/frame_source.h"

#ifdef TEND_WITH_ARAVIS
#include <arv.h>

#include <atomic>
#include <cstring>
#endif

namespace tend::sources {

#ifdef TEND_WITH_ARAVIS
namespace {

using Clock = std::chrono::steady_clock;

std::string TakeError(GError*& e) {
  std::string m = e ? e->message : "unknown error";
  g_clear_error(&e);
  return m;
}

class AravisSource : public FrameSource {
 public:
  ~AravisSource() override {
    if (camera_ && started_) arv_camera_stop_acquisition(camera_, nullptr);
    if (stream_) g_object_unref(stream_);
    if (camera_) g_object_unref(camera_);
  }

  static Result<std::unique_ptr<FrameSource>> Open(const std::string& id,
                                                   const FrameSourceOptions& o) {
    auto s = std::unique_ptr<AravisSource>(new AravisSource(id, o));
    TEND_RETURN_NOT_OK(s->Configure());
    return std::unique_ptr<FrameSource>(std::move(s));
  }

  Result<bool> Next(Frame& f) override {
    const auto give_up = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(opts_.timeout_s));
    for (;;) {
      if (stopped_.load()) return false;
      ArvBuffer* b = arv_stream_timeout_pop_buffer(stream_, 100000);  // 100 ms: Stop() stays prompt
      if (!b) {
        if (Clock::now() > give_up) {
          return Fail(Error::Timeout(
              fmt::format("aravis: {} delivered no frame for {} s", name_, opts_.timeout_s)));
        }
        continue;
      }
      Fill(b, f);
      arv_stream_push_buffer(stream_, b);
      return true;
    }
  }
  void Stop() override { stopped_.store(true); }
  std::string Describe() const override {
    return fmt::format("aravis:{} ({}x{} {})", name_, width_, height_,
                       channels_ == 1 ? "Mono8" : "RGB8");
  }
  bool live() const override { return true; }

 private:
  AravisSource(std::string id, const FrameSourceOptions& o) : id_(std::move(id)), opts_(o) {}

  Status Configure() {
    GError* e = nullptr;
    camera_ = arv_camera_new(id_.empty() ? nullptr : id_.c_str(), &e);
    if (!camera_) {
      return Fail(Error::NotFound(fmt::format("aravis: camera '{}': {}",
                                              id_.empty() ? "(first found)" : id_, TakeError(e))));
    }
    const char* dev = arv_camera_get_device_id(camera_, nullptr);
    name_ = dev ? dev : id_;
    channels_ = opts_.channels == 3 ? 3 : 1;
    arv_camera_set_pixel_format(
        camera_, channels_ == 1 ? ARV_PIXEL_FORMAT_MONO_8 : ARV_PIXEL_FORMAT_RGB_8_PACKED, &e);
    if (e)
      return Fail(Error::Unsupported(fmt::format("aravis: {}: pixel format {}: {}", name_,
                                                 channels_ == 1 ? "Mono8" : "RGB8", TakeError(e))));
    if (opts_.width > 0 && opts_.height > 0) {
      arv_camera_set_region(camera_, 0, 0, opts_.width, opts_.height, &e);
      if (e)
        return Fail(Error::Unsupported(fmt::format("aravis: {}: region {}x{}: {}", name_,
                                                   opts_.width, opts_.height, TakeError(e))));
    }
    arv_camera_get_region(camera_, nullptr, nullptr, &width_, &height_, &e);
    if (e) return Fail(Error::Io(fmt::format("aravis: {}: {}", name_, TakeError(e))));
    stream_ = arv_camera_create_stream(camera_, nullptr, nullptr, &e);
    if (!stream_)
      return Fail(Error::Io(fmt::format("aravis: {}: stream: {}", name_, TakeError(e))));
    const guint payload = arv_camera_get_payload(camera_, &e);
    if (e) return Fail(Error::Io(fmt::format("aravis: {}: payload: {}", name_, TakeError(e))));
    for (int i = 0; i < 8; ++i) arv_stream_push_buffer(stream_, arv_buffer_new(payload, nullptr));
    arv_camera_set_acquisition_mode(camera_, ARV_ACQUISITION_MODE_CONTINUOUS, nullptr);
    arv_camera_start_acquisition(camera_, &e);
    if (e) return Fail(Error::Io(fmt::format("aravis: {}: start: {}", name_, TakeError(e))));
    started_ = true;
    return Ok();
  }

  // A buffer that did not arrive whole (lost packets, wrong size) is a frame with an error
  // status: the pipeline still owes the part a decision.
  void Fill(ArvBuffer* b, Frame& f) {
    const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    const int64_t ts = static_cast<int64_t>(arv_buffer_get_system_timestamp(b));
    const int64_t age_ns = ts > 0 && ts <= now_ns ? now_ns - ts : 0;
    f.arrival = std::chrono::system_clock::now() - std::chrono::nanoseconds(age_ns);
    f.arrival_mono = Clock::now() - std::chrono::nanoseconds(age_ns);
    f.index = index_++;
    f.source = "aravis:" + name_;
    f.name = fmt::format("frame-{}", arv_buffer_get_frame_id(b));
    f.path.clear();
    f.decode_ms = 0;
    size_t size = 0;
    const void* data = arv_buffer_get_data(b, &size);
    const int w = arv_buffer_get_image_width(b), h = arv_buffer_get_image_height(b);
    const size_t need = static_cast<size_t>(w) * static_cast<size_t>(h) * channels_;
    if (arv_buffer_get_status(b) != ARV_BUFFER_STATUS_SUCCESS) {
      f.status = Fail(Error::Corrupt(
          fmt::format("aravis: {} frame {} incomplete (buffer status {})", name_,
                      arv_buffer_get_frame_id(b), static_cast<int>(arv_buffer_get_status(b)))));
      return;
    }
    if (w <= 0 || h <= 0 || size < need) {
      f.status =
          Fail(Error::Corrupt(fmt::format("aravis: {} frame {}: {} bytes for {}x{}x{}", name_,
                                          arv_buffer_get_frame_id(b), size, w, h, channels_)));
      return;
    }
    f.image.Reset(w, h, channels_);
    std::memcpy(f.image.data(), data, need);
    f.status = Ok();
  }

  std::string id_, name_;
  FrameSourceOptions opts_;
  ArvCamera* camera_ = nullptr;
  ArvStream* stream_ = nullptr;
  bool started_ = false;
  int channels_ = 1;
  gint width_ = 0, height_ = 0;
  std::atomic<bool> stopped_{false};
  int64_t index_ = 0;
};

}  // namespace

Result<std::unique_ptr<FrameSource>> OpenAravis(const std::string& device_id,
                                                const FrameSourceOptions& options) {
  return AravisSource::Open(device_id, options);
}

#else

Result<std::unique_ptr<FrameSource>> OpenAravis(const std::string& device_id,
                                                const FrameSourceOptions&) {
  return Fail(
      Error::Unsupported("aravis:" + device_id +
                         ": this tend was built without Aravis (install Debian libaravis-dev "
                         "and configure with -DTEND_WITH_ARAVIS=ON)"));
}

#endif

}  // namespace tend::sources
