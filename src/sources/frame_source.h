// Image frame sources for visual inspection: a folder or a glob of image files replayed in name
// order (at a rate, or as fast as the reader takes them), a watched folder (each new file as a
// smart camera drops it, through inotify), a V4L2 camera (libv4l2) and, with TEND_WITH_ARAVIS,
// GigE Vision / USB3 Vision cameras through Aravis. A frame is u8 [height, width, channels] with
// a per-source index, its arrival time and the source's name.
//
// Specs: "images:DIR", "images:DIR/*.png" (a glob), "images:DIR@every=5" (see image_files.h),
// "watch:DIR", "v4l2:/dev/video0", "aravis:" (first camera) or "aravis:DEVICE_ID".
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "vision/image.h"

namespace tend::sources {

struct Frame {
  vision::Image image;                            // valid when status is OK
  int64_t index = -1;                             // 0-based per source
  std::chrono::system_clock::time_point arrival;  // wall clock (records, logs)
  // Deadlines count from here: a camera's driver timestamp, the moment a watched file was
  // closed or moved into the folder, the moment a replayed file was due (at a rate).
  std::chrono::steady_clock::time_point arrival_mono;
  std::string source;    // the source's spec, e.g. "images:parts/"
  std::string name;      // file name, or the camera's frame id
  std::string path;      // files: the full path; cameras: empty
  double decode_ms = 0;  // time spent turning the bytes into pixels
  // Not OK: the frame arrived but could not be decoded (truncated, not an image, 16-bit...).
  // The stream goes on; the pipeline owes this frame a (fail-safe) decision.
  Status status;
};

struct FrameSourceOptions {
  double fps = 0;               // files: replay rate in frames per second; 0 = as fast as read
  bool loop = false;            // files: start over after the last one
  int channels = 0;             // 0 = as stored/delivered, 1 = grey, 3 = RGB
  bool allow_16bit = false;     // 16-bit PNGs: keep the high byte instead of refusing
  bool watch_existing = false;  // watch: also deliver the files already there, oldest name first
  int width = 0, height = 0;    // cameras: requested size (0 = the device's current)
  double timeout_s = 5;         // cameras: no frame for this long ends the stream with an error
};

class FrameSource {
 public:
  virtual ~FrameSource() = default;
  // Fills `frame` with the next frame, reusing its buffers. Returns false at the end of the
  // stream or after Stop(). A source-level failure (a folder that vanished, a camera that stopped
  // delivering) is an error; a single bad file is a frame with a non-OK status instead.
  virtual Result<bool> Next(Frame& frame) = 0;
  // Thread-safe: a Next() blocked in pacing, a watch or a camera returns false promptly.
  virtual void Stop() = 0;
  virtual std::string Describe() const = 0;
  // Cameras and watched folders produce frames on their own time: the pipeline must never make
  // them wait (counted overruns instead); a replayed folder can wait for the pipeline.
  virtual bool live() const = 0;
};

Result<std::unique_ptr<FrameSource>> OpenFrameSource(const std::string& spec,
                                                     const FrameSourceOptions& options = {});

// True for specs that name image frames rather than a signal ("images:", "watch:", "v4l2:",
// "aravis:", or a folder/glob/file of JPEG/PNG images).
bool IsFrameSourceSpec(const std::string& spec);

Result<std::unique_ptr<FrameSource>> OpenImageFiles(const std::string& spec,
                                                    const FrameSourceOptions& options);
Result<std::unique_ptr<FrameSource>> OpenWatchedFolder(const std::string& dir,
                                                       const FrameSourceOptions& options);
Result<std::unique_ptr<FrameSource>> OpenV4l2(const std::string& device,
                                              const FrameSourceOptions& options);
// Errors with kUnsupported when tend was built without TEND_WITH_ARAVIS.
Result<std::unique_ptr<FrameSource>> OpenAravis(const std::string& device_id,
                                                const FrameSourceOptions& options);

}  // namespace tend::sources
