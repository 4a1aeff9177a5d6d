// TOML configuration with strict checking: each consumer declares the keys it reads (through the
// typed getters below); values of the wrong type and keys nobody read are errors naming the file,
// line and key — a typo in a plant's config must not silently fall back to a default.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/status.h"

namespace toml {
inline namespace v3 {
class table;
}
}  // namespace toml

namespace tend {

class Config {
 public:
  // An empty configuration (every getter leaves its default).
  Config();
  ~Config();
  Config(Config&&) noexcept;
  Config& operator=(Config&&) noexcept;

  static Result<Config> LoadFile(const std::string& path);
  static Result<Config> Parse(const std::string& text, const std::string& source_name = "<config>");

  // Typed getters over dotted keys ("agent.deadline_s"). An absent key leaves `out` unchanged
  // and returns Ok; a present key of the wrong type is an error. Integers are accepted where a
  // float is asked for.
  Status Get(const std::string& key, std::string& out);
  Status Get(const std::string& key, bool& out);
  Status Get(const std::string& key, int64_t& out);
  Status Get(const std::string& key, int& out);
  Status Get(const std::string& key, double& out);
  Status Get(const std::string& key, std::vector<std::string>& out);
  Status Get(const std::string& key, std::vector<double>& out);

  bool Has(const std::string& key) const;
  // "tend.toml:7" for a key present in the file; the file name alone otherwise.
  std::string Location(const std::string& key) const;
  // The folder of the config file ("" for a config that is not a file): relative paths in the
  // file are meant from there.
  std::string dir() const;

  // An array of tables ([[asset]] ...): one Config per table, in file order, each checking its
  // own keys (line numbers stay those of the file). Absent key: an empty list. The key counts as
  // read for CheckNoUnknownKeys.
  Result<std::vector<Config>> TableArray(const std::string& key);

  // Call after every consumer has read its keys: the first key present in the file that nobody
  // asked for is reported ("tend.toml:7: unknown key 'agent.modle'").
  Status CheckNoUnknownKeys() const;

  const std::string& source_name() const { return source_name_; }

 private:
  // The parsed file, shared by the Configs of its [[...]] tables; table_ is this Config's table in
  // it (the root, or one table of an array), so that every node keeps its line number.
  std::shared_ptr<toml::table> root_;
  toml::table* table_ = nullptr;
  std::string source_name_;
  std::set<std::string> known_;
};

}  // namespace tend
