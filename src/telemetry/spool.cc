#include "telemetry/spool.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <limits>
#include <random>

#include "core/fs.h"
#include "core/log.h"

namespace tend::telemetry {
namespace {

int ClassOf(MessageKind k) {
  return (k == MessageKind::kAlert || k == MessageKind::kReport || k == MessageKind::kState) ? 0
                                                                                             : 1;
}

// Reads the messages of a spool database in id order, skipping rows that do not read back as a
// message, until `max_bytes` (SpoolRowBytes) would be passed. False when the table cannot be read.
bool ReadSpoolRows(sqlite3* db, int64_t max_bytes, std::vector<OutgoingMessage>& out) {
  sqlite3_stmt* sel = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT kind, topic, qos, retained, payload FROM spool ORDER BY id",
                         -1, &sel, nullptr) != SQLITE_OK) {
    sqlite3_finalize(sel);
    return false;
  }
  int64_t total = 0;
  while (sqlite3_step(sel) == SQLITE_ROW) {
    OutgoingMessage m;
    int kind = sqlite3_column_int(sel, 0);
    if (kind < 0 || kind >= kMessageKinds) continue;
    m.kind = static_cast<MessageKind>(kind);
    const unsigned char* t = sqlite3_column_text(sel, 1);
    if (!t) continue;
    m.topic = reinterpret_cast<const char*>(t);
    m.qos = sqlite3_column_int(sel, 2);
    m.retained = sqlite3_column_int(sel, 3) != 0;
    const void* b = sqlite3_column_blob(sel, 4);
    m.payload.assign(static_cast<const char*>(b), static_cast<size_t>(sqlite3_column_bytes(sel, 4)));
    total += SpoolRowBytes(m);
    if (total > max_bytes) break;
    out.push_back(std::move(m));
  }
  sqlite3_finalize(sel);
  return true;
}

// Kept when the disk is full (alerts-only mode), and held by the caller when nothing fits.
bool MustKeep(MessageKind k) {
  return k == MessageKind::kAlert || k == MessageKind::kReport || k == MessageKind::kState;
}

// Kinds a new message of `k` may push out, lowest value first.
std::vector<MessageKind> VictimKindsFor(MessageKind k) {
  switch (k) {
    case MessageKind::kHealth:
      return {MessageKind::kHealth};
    case MessageKind::kScore:
      return {MessageKind::kHealth, MessageKind::kScore};
    case MessageKind::kAlert:
    case MessageKind::kReport:
    case MessageKind::kState:
      return {MessageKind::kHealth, MessageKind::kScore, MessageKind::kAlert};
  }
  return {};
}

bool IsCorruption(int rc) {
  int primary = rc & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB || primary == SQLITE_FORMAT ||
         primary == SQLITE_SCHEMA || primary == SQLITE_MISMATCH;
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS spool(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  cls INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  topic TEXT NOT NULL,
  qos INTEGER NOT NULL,
  retained INTEGER NOT NULL,
  payload BLOB NOT NULL,
  bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS spool_by_cls ON spool(cls, id);
CREATE INDEX IF NOT EXISTS spool_by_kind ON spool(kind, id);
CREATE TABLE IF NOT EXISTS drops(topic TEXT PRIMARY KEY, count INTEGER NOT NULL);
)sql";

// A boot number for a spool with none persisted (new, reset, quarantined, in memory): random in
// [2^32, 2^52), so that message ids ({device}-{boot}-{seq}) never repeat across spool resets,
// whatever the clock says (edge boxes without an RTC start in 1970), and stay exact in JSON.
int64_t RandomBoot() {
  std::random_device rd;
  const uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return static_cast<int64_t>((1ull << 32) + r % ((1ull << 52) - (1ull << 32)));
}

// What the write-ahead log next to a spool file says before SQLite replays it. SQLite silently
// keeps the longest valid prefix of committed transactions; whatever follows is lost without a
// word. A WAL whose header is damaged, that ends in a torn frame, holds a frame of the current
// generation with a bad checksum, or ends in an unfinished transaction was cut short: a crash or
// power cut during a commit, or a truncated or damaged file. (Frames with another salt are an
// older generation the log was rewound over: normal.) Format: sqlite.org/fileformat.html#walformat.
struct WalInspection {
  std::string damage;  // "" when the log is whole (or absent); else one line
};

uint32_t Be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

void WalChecksum(const uint8_t* data, size_t n, bool big_endian, uint32_t& s0, uint32_t& s1) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint32_t x0, x1;
    if (big_endian) {
      x0 = Be32(data + i);
      x1 = Be32(data + i + 4);
    } else {
      std::memcpy(&x0, data + i, 4);
      std::memcpy(&x1, data + i + 4, 4);
    }
    s0 += x0 + s1;
    s1 += x1 + s0;
  }
}

