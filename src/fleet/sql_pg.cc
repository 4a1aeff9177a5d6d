// The PostgreSQL half of sql.h (libpqxx): parameters go as text with their NULLs, PostgreSQL
// infers their types from the statement.
#include <pqxx/pqxx>

#include "fleet/pg_guard.h"
#include "fleet/sql.h"

namespace tend::fleet {
namespace {

class PostgresDb : public SqlDb {
 public:
  explicit PostgresDb(std::string url) : url_(std::move(url)) {}

  Status Open() {
    return PgGuard("connect", [&]() -> Status {
      conn_ = std::make_unique<pqxx::connection>(url_);
      return Ok();
    });
  }

  Dialect dialect() const override { return Dialect::kPostgres; }

  Result<std::vector<SqlRow>> Query(const std::string& sql, const SqlParams& params) override {
    std::vector<SqlRow> rows;
    auto st = PgGuard("query", [&]() -> Status {
      auto res = Run(sql, params);
      for (const auto& r : res) {
        std::vector<std::string> cells(r.size());
        std::vector<bool> nulls(r.size());
        for (size_t c = 0; c < r.size(); ++c) {
          nulls[c] = r[static_cast<int>(c)].is_null();
          if (!nulls[c]) cells[c] = r[static_cast<int>(c)].c_str();
        }
        rows.emplace_back(std::move(cells), std::move(nulls));
      }
      return Ok();
    });
    if (!st) return Fail(st.error());
    return rows;
  }

  Result<int64_t> Exec(const std::string& sql, const SqlParams& params) override {
    int64_t n = 0;
    auto st = PgGuard("exec", [&]() -> Status {
      n = static_cast<int64_t>(Run(sql, params).affected_rows());
      return Ok();
    });
    if (!st) return Fail(st.error());
    return n;
  }

  Status Script(const std::string& sql) override {
    return PgGuard("script", [&]() -> Status {
      if (txn_) {
        txn_->exec(sql);
      } else {
        pqxx::work w(*conn_);
        w.exec(sql);
        w.commit();
      }
      return Ok();
    });
  }

  Status Transaction(const std::function<Status()>& body) override {
    if (txn_) return Fail(Error::Internal("postgresql: nested transaction"));
    auto st = PgGuard("begin", [&]() -> Status {
      txn_ = std::make_unique<pqxx::work>(*conn_);
      return Ok();
    });
    if (!st) return st;
    Status result = body();
    auto done = PgGuard("commit", [&]() -> Status {
      if (result) {
        txn_->commit();
      } else {
        txn_->abort();
      }
      return Ok();
    });
    txn_.reset();
    if (!result) return result;
    return done;
  }

 private:
  pqxx::result Run(const std::string& sql, const SqlParams& params) {
    std::vector<std::string> texts(params.size());
    std::vector<const char*> ptrs(params.size(), nullptr);
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i].kind == SqlValue::Kind::kNull) continue;
      texts[i] = params[i].Text();
      ptrs[i] = texts[i].c_str();
    }
    if (txn_) return txn_->exec_params(sql, pqxx::prepare::make_dynamic_params(ptrs));
    pqxx::work w(*conn_);
    pqxx::result r = w.exec_params(sql, pqxx::prepare::make_dynamic_params(ptrs));
    w.commit();
    return r;
  }

  std::string url_;
  std::unique_ptr<pqxx::connection> conn_;
  std::unique_ptr<pqxx::work> txn_;
};

}  // namespace

Result<std::unique_ptr<SqlDb>> OpenPostgresDb(const std::string& url) {
  auto db = std::make_unique<PostgresDb>(url);
  TEND_RETURN_NOT_OK(db->Open());
  return std::unique_ptr<SqlDb>(std::move(db));
}

}  // namespace tend::fleet
