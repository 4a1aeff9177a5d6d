// The durable spool: order, acknowledgement, priority, eviction policy with exact drop
// accounting, and recovery from files SQLite cannot read.
#include "telemetry/spool.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "telemetry/test_support.h"

namespace tend::telemetry {
namespace {

const std::string kScores = "factory/f/line/l/asset/a/scores";
const std::string kAlerts = "factory/f/line/l/asset/a/alerts";
const std::string kHealth = "factory/f/line/l/asset/a/health";

OutgoingMessage Msg(MessageKind k, int n, size_t pad = 0) {
  const std::string& topic = k == MessageKind::kAlert    ? kAlerts
                             : k == MessageKind::kHealth ? kHealth
                                                         : kScores;
  return {k, topic, k == MessageKind::kAlert ? 1 : 0, false,
          std::to_string(n) + std::string(pad, 'x')};
}

int PayloadN(const SpooledMessage& m) { return std::stoi(m.msg.payload); }

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = tend::testing::MakeTempDir("spool"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path() const { return dir_ + "/spool.db"; }
  std::unique_ptr<Spool> OpenOrDie(int64_t max_bytes = 1 << 20) {
    SpoolOptions o;
    o.max_bytes = max_bytes;
    auto s = Spool::Open(Path(), o);
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    return s ? std::move(*s) : nullptr;
  }
  std::string dir_;
};

TEST_F(SpoolTest, AppendsInOrderAndSurvivesReopen) {
  int64_t boot = 0;
  {
    auto s = OpenOrDie();
    EXPECT_EQ(s->open_report().state, SpoolOpenReport::State::kCreated);
    boot = s->boot_epoch();
    EXPECT_GE(boot, int64_t{1} << 32);  // a new spool starts at a random boot number
    std::vector<OutgoingMessage> batch;
    for (int i = 0; i < 100; ++i) batch.push_back(Msg(MessageKind::kScore, i));
    auto r = s->Commit(batch);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->appended, 100);
    EXPECT_EQ(s->depth(), 100);
  }
  auto s = OpenOrDie();
  EXPECT_EQ(s->open_report().state, SpoolOpenReport::State::kOpened);
  EXPECT_EQ(s->open_report().pending, 100);
  EXPECT_EQ(s->boot_epoch(), boot + 1);
  EXPECT_TRUE(s->open_report().damage.empty()) << s->open_report().damage;
  auto next = s->Next(1000);
  ASSERT_TRUE(next);
  ASSERT_EQ(next->size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(PayloadN((*next)[i]), i);
  EXPECT_EQ((*next)[0].msg.topic, kScores);
}

TEST_F(SpoolTest, NextHandsOutOnceUntilRewindAndAckRemoves) {
  auto s = OpenOrDie();
  std::vector<OutgoingMessage> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(Msg(MessageKind::kAlert, i));
  ASSERT_TRUE(s->Commit(batch));
  auto a = s->Next(4);
  ASSERT_EQ(a->size(), 4u);
  auto b = s->Next(100);
  ASSERT_EQ(b->size(), 6u);
  EXPECT_EQ(PayloadN((*b)[0]), 4);
  EXPECT_TRUE(s->Next(100)->empty());
  // Ack the first three; after a reconnect only the rest comes again, in order.
  std::vector<int64_t> acks = {(*a)[0].id, (*a)[1].id, (*a)[2].id};
  std::vector<OutgoingMessage> none;
  auto r = s->Commit(none, acks);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->acked, 3);
  EXPECT_EQ(s->depth(), 7);
  s->Rewind();
  auto c = s->Next(100);
  ASSERT_EQ(c->size(), 7u);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(PayloadN((*c)[i]), i + 3);
  // Acking twice is harmless.
  r = s->Commit(none, acks);
  EXPECT_EQ(r->acked, 0);
}

TEST_F(SpoolTest, AlertsJumpAheadOfScoreBacklog) {
  auto s = OpenOrDie(64 << 20);
  std::vector<OutgoingMessage> batch;
  for (int i = 0; i < 5000; ++i) batch.push_back(Msg(MessageKind::kScore, i));
  ASSERT_TRUE(s->Commit(batch));
  auto first = s->Next(10);
  EXPECT_EQ(PayloadN((*first)[0]), 0);
  batch.clear();
  batch.push_back(Msg(MessageKind::kAlert, 99999));
  ASSERT_TRUE(s->Commit(batch));
  auto next = s->Next(10);
  ASSERT_EQ(next->size(), 10u);
  EXPECT_EQ((*next)[0].msg.kind, MessageKind::kAlert);
  EXPECT_EQ(PayloadN((*next)[0]), 99999);
  EXPECT_EQ(PayloadN((*next)[1]), 10);  // then the scores continue where they left off
}

TEST_F(SpoolTest, EvictsHealthThenScoresOldestFirstAlertsLastWithExactAccounting) {
  // Each message: payload 100 + topic + 64 overhead.
  const int64_t row = 100 + static_cast<int64_t>(kScores.size()) + Spool::kRowOverhead;
  ASSERT_EQ(row, 100 + static_cast<int64_t>(kAlerts.size()) + Spool::kRowOverhead);
  auto s = OpenOrDie(10 * row);
  std::vector<OutgoingMessage> batch;
  for (int i = 0; i < 4; ++i) batch.push_back(Msg(MessageKind::kAlert, i, 99));
  batch.push_back(Msg(MessageKind::kHealth, 100, 97));
  for (int i = 10; i < 15; ++i) batch.push_back(Msg(MessageKind::kScore, i, 98));
  auto r = s->Commit(batch);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->appended, 10);
  EXPECT_EQ(s->bytes(), 10 * row);
  // 3 more scores: the health message goes first, then the two oldest scores.
  batch.clear();
  for (int i = 15; i < 18; ++i) batch.push_back(Msg(MessageKind::kScore, i, 98));
  r = s->Commit(batch);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->dropped_by_kind[static_cast<int>(MessageKind::kHealth)], 1);
  EXPECT_EQ(r->dropped_by_kind[static_cast<int>(MessageKind::kScore)], 2);
  EXPECT_LE(s->bytes(), 10 * row);
  // 8 alerts: they push out all 6 remaining scores, then the 2 oldest alerts.
  batch.clear();
  for (int i = 4; i < 12; ++i) batch.push_back(Msg(MessageKind::kAlert, i, 99 - (i >= 10)));
  r = s->Commit(batch);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->dropped_by_kind[static_cast<int>(MessageKind::kScore)], 6);
  EXPECT_EQ(r->dropped_by_kind[static_cast<int>(MessageKind::kAlert)], 2);
  // A score cannot push out an alert: it is rejected and counted.
  batch.clear();
  batch.push_back(Msg(MessageKind::kScore, 50, 98));
  r = s->Commit(batch);
  EXPECT_EQ(r->appended, 0);
  EXPECT_EQ(r->dropped_by_kind[static_cast<int>(MessageKind::kScore)], 1);

  auto left = s->Next(100);
  std::vector<int> alerts;
  for (auto& m : *left) {
    EXPECT_EQ(m.msg.kind, MessageKind::kAlert);
    alerts.push_back(PayloadN(m));
  }
  EXPECT_EQ(alerts, (std::vector<int>{2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  // The drop report matches exactly what was dropped, per topic, and survives a restart.
  std::map<std::string, int64_t> want = {{kHealth, 1}, {kScores, 2 + 6 + 1}, {kAlerts, 2}};
  EXPECT_EQ(s->unreported_drops(), want);
  s.reset();
  s = OpenOrDie(10 * row);
  EXPECT_EQ(s->unreported_drops(), want);
  ASSERT_TRUE(s->EnqueueDropReport(kHealth, 1, "{\"dropped\":12}"));
  EXPECT_TRUE(s->unreported_drops().empty());
  // The report travels with the alerts (ahead of any score), after those already queued.
  auto next = s->Next(100);
  ASSERT_EQ(next->size(), 11u);
  EXPECT_EQ(next->back().msg.kind, MessageKind::kReport);
  EXPECT_EQ(next->back().msg.qos, 1);
  EXPECT_EQ(next->back().msg.payload, "{\"dropped\":12}");
  s.reset();
  s = OpenOrDie(10 * row);
  EXPECT_TRUE(s->unreported_drops().empty());
}

TEST_F(SpoolTest, InFlightMessagesAreNeverEvicted) {
  const int64_t row = 100 + static_cast<int64_t>(kScores.size()) + Spool::kRowOverhead;
  auto s = OpenOrDie(4 * row);
  std::vector<OutgoingMessage> batch;
  for (int i = 0; i < 4; ++i) batch.push_back(Msg(MessageKind::kScore, i, 99));
  ASSERT_TRUE(s->Commit(batch));
  auto sent = s->Next(2);  // 0 and 1 are with the broker now
  batch.clear();
  batch.push_back(Msg(MessageKind::kScore, 4, 99));
  auto r = s->Commit(batch);
  EXPECT_EQ(r->dropped_by_kind[static_cast<int>(MessageKind::kScore)], 1);
  s->Rewind();
  std::vector<int> left;
  auto rows = s->Next(10);
  ASSERT_TRUE(rows);
  for (auto& m : *rows) left.push_back(PayloadN(m));
  EXPECT_EQ(left, (std::vector<int>{0, 1, 3, 4}));
}

TEST_F(SpoolTest, NoteDroppedIsReportedAndPersisted) {
  auto s = OpenOrDie();
  s->NoteDropped(kScores, MessageKind::kScore, 5);
  std::vector<OutgoingMessage> none;
  ASSERT_TRUE(s->Commit(none));
  s.reset();
  s = OpenOrDie();
  EXPECT_EQ(s->unreported_drops().at(kScores), 5);
}

// Issue 17, defect 11: a 0-byte spool (emptied, truncated) discarded its alerts with an info
// line. It is an error now, and counted in the next drop report.
TEST_F(SpoolTest, ZeroByteFileStartsFreshAndIsReportedAsALoss) {
  { std::ofstream f(Path()); }
  auto s = OpenOrDie();
  EXPECT_EQ(s->open_report().state, SpoolOpenReport::State::kCreated);
  EXPECT_NE(s->open_report().detail.find("empty"), std::string::npos);
  EXPECT_NE(s->open_report().damage.find("empty (0 bytes)"), std::string::npos);
  EXPECT_EQ(s->unreported_drops().at(std::string(Spool::kDamagePrefix) + "empty_file"), 1);
  std::vector<OutgoingMessage> b = {Msg(MessageKind::kAlert, 1)};
  EXPECT_TRUE(s->Commit(b));
  s.reset();
  s = OpenOrDie();  // persisted until reported
  EXPECT_EQ(s->unreported_drops().at(std::string(Spool::kDamagePrefix) + "empty_file"), 1);
  ASSERT_TRUE(s->EnqueueDropReport(kHealth, 1, "{}"));
  EXPECT_TRUE(s->unreported_drops().empty());
}

// Issue 17, defect 11: a truncated write-ahead log lost spooled rows without a word (SQLite keeps
// the valid prefix silently). Now the loss is logged at error level and counted.
TEST_F(SpoolTest, TruncatedWriteAheadLogIsReportedAsALoss) {
  SpoolOptions o;
  o.max_bytes = 1 << 20;
  pid_t pid = ::fork();
  if (pid == 0) {
    auto s = Spool::Open(Path(), o);
    if (!s) std::_Exit(1);
    for (int c = 0; c < 10; ++c) {  // ten commits of five alerts
      std::vector<OutgoingMessage> b;
      for (int i = 0; i < 5; ++i) b.push_back(Msg(MessageKind::kAlert, c * 5 + i, 300));
      if (!(*s)->Commit(b)) std::_Exit(1);
    }
    std::_Exit(0);
  }
  ASSERT_EQ(tend::testing::WaitExit(pid), 0);
  const std::string wal = Path() + "-wal";
  const auto size = std::filesystem::file_size(wal);
  ASSERT_GT(size, 20000u);
  std::filesystem::resize_file(wal, size - 3000);  // cut in the middle of the last commits
  auto s = OpenOrDie();
  EXPECT_LT(s->depth(), 50);  // what SQLite could replay
  EXPECT_NE(s->open_report().damage.find("write-ahead log"), std::string::npos)
      << s->open_report().damage;
  EXPECT_EQ(s->unreported_drops().at(std::string(Spool::kDamagePrefix) + "wal_cut_short"), 1);
}

// Issue 17, defect 3: after a spool reset the boot number restarted at 1, so message ids
// {device}-{boot}-{seq} came again and the fleet dropped new alerts as duplicates. Whatever
// resets the spool (deleted, emptied, garbage), the next boot number is a new one.
TEST_F(SpoolTest, BootNumbersNeverRepeatAcrossSpoolResets) {
  std::set<int64_t> boots;
  auto open_and_note = [&] {
    auto s = OpenOrDie();
    ASSERT_TRUE(s);
    EXPECT_TRUE(boots.insert(s->boot_epoch()).second) << "boot " << s->boot_epoch() << " again";
    std::vector<OutgoingMessage> b = {Msg(MessageKind::kAlert, 1)};
    ASSERT_TRUE(s->Commit(b));
  };
  for (int round = 0; round < 3; ++round) {
    open_and_note();
    open_and_note();                  // a restart: the persisted number + 1
    std::filesystem::remove(Path());  // a wiped state directory
    open_and_note();
    std::filesystem::resize_file(Path(), 0);  // an emptied file
    std::filesystem::remove(Path() + "-wal");
    open_and_note();
    {
      std::ofstream f(Path(), std::ios::binary | std::ios::trunc);
      f << std::string(5000, '\x5a');  // garbage: quarantined
    }
    std::filesystem::remove(Path() + "-wal");
    open_and_note();
    std::filesystem::remove(Path());
  }
  auto mem = Spool::OpenMemory(Path(), SpoolOptions{});
  ASSERT_TRUE(mem);
  EXPECT_TRUE(boots.insert((*mem)->boot_epoch()).second);
}

TEST_F(SpoolTest, GarbageFileIsQuarantined) {
  {
    std::ofstream f(Path(), std::ios::binary);
    for (int i = 0; i < 10000; ++i) f << static_cast<char>((i * 7919) & 0xff);
  }
  auto s = OpenOrDie();
  const auto& rep = s->open_report();
  EXPECT_EQ(rep.state, SpoolOpenReport::State::kQuarantined);
  EXPECT_FALSE(rep.detail.empty());
  EXPECT_TRUE(std::filesystem::exists(rep.quarantine_path));
  EXPECT_EQ(std::filesystem::file_size(rep.quarantine_path), 10000u);
  std::vector<OutgoingMessage> b = {Msg(MessageKind::kAlert, 1)};
  ASSERT_TRUE(s->Commit(b));
  EXPECT_EQ(s->depth(), 1);
}

TEST_F(SpoolTest, TruncatedFileIsQuarantinedAndReadableRowsSalvaged) {
  {
    SpoolOptions o;
    o.max_bytes = 64 << 20;
    auto s = Spool::Open(Path(), o);
    ASSERT_TRUE(s);
    std::vector<OutgoingMessage> batch;
    for (int i = 0; i < 3000; ++i) batch.push_back(Msg(MessageKind::kAlert, i, 200));
    ASSERT_TRUE((*s)->Commit(batch));
  }
  // Fold the WAL into the file, then cut the file in half (a torn copy, a full disk).
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(Path().c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  auto size = std::filesystem::file_size(Path());
  ASSERT_GT(size, 100000u);
  std::filesystem::resize_file(Path(), size / 2);
  auto s = OpenOrDie(64 << 20);
  const auto& rep = s->open_report();
  EXPECT_EQ(rep.state, SpoolOpenReport::State::kQuarantined);
  EXPECT_TRUE(std::filesystem::exists(rep.quarantine_path));
  // What was salvaged is a prefix of what was there, in order.
  EXPECT_LT(rep.salvaged, 3000);
  auto rows = s->Next(5000);
  ASSERT_EQ(static_cast<int64_t>(rows->size()), rep.salvaged);
  for (size_t i = 0; i < rows->size(); ++i) EXPECT_EQ(PayloadN((*rows)[i]), static_cast<int>(i));
}

TEST_F(SpoolTest, WrongSchemaIsQuarantined) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(Path().c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "CREATE TABLE spool(x)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  auto s = OpenOrDie();
  EXPECT_EQ(s->open_report().state, SpoolOpenReport::State::kQuarantined);
  std::vector<OutgoingMessage> b = {Msg(MessageKind::kAlert, 1)};
  EXPECT_TRUE(s->Commit(b));
}

TEST_F(SpoolTest, BadOptionsAndUnwritableDirectoryAreErrors) {
  SpoolOptions o;
  o.max_bytes = 10;
  auto r = Spool::Open(Path(), o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("max_bytes"), std::string::npos);
  EXPECT_FALSE(Spool::Open("", SpoolOptions{}));
  if (::geteuid() != 0) {
    auto r2 = Spool::Open("/proc/nope/spool.db", SpoolOptions{});
    EXPECT_FALSE(r2);
  }
}

}  // namespace
}  // namespace tend::telemetry
