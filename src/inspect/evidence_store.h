// Evidence for every reject: the frame and its anomaly-map overlay as PNG, plus a small JSON
// record, in a bounded local store. Bounds (records, bytes, age) are never exceeded: the oldest
// records are deleted before a new one is written, and a record that cannot fit is not written.
// The pipeline thread only copies the frame into a preallocated slot; encoding and writing
// happen on the store's own worker thread behind a bounded queue, so a slow or full disk never
// delays a decision — a frame that finds the queue full is dropped and counted.
//
// Use as a DecisionSink with a side channel for the pixels: Stage(frame) before the decision,
// then OnDecision(d) (or Submit(d), which also returns the record's image_ref) queues the staged
// frame when d is a reject. The image_ref is "<UTC time>-<event index>", e.g.
// "20240501T120304.512Z-000000000042": the record's folder name in the store.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "decide/decision.h"
#include "vision/image.h"
#include "vision/preprocess.h"

namespace tend::inspect {

struct EvidenceOptions {
  std::string dir;
  int64_t max_records = 1000;
  double max_age_s = 7 * 86400.0;
  int64_t max_bytes = int64_t{512} << 20;
  size_t queue = 8;     // records waiting for the disk; more are dropped (counted)
  bool overlay = true;  // also write the anomaly-map overlay
};

struct EvidenceStats {
  int64_t queued = 0;              // accepted by Submit
  int64_t written = 0;             // records on disk
  int64_t dropped_queue_full = 0;  // rejects whose evidence was dropped: the queue was full
  int64_t dropped_no_frame = 0;    // rejects with no staged frame (or a frame for another event)
  int64_t failed = 0;              // encode or write failures (disk full, permissions, too large)
  int64_t deleted = 0;             // records removed by retention
  int64_t records = 0, bytes = 0;  // in the store now
};

class EvidenceStore : public DecisionSink {
 public:
  // Creates the folder, indexes what is already there (and applies the bounds to it).
  static Result<std::unique_ptr<EvidenceStore>> Open(const EvidenceOptions& options);
  ~EvidenceStore() override;  // finishes the queued writes, then stops

  // Pipeline thread. Copies the frame and its anomaly map (map_width x map_height over `roi` of
  // the frame, coloured from lo to hi) into the staging slot for `event_index`.
  void Stage(int64_t event_index, const vision::ImageView& frame, std::span<const float> map,
             int map_width, int map_height, const vision::Roi& roi, float lo, float hi);
  // Pipeline thread. Queues the staged frame when d is a reject (is_alert) for the staged event;
  // returns its image_ref, or "" when nothing is queued (not a reject, no frame, queue full).
  std::string Submit(const Decision& d);
  void OnDecision(const Decision& d) override { Submit(d); }

  EvidenceStats stats() const;
  const std::string& dir() const { return opt_.dir; }
  static std::string RefFor(const Decision& d);
  // Blocks until the queue is empty and the worker idle (tests, shutdown).
  void Flush();
  // Test hook: runs on the worker before each record is written (to stall or observe it).
  void SetBeforeWriteForTest(std::function<void()> hook);

 private:
  struct Slot {
    int64_t event_index = -1;
    std::string ref;
    vision::Image frame;
    std::vector<float> map;
    int map_width = 0, map_height = 0;
    vision::Roi roi;
    float lo = 0, hi = 1, score = 0;
    std::string severity, model, version;
    int64_t unix_ms = 0;
  };
  struct Record {
    std::string name;
    int64_t bytes = 0;
    int64_t unix_ms = 0;
  };

  explicit EvidenceStore(EvidenceOptions o) : opt_(std::move(o)) {}
  Status Index();
  void Run();
  void Write(Slot& s);
  void Evict(int64_t need_bytes, int64_t now_ms);  // worker; mu_ not held
  void RemoveRecord(const Record& r);

  EvidenceOptions opt_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  Slot staging_;
  std::deque<std::unique_ptr<Slot>> queue_, free_;
  bool stop_ = false, busy_ = false;
  std::function<void()> before_write_;
  std::deque<Record> records_;  // oldest first (worker only, stats under mu_)
  EvidenceStats stats_;
  std::thread worker_;
};

}  // namespace tend::inspect
