// Settings declared once: each key has a type, a default, a sane range (or a list of allowed
// values), an optional command-line flag and a help line. The same definition type-checks and
// range-checks a TOML config (errors name file, line and key), command-line flags (errors name the
// flag and key) and is listed by `tend doctor`. Relative paths from a config file are resolved
// against the config file's folder.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace tend {

enum class SettingType {
  kBool,
  kInt,
  kFloat,
  kString,
  kPath,      // a string; relative values from a config file resolve against its folder
  kSource,    // a source spec: resolved like a path when it names a file ("a.wav", "x/y.csv")
  kList,      // a list of strings
  kPathList,  // a list of paths (each may end in "@START:END")
};

using SettingValue = std::variant<bool, int64_t, double, std::string, std::vector<std::string>>;

struct SettingDef {
  std::string key;  // dotted config key, e.g. "agent.deadline_s"
  SettingType type = SettingType::kString;
  SettingValue def;                                       // the default
  double min = -std::numeric_limits<double>::infinity();  // numbers: closed range, finite
  double max = std::numeric_limits<double>::infinity();
  // A number outside [min, max] is still accepted when it equals one of these (e.g. -1 = "no
  // limit", 0 = "off").
  std::vector<double> special;
  std::vector<std::string> choices;  // strings: the allowed values (empty: any)
  std::string flag;       // CLI11 names, e.g. "--deadline" or "--quiet,-q"; "" = config only
  std::string help;       // one line
  std::string asset_key;  // settable per [[asset]] under this name; "" = device-wide only

  static SettingDef Bool(std::string key, bool def, std::string help);
  static SettingDef Int(std::string key, int64_t def, double min, double max, std::string help);
  static SettingDef Float(std::string key, double def, double min, double max, std::string help);
  static SettingDef String(std::string key, std::string def, std::string help);
  static SettingDef Path(std::string key, std::string def, std::string help);
  static SettingDef List(std::string key, std::string help);
  static SettingDef PathList(std::string key, std::string help);
  SettingDef& Flag(std::string f) {
    flag = std::move(f);
    return *this;
  }
  SettingDef& PerAsset(std::string name) {
    asset_key = std::move(name);
    return *this;
  }
  SettingDef& Choices(std::vector<std::string> c) {
    choices = std::move(c);
    return *this;
  }
  SettingDef& Special(std::vector<double> s) {
    special = std::move(s);
    return *this;
  }
  SettingDef& Type(SettingType t) {
    type = t;
    return *this;
  }

  bool IsNumber() const { return type == SettingType::kInt || type == SettingType::kFloat; }
  bool IsList() const { return type == SettingType::kList || type == SettingType::kPathList; }
  // "--deadline" from "--deadline,-d"; "" without a flag.
  std::string LongFlag() const;
  // "a finite number in [0.001, 3600]", "one of alert, pass", ...; "" when anything goes.
  std::string RangeText() const;
  nlohmann::json ToJson() const;  // key, type, default, range, flag, help, per-asset name
};

const char* SettingTypeName(SettingType t);
std::string SettingValueText(const SettingValue& v);

// Checks a value of the right type against the definition's range or choices. The error says
// what is allowed ("must be a finite number in [0.001, 3600], got inf"); callers prefix where
// the value came from.
Status CheckSetting(const SettingDef& def, const SettingValue& v);
// Parses command-line text into def's type and checks it: "--deadline inf" ->
// "--deadline (agent.deadline_s): must be a finite number in [0.001, 3600], got inf".
Result<SettingValue> ParseSettingFlag(const SettingDef& def, const std::vector<std::string>& texts);

// True when a source spec names a file (and so resolves against a config folder): not "-",
// and not "NAME" or "NAME:..." with NAME a plain lower-case word ("sim", "sim:seed=2", "fd:3").
bool SourceSpecIsPath(const std::string& spec);
// `path` resolved against `dir` when relative (and dir is not empty).
std::string ResolvePath(const std::string& dir, const std::string& path);

// Values of a set of definitions: explicit ones (with where they came from) over the defaults.
class Settings {
 public:
  Settings() = default;
  explicit Settings(const std::vector<SettingDef>* defs) : defs_(defs) {}

  void Set(const std::string& key, SettingValue v, std::string origin);
  bool IsSet(const std::string& key) const { return values_.count(key) != 0; }
  // "tend.toml:7", "--deadline", "[[asset]] 2 (tend.toml:12)" or "default".
  std::string Origin(const std::string& key) const;

  // Typed reads. The key must be defined with that type: anything else is a programmer error
  // (aborts with a message naming the key), never reachable from user input.
  bool GetBool(const std::string& key) const;
  int64_t GetInt(const std::string& key) const;
  double GetFloat(const std::string& key) const;
  const std::string& GetString(const std::string& key) const;
  const std::vector<std::string>& GetList(const std::string& key) const;

  const SettingDef* Find(const std::string& key) const;
  const std::vector<SettingDef>& defs() const { return *defs_; }

 private:
  const SettingValue& Value(const std::string& key, size_t index) const;
  struct Entry {
    SettingValue value;
    std::string origin;
  };
  const std::vector<SettingDef>* defs_ = nullptr;
  std::map<std::string, Entry> values_;
};

// Reads every definition from `config` into `out`: type- and range-checked, errors naming file,
// line and key; relative paths resolved against the config file's folder. With `asset_table`,
// only definitions with an asset_key are read, under that name (a [[asset]] table). Unknown keys
// are left for Config::CheckNoUnknownKeys.
Status ReadSettings(Config& config, const std::vector<SettingDef>& defs, Settings& out,
                    bool asset_table = false, const std::string& origin_prefix = {});

}  // namespace tend
