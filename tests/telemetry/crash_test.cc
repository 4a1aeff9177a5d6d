// SIGKILL at random moments while a child appends to the spool, 120 times: the spool must always
// open without quarantine, and every message whose commit was reported must be there.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "telemetry/spool.h"
#include "telemetry/test_support.h"

namespace tend::telemetry {
namespace {

TEST(SpoolCrash, SigkillDuringAppendsNeverLosesCommittedMessages) {
  std::string dir = tend::testing::MakeTempDir("crash");
  std::string spool = dir + "/spool.db";
  std::string out = dir + "/out.txt";
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> delay_us(2000, 90000);
  int checked_runs = 0;
  int64_t checked_messages = 0;
  const int kRuns = 120;
  for (int run = 0; run < kRuns; ++run) {
    // A child killed before it opens its output must not leave the previous run's lines there.
    std::filesystem::remove(out);
    pid_t pid = tend::testing::Spawn({TEND_TELEMETRY_HELPER, "spool-append", spool}, out, false);
    ASSERT_GT(pid, 0);
    // The random delay counts from the child's first commit, not from the spawn: on a loaded
    // machine (or under ASan) start-up alone can outlast the delay, and a kill that lands before
    // any commit checks nothing.
    for (int i = 0; i < 10000 && tend::testing::ReadAll(out).find("committed") == std::string::npos;
         ++i) {
      ::usleep(1000);
    }
    ::usleep(static_cast<useconds_t>(delay_us(rng)));
    ::kill(pid, SIGKILL);
    int code = tend::testing::WaitExit(pid);
    ASSERT_EQ(code, 128 + SIGKILL)
        << "helper exited early; output: " << tend::testing::ReadAll(out);

    // The last complete line is the latest commit the child saw succeed.
    std::string text = tend::testing::ReadAll(out);
    int64_t boot = -1, last = 0;
    size_t end = text.rfind('\n');
    if (end != std::string::npos) {
      size_t begin = text.rfind('\n', end - 1);
      begin = begin == std::string::npos ? 0 : begin + 1;
      long long b = 0, s = 0;
      if (std::sscanf(text.c_str() + begin, "committed %lld %lld", &b, &s) == 2) {
        boot = b;
        last = s;
      }
    }
    SpoolOptions o;
    o.max_bytes = 1LL << 30;
    auto sp = Spool::Open(spool, o);
    ASSERT_TRUE(sp) << sp.error().message;
    ASSERT_NE((*sp)->open_report().state, SpoolOpenReport::State::kQuarantined)
        << "run " << run << ": " << (*sp)->open_report().detail;
    auto rows = (*sp)->Next(1 << 20);
    ASSERT_TRUE(rows);
    std::set<int64_t> seqs;
    std::vector<int64_t> ids;
    for (const auto& r : *rows) {
      auto j = nlohmann::json::parse(r.msg.payload);
      if (j["boot"].get<int64_t>() == boot) seqs.insert(j["seq"].get<int64_t>());
      ids.push_back(r.id);
    }
    if (boot >= 0) {
      ++checked_runs;
      for (int64_t s = 1; s <= last; ++s) {
        ASSERT_TRUE(seqs.count(s))
            << "run " << run << ": committed message " << s << " of boot " << boot
            << " is missing (spool boot now " << (*sp)->boot_epoch() << ", " << rows->size()
            << " rows; open state " << static_cast<int>((*sp)->open_report().state) << " detail '"
            << (*sp)->open_report().detail << "'; child output: " << text << ")";
      }
      checked_messages += last;
    }
    // Empty the spool (as deliveries would) so it stays small.
    std::vector<OutgoingMessage> none;
    ASSERT_TRUE((*sp)->Commit(none, ids));
  }
  // Most kills must land after some commits, or the test proves nothing.
  EXPECT_GT(checked_runs, kRuns / 2);
  EXPECT_GT(checked_messages, 1000);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tend::telemetry