WalInspection InspectWal(const std::string& wal_path) {
  WalInspection out;
  auto bytes = fs::ReadBinaryFile(wal_path);
  if (!bytes || bytes->empty()) return out;
  const std::vector<uint8_t>& w = *bytes;
  if (w.size() < 32) {
    out.damage = "write-ahead log cut to " + std::to_string(w.size()) + " bytes (header lost)";
    return out;
  }
  const uint32_t magic = Be32(w.data());
  const uint32_t page = Be32(w.data() + 8);
  const bool be = magic == 0x377f0683;
  uint32_t s0 = 0, s1 = 0;
  WalChecksum(w.data(), 24, be, s0, s1);
  if ((magic & 0xfffffffe) != 0x377f0682 || page < 512 || page > 65536 || (page & (page - 1)) ||
      s0 != Be32(w.data() + 24) || s1 != Be32(w.data() + 28)) {
    out.damage = "write-ahead log header damaged (" + std::to_string(w.size()) + " bytes ignored)";
    return out;
  }
  const size_t frame = 24 + size_t{page};
  int64_t valid = 0, committed = 0;
  size_t off = 32;
  bool older_generation = false;
  for (; off + frame <= w.size(); off += frame, ++valid) {
    const uint8_t* f = w.data() + off;
    if (std::memcmp(f + 8, w.data() + 16, 8) != 0) {  // another generation: the end
      older_generation = true;
      break;
    }
    uint32_t c0 = s0, c1 = s1;
    WalChecksum(f, 8, be, c0, c1);
    WalChecksum(f + 24, page, be, c0, c1);
    if (c0 != Be32(f + 16) || c1 != Be32(f + 20)) {
      out.damage = "write-ahead log frame " + std::to_string(valid + 1) + " is damaged";
      return out;
    }
    s0 = c0;
    s1 = c1;
    if (Be32(f + 4) != 0) committed = valid + 1;  // a commit frame
  }
  if (!older_generation && off < w.size()) {
    out.damage = "write-ahead log ends in a torn frame (" + std::to_string(w.size() - off) +
                 " of " + std::to_string(frame) + " bytes)";
  } else if (valid > committed) {
    out.damage = "write-ahead log ends in an unfinished commit (" +
                 std::to_string(valid - committed) + " frames)";
  }
  return out;
}

struct OpenFailure {
  Error error;
  bool corrupt = false;
};

}  // namespace

// Ballast: a preallocated file deleted when the disk fills up, so that the spool still has room
// to checkpoint, evict scores and append the alerts that matter.
bool Spool::EnsureReserve() {
  if (memory_) return true;
  std::string r = path_ + ".reserve";
  struct stat st {};
  if (::stat(r.c_str(), &st) == 0 && st.st_size >= kReserveBytes) return true;
  int fd = ::open(r.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = ::posix_fallocate(fd, 0, kReserveBytes) == 0;
  ::close(fd);
  if (!ok) ::unlink(r.c_str());
  return ok;
}

void Spool::ReleaseReserve() {
  if (!memory_) ::unlink((path_ + ".reserve").c_str());
}

const char* MessageKindName(MessageKind k) {
  switch (k) {
    case MessageKind::kAlert:
      return "alert";
    case MessageKind::kScore:
      return "score";
    case MessageKind::kHealth:
      return "health";
    case MessageKind::kReport:
      return "report";
    case MessageKind::kState:
      return "state";
  }
  return "?";
}

Error Spool::SqlError(const std::string& what) const {
  int rc = db_ ? sqlite3_extended_errcode(db_) : SQLITE_ERROR;
  std::string msg = path_ + ": " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "no database") +
                    " (sqlite " + std::to_string(rc) + ")";
  if (IsCorruption(rc)) return Error::Corrupt(msg);
  return Error::Io(msg);
}

Status Spool::Exec(const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string m = std::string(err ? err : sqlite3_errstr(rc)) + " (sqlite " +
                    std::to_string(sqlite3_extended_errcode(db_)) + ")";
    sqlite3_free(err);
    Error e = IsCorruption(rc) ? Error::Corrupt(path_ + ": " + m) : Error::Io(path_ + ": " + m);
    return Fail(e);
  }
  return Ok();
}

void Spool::CloseDb() {
  for (sqlite3_stmt** s : {&insert_, &delete_, &next_, &victims_, &drop_upsert_, &supersede_}) {
    sqlite3_finalize(*s);
    *s = nullptr;
  }
  if (db_) sqlite3_close(db_);
  db_ = nullptr;
}

Spool::~Spool() { CloseDb(); }

