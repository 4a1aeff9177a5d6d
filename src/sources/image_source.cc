// Folder replay and folder watch; the dispatch of frame source specs.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>

#include "core/fs.h"
#include "sources/frame_source.h"
#include "sources/image_files.h"
#include "vision/decode.h"

namespace tend::sources {

namespace {

using Clock = std::chrono::steady_clock;

// Reads a whole file into `buf`, reusing its capacity.
Status ReadInto(const std::string& path, std::vector<uint8_t>& buf) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(fs::ErrnoError("open " + path, errno));
  buf.clear();
  size_t used = 0;
  for (;;) {
    if (buf.size() < used + 65536) buf.resize(used + 65536);
    ssize_t n = ::read(fd, buf.data() + used, buf.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return Fail(fs::ErrnoError("read " + path, e));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  ::close(fd);
  buf.resize(used);
  return Ok();
}

// Reads and decodes one file into `f`; a bad file becomes the frame's status, not an error.
void LoadFrame(const std::string& path, const FrameSourceOptions& o, vision::Decoder& dec,
               std::vector<uint8_t>& buf, Frame& f) {
  f.arrival = std::chrono::system_clock::now();
  f.arrival_mono = Clock::now();
  f.path = path;
  f.name = std::filesystem::path(path).filename().string();
  vision::DecodeOptions d;
  d.channels = o.channels;
  d.allow_16bit = o.allow_16bit;
  Status st = ReadInto(path, buf);
  if (st) st = dec.Decode(buf, d, f.image);
  f.decode_ms = std::chrono::duration<double, std::milli>(Clock::now() - f.arrival_mono).count();
  f.status = st ? Ok() : Fail(st.error().Wrap(f.name));
}

// Dates a frame's arrival at `when` (steady clock), the wall clock moved back by as much.
void SetArrival(Frame& f, Clock::time_point when) {
  const auto now = Clock::now();
  if (when > now) when = now;
  f.arrival_mono = when;
  f.arrival = std::chrono::system_clock::now() -
              std::chrono::duration_cast<std::chrono::system_clock::duration>(now - when);
}

class ImageFileSource : public FrameSource {
 public:
  ImageFileSource(std::string spec, std::vector<ImageEntry> files, const FrameSourceOptions& o)
      : spec_(std::move(spec)), files_(std::move(files)), opts_(o) {}

  Result<bool> Next(Frame& f) override {
    if (next_ >= files_.size()) {
      if (!opts_.loop) return false;
      next_ = 0;
    }
    Clock::time_point due{};
    if (opts_.fps > 0) {
      if (index_ == 0) start_ = Clock::now();
      due = start_ + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(static_cast<double>(index_) / opts_.fps));
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_until(lock, due, [&] { return stop_; });
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return false;
    }
    LoadFrame(files_[next_++].path, opts_, decoder_, buf_, f);
    // At a rate, the frame arrived when it was due, even if the reader got to it late (the
    // pipeline held it back): that wait is the part's, and counts against its deadline.
    if (opts_.fps > 0) SetArrival(f, due);
    f.index = index_++;
    f.source = spec_;
    return true;
  }
  void Stop() override {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  std::string Describe() const override {
    return fmt::format("images:{} ({} files{})", spec_, files_.size(),
                       opts_.fps > 0 ? fmt::format(", {} fps", opts_.fps) : std::string());
  }
  bool live() const override { return false; }

 private:
  std::string spec_;
  std::vector<ImageEntry> files_;
  FrameSourceOptions opts_;
  size_t next_ = 0;
  int64_t index_ = 0;
  Clock::time_point start_;
  vision::Decoder decoder_;
  std::vector<uint8_t> buf_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

// A folder a smart camera (or an FTP server) drops images into: each file that is closed after
// writing (IN_CLOSE_WRITE) or renamed into the folder (IN_MOVED_TO) is one frame.
class WatchedFolderSource : public FrameSource {
 public:
  ~WatchedFolderSource() override {
    if (ino_ >= 0) ::close(ino_);
    if (stop_fd_ >= 0) ::close(stop_fd_);
  }

  static Result<std::unique_ptr<FrameSource>> Open(const std::string& dir,
                                                   const FrameSourceOptions& o) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      return Fail(Error::NotFound("watch:" + dir + ": not a folder"));
    }
    auto s = std::unique_ptr<WatchedFolderSource>(new WatchedFolderSource(dir, o));
    s->ino_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (s->ino_ < 0) return Fail(fs::ErrnoError("inotify_init1", errno));
    s->stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->stop_fd_ < 0) return Fail(fs::ErrnoError("eventfd", errno));
    if (::inotify_add_watch(s->ino_, dir.c_str(),
                            IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
      return Fail(fs::ErrnoError("watch " + dir, errno));
    }
    if (o.watch_existing) {
      auto files = ListImages(ImageSetSpec{dir});
      if (files) {
        for (auto& e : *files) s->pending_.emplace_back(e.path, Clock::now());
      }
    }
    return std::unique_ptr<FrameSource>(std::move(s));
  }

  Result<bool> Next(Frame& f) override {
    if (!stopped_.load()) TEND_RETURN_NOT_OK(WaitForEvents(false));  // date what came meanwhile
    while (pending_.empty()) {
      if (stopped_.load()) return false;
      TEND_RETURN_NOT_OK(WaitForEvents());
    }
    if (stopped_.load()) return false;
    auto [path, appeared] = std::move(pending_.front());
    pending_.pop_front();
    LoadFrame(path, opts_, decoder_, buf_, f);
    SetArrival(f, appeared);  // the part arrived when its file did, not when we got to it
    f.index = index_++;
    f.source = "watch:" + dir_;
    return true;
  }
  void Stop() override {
    stopped_.store(true);
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
  }
  std::string Describe() const override { return "watch:" + dir_ + " (inotify)"; }
  bool live() const override { return true; }

 private:
  WatchedFolderSource(std::string dir, const FrameSourceOptions& o)
      : dir_(std::move(dir)), opts_(o) {}

  // Reads what inotify has; each image file closed or moved in becomes pending, dated now (when
  // it appeared: the reader is never held back by the pipeline, a live source drops instead).
  Status WaitForEvents(bool block = true) {
    pollfd p[2] = {{ino_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int rc = ::poll(p, 2, block ? -1 : 0);
    if (rc < 0 && errno == EINTR) return Ok();
    if (rc < 0) return Fail(fs::ErrnoError("poll watch:" + dir_, errno));
    if (!(p[0].revents & POLLIN)) return Ok();
    const auto now = Clock::now();
    alignas(inotify_event) char buf[16384];
    for (;;) {
      ssize_t n = ::read(ino_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      for (char* q = buf; q < buf + n;) {
        auto* ev = reinterpret_cast<inotify_event*>(q);
        q += sizeof(inotify_event) + ev->len;
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
          return Fail(Error::NotFound("watch:" + dir_ + ": the folder was removed or moved"));
        }
        if (ev->mask & IN_Q_OVERFLOW) {
          return Fail(Error::Io("watch:" + dir_ +
                                ": inotify queue overflow (files arrive faster than read)"));
        }
        if (ev->len > 0 && HasImageExtension(ev->name)) {
          pending_.emplace_back((std::filesystem::path(dir_) / ev->name).string(), now);
        }
      }
    }
    return Ok();
  }

  std::string dir_;
  FrameSourceOptions opts_;
  int ino_ = -1, stop_fd_ = -1;
  std::atomic<bool> stopped_{false};
  std::deque<std::pair<std::string, Clock::time_point>> pending_;  // path, when it appeared
  int64_t index_ = 0;
  vision::Decoder decoder_;
  std::vector<uint8_t> buf_;
};

}  // namespace

Result<std::unique_ptr<FrameSource>> OpenImageFiles(const std::string& spec,
                                                    const FrameSourceOptions& options) {
  TEND_ASSIGN_OR_RETURN(auto set, ImageSetSpec::Parse(spec));
  TEND_ASSIGN_OR_RETURN(auto files, ListImages(set));
  if (options.fps < 0) return Fail(Error::Invalid("images: fps must be >= 0"));
  return std::unique_ptr<FrameSource>(
      new ImageFileSource(set.ToString(), std::move(files), options));
}

Result<std::unique_ptr<FrameSource>> OpenWatchedFolder(const std::string& dir,
                                                       const FrameSourceOptions& options) {
  return WatchedFolderSource::Open(dir, options);
}

bool IsFrameSourceSpec(const std::string& spec) {
  for (const char* p : {"images:", "watch:", "v4l2:", "aravis:"}) {
    if (spec.rfind(p, 0) == 0) return true;
  }
  return LooksLikeImageSet(spec);
}

Result<std::unique_ptr<FrameSource>> OpenFrameSource(const std::string& spec,
                                                     const FrameSourceOptions& options) {
  if (spec.rfind("watch:", 0) == 0) return OpenWatchedFolder(spec.substr(6), options);
  if (spec.rfind("v4l2:", 0) == 0) return OpenV4l2(spec.substr(5), options);
  if (spec.rfind("aravis:", 0) == 0) return OpenAravis(spec.substr(7), options);
  return OpenImageFiles(spec, options);
}

}  // namespace tend::sources
