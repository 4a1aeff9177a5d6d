#include "core/config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>

namespace tend {
namespace {

std::string Where(const std::string& src, const toml::node& n) {
  auto line = n.source().begin.line;
  return line ? src + ":" + std::to_string(line) : src;
}

const char* TypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date/time";
  }
}

void CollectLeaves(const toml::table& t, const std::string& prefix,
                   std::vector<std::pair<std::string, const toml::node*>>& out) {
  for (auto&& [k, v] : t) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (auto* sub = v.as_table()) {
      CollectLeaves(*sub, key, out);
    } else {
      out.emplace_back(key, &v);
    }
  }
}

}  // namespace

Config::Config()
    : root_(std::make_shared<toml::table>()), table_(root_.get()), source_name_("<defaults>") {}
Config::~Config() = default;
Config::Config(Config&&) noexcept = default;
Config& Config::operator=(Config&&) noexcept = default;

Result<Config> Config::Parse(const std::string& text, const std::string& source_name) {
  Config c;
  c.source_name_ = source_name;
  try {
    c.root_ = std::make_shared<toml::table>(toml::parse(text, source_name));
    c.table_ = c.root_.get();
  } catch (const toml::parse_error& e) {
    return Fail(Error::Invalid(source_name + ":" + std::to_string(e.source().begin.line) +
                               ": TOML syntax error: " + std::string(e.description())));
  }
  return c;
}

Result<Config> Config::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(Error::NotFound(path + ": cannot open config file"));
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path);
}

bool Config::Has(const std::string& key) const {
  return table_->at_path(key).node() != nullptr;
}

std::string Config::Location(const std::string& key) const {
  const toml::node* n = table_->at_path(key).node();
  return n ? Where(source_name_, *n) : source_name_;
}

std::string Config::dir() const {
  if (source_name_.empty() || source_name_[0] == '<') return "";
  return std::filesystem::path(source_name_).parent_path().string();
}

Result<std::vector<Config>> Config::TableArray(const std::string& key) {
  known_.insert(key);
  std::vector<Config> out;
  toml::node* n = table_->at_path(key).node();
  if (!n) return out;
  toml::array* arr = n->as_array();
  if (!arr || !arr->is_array_of_tables()) {
    return Fail(Error::Invalid(Where(source_name_, *n) + ": '" + key +
                               "' must be an array of tables ([[" + key + "]]), got " +
                               TypeName(*n)));
  }
  for (toml::node& e : *arr) {
    Config c;
    c.source_name_ = source_name_;
    c.root_ = root_;
    c.table_ = e.as_table();
    out.push_back(std::move(c));
  }
  return out;
}

#define TEND_CONFIG_LOOKUP(key)                    \
  known_.insert(key);                              \
  const toml::node* n = table_->at_path(key).node(); \
  if (!n) return Ok();

Status Config::Get(const std::string& key, std::string& out) {
  TEND_CONFIG_LOOKUP(key);
  if (auto v = n->value<std::string>(); v && n->is_string()) {
    out = *v;
    return Ok();
  }
  return Fail(Error::Invalid(Where(source_name_, *n) + ": '" + key + "' must be a string, got " +
                             TypeName(*n)));
}

Status Config::Get(const std::string& key, bool& out) {
  TEND_CONFIG_LOOKUP(key);
  if (n->is_boolean()) {
    out = *n->value<bool>();
    return Ok();
  }
  return Fail(Error::Invalid(Where(source_name_, *n) + ": '" + key + "' must be true or false, got " +
                             TypeName(*n)));
}

Status Config::Get(const std::string& key, int64_t& out) {
  TEND_CONFIG_LOOKUP(key);
  if (n->is_integer()) {
    out = *n->value<int64_t>();
    return Ok();
  }
  return Fail(Error::Invalid(Where(source_name_, *n) + ": '" + key + "' must be an integer, got " +
                             TypeName(*n)));
}

Status Config::Get(const std::string& key, int& out) {
  int64_t v = out;
  TEND_RETURN_NOT_OK(Get(key, v));
  if (v < INT32_MIN || v > INT32_MAX) {
    return Fail(Error::Invalid(source_name_ + ": '" + key + "' is out of range"));
  }
  out = static_cast<int>(v);
  return Ok();
}

Status Config::Get(const std::string& key, double& out) {
  TEND_CONFIG_LOOKUP(key);
  if (n->is_floating_point() || n->is_integer()) {
    out = *n->value<double>();
    return Ok();
  }
  return Fail(Error::Invalid(Where(source_name_, *n) + ": '" + key + "' must be a number, got " +
                             TypeName(*n)));
}

Status Config::Get(const std::string& key, std::vector<std::string>& out) {
  TEND_CONFIG_LOOKUP(key);
  const toml::array* arr = n->as_array();
  if (!arr) {
    return Fail(Error::Invalid(Where(source_name_, *n) + ": '" + key +
                               "' must be an array of strings, got " + TypeName(*n)));
  }
  std::vector<std::string> v;
  for (auto&& e : *arr) {
    if (!e.is_string()) {
      return Fail(Error::Invalid(Where(source_name_, e) + ": '" + key +
                                 "' must contain only strings, found " + TypeName(e)));
    }
    v.push_back(*e.value<std::string>());
  }
  out = std::move(v);
  return Ok();
}

Status Config::Get(const std::string& key, std::vector<double>& out) {
  TEND_CONFIG_LOOKUP(key);
  const toml::array* arr = n->as_array();
  if (!arr) {
    return Fail(Error::Invalid(Where(source_name_, *n) + ": '" + key +
                               "' must be an array of numbers, got " + TypeName(*n)));
  }
  std::vector<double> v;
  for (auto&& e : *arr) {
    if (!e.is_number()) {
      return Fail(Error::Invalid(Where(source_name_, e) + ": '" + key +
                                 "' must contain only numbers, found " + TypeName(e)));
    }
    v.push_back(*e.value<double>());
  }
  out = std::move(v);
  return Ok();
}

#undef TEND_CONFIG_LOOKUP

Status Config::CheckNoUnknownKeys() const {
  std::vector<std::pair<std::string, const toml::node*>> leaves;
  CollectLeaves(*table_, "", leaves);
  for (auto& [key, node] : leaves) {
    if (!known_.count(key)) {
      return Fail(Error::Invalid(Where(source_name_, *node) + ": unknown key '" + key + "'"));
    }
  }
  return Ok();
}

}  // namespace tend
