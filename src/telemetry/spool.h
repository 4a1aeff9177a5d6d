// The durable spool between the pipeline and the network: an on-disk queue (SQLite in WAL mode)
// that every message which must be delivered is committed to before it counts as sent, and that
// is emptied only by broker acknowledgements. Bounded in bytes, with an eviction policy (health,
// then scores oldest first, alerts last) and exact per-topic accounting of what was dropped.
// Not thread-safe: one thread (the telemetry worker) owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace tend::telemetry {

// Ordered by eviction priority: health goes first, then scores, then alerts; reports and device
// states never. A state (retained, QoS 1, .../edge/{device}/{name}) replaces the undelivered
// state of the same topic when it is committed: only the newest one per name is kept.
enum class MessageKind : int { kAlert = 0, kScore = 1, kHealth = 2, kReport = 3, kState = 4 };
inline constexpr int kMessageKinds = 5;
const char* MessageKindName(MessageKind k);

struct OutgoingMessage {
  MessageKind kind = MessageKind::kScore;
  std::string topic;
  int qos = 0;
  bool retained = false;
  std::string payload;
};

struct SpooledMessage {
  int64_t id = 0;  // spool row id: increasing, never reused
  OutgoingMessage msg;
};

struct SpoolOptions {
  int64_t max_bytes = 256 << 20;  // payload + topic + kRowOverhead per message
  // true: synchronous=FULL, every commit is fsync'ed (survives power loss).
  // false: synchronous=NORMAL (survives a process crash, not a power cut).
  bool durable = true;
};

struct SpoolOpenReport {
  enum class State { kCreated, kOpened, kQuarantined };
  State state = State::kCreated;
  int64_t pending = 0;          // messages waiting for delivery after open
  int64_t salvaged = 0;         // rows copied out of a quarantined file
  std::string quarantine_path;  // where the unreadable file was moved
  std::string detail;           // one line: why it was quarantined, or "empty file"
  // Messages were lost before this open (logged at error level, counted in the drop report):
  // an emptied file, a cut-short write-ahead log, a quarantine. "" when none.
  std::string damage;
};

struct CommitResult {
  int64_t appended = 0;
  int64_t acked = 0;
  // Messages dropped by this commit (evicted old rows and rejected new ones), by kind.
  int64_t dropped_by_kind[kMessageKinds] = {0, 0, 0, 0, 0};
  int64_t superseded = 0;  // undelivered device states replaced by a newer one of the same name
  bool disk_full = false;  // the filesystem said ENOSPC; what was dropped is in dropped_by_kind
  // false: nothing was written (acks must be retried); the batch's alerts and reports were left
  // in the caller's vector (not counted as dropped), everything else was counted.
  bool committed = true;
};

class Spool {
 public:
  static constexpr int64_t kRowOverhead = 64;
  static constexpr int64_t kReserveBytes = 256 << 10;  // <path>.reserve, released on ENOSPC

  // Opens or creates the spool at `path`. A file SQLite cannot read (garbage, truncated,
  // wrong schema) is moved aside to <path>.corrupt-<unix>-<n>, readable rows are salvaged into a
  // fresh spool, and open_report() says what happened; only OS errors (permissions, missing
  // directory that cannot be created) make Open fail.
  // Opening needs no free disk space for an existing spool: the WAL index lives in memory
  // (exclusive locking) and the boot number, if the disk is full even after releasing the
  // reserve, is a random one written with the first commit.
  static Result<std::unique_ptr<Spool>> Open(const std::string& path, const SpoolOptions& options);
  // The degraded fallback when `path` cannot be opened: the same spool in memory (bounded by
  // options.max_bytes), lost on exit. Its row ids start at 2^40 and its boot number is random,
  // so neither can collide with a file spool's.
  static Result<std::unique_ptr<Spool>> OpenMemory(const std::string& path,
                                                   const SpoolOptions& options);
  ~Spool();

  bool in_memory() const { return memory_; }
  // Moves every message of `from` (in order) and its unreported drop counts into this spool in
  // one durable commit and raises this spool's boot counter to `from`'s; `from` is then to be
  // discarded. On error nothing changed here.
  Status Absorb(Spool& from, CommitResult& result);

  const SpoolOpenReport& open_report() const { return report_; }
  // Part of each message id: the persisted number + 1, committed by every Open; a spool with
  // none persisted (new, reset, quarantined, in memory) starts at a random number in
  // [2^32, 2^52), so ids never repeat across spool resets.
  int64_t boot_epoch() const { return boot_; }