Status Spool::Prepare() {
  struct {
    sqlite3_stmt** stmt;
    const char* sql;
  } stmts[] = {
      {&insert_,
       "INSERT INTO spool(cls, kind, topic, qos, retained, payload, bytes) "
       "VALUES(?,?,?,?,?,?,?)"},
      {&delete_, "DELETE FROM spool WHERE id=? RETURNING bytes"},
      {&next_,
       "SELECT id, kind, topic, qos, retained, payload FROM spool WHERE cls=? AND id>? "
       "ORDER BY id LIMIT ?"},
      {&victims_, "SELECT id, bytes, topic FROM spool WHERE kind=? AND id>? ORDER BY id LIMIT 256"},
      {&drop_upsert_,
       "INSERT INTO drops(topic, count) VALUES(?,?) "
       "ON CONFLICT(topic) DO UPDATE SET count=excluded.count"},
      {&supersede_, "DELETE FROM spool WHERE kind=4 AND topic=? AND id>? RETURNING bytes"},
  };
  for (auto& s : stmts) {
    if (sqlite3_prepare_v3(db_, s.sql, -1, SQLITE_PREPARE_PERSISTENT, s.stmt, nullptr) !=
        SQLITE_OK) {
      return Fail(SqlError("prepare"));
    }
  }
  return Ok();
}

// Opens the file and checks it end to end; any failure that smells of a bad file is Corrupt.
Status Spool::OpenDb() {
  int rc =
      sqlite3_open_v2(memory_ ? ":memory:" : path_.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Error e = SqlError("open");
    return Fail(e);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, 5000);
  // One process owns the spool. Exclusive locking set before the first WAL access keeps the WAL
  // index in heap memory instead of a <spool>-shm file: opening then needs no disk space at all
  // (creating and sizing -shm fails with SQLITE_IOERR on a full disk), and no shared-memory
  // locking is paid per transaction.
  TEND_RETURN_NOT_OK(Exec("PRAGMA locking_mode=EXCLUSIVE"));
  TEND_RETURN_NOT_OK(Exec("PRAGMA journal_mode=WAL"));
  TEND_RETURN_NOT_OK(
      Exec(options_.durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  // On a small disk a 4 MiB WAL (SQLite's default checkpoint point) can fill it before a
  // checkpoint ever runs; size the WAL to 1/8 of the free space (16..1000 pages).
  {
    int64_t pages = 1000;
    struct statvfs vfs {};
    std::string dir = std::filesystem::path(path_).parent_path().string();
    if (::statvfs(dir.empty() ? "." : dir.c_str(), &vfs) == 0) {
      int64_t free_bytes = static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize);
      pages = std::clamp<int64_t>(free_bytes / 4096 / 8, 16, 1000);
    }
    std::string pragmas = "PRAGMA wal_autocheckpoint=" + std::to_string(pages) +
                          "; PRAGMA journal_size_limit=" + std::to_string(pages * 4096);
    TEND_RETURN_NOT_OK(Exec(pragmas.c_str()));
  }
  {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "PRAGMA quick_check", -1, &st, nullptr) != SQLITE_OK) {
      return Fail(SqlError("quick_check"));
    }
    std::string result;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      result = t ? reinterpret_cast<const char*>(t) : "";
    }
    sqlite3_finalize(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE) return Fail(SqlError("quick_check"));
    if (result != "ok") return Fail(Error::Corrupt(path_ + ": integrity check: " + result));
  }
  // A file that is a valid database but not a spool of this shape is as unusable as garbage.
  auto schema = [&]() -> Status {
    TEND_RETURN_NOT_OK(Exec(kSchema));
    return Prepare();
  }();
  if (!schema) {
    int rc = sqlite3_extended_errcode(db_) & 0xff;
    bool os_problem = rc == SQLITE_IOERR || rc == SQLITE_FULL || rc == SQLITE_CANTOPEN ||
                      rc == SQLITE_READONLY || rc == SQLITE_PERM || rc == SQLITE_BUSY ||
                      rc == SQLITE_NOMEM;
    if (!os_problem)
      return Fail(Error::Corrupt(path_ + ": not a tend spool: " + schema.error().message));
    return schema;
  }
  auto scalar = [&](const char* sql, int64_t& out) -> Status {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) return Fail(SqlError(sql));
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (r != SQLITE_ROW && r != SQLITE_DONE) return Fail(SqlError(sql));
    return Ok();
  };
  int64_t persisted_boot = 0;
  TEND_RETURN_NOT_OK(scalar("SELECT value FROM meta WHERE key='boot'", persisted_boot));
  // Counting on from the persisted number keeps ids unique while the file lives; a spool without
  // one (new, reset, wiped) starts at a random number instead of 1, or the ids of the previous
  // spool's messages would come again and a fleet would drop new alerts as duplicates.
  boot_ = persisted_boot > 0 ? persisted_boot + 1 : RandomBoot();
  if (memory_) {
    // Row ids far above any file spool's, so that a late acknowledgement of a message sent
    // from memory can never delete a row of the file spool that absorbs it (see Absorb).
    TEND_RETURN_NOT_OK(
        Exec("INSERT INTO sqlite_sequence(name, seq) VALUES('spool', 1099511627776)"));
  } else {
    bool full = false;
    auto bump = [&] {
      auto st = Exec("BEGIN IMMEDIATE");
      if (st) st = WriteBoot();
      if (st) st = Exec("COMMIT");
      full = !st && IsFull();
      if (!st) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return st;
    };
    auto st = bump();
    if (!st && full) {
      ReleaseReserve();
      st = bump();
    }
    if (!st && full) {
      // The disk is full and the ballast is gone: do not let the boot counter stop the agent.
      // A random number (the next start could not tell that persisted + 1 was used) is persisted
      // with the first commit.
      boot_ = RandomBoot();
      boot_dirty_ = true;
      TEND_LOG_WARN("spool {}: disk full at open; boot {} will be recorded with the first commit",
                    path_, boot_);
    } else if (!st) {
      return st;
    }
  }
  TEND_RETURN_NOT_OK(scalar("SELECT COALESCE(SUM(bytes),0) FROM spool", bytes_));
  TEND_RETURN_NOT_OK(scalar("SELECT COUNT(*) FROM spool", depth_));
  TEND_RETURN_NOT_OK(scalar("SELECT COALESCE(MAX(id),0) FROM spool WHERE cls=0", max_id_[0]));
  TEND_RETURN_NOT_OK(scalar("SELECT COALESCE(MAX(id),0) FROM spool WHERE cls=1", max_id_[1]));
  {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT topic, count FROM drops", -1, &st, nullptr) != SQLITE_OK) {
      return Fail(SqlError("read drops"));
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
      drops_[reinterpret_cast<const char*>(sqlite3_column_text(st, 0))] =
          sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
  }
  return Ok();
}

