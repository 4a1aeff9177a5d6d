// Sensor sources behind one interface: WAV and CSV files, raw float32 from stdin or a pipe, and a
// stamping-press simulator with a die-wear knob. Every source delivers interleaved float frames
// (units as recorded, g for the simulator) and turns bad input into one-line errors, never crashes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::sources {

struct StreamInfo {
  double sample_rate = 0;
  int channels = 0;
  std::vector<std::string> channel_names;
  int64_t total_frames = -1;  // -1: unknown or endless
};

class Source {
 public:
  virtual ~Source() = default;
  virtual const StreamInfo& info() const = 0;
  // Reads up to max_frames INTERLEAVED frames into out (out.size() >= max_frames * channels).
  // Returns the number of frames read; 0 means end of stream. Errors name the file or stream and,
  // for bad samples (NaN/Inf), the frame index and channel.
  virtual Result<size_t> Read(std::span<float> out, size_t max_frames) = 0;
  // e.g. "wav:a.wav (12000 Hz, 2 ch, float32)".
  virtual std::string Describe() const = 0;
  // A source that can wait for input (a pipe, a socket) returns from Read with 0 frames within
  // about 100 ms of *flag becoming true, instead of waiting on. nullptr: no interrupt. Files and
  // the simulator never wait, and ignore it.
  virtual void SetInterrupt(const std::atomic<bool>* /*flag*/) {}
  // The source's own timestamps (seconds) of the frames the latest Read returned, one per frame,
  // when it keeps a clock of its own (a CSV time column); empty otherwise. Valid until the next
  // Read.
  virtual std::span<const double> FrameTimes() const { return {}; }
};

struct SourceOptions {
  // Required for raw input and for CSV without a time column; overrides nothing else.
  double sample_rate = 0;
  int channels = 0;      // required for raw input
  int wav_channel = -1;  // pick one channel of a multi-channel WAV or CSV file (-1 = all)
  // Deliver NaN/Inf samples instead of failing on them (raw input and float WAV files). The agent
  // sets it: a window with a bad sample gets a counted fail-safe decision and the run goes on;
  // commands that read whole files (train, score) keep the error.
  bool keep_non_finite = false;
};

// Opens by spec: "path.wav", "path.csv", "-" (raw float32 LE from stdin), "fd:N" (raw from an
// inherited pipe fd), "sim" or "sim:key=value,..." (see SimulatorOptions::Parse; there
// opts.sample_rate and opts.channels, when set, replace the defaults of sr and ch, so a
// simulator can be made to match a model). A path with another extension is opened as WAV when
// it starts with "RIFF".
Result<std::unique_ptr<Source>> OpenSource(const std::string& spec, const SourceOptions& opts = {});

// WAV: PCM 8/16/24/32-bit integer (scaled to [-1, 1)), IEEE float 32/64-bit, plain or
// WAVE_FORMAT_EXTENSIBLE, any channel count and sample rate.
Result<std::unique_ptr<Source>> OpenWav(const std::string& path, const SourceOptions& opts = {});

// CSV: one column per channel, separated by ',', ';' or tab; an optional header row names the
// channels; an optional first column named t, time, time_s or t_s (seconds) gives the sample
// rate. Blank lines and lines starting with '#' are skipped.
Result<std::unique_ptr<Source>> OpenCsv(const std::string& path, const SourceOptions& opts = {});

// Raw interleaved little-endian float32 frames from a file descriptor (stdin, a pipe, a FIFO).
// The caller keeps ownership of fd; it is never closed here. Read returns as soon as at least one
// whole frame is available, so a live pipe is not delayed until max_frames have arrived.
Result<std::unique_ptr<Source>> OpenRawFd(int fd, const SourceOptions& opts, std::string name);

// Streams float32 frames into a WAV file (IEEE float, format tag 3). The file is written under a
// temporary name and renamed into place by Close(), so a crash never leaves a half-written WAV
// under the final name. A symlink's target is replaced (not the link); a device or FIFO
// (/dev/null, a named pipe) is written through at Close(), never renamed over.
class WavWriter {
 public:
  static Result<std::unique_ptr<WavWriter>> Create(const std::string& path, double sample_rate,
                                                   int channels);
  ~WavWriter();
  // Appends whole frames (interleaved.size() must be a multiple of channels).
  Status Write(std::span<const float> interleaved);
  // Patches the header sizes and renames the file into place. Without Close() nothing is left.
  Status Close();
  int64_t frames_written() const { return frames_; }

 private:
  WavWriter() = default;
  std::string path_, tmp_path_;
  bool special_ = false;  // path_ is a device, FIFO or socket
  int fd_ = -1;
  int channels_ = 0;
  int64_t frames_ = 0;
};

