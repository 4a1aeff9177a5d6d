// The evidence store: never more records on disk than its bound, and a disk that stops taking
// writes (a worker stalled in its write) never blocks the decision path: rejects that find the
// queue full are dropped and counted, and everything queued is written once the disk is back.
#include "inspect/evidence_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>

#include "../agent/cli_util.h"
#include "../vision/test_images.h"

namespace tend::inspect {
namespace {

namespace stdfs = std::filesystem;

size_t RecordsOnDisk(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : stdfs::directory_iterator(dir)) n += e.is_directory() ? 1 : 0;
  return n;
}

Decision Reject(int64_t index) {
  Decision d;
  d.window_index = index;
  d.is_alert = true;
  d.severity = Severity::kHigh;
  d.anomaly_score = 3.5f;
  d.model_name = "tiles";
  d.model_version = "1";
  d.timestamp = std::chrono::system_clock::now();
  return d;
}

void StageFrame(EvidenceStore& s, int64_t index) {
  static const vision::Image frame = testing::Gradient(48, 32, 1, 10, 10);
  static const std::vector<float> map(6 * 4, 1.0f);
  s.Stage(index, frame.view(), map, 6, 4, vision::Roi{}, 0, 2);
}

TEST(EvidenceStore, NeverHoldsMoreRecordsThanItsBound) {
  const std::string dir = testing::TempDir("evidence_bound");
  EvidenceOptions o;
  o.dir = dir + "/ev";
  o.max_records = 3;
  auto s = EvidenceStore::Open(o);
  ASSERT_TRUE(s) << s.error().message;
  for (int64_t i = 0; i < 10; ++i) {
    StageFrame(**s, i);
    const std::string ref = (*s)->Submit(Reject(i));
    EXPECT_FALSE(ref.empty());
    (*s)->Flush();
    EXPECT_LE(RecordsOnDisk(o.dir), 3u) << "after reject " << i;
    EXPECT_TRUE(stdfs::exists(o.dir + "/" + ref + "/frame.png")) << ref;
    EXPECT_TRUE(stdfs::exists(o.dir + "/" + ref + "/overlay.png")) << ref;
  }
  const auto st = (*s)->stats();
  EXPECT_EQ(st.written, 10);
  EXPECT_EQ(st.deleted, 7);
  EXPECT_EQ(st.records, 3);
  EXPECT_EQ(RecordsOnDisk(o.dir), 3u);
  s->reset();
  // Reopened with a smaller bound, the store trims what is there before taking anything new.
  o.max_records = 1;
  auto again = EvidenceStore::Open(o);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(RecordsOnDisk(o.dir), 1u);
  stdfs::remove_all(dir);
}

TEST(EvidenceStore, PassesAndUnstagedRejectsWriteNothing) {
  const std::string dir = testing::TempDir("evidence_pass");
  EvidenceOptions o;
  o.dir = dir + "/ev";
  auto s = EvidenceStore::Open(o);
  ASSERT_TRUE(s) << s.error().message;
  StageFrame(**s, 0);
  Decision pass = Reject(0);
  pass.is_alert = false;
  EXPECT_EQ((*s)->Submit(pass), "");
  EXPECT_EQ((*s)->Submit(Reject(5)), "");  // the staged frame is event 0's, not event 5's
  (*s)->Flush();
  const auto st = (*s)->stats();
  EXPECT_EQ(st.queued, 0);
  EXPECT_EQ(st.dropped_no_frame, 1);
  EXPECT_EQ(RecordsOnDisk(o.dir), 0u);
  stdfs::remove_all(dir);
}

TEST(EvidenceStore, AStalledDiskNeverBlocksTheCaller) {
  const std::string dir = testing::TempDir("evidence_stall");
  EvidenceOptions o;
  o.dir = dir + "/ev";
  o.queue = 4;
  auto s = EvidenceStore::Open(o);
  ASSERT_TRUE(s) << s.error().message;
  std::promise<void> disk_back;
  std::shared_future<void> back = disk_back.get_future().share();
  (*s)->SetBeforeWriteForTest([back] { back.wait(); });
  // Every Submit below returns while the worker is stuck in its first write: were the caller
  // blocked by the disk, this loop would never end (the promise is only set after it).
  int accepted = 0;
  for (int64_t i = 0; i < 20; ++i) {
    StageFrame(**s, i);
    accepted += (*s)->Submit(Reject(i)).empty() ? 0 : 1;
  }
  auto st = (*s)->stats();
  EXPECT_EQ(st.queued, accepted);
  EXPECT_EQ(st.queued + st.dropped_queue_full, 20);
  EXPECT_GE(st.dropped_queue_full, 20 - 1 - static_cast<int64_t>(o.queue));
  EXPECT_LE(accepted, 1 + static_cast<int>(o.queue));
  disk_back.set_value();
  (*s)->Flush();
  st = (*s)->stats();
  EXPECT_EQ(st.written, accepted);
  EXPECT_EQ(RecordsOnDisk(o.dir), static_cast<size_t>(accepted));
  stdfs::remove_all(dir);
}

}  // namespace
}  // namespace tend::inspect