bool Spool::IsFull() const {
  if (!db_) return false;
  int rc = sqlite3_extended_errcode(db_);
  return (rc & 0xff) == SQLITE_FULL || rc == SQLITE_IOERR_WRITE || rc == SQLITE_IOERR_FSYNC ||
         rc == SQLITE_IOERR_TRUNCATE || rc == SQLITE_IOERR_SHMSIZE;
}

Status Spool::WriteBoot() {
  std::string sql = "INSERT INTO meta(key, value) VALUES('boot', " + std::to_string(boot_) +
                    ") ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)";
  return Exec(sql.c_str());
}

Result<std::unique_ptr<Spool>> Spool::OpenMemory(const std::string& path,
                                                 const SpoolOptions& options) {
  std::unique_ptr<Spool> spool(new Spool(path, options));
  spool->memory_ = true;
  TEND_RETURN_NOT_OK(spool->OpenDb());
  spool->reserve_ok_ = true;  // no ballast in memory
  spool->report_.state = SpoolOpenReport::State::kCreated;
  spool->report_.detail = "in memory";
  return spool;
}

Status Spool::Absorb(Spool& from, CommitResult& result) {
  std::vector<OutgoingMessage> rows;
  if (!ReadSpoolRows(from.db_, std::numeric_limits<int64_t>::max(), rows)) {
    return Fail(from.SqlError("absorb: read"));
  }
  auto drops0 = drops_, dirty0 = drops_dirty_;
  const int64_t boot0 = boot_;
  const bool boot_dirty0 = boot_dirty_;
  for (const auto& [topic, n] : from.drops_) {
    drops_[topic] += n;
    drops_dirty_[topic] = 1;
  }
  if (from.boot_ > boot_) {
    boot_ = from.boot_;
    boot_dirty_ = true;
  }
  auto r = Commit(rows);
  if (!r || !r->committed) {
    drops_ = std::move(drops0);
    drops_dirty_ = std::move(dirty0);
    boot_ = boot0;
    boot_dirty_ = boot_dirty0;
    if (!r) return Fail(r.error());
    return Fail(Error::Io(path_ + ": no space to take over the messages held in memory"));
  }
  result = *r;
  from.drops_.clear();
  from.drops_dirty_.clear();
  return Ok();
}

