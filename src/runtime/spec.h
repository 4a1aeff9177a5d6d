// What the runtime builds an agent from: device-wide settings and one entry per asset, each with
// its source, model and every per-asset setting (deadline, fail-safe, debounce, ...). Made from a
// TOML config and command-line flags through the registry's setting definitions: flags win over
// an [[asset]] table, which wins over the file's global tables, which win over the defaults.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/settings.h"
#include "core/status.h"
#include "runtime/registry.h"

namespace tend::runtime {

struct AssetSpec {
  std::string id;
  std::string source;      // source spec
  std::string model;       // model file
  std::string model_kind;  // "" = the model file's tend.input_kind
  Settings settings;       // everything this asset reads
};

struct RunSpec {
  std::string config_path;  // "" without a config file
  Settings device;
  std::vector<AssetSpec> assets;
};

// Flag values as the command line gave them, by setting key (a flag given several times, or a
// list flag, has several texts; a bare bool flag has none).
using FlagValues = std::map<std::string, std::vector<std::string>>;

// Reads `config_path` (may be empty) and the flags into a RunSpec. Every value is type- and
// range-checked against registry.RunSettings(); an unknown key, a wrong type or a value out of
// range is an error naming the file, line and key (or the flag). Requires a source per asset.
Result<RunSpec> LoadRunSpec(const Registry& registry, const std::string& config_path,
                            const FlagValues& flags);
// The same from a parsed config (Config::Parse; an empty Config without a file).
Result<RunSpec> LoadRunSpec(const Registry& registry, Config config, const FlagValues& flags);

}  // namespace tend::runtime
