// The evidence store: never more records, bytes or age on disk than its bounds; a disk that stops
// taking writes (a worker stalled in its write) never blocks the decision path: rejects that find
// the queue full are dropped and counted, and everything queued is written once the disk is back;
// a full disk (every write refused) is counted, leaves no partial record, and the store writes
// again once there is room.
#include "inspect/evidence_store.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <filesystem>
#include <future>
#include <thread>

#include "../agent/cli_util.h"
#include "../vision/test_images.h"

namespace tend::inspect {
namespace {

namespace stdfs = std::filesystem;

int64_t BytesOnDisk(const std::string& dir) {
  int64_t n = 0;
  for (const auto& e : stdfs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) n += static_cast<int64_t>(e.file_size());
  }
  return n;
}

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

TEST(EvidenceStore, NeverHoldsMoreBytesThanItsBound) {
  const std::string dir = testing::TempDir("evidence_bytes");
  EvidenceOptions o;
  o.dir = dir + "/one";
  auto one = EvidenceStore::Open(o);
  ASSERT_TRUE(one) << one.error().message;
  StageFrame(**one, 0);
  ASSERT_FALSE((*one)->Submit(Reject(0)).empty());
  (*one)->Flush();
  const int64_t record = BytesOnDisk(o.dir);  // every record here is the same frame and map
  ASSERT_GT(record, 0);
  one->reset();

  o.dir = dir + "/ev";
  o.max_bytes = record * 5 / 2;  // room for two records, not three
  auto s = EvidenceStore::Open(o);
  ASSERT_TRUE(s) << s.error().message;
  for (int64_t i = 0; i < 6; ++i) {
    StageFrame(**s, i);
    ASSERT_FALSE((*s)->Submit(Reject(i)).empty());
    (*s)->Flush();
    EXPECT_LE(BytesOnDisk(o.dir), o.max_bytes) << "after reject " << i;
  }
  EXPECT_EQ(RecordsOnDisk(o.dir), 2u);
  EXPECT_EQ((*s)->stats().written, 6);
  EXPECT_EQ((*s)->stats().deleted, 4);
  EXPECT_EQ((*s)->stats().bytes, BytesOnDisk(o.dir));
  stdfs::remove_all(dir);
}

TEST(EvidenceStore, RecordsOlderThanTheAgeBoundAreDeleted) {
  const std::string dir = testing::TempDir("evidence_age");
  EvidenceOptions o;
  o.dir = dir + "/ev";
  o.max_age_s = 3600;
  auto s = EvidenceStore::Open(o);
  ASSERT_TRUE(s) << s.error().message;
  Decision old = Reject(0);
  old.timestamp -= std::chrono::hours(2);  // decided two hours ago (the record carries its time)
  StageFrame(**s, 0);
  const std::string old_ref = (*s)->Submit(old);
  ASSERT_FALSE(old_ref.empty());
  (*s)->Flush();
  EXPECT_TRUE(stdfs::exists(o.dir + "/" + old_ref));
  StageFrame(**s, 1);
  const std::string new_ref = (*s)->Submit(Reject(1));
  (*s)->Flush();
  EXPECT_FALSE(stdfs::exists(o.dir + "/" + old_ref)) << "older than max_age_s";
  EXPECT_TRUE(stdfs::exists(o.dir + "/" + new_ref));
  EXPECT_EQ(RecordsOnDisk(o.dir), 1u);
  s->reset();
  // Reopened later with a shorter bound, the store deletes what has grown too old on its own.
  o.max_age_s = 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  auto again = EvidenceStore::Open(o);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(RecordsOnDisk(o.dir), 0u);
  stdfs::remove_all(dir);
}

TEST(EvidenceStore, AFullDiskIsCountedLeavesNoPartialRecordAndRecovers) {
  // Every write refused, as on a full disk: the process's file-size limit is set to a few bytes
  // (writes past it fail with EFBIG instead of ENOSPC; the store's failure path is the same).
  const std::string dir = testing::TempDir("evidence_full");
  EvidenceOptions o;
  o.dir = dir + "/ev";
  auto s = EvidenceStore::Open(o);
  ASSERT_TRUE(s) << s.error().message;
  rlimit before{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &before), 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit full = before;
  full.rlim_cur = 16;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &full), 0);
  int accepted = 0;
  for (int64_t i = 0; i < 5; ++i) {
    StageFrame(**s, i);
    accepted += (*s)->Submit(Reject(i)).empty() ? 0 : 1;
    (*s)->Flush();
  }
  auto st = (*s)->stats();
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &before), 0);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(accepted, 5);
  EXPECT_EQ(st.failed, 5);
  EXPECT_EQ(st.written, 0);
  EXPECT_EQ(st.records, 0);
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : stdfs::directory_iterator(o.dir)) ++entries;
  EXPECT_EQ(entries, 0u) << "no partial record or temporary folder left behind";
  // Room again: the next reject's evidence is written.
  StageFrame(**s, 9);
  const std::string ref = (*s)->Submit(Reject(9));
  (*s)->Flush();
  EXPECT_EQ((*s)->stats().written, 1);
  EXPECT_TRUE(stdfs::exists(o.dir + "/" + ref + "/frame.png"));
  stdfs::remove_all(dir);
}

}  // namespace
}  // namespace tend::inspect
