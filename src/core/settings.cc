#include "core/settings.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace tend {
namespace {

SettingDef Make(std::string key, SettingType type, SettingValue def, std::string help) {
  SettingDef d;
  d.key = std::move(key);
  d.type = type;
  d.def = std::move(def);
  d.help = std::move(help);
  return d;
}

std::string Num(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e16) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{:g}", v);
}

[[noreturn]] void ProgrammerError(const std::string& what) {
  std::fprintf(stderr, "tend: programmer error: %s\n", what.c_str());
  std::abort();
}

bool ParseInt(const std::string& s, int64_t* out) {
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (b != e && *b == '+') ++b;
  auto [p, ec] = std::from_chars(b, e, *out);
  return b != e && ec == std::errc() && p == e;
}

bool ParseFloat(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

Result<SettingValue> ParseOne(const SettingDef& def, const std::string& text) {
  switch (def.type) {
    case SettingType::kBool:
      if (text == "true" || text == "1" || text == "yes") return SettingValue(true);
      if (text == "false" || text == "0" || text == "no") return SettingValue(false);
      return Fail(Error::Invalid("must be true or false, got '" + text + "'"));
    case SettingType::kInt: {
      int64_t v = 0;
      if (!ParseInt(text, &v))
        return Fail(Error::Invalid("must be an integer, got '" + text + "'"));
      return SettingValue(v);
    }
    case SettingType::kFloat: {
      double v = 0;
      if (!ParseFloat(text, &v))
        return Fail(Error::Invalid("must be a number, got '" + text + "'"));
      return SettingValue(v);
    }
    default:
      return SettingValue(text);
  }
}

Status ReadOne(Config& config, const SettingDef& def, const std::string& name, Settings& out,
               const std::string& origin_prefix) {
  if (!config.Has(name)) {
    // Still declared as read, so that an absent key is not mistaken for an unknown one.
    std::string ignored;
    (void)config.Get(name, ignored);
    return Ok();
  }
  SettingValue v;
  switch (def.type) {
    case SettingType::kBool: {
      bool b = false;
      TEND_RETURN_NOT_OK(config.Get(name, b));
      v = b;
      break;
    }
    case SettingType::kInt: {
      int64_t i = 0;
      TEND_RETURN_NOT_OK(config.Get(name, i));
      v = i;
      break;
    }
    case SettingType::kFloat: {
      double d = 0;
      TEND_RETURN_NOT_OK(config.Get(name, d));
      v = d;
      break;
    }
    case SettingType::kList:
    case SettingType::kPathList: {
      std::vector<std::string> l;
      TEND_RETURN_NOT_OK(config.Get(name, l));
      if (def.type == SettingType::kPathList) {
        for (auto& p : l) p = ResolvePath(config.dir(), p);
      }
      v = std::move(l);
      break;
    }
    default: {
      std::string s;
      TEND_RETURN_NOT_OK(config.Get(name, s));
      if (def.type == SettingType::kPath && !s.empty()) s = ResolvePath(config.dir(), s);
      if (def.type == SettingType::kSource && SourceSpecIsPath(s)) s = ResolvePath(config.dir(), s);
      v = std::move(s);
    }
  }
  const std::string where = config.Location(name);
  auto st = CheckSetting(def, v);
  if (!st) {
    return Fail(Error::Invalid(where + ": '" + name + "' " + st.error().message));
  }
  out.Set(def.key, std::move(v),
          origin_prefix.empty() ? where : origin_prefix + " (" + where + ")");
  return Ok();
}

}  // namespace

SettingDef SettingDef::Bool(std::string key, bool def, std::string help) {
  return Make(std::move(key), SettingType::kBool, def, std::move(help));
}
SettingDef SettingDef::Int(std::string key, int64_t def, double min, double max, std::string help) {
  auto d = Make(std::move(key), SettingType::kInt, def, std::move(help));
  d.min = min;
  d.max = max;
  return d;
}
SettingDef SettingDef::Float(std::string key, double def, double min, double max,
                             std::string help) {
  auto d = Make(std::move(key), SettingType::kFloat, def, std::move(help));
  d.min = min;
  d.max = max;
  return d;
}
SettingDef SettingDef::String(std::string key, std::string def, std::string help) {
  return Make(std::move(key), SettingType::kString, std::move(def), std::move(help));
}
SettingDef SettingDef::Path(std::string key, std::string def, std::string help) {
  return Make(std::move(key), SettingType::kPath, std::move(def), std::move(help));
}
SettingDef SettingDef::List(std::string key, std::string help) {
  return Make(std::move(key), SettingType::kList, std::vector<std::string>{}, std::move(help));
}
SettingDef SettingDef::PathList(std::string key, std::string help) {
  return Make(std::move(key), SettingType::kPathList, std::vector<std::string>{}, std::move(help));
}

