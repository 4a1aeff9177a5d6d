#include "runtime/spec.h"

#include <algorithm>

namespace tend::runtime {
namespace {

const SettingDef* FindDef(const std::vector<SettingDef>& defs, const std::string& key) {
  for (const auto& d : defs) {
    if (d.key == key) return &d;
  }
  return nullptr;
}

// The config file: global tables into `device`, then one Settings per [[asset]] table (the
// globals overridden by the table's keys).
Status ReadConfig(Config& c, const std::vector<SettingDef>& defs, Settings& device,
                  std::vector<Settings>& assets) {
  TEND_RETURN_NOT_OK(ReadSettings(c, defs, device));
  TEND_ASSIGN_OR_RETURN(auto tables, c.TableArray("asset"));
  TEND_RETURN_NOT_OK(c.CheckNoUnknownKeys());
  for (size_t i = 0; i < tables.size(); ++i) {
    Settings s = device;
    TEND_RETURN_NOT_OK(
        ReadSettings(tables[i], defs, s, true, "[[asset]] " + std::to_string(i + 1)));
    TEND_RETURN_NOT_OK(tables[i].CheckNoUnknownKeys());
    assets.push_back(std::move(s));
  }
  return Ok();
}

Result<AssetSpec> MakeAsset(const Settings& s) {
  AssetSpec a;
  a.id = s.GetString("identity.asset");
  a.source = s.GetString("agent.source");
  a.model = s.GetString("agent.model");
  a.model_kind = s.GetString("agent.model_kind");
  a.settings = s;
  if (a.id.empty()) return Fail(Error::Invalid(s.Origin("identity.asset") + ": empty asset id"));
  // No silent simulator: an agent with telemetry on would publish simulated decisions under a
  // real device's identity. The simulator runs only when asked for (--source sim).
  if (a.source.empty()) {
    return Fail(Error::Invalid("no source for asset '" + a.id +
                               "': give --source (a .wav/.csv recording, - for float32 on stdin, "
                               "or sim[:...] for the press simulator) or agent.source"));
  }
  return a;
}

}  // namespace

Result<RunSpec> LoadRunSpec(const Registry& registry, const std::string& config_path,
                            const FlagValues& flags) {
  if (config_path.empty()) return LoadRunSpec(registry, Config(), flags);
  TEND_ASSIGN_OR_RETURN(auto c, Config::LoadFile(config_path));
  return LoadRunSpec(registry, std::move(c), flags);
}

Result<RunSpec> LoadRunSpec(const Registry& registry, Config config, const FlagValues& flags) {
  const auto& defs = registry.RunSettings();
  const std::string config_path =
      config.source_name().rfind('<', 0) == 0 ? std::string() : config.source_name();
  RunSpec spec;
  spec.config_path = config_path;
  spec.device = Settings(&defs);
  std::vector<Settings> assets;
  TEND_RETURN_NOT_OK(ReadConfig(config, defs, spec.device, assets));
  const bool tables = !assets.empty();
  if (!tables) assets.push_back(spec.device);
  for (const auto& [key, texts] : flags) {
    const SettingDef* def = FindDef(defs, key);
    if (!def) return Fail(Error::Internal("flag for an undefined setting '" + key + "'"));
    TEND_ASSIGN_OR_RETURN(SettingValue v, ParseSettingFlag(*def, texts));
    if (tables && (key == "agent.source" || key == "agent.model" || key == "identity.asset")) {
      return Fail(Error::Invalid(def->LongFlag() + ": " + config_path +
                                 " has [[asset]] tables; set each asset's " + def->asset_key +
                                 " there"));
    }
    spec.device.Set(key, v, def->LongFlag());
    for (auto& a : assets) a.Set(key, v, def->LongFlag());
  }
  for (const auto& s : assets) {
    TEND_ASSIGN_OR_RETURN(auto a, MakeAsset(s));
    for (const auto& other : spec.assets) {
      if (other.id == a.id) {
        return Fail(
            Error::Invalid(s.Origin("identity.asset") + ": asset id '" + a.id + "' is used twice"));
      }
    }
    spec.assets.push_back(std::move(a));
  }
  return spec;
}

}  // namespace tend::runtime
