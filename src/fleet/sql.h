// A small SQL layer for the fleet console and the rollout controller: one connection to the fleet
// database (SQLite or PostgreSQL), statements written once with $1, $2... parameters in both
// dialects, rows read as text cells. The ingest path keeps its own prepared statements
// (store_sqlite.cc, store_pg.cc); this is for the lower-rate queries and operator actions.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::fleet {

struct SqlValue {
  enum class Kind { kNull, kInt, kReal, kText };
  Kind kind = Kind::kNull;
  int64_t i = 0;
  double d = 0;
  std::string s;

  SqlValue() = default;
  SqlValue(int64_t v) : kind(Kind::kInt), i(v) {}  // NOLINT: implicit on purpose (param lists)
  SqlValue(int v) : kind(Kind::kInt), i(v) {}      // NOLINT
  SqlValue(double v) : kind(Kind::kReal), d(v) {}  // NOLINT
  SqlValue(std::string v) : kind(Kind::kText), s(std::move(v)) {}  // NOLINT
  SqlValue(const char* v) : kind(Kind::kText), s(v) {}             // NOLINT
  std::string Text() const;                                        // as sent to PostgreSQL
};
using SqlParams = std::vector<SqlValue>;

class SqlRow {
 public:
  SqlRow(std::vector<std::string> cells, std::vector<bool> nulls)
      : cells_(std::move(cells)), nulls_(std::move(nulls)) {}
  size_t size() const { return cells_.size(); }
  bool IsNull(size_t i) const { return i >= nulls_.size() || nulls_[i]; }
  const std::string& Str(size_t i) const;  // "" for NULL
  int64_t Int(size_t i) const;             // 0 for NULL or text that is no number; t/f -> 1/0
  double Real(size_t i) const;

 private:
  std::vector<std::string> cells_;
  std::vector<bool> nulls_;
};

class SqlDb {
 public:
  enum class Dialect { kSqlite, kPostgres };
  virtual ~SqlDb() = default;
  // "sqlite:PATH", a plain PATH or "postgresql://..." (the same strings as OpenFleetStore).
  static Result<std::unique_ptr<SqlDb>> Open(const std::string& url);

  virtual Dialect dialect() const = 0;
  virtual Result<std::vector<SqlRow>> Query(const std::string& sql,
                                            const SqlParams& params = {}) = 0;
  // Returns the number of rows changed.
  virtual Result<int64_t> Exec(const std::string& sql, const SqlParams& params = {}) = 0;
  // Several statements without parameters (schema).
  virtual Status Script(const std::string& sql) = 0;
  // Runs `body` in one transaction: committed when it returns OK, rolled back otherwise.
  virtual Status Transaction(const std::function<Status()>& body) = 0;
};

// A fleet database as the user names it (`--db`): "sqlite:PATH", a plain PATH, or
// "postgresql://..." / "postgres://...". Both the ingest store (OpenFleetStore) and SqlDb::Open
// read it here, so they accept and refuse exactly the same strings.
struct DbUrl {
  bool postgres = false;
  std::string target;  // the SQLite path, or the whole PostgreSQL URL
};
Result<DbUrl> ParseDbUrl(const std::string& url);
// The error for a PostgreSQL URL in a build configured without libpqxx.
Error PostgresUnavailable(const std::string& url);

Result<std::unique_ptr<SqlDb>> OpenSqliteDb(const std::string& path);
Result<std::unique_ptr<SqlDb>> OpenPostgresDb(const std::string& url);

}  // namespace tend::fleet