std::string SettingDef::LongFlag() const {
  size_t start = 0;
  while (start < flag.size()) {
    size_t end = flag.find(',', start);
    std::string name = flag.substr(start, end == std::string::npos ? end : end - start);
    if (name.rfind("--", 0) == 0) return name;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return flag.substr(0, flag.find(','));
}

std::string SettingDef::RangeText() const {
  if (!choices.empty()) {
    std::string s = "one of ";
    for (size_t i = 0; i < choices.size(); ++i) s += (i ? ", " : "") + choices[i];
    return s;
  }
  if (!IsNumber()) return "";
  std::string s = type == SettingType::kInt ? "an integer in [" : "a finite number in [";
  s += Num(min) + ", " + Num(max) + "]";
  for (double v : special) s += " or " + Num(v);
  return s;
}

const char* SettingTypeName(SettingType t) {
  switch (t) {
    case SettingType::kBool:
      return "bool";
    case SettingType::kInt:
      return "int";
    case SettingType::kFloat:
      return "float";
    case SettingType::kString:
      return "string";
    case SettingType::kPath:
      return "path";
    case SettingType::kSource:
      return "source";
    case SettingType::kList:
      return "list";
    case SettingType::kPathList:
      return "path list";
  }
  return "?";
}

std::string SettingValueText(const SettingValue& v) {
  struct Visitor {
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return Num(d); }
    std::string operator()(const std::string& s) const { return s; }
    std::string operator()(const std::vector<std::string>& l) const {
      std::string s = "[";
      for (size_t i = 0; i < l.size(); ++i) s += (i ? ", " : "") + l[i];
      return s + "]";
    }
  };
  return std::visit(Visitor{}, v);
}

nlohmann::json SettingDef::ToJson() const {
  nlohmann::json j{{"key", key}, {"type", SettingTypeName(type)}, {"help", help}};
  j["default"] = SettingValueText(def);
  if (!RangeText().empty()) j["range"] = RangeText();
  if (!flag.empty()) j["flag"] = LongFlag();
  if (!asset_key.empty()) j["asset_key"] = asset_key;
  return j;
}

Status CheckSetting(const SettingDef& def, const SettingValue& v) {
  if (def.IsNumber()) {
    const double x = std::holds_alternative<int64_t>(v)  ? static_cast<double>(std::get<int64_t>(v))
                     : std::holds_alternative<double>(v) ? std::get<double>(v)
                                                         : std::nan("");
    const bool special = std::find(def.special.begin(), def.special.end(), x) != def.special.end();
    if (!special && !(std::isfinite(x) && x >= def.min && x <= def.max)) {
      return Fail(Error::Invalid("must be " + def.RangeText() + ", got " + SettingValueText(v)));
    }
  }
  if (!def.choices.empty() && std::holds_alternative<std::string>(v)) {
    const auto& s = std::get<std::string>(v);
    if (std::find(def.choices.begin(), def.choices.end(), s) == def.choices.end()) {
      return Fail(Error::Invalid("must be " + def.RangeText() + ", got '" + s + "'"));
    }
  }
  return Ok();
}

Result<SettingValue> ParseSettingFlag(const SettingDef& def,
                                      const std::vector<std::string>& texts) {
  auto fail = [&](const Error& e) {
    return Fail(Error::Invalid(def.LongFlag() + " (" + def.key + "): " + e.message));
  };
  SettingValue v;
  if (def.IsList()) {
    v = texts;
  } else if (texts.empty()) {
    if (def.type != SettingType::kBool) return fail(Error::Invalid("needs a value"));
    v = true;  // a bare flag
  } else {
    auto r = ParseOne(def, texts.back());
    if (!r) return fail(r.error());
    v = std::move(*r);
  }
  auto st = CheckSetting(def, v);
  if (!st) return fail(st.error());
  return v;
}

bool SourceSpecIsPath(const std::string& spec) {
  if (spec.empty() || spec == "-") return false;
  size_t i = 0;
  while (i < spec.size() && ((spec[i] >= 'a' && spec[i] <= 'z') || spec[i] == '_' ||
                             (i > 0 && spec[i] >= '0' && spec[i] <= '9'))) {
    ++i;
  }
  // "sim", "sim:...", "fd:3": a scheme, not a file.
  return !(i > 0 && (i == spec.size() || spec[i] == ':'));
}

std::string ResolvePath(const std::string& dir, const std::string& path) {
  if (dir.empty() || path.empty() || path[0] == '/') return path;
  if (path.find("://") != std::string::npos) return path;  // a URL
  return (std::filesystem::path(dir) / path).string();
}

void Settings::Set(const std::string& key, SettingValue v, std::string origin) {
  values_[key] = Entry{std::move(v), std::move(origin)};
}

std::string Settings::Origin(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? "default" : it->second.origin;
}

const SettingDef* Settings::Find(const std::string& key) const {
  if (!defs_) return nullptr;
  for (const auto& d : *defs_) {
    if (d.key == key) return &d;
  }
  return nullptr;
}

const SettingValue& Settings::Value(const std::string& key, size_t index) const {
  const SettingDef* def = Find(key);
  if (!def) ProgrammerError("setting '" + key + "' is not defined");
  auto it = values_.find(key);
  const SettingValue& v = it == values_.end() ? def->def : it->second.value;
  if (v.index() != index) ProgrammerError("setting '" + key + "' read as the wrong type");
  return v;
}

bool Settings::GetBool(const std::string& key) const { return std::get<bool>(Value(key, 0)); }
int64_t Settings::GetInt(const std::string& key) const { return std::get<int64_t>(Value(key, 1)); }
double Settings::GetFloat(const std::string& key) const { return std::get<double>(Value(key, 2)); }
const std::string& Settings::GetString(const std::string& key) const {
  return std::get<std::string>(Value(key, 3));
}
const std::vector<std::string>& Settings::GetList(const std::string& key) const {
  return std::get<std::vector<std::string>>(Value(key, 4));
}

Status ReadSettings(Config& config, const std::vector<SettingDef>& defs, Settings& out,
                    bool asset_table, const std::string& origin_prefix) {
  for (const auto& def : defs) {
    if (asset_table && def.asset_key.empty()) continue;
    const std::string& name = asset_table ? def.asset_key : def.key;
    TEND_RETURN_NOT_OK(ReadOne(config, def, name, out, origin_prefix));
  }
  return Ok();
}

}  // namespace tend