  // One transaction (group commit): removes acknowledged rows, then appends `messages` in order,
  // evicting by policy so that bytes() stays <= max_bytes. Rows already handed to the network
  // (see Next) are never evicted. A new message that cannot fit (only higher-priority rows
  // left) is rejected and counted. On ENOSPC the batch is retried once keeping only alerts and
  // reports after evicting undelivered scores and health; if that fails too the batch is dropped
  // and counted. Messages are moved from.
  Result<CommitResult> Commit(std::vector<OutgoingMessage>& messages,
                              std::span<const int64_t> acked = {});

  // The next undelivered messages in send order: alerts and reports first, then scores and
  // health, each in append order. A message is returned once until Rewind().
  Result<std::vector<SpooledMessage>> Next(size_t limit);
  // The connection dropped: everything not acknowledged is pending again.
  void Rewind();

  // Drops that happened before the spool (e.g. the pipeline's queue was full): counted with the
  // spool's own so one report covers everything. Persisted by the next Commit.
  void NoteDropped(const std::string& topic, MessageKind kind, int64_t n);
  // Losses that cannot be counted in messages (the spool was emptied, its log cut short,
  // quarantined): logged at error level and counted, per event, in the drop report under the key
  // kDamagePrefix + event.
  static constexpr char kDamagePrefix[] = "!spool:";
  void NoteDamage(const std::string& event, const std::string& detail);
  // Per topic, messages dropped and not yet reported (and kDamagePrefix entries, see NoteDamage).
  const std::map<std::string, int64_t>& unreported_drops() const { return drops_; }
  // Atomically appends a report (built by `payload_for(drops)`) as a kReport message and clears
  // the unreported counts; no-op if there is nothing to report.
  Status EnqueueDropReport(const std::string& topic, int qos, const std::string& payload);

  int64_t bytes() const { return bytes_; }
  int64_t depth() const { return depth_; }
  int64_t max_bytes() const { return options_.max_bytes; }
  const std::string& path() const { return path_; }

 private:
  struct Victim {
    int64_t id, bytes;
    std::string topic;
  };
  Spool(std::string path, SpoolOptions options) : path_(std::move(path)), options_(options) {}
  Status OpenDb();
  bool IsFull() const;
  Status WriteBoot();
  Status Prepare();
  void CloseDb();
  Status Exec(const char* sql);
  Error SqlError(const std::string& what) const;
  Status CommitOnce(std::vector<OutgoingMessage>& messages, std::span<const int64_t> acked,
                    bool alerts_only, CommitResult& result);
  Result<bool> EvictOne(MessageKind for_kind, CommitResult& result);
  Status PersistDrops();
  Status InsertRow(const OutgoingMessage& m, int64_t row_bytes);
  bool EnsureReserve();
  struct Snapshot;
  Snapshot Save() const;
  void Restore(const Snapshot& s);
  void EvictForDiskFull(CommitResult& result);
  void ReleaseReserve();

  std::string path_;
  SpoolOptions options_;
  SpoolOpenReport report_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* delete_ = nullptr;
  sqlite3_stmt* next_ = nullptr;
  sqlite3_stmt* victims_ = nullptr;
  sqlite3_stmt* drop_upsert_ = nullptr;
  sqlite3_stmt* supersede_ = nullptr;
  int64_t boot_ = 0;
  bool boot_dirty_ = false;  // boot_ not yet persisted (disk was full at open)
  bool memory_ = false;
  bool reserve_ok_ = true;
  int64_t bytes_ = 0;
  int64_t depth_ = 0;
  int64_t cursor_[2] = {0, 0};          // per class: highest id handed to the network
  int64_t max_id_[2] = {0, 0};          // per class: highest id committed
  std::deque<Victim> victim_cache_[3];  // per evictable kind (alert, score, health)
  int64_t victim_after_[3] = {0, 0, 0};
  std::map<std::string, int64_t> drops_;        // unreported, persisted
  std::map<std::string, int64_t> drops_dirty_;  // changed since last persist
};

// Size a message occupies against max_bytes.
inline int64_t SpoolRowBytes(const OutgoingMessage& m) {
  return static_cast<int64_t>(m.payload.size() + m.topic.size()) + Spool::kRowOverhead;
}

}  // namespace tend::telemetry