Result<std::unique_ptr<Spool>> Spool::Open(const std::string& path, const SpoolOptions& options) {
  if (path.empty()) return Fail(Error::Invalid("spool: path is empty"));
  if (options.max_bytes < 512) {
    return Fail(Error::Invalid("spool: max_bytes " + std::to_string(options.max_bytes) +
                               " is below the 512-byte minimum"));
  }
  std::filesystem::path p(path);
  if (p.has_parent_path()) TEND_RETURN_NOT_OK(fs::MakeDirs(p.parent_path().string()));

  std::unique_ptr<Spool> spool(new Spool(path, options));
  struct stat st {};
  bool existed = ::stat(path.c_str(), &st) == 0;
  struct stat wst {};
  const bool wal_content = ::stat((path + "-wal").c_str(), &wst) == 0 && wst.st_size > 0;
  // A spool file is never 0 bytes once opened (switching to WAL mode writes its first page), so
  // a 0-byte one was emptied: its messages are gone, unless a write-ahead log holds them for
  // SQLite to rebuild the file from (what it cannot rebuild is quarantined below).
  bool empty_file = existed && st.st_size == 0 && !wal_content;
  // Read before SQLite replays (and then rewinds) the log.
  const WalInspection wal = InspectWal(path + "-wal");

  auto first = spool->OpenDb();
  if (!first && first.error().code != ErrorCode::kCorrupt && fs::Exists(path + ".reserve")) {
    // A full disk must not stop the agent: use the ballast to open.
    TEND_LOG_WARN("spool {}: {}; retrying with the reserve released", path, first.error().message);
    spool->CloseDb();
    spool->ReleaseReserve();
    first = spool->OpenDb();
  }
  if (first) {
    spool->reserve_ok_ = spool->EnsureReserve();
    spool->report_.state =
        existed && !empty_file ? SpoolOpenReport::State::kOpened : SpoolOpenReport::State::kCreated;
    if (empty_file) {
      spool->report_.detail = "empty file (0 bytes): started a new spool";
      spool->NoteDamage("empty_file", "the file was empty (0 bytes): whatever it held is lost");
    }
    if (!wal.damage.empty()) {
      spool->NoteDamage("wal_cut_short", wal.damage + ": messages committed after that are lost");
    }
    spool->report_.pending = spool->depth_;
    return spool;
  }
  spool->CloseDb();
  if (first.error().code != ErrorCode::kCorrupt) return Fail(first.error());

  // Quarantine: move the file and its WAL/SHM aside so the new spool cannot replay them.
  std::string q;
  for (int n = 0;; ++n) {
    q = path + ".corrupt-" + std::to_string(static_cast<int64_t>(std::time(nullptr))) + "-" +
        std::to_string(n);
    if (!fs::Exists(q)) break;
  }
  if (::rename(path.c_str(), q.c_str()) != 0) {
    return Fail(fs::ErrnoError("quarantine " + path + " -> " + q, errno));
  }
  for (const char* suffix : {"-wal", "-shm"}) {
    std::string side = path + suffix;
    if (fs::Exists(side) && ::rename(side.c_str(), (q + suffix).c_str()) != 0) {
      return Fail(fs::ErrnoError("quarantine " + side, errno));
    }
  }

  // Salvage whatever rows still read back, oldest first, until the first error.
  std::vector<OutgoingMessage> salvaged;
  {
    sqlite3* old = nullptr;
    if (sqlite3_open_v2(q.c_str(), &old, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
      ReadSpoolRows(old, options.max_bytes, salvaged);  // an unreadable table salvages nothing
    }
    sqlite3_close(old);
  }

  TEND_RETURN_NOT_OK(spool->OpenDb());
  spool->reserve_ok_ = spool->EnsureReserve();
  spool->report_.state = SpoolOpenReport::State::kQuarantined;
  spool->report_.quarantine_path = q;
  spool->report_.detail = first.error().message;
  spool->report_.salvaged = static_cast<int64_t>(salvaged.size());
  if (!salvaged.empty()) {
    TEND_ASSIGN_OR_RETURN(auto r, spool->Commit(salvaged));
    if (!r.committed) {
      for (const auto& m : salvaged) spool->NoteDropped(m.topic, m.kind, 1);  // no room left
    }
  }
  spool->report_.pending = spool->depth_;
  spool->NoteDamage("quarantined", "unreadable (" + spool->report_.detail + "); moved to " + q +
                                       ", salvaged " + std::to_string(spool->report_.salvaged) +
                                       " messages, the rest are lost");
  return spool;
}

Status Spool::InsertRow(const OutgoingMessage& m, int64_t row_bytes) {
  sqlite3_reset(insert_);
  int cls = ClassOf(m.kind);
  sqlite3_bind_int(insert_, 1, cls);
  sqlite3_bind_int(insert_, 2, static_cast<int>(m.kind));
  sqlite3_bind_text(insert_, 3, m.topic.data(), static_cast<int>(m.topic.size()), SQLITE_STATIC);
  sqlite3_bind_int(insert_, 4, m.qos);
  sqlite3_bind_int(insert_, 5, m.retained ? 1 : 0);
  sqlite3_bind_blob(insert_, 6, m.payload.data(), static_cast<int>(m.payload.size()),
                    SQLITE_STATIC);
  sqlite3_bind_int64(insert_, 7, row_bytes);
  if (sqlite3_step(insert_) != SQLITE_DONE) {
    Error e = SqlError("append");
    sqlite3_reset(insert_);
    return Fail(e);
  }
  int64_t id = sqlite3_last_insert_rowid(db_);
  max_id_[cls] = std::max(max_id_[cls], id);
  bytes_ += row_bytes;
  ++depth_;
  return Ok();
}

// Deletes the oldest evictable row of the first kind in the policy that has one.
Result<bool> Spool::EvictOne(MessageKind for_kind, CommitResult& result) {
  for (MessageKind k : VictimKindsFor(for_kind)) {
    int ki = static_cast<int>(k);
    auto& cache = victim_cache_[ki];
    if (cache.empty()) {
      int64_t after = std::max(victim_after_[ki], cursor_[ClassOf(k)]);
      sqlite3_reset(victims_);
      sqlite3_bind_int(victims_, 1, ki);
      sqlite3_bind_int64(victims_, 2, after);
      int rc;
      while ((rc = sqlite3_step(victims_)) == SQLITE_ROW) {
        Victim v;
        v.id = sqlite3_column_int64(victims_, 0);
        v.bytes = sqlite3_column_int64(victims_, 1);
        v.topic = reinterpret_cast<const char*>(sqlite3_column_text(victims_, 2));
        victim_after_[ki] = v.id;
        cache.push_back(std::move(v));
      }
      sqlite3_reset(victims_);
      if (rc != SQLITE_DONE) return Fail(SqlError("select eviction victims"));
    }
    if (cache.empty()) continue;
    Victim v = std::move(cache.front());
    cache.pop_front();
    sqlite3_reset(delete_);
    sqlite3_bind_int64(delete_, 1, v.id);
    int rc;
    bool deleted = false;
    while ((rc = sqlite3_step(delete_)) == SQLITE_ROW) deleted = true;
    sqlite3_reset(delete_);
    if (rc != SQLITE_DONE) return Fail(SqlError("evict"));
    if (deleted) {
      bytes_ -= v.bytes;
      --depth_;
      ++result.dropped_by_kind[ki];
      drops_[v.topic] += 1;
      drops_dirty_[v.topic] = 1;
    }
    return true;
  }
  return false;
}

Status Spool::PersistDrops() {
  for (const auto& [topic, unused] : drops_dirty_) {
    sqlite3_reset(drop_upsert_);
    sqlite3_bind_text(drop_upsert_, 1, topic.data(), static_cast<int>(topic.size()), SQLITE_STATIC);
    sqlite3_bind_int64(drop_upsert_, 2, drops_[topic]);
    int rc = sqlite3_step(drop_upsert_);
    sqlite3_reset(drop_upsert_);
    if (rc != SQLITE_DONE) return Fail(SqlError("record drops"));
  }
  return Ok();
}

Status Spool::CommitOnce(std::vector<OutgoingMessage>& messages, std::span<const int64_t> acked,
                         bool alerts_only, CommitResult& result) {
  for (auto& c : victim_cache_) c.clear();
  for (auto& a : victim_after_) a = 0;
  TEND_RETURN_NOT_OK(Exec("BEGIN IMMEDIATE"));
  for (int64_t id : acked) {
    sqlite3_reset(delete_);
    sqlite3_bind_int64(delete_, 1, id);
    int rc;
    while ((rc = sqlite3_step(delete_)) == SQLITE_ROW) {
      bytes_ -= sqlite3_column_int64(delete_, 0);
      --depth_;
      ++result.acked;
    }
    sqlite3_reset(delete_);
    if (rc != SQLITE_DONE) return Fail(SqlError("ack"));
  }
  if (alerts_only) {
    // Disk full: make room by dropping every undelivered score and health message first.
    for (;;) {
      TEND_ASSIGN_OR_RETURN(bool evicted, EvictOne(MessageKind::kScore, result));
      if (!evicted) break;
    }
  }
  for (auto& m : messages) {
    int ki = static_cast<int>(m.kind);
    if (alerts_only && !MustKeep(m.kind)) {
      ++result.dropped_by_kind[ki];
      drops_[m.topic] += 1;
      drops_dirty_[m.topic] = 1;
      continue;
    }
    if (m.kind == MessageKind::kState) {
      // Only the newest state per name matters: drop an older one not yet handed to the network
      // (one in flight stays; it is sent first, so the newest still ends up retained).
      sqlite3_reset(supersede_);
      sqlite3_bind_text(supersede_, 1, m.topic.data(), static_cast<int>(m.topic.size()),
                        SQLITE_STATIC);
      sqlite3_bind_int64(supersede_, 2, cursor_[0]);
      int rc;
      while ((rc = sqlite3_step(supersede_)) == SQLITE_ROW) {
        bytes_ -= sqlite3_column_int64(supersede_, 0);
        --depth_;
        ++result.superseded;
      }
      sqlite3_reset(supersede_);
      if (rc != SQLITE_DONE) return Fail(SqlError("supersede state"));
    }
    int64_t row_bytes = SpoolRowBytes(m);
    bool fits = true;
    while (bytes_ + row_bytes > options_.max_bytes) {
      TEND_ASSIGN_OR_RETURN(bool evicted, EvictOne(m.kind, result));
      if (!evicted) {
        fits = false;
        break;
      }
    }
    if (!fits) {
      ++result.dropped_by_kind[ki];
      drops_[m.topic] += 1;
      drops_dirty_[m.topic] = 1;
      continue;
    }
    TEND_RETURN_NOT_OK(InsertRow(m, row_bytes));
    ++result.appended;
  }
  TEND_RETURN_NOT_OK(PersistDrops());
  if (boot_dirty_) TEND_RETURN_NOT_OK(WriteBoot());
  TEND_RETURN_NOT_OK(Exec("COMMIT"));
  drops_dirty_.clear();
  boot_dirty_ = false;
  return Ok();
}

struct Spool::Snapshot {
  int64_t bytes, depth, max0, max1;
  std::map<std::string, int64_t> drops, dirty;
};

Spool::Snapshot Spool::Save() const {
  return {bytes_, depth_, max_id_[0], max_id_[1], drops_, drops_dirty_};
}

// Rolls back the open transaction and puts the in-memory mirror back where the file is.
void Spool::Restore(const Snapshot& s) {
  sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  bytes_ = s.bytes;
  depth_ = s.depth;
  max_id_[0] = s.max0;
  max_id_[1] = s.max1;
  drops_ = s.drops;
  drops_dirty_ = s.dirty;
}

// Disk full: deletes undelivered scores and health in small committed steps, checkpointing
// after each so that the WAL never needs more than a few free pages.
void Spool::EvictForDiskFull(CommitResult& result) {
  for (;;) {
    Snapshot snap = Save();
    for (auto& c : victim_cache_) c.clear();
    for (auto& a : victim_after_) a = 0;
    CommitResult step;
    int evicted = 0;
    auto st = [&]() -> Status {
      TEND_RETURN_NOT_OK(Exec("BEGIN IMMEDIATE"));
      for (; evicted < 32; ++evicted) {
        TEND_ASSIGN_OR_RETURN(bool any, EvictOne(MessageKind::kScore, step));
        if (!any) break;
      }
      TEND_RETURN_NOT_OK(PersistDrops());
      return Exec("COMMIT");
    }();
    if (!st) {
      Restore(snap);
      return;
    }
    drops_dirty_.clear();
    for (int k = 0; k < kMessageKinds; ++k) result.dropped_by_kind[k] += step.dropped_by_kind[k];
    sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
    if (evicted < 32) return;
  }
}

Result<CommitResult> Spool::Commit(std::vector<OutgoingMessage>& messages,
                                   std::span<const int64_t> acked) {
  if (messages.empty() && acked.empty() && drops_dirty_.empty()) return CommitResult{};
  Snapshot snap = Save();
  CommitResult result;
  // A commit that only removes acknowledged rows need not be fsync'ed: losing it in a power cut
  // only means those messages are sent again (receivers deduplicate by msg_id).
  const bool relax = options_.durable && messages.empty();
  if (relax) sqlite3_exec(db_, "PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr);
  auto st = CommitOnce(messages, acked, /*alerts_only=*/false, result);
  const int rc = st ? SQLITE_OK : sqlite3_extended_errcode(db_) & 0xff;  // before any other call
  if (relax) sqlite3_exec(db_, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
  if (st) {
    if (!reserve_ok_ && (result.acked > 0 || result.dropped_by_kind[1] > 0)) {
      reserve_ok_ = EnsureReserve();
    }
    return result;
  }
  Restore(snap);
  if (rc != SQLITE_FULL) return Fail(st.error());

  // Disk full: give back the ballast, fold the WAL into the database, drop undelivered scores
  // and health, and retry keeping only the alerts of this batch.
  if (reserve_ok_) {
    TEND_LOG_WARN("spool {}: disk full; dropping undelivered scores to keep alerts", path_);
  }
  ReleaseReserve();
  reserve_ok_ = false;
  {
    int log = 0, ckpt = 0;
    int crc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log, &ckpt);
    TEND_LOG_DEBUG("spool: checkpoint rc {} ({}) log {} ckpt {}", crc, sqlite3_errmsg(db_), log,
                   ckpt);
  }
  CommitResult evicted;
  EvictForDiskFull(evicted);
  snap = Save();
  result = CommitResult{};
  st = CommitOnce(messages, acked, /*alerts_only=*/true, result);
  for (int k = 0; k < kMessageKinds; ++k) result.dropped_by_kind[k] += evicted.dropped_by_kind[k];
  result.disk_full = true;
  if (st) {
    sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
    return result;
  }
  Restore(snap);
  // Nothing of the batch could be written. Scores and health are counted as dropped (the counts
  // are persisted when space returns); alerts and reports stay in `messages` for the caller to
  // hold and retry. Acks are retried by the caller with the next commit.
  result = CommitResult{};
  for (int k = 0; k < kMessageKinds; ++k) result.dropped_by_kind[k] = evicted.dropped_by_kind[k];
  result.disk_full = true;
  result.committed = false;
  std::vector<OutgoingMessage> keep;
  for (auto& m : messages) {
    if (MustKeep(m.kind)) {
      keep.push_back(std::move(m));
      continue;
    }
    ++result.dropped_by_kind[static_cast<int>(m.kind)];
    drops_[m.topic] += 1;
    drops_dirty_[m.topic] = 1;
  }
  messages = std::move(keep);
  return result;
}

Result<std::vector<SpooledMessage>> Spool::Next(size_t limit) {
  std::vector<SpooledMessage> out;
  for (int cls = 0; cls < 2 && out.size() < limit; ++cls) {
    if (cursor_[cls] >= max_id_[cls]) continue;
    sqlite3_reset(next_);
    sqlite3_bind_int(next_, 1, cls);
    sqlite3_bind_int64(next_, 2, cursor_[cls]);
    sqlite3_bind_int64(next_, 3, static_cast<int64_t>(limit - out.size()));
    int rc;
    while ((rc = sqlite3_step(next_)) == SQLITE_ROW) {
      SpooledMessage s;
      s.id = sqlite3_column_int64(next_, 0);
      s.msg.kind = static_cast<MessageKind>(sqlite3_column_int(next_, 1));
      s.msg.topic = reinterpret_cast<const char*>(sqlite3_column_text(next_, 2));
      s.msg.qos = sqlite3_column_int(next_, 3);
      s.msg.retained = sqlite3_column_int(next_, 4) != 0;
      const void* b = sqlite3_column_blob(next_, 5);
      s.msg.payload.assign(static_cast<const char*>(b),
                           static_cast<size_t>(sqlite3_column_bytes(next_, 5)));
      cursor_[cls] = s.id;
      out.push_back(std::move(s));
    }
    sqlite3_reset(next_);
    if (rc != SQLITE_DONE) return Fail(SqlError("read pending"));
    // Everything up to max_id_ was read (rows in between were acked or evicted).
    if (out.size() < limit) cursor_[cls] = std::max(cursor_[cls], max_id_[cls]);
  }
  return out;
}

void Spool::Rewind() {
  cursor_[0] = 0;
  cursor_[1] = 0;
}

void Spool::NoteDamage(const std::string& event, const std::string& detail) {
  TEND_LOG_ERROR("spool {}: {}", path_, detail);
  report_.damage = report_.damage.empty() ? detail : report_.damage + "; " + detail;
  const std::string key = std::string(kDamagePrefix) + event;
  drops_[key] += 1;
  drops_dirty_[key] = 1;
}

void Spool::NoteDropped(const std::string& topic, MessageKind /*kind*/, int64_t n) {
  if (n <= 0) return;
  drops_[topic] += n;
  drops_dirty_[topic] = 1;
}

Status Spool::EnqueueDropReport(const std::string& topic, int qos, const std::string& payload) {
  if (drops_.empty()) return Ok();
  const int64_t bytes0 = bytes_, depth0 = depth_, max0 = max_id_[0];
  auto st = [&]() -> Status {
    TEND_RETURN_NOT_OK(Exec("BEGIN IMMEDIATE"));
    OutgoingMessage m{MessageKind::kReport, topic, qos, false, payload};
    TEND_RETURN_NOT_OK(InsertRow(m, SpoolRowBytes(m)));
    TEND_RETURN_NOT_OK(Exec("DELETE FROM drops"));
    return Exec("COMMIT");
  }();
  if (!st) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    bytes_ = bytes0;
    depth_ = depth0;
    max_id_[0] = max0;
    return st;
  }
  drops_.clear();
  drops_dirty_.clear();
  return Ok();
}

}  // namespace tend::telemetry
