// The SQLite half of sql.h ($N becomes ?N) and the shared parts.
#include "fleet/sql.h"

#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>

#include "core/fs.h"

namespace tend::fleet {

std::string SqlValue::Text() const {
  switch (kind) {
    case Kind::kInt:
      return std::to_string(i);
    case Kind::kReal: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", d);
      return buf;
    }
    case Kind::kText:
      return s;
    case Kind::kNull:
      break;
  }
  return {};
}

const std::string& SqlRow::Str(size_t i) const {
  static const std::string kEmpty;
  return i < cells_.size() ? cells_[i] : kEmpty;
}

int64_t SqlRow::Int(size_t i) const {
  if (IsNull(i)) return 0;
  const std::string& s = cells_[i];
  if (s == "t") return 1;
  if (s == "f") return 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (end && *end == '.') return static_cast<int64_t>(std::strtod(s.c_str(), nullptr));
  return v;
}

double SqlRow::Real(size_t i) const {
  return IsNull(i) ? 0 : std::strtod(cells_[i].c_str(), nullptr);
}

namespace {

// $1 -> ?1 outside quoted literals: SQLite's numbered parameters bind by that index.
std::string ToSqliteParams(const std::string& sql) {
  std::string out;
  out.reserve(sql.size());
  bool quoted = false;
  for (char c : sql) {
    if (c == '\'') quoted = !quoted;
    out.push_back(!quoted && c == '$' ? '?' : c);
  }
  return out;
}

class SqliteDb : public SqlDb {
 public:
  explicit SqliteDb(std::string path) : path_(std::move(path)) {}
  ~SqliteDb() override {
    if (db_) sqlite3_close(db_);
  }

  Status Open() {
    std::filesystem::path p(path_);
    if (p.has_parent_path()) TEND_RETURN_NOT_OK(fs::MakeDirs(p.parent_path().string()));
    if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      return Fail(Err("open"));
    }
    sqlite3_busy_timeout(db_, 10000);
    TEND_RETURN_NOT_OK(Script("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"));
    return Ok();
  }

  Dialect dialect() const override { return Dialect::kSqlite; }

  Result<std::vector<SqlRow>> Query(const std::string& sql, const SqlParams& params) override {
    TEND_ASSIGN_OR_RETURN(sqlite3_stmt * st, Prepare(sql, params));
    std::vector<SqlRow> rows;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const int n = sqlite3_column_count(st);
      std::vector<std::string> cells(static_cast<size_t>(n));
      std::vector<bool> nulls(static_cast<size_t>(n));
      for (int c = 0; c < n; ++c) {
        nulls[c] = sqlite3_column_type(st, c) == SQLITE_NULL;
        const unsigned char* t = sqlite3_column_text(st, c);
        if (t) cells[c] = reinterpret_cast<const char*>(t);
      }
      rows.emplace_back(std::move(cells), std::move(nulls));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return Fail(Err("query"));
    return rows;
  }

  Result<int64_t> Exec(const std::string& sql, const SqlParams& params) override {
    TEND_ASSIGN_OR_RETURN(sqlite3_stmt * st, Prepare(sql, params));
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return Fail(Err("exec"));
    return static_cast<int64_t>(sqlite3_changes(db_));
  }

  Status Script(const std::string& sql) override {
    char* e = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &e) != SQLITE_OK) {
      std::string msg = e ? e : "?";
      sqlite3_free(e);
      return Fail(Error::Io(path_ + ": " + msg));
    }
    return Ok();
  }

  Status Transaction(const std::function<Status()>& body) override {
    TEND_RETURN_NOT_OK(Script("BEGIN IMMEDIATE"));
    Status st = body();
    if (!st) {
      (void)Script("ROLLBACK");
      return st;
    }
    return Script("COMMIT");
  }

 private:
  Error Err(const std::string& what) const {
    return Error::Io(path_ + ": " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "no database"));
  }

  Result<sqlite3_stmt*> Prepare(const std::string& sql, const SqlParams& params) {
    sqlite3_stmt* st = nullptr;
    std::string q = ToSqliteParams(sql);
    if (sqlite3_prepare_v2(db_, q.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return Fail(Err("prepare"));
    }
    for (size_t i = 0; i < params.size(); ++i) {
      const int idx = static_cast<int>(i) + 1;
      const SqlValue& v = params[i];
      switch (v.kind) {
        case SqlValue::Kind::kNull:
          sqlite3_bind_null(st, idx);
          break;
        case SqlValue::Kind::kInt:
          sqlite3_bind_int64(st, idx, v.i);
          break;
        case SqlValue::Kind::kReal:
          sqlite3_bind_double(st, idx, v.d);
          break;
        case SqlValue::Kind::kText:
          sqlite3_bind_text(st, idx, v.s.data(), static_cast<int>(v.s.size()), SQLITE_TRANSIENT);
          break;
      }
    }
    return st;
  }

  std::string path_;
  sqlite3* db_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<SqlDb>> OpenSqliteDb(const std::string& path) {
  auto db = std::make_unique<SqliteDb>(path);
  TEND_RETURN_NOT_OK(db->Open());
  return std::unique_ptr<SqlDb>(std::move(db));
}

Result<DbUrl> ParseDbUrl(const std::string& url) {
  if (url.empty()) return Fail(Error::Invalid("fleet: no database given (--db is empty)"));
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
    return DbUrl{true, url};
  }
  if (url.rfind("sqlite:", 0) == 0) return DbUrl{false, url.substr(7)};
  if (url.find("://") != std::string::npos) {
    return Fail(Error::Invalid("fleet: database '" + url +
                               "': expected sqlite:PATH, a path, or postgresql://..."));
  }
  return DbUrl{false, url};
}

Error PostgresUnavailable(const std::string& url) {
  return Error::Unsupported("fleet: " + url.substr(0, url.find("://") + 3) +
                            "... needs libpqxx, which this build was configured without");
}

Result<std::unique_ptr<SqlDb>> SqlDb::Open(const std::string& url) {
  TEND_ASSIGN_OR_RETURN(DbUrl u, ParseDbUrl(url));
  return u.postgres ? OpenPostgresDb(u.target) : OpenSqliteDb(u.target);
}

}  // namespace tend::fleet

#ifndef TEND_WITH_PQXX
namespace tend::fleet {
Result<std::unique_ptr<SqlDb>> OpenPostgresDb(const std::string& url) {
  return Fail(PostgresUnavailable(url));
}
}  // namespace tend::fleet
#endif
