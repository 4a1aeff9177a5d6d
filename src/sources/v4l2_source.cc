// V4L2 cameras (USB UVC webcams, CSI cameras) through libv4l2, which converts whatever the
// device delivers (YUYV, MJPEG, ...) into grey or RGB24 and emulates read() on streaming-only
// devices. libv4l is LGPL-2.1+: linked dynamically, and only with -DTEND_WITH_V4L2=ON (the
// default where Debian's libv4l-dev is installed).
#include <fmt/format.h>

#include "sources/frame_source.h"

#ifdef TEND_WITH_V4L2
#include <fcntl.h>
#include <libv4l2.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/fs.h"
#endif

namespace tend::sources {

#ifdef TEND_WITH_V4L2
namespace {

using Clock = std::chrono::steady_clock;

class V4l2Source : public FrameSource {
 public:
  ~V4l2Source() override {
    if (fd_ >= 0) v4l2_close(fd_);
    if (stop_fd_ >= 0) ::close(stop_fd_);
  }

  static Result<std::unique_ptr<FrameSource>> Open(const std::string& dev,
                                                   const FrameSourceOptions& o) {
    auto s = std::unique_ptr<V4l2Source>(new V4l2Source(dev, o));
    s->fd_ = v4l2_open(dev.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (s->fd_ < 0) return Fail(fs::ErrnoError("v4l2: open " + dev, errno));
    s->stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->stop_fd_ < 0) return Fail(fs::ErrnoError("eventfd", errno));
    TEND_RETURN_NOT_OK(s->Configure());
    return std::unique_ptr<FrameSource>(std::move(s));
  }

  Result<bool> Next(Frame& f) override {
    const size_t size = fmt_.fmt.pix.sizeimage;
    buf_.resize(size);
    for (;;) {
      if (stopped_.load()) return false;
      pollfd p[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      int rc = ::poll(p, 2, static_cast<int>(opts_.timeout_s * 1000));
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0) return Fail(fs::ErrnoError("v4l2: poll " + dev_, errno));
      if (rc == 0) {
        return Fail(Error::Timeout(
            fmt::format("v4l2: {} delivered no frame for {} s", dev_, opts_.timeout_s)));
      }
      if (stopped_.load()) return false;
      ssize_t n = v4l2_read(fd_, buf_.data(), size);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n < 0) return Fail(fs::ErrnoError("v4l2: read " + dev_, errno));
      f.arrival = std::chrono::system_clock::now();
      f.arrival_mono = Clock::now();
      CopyFrame(f);
      return true;
    }
  }
  void Stop() override {
    stopped_.store(true);
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
  }
  std::string Describe() const override {
    return fmt::format("v4l2:{} ({}x{} {})", dev_, fmt_.fmt.pix.width, fmt_.fmt.pix.height,
                       channels_ == 1 ? "grey" : "rgb");
  }
  bool live() const override { return true; }

 private:
  V4l2Source(std::string dev, const FrameSourceOptions& o) : dev_(std::move(dev)), opts_(o) {}

  Status Configure() {
    v4l2_capability cap{};
    if (v4l2_ioctl(fd_, VIDIOC_QUERYCAP, &cap) < 0)
      return Fail(fs::ErrnoError("v4l2: VIDIOC_QUERYCAP " + dev_, errno));
    const uint32_t caps =
        (cap.capabilities & V4L2_CAP_DEVICE_CAPS) ? cap.device_caps : cap.capabilities;
    if (!(caps & V4L2_CAP_VIDEO_CAPTURE)) {
      return Fail(Error::Unsupported("v4l2: " + dev_ + " is not a video capture device"));
    }
    fmt_.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (v4l2_ioctl(fd_, VIDIOC_G_FMT, &fmt_) < 0)
      return Fail(fs::ErrnoError("v4l2: VIDIOC_G_FMT " + dev_, errno));
    channels_ = opts_.channels == 1 ? 1 : 3;
    const uint32_t want = channels_ == 1 ? V4L2_PIX_FMT_GREY : V4L2_PIX_FMT_RGB24;
    fmt_.fmt.pix.pixelformat = want;
    if (opts_.width > 0) fmt_.fmt.pix.width = static_cast<uint32_t>(opts_.width);
    if (opts_.height > 0) fmt_.fmt.pix.height = static_cast<uint32_t>(opts_.height);
    fmt_.fmt.pix.field = V4L2_FIELD_NONE;
    if (v4l2_ioctl(fd_, VIDIOC_S_FMT, &fmt_) < 0)
      return Fail(fs::ErrnoError("v4l2: VIDIOC_S_FMT " + dev_, errno));
    if (fmt_.fmt.pix.pixelformat != want) {
      return Fail(Error::Unsupported(fmt::format("v4l2: {} cannot deliver {} frames", dev_,
                                                 channels_ == 1 ? "grey" : "RGB24")));
    }
    if (fmt_.fmt.pix.width == 0 || fmt_.fmt.pix.height == 0 || fmt_.fmt.pix.sizeimage == 0) {
      return Fail(Error::Unsupported("v4l2: " + dev_ + " reports an empty frame format"));
    }
    return Ok();
  }

  void CopyFrame(Frame& f) {
    const int w = static_cast<int>(fmt_.fmt.pix.width), h = static_cast<int>(fmt_.fmt.pix.height);
    const size_t row = static_cast<size_t>(w) * channels_;
    const size_t stride = std::max<size_t>(fmt_.fmt.pix.bytesperline, row);
    f.image.Reset(w, h, channels_);
    for (int y = 0; y < h; ++y) {
      std::memcpy(f.image.data() + y * row, buf_.data() + y * stride, row);
    }
    f.index = index_++;
    f.source = "v4l2:" + dev_;
    f.name = fmt::format("frame-{}", f.index);
    f.path.clear();
    f.decode_ms = 0;
    f.status = Ok();
  }

  std::string dev_;
  FrameSourceOptions opts_;
  int fd_ = -1, stop_fd_ = -1;
  int channels_ = 3;
  v4l2_format fmt_{};
  std::vector<uint8_t> buf_;
  std::atomic<bool> stopped_{false};
  int64_t index_ = 0;
};

}  // namespace

Result<std::unique_ptr<FrameSource>> OpenV4l2(const std::string& device,
                                              const FrameSourceOptions& options) {
  if (device.empty()) return Fail(Error::Invalid("v4l2: no device given (v4l2:/dev/video0)"));
  return V4l2Source::Open(device, options);
}

#else

Result<std::unique_ptr<FrameSource>> OpenV4l2(const std::string& device,
                                              const FrameSourceOptions&) {
  return Fail(Error::Unsupported("v4l2:" + device +
                                 ": this tend was built without libv4l (cmake -DTEND_WITH_V4L2=ON, "
                                 "Debian libv4l-dev)"));
}

#endif

}  // namespace tend::sources