Status WriteWavFloat32(const std::string& path, double sample_rate, int channels,
                       std::span<const float> interleaved);

// ------------------------------------------------------------------------------------------------
// Stamping-press simulator (physics in simulator.cc). One stroke every 60/spm seconds: an impact
// ringing the die set's structural modes near 230/290/350 Hz, over background noise and mains hum.
// Die wear (0 new .. 1 failing) lowers and damps the modes, adds clearance rattle and secondary
// impacts, and sharpens the contact (more high-frequency content). Deterministic for a seed.
struct SimulatorOptions {
  double sample_rate = 10000;   // sr
  double strokes_per_min = 18;  // spm
  int64_t strokes = 100;   // strokes, then end of stream (<= 0: endless, wear stays wear_start)
  double wear_start = 0;   // wear: wear of the first stroke
  double wear_end = 0;     // wear_end: wear of the last stroke (linear in between)
  uint64_t seed = 1;       // seed
  double noise_g = 0.05;   // noise: broadband background noise, RMS in g
  double hum_g = 0.03;     // hum: mains hum amplitude in g (fundamental; 2nd, 3rd smaller)
  double hum_hz = 50;      // hum_hz: mains frequency (50 or 60)
  double impact_g = 4.0;   // amp: impact force scale; the main mode rings at about this, in g
  double jitter_ms = 3.0;  // jitter_ms: stroke timing jitter (standard deviation)
  int channels = 1;        // ch: 1 (die-set accelerometer) or 2 (+ press frame)

  // Parses "key=value,key=value" on top of `base`; a leading "sim:" (or a bare "sim") is
  // accepted, so "--sim sim:wear=0.5" works wherever a --sim flag is taken. Keys: sr, spm,
  // strokes, seed, wear, wear_end (defaults to wear when absent), noise, hum, hum_hz, amp,
  // jitter_ms, ch.
  static Result<SimulatorOptions> Parse(const std::string& kv, const SimulatorOptions& base);
  static Result<SimulatorOptions> Parse(const std::string& kv);  // on top of the defaults
  // The canonical spec, "sim:sr=10000,spm=18,...", that Parse reads back to the same options.
  std::string ToSpec() const;
  Status Validate() const;
};

class PressSimulator : public Source {
 public:
  struct StrokeLabel {
    int64_t stroke;       // 0-based
    int64_t onset_frame;  // frame of the main impact
    double t_s;           // onset_frame / sample_rate
    double wear;
  };

  static Result<std::unique_ptr<PressSimulator>> Create(const SimulatorOptions& opts);
  ~PressSimulator() override;

  const StreamInfo& info() const override { return info_; }
  Result<size_t> Read(std::span<float> out, size_t max_frames) override;
  std::string Describe() const override;

  // All strokes of a finite run, known up front. For an endless run (strokes <= 0): the strokes
  // whose onset has been generated so far.
  const std::vector<StrokeLabel>& labels() const { return labels_; }
  const SimulatorOptions& options() const { return opts_; }

  // Writes the whole run (from frame 0, independent of this instance's read position) as a
  // float32 WAV plus a labels CSV with the header stroke,onset_frame,t_s,wear.
  Status WriteLabelled(const std::string& wav_path, const std::string& labels_csv_path);

 private:
  PressSimulator() = default;
  StrokeLabel LabelFor(int64_t k) const;
  void RenderStroke(int64_t k);
  double NextGaussian();

  SimulatorOptions opts_;
  StreamInfo info_;
  std::vector<StrokeLabel> labels_;
  double period_frames_ = 0;
  int render_len_ = 0;            // frames of signal rendered per stroke
  std::vector<float> render_;     // the current stroke, interleaved render_len_ x channels
  std::vector<float> force_;      // contact force of one stroke, render_len_
  std::vector<double> mode_out_;  // per-mode response scratch, render_len_
  int64_t rendered_stroke_ = -1;
  int64_t rendered_onset_ = 0;
  int64_t next_stroke_ = 0;  // first stroke that may still overlap the read position
  int64_t pos_ = 0;          // next frame to generate
  std::mt19937_64 noise_rng_;
  bool has_spare_ = false;
  double spare_ = 0;
  // Mains hum: three harmonics per channel as rotating phasors (re-synchronised to the absolute
  // frame index every 4096 frames so rounding never accumulates).
  struct Phasor {
    double re = 1, im = 0, step_re = 1, step_im = 0, omega = 0, phase = 0, amp = 0;
  };
  std::vector<Phasor> hum_;
};

}  // namespace tend::sources
