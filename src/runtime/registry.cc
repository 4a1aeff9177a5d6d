#include "runtime/registry.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>

#include "core/fs.h"

namespace tend::runtime {
namespace {

bool HasScheme(const std::string& spec, const std::string& scheme) {
  if (spec == scheme) return true;
  return spec.size() > scheme.size() && spec.compare(0, scheme.size(), scheme) == 0 &&
         spec[scheme.size()] == ':';
}

template <typename D>
Status CheckName(const std::vector<D>& list, const std::string& what, const std::string& name) {
  if (name.empty()) return Fail(Error::Internal(what + " without a name"));
  for (const auto& d : list) {
    if (d.name == name) return Fail(Error::Internal(what + " '" + name + "' registered twice"));
  }
  return Ok();
}

template <typename D>
nlohmann::json DescribeList(const std::vector<D>& list) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& d : list) {
    nlohmann::json keys = nlohmann::json::array();
    for (const auto& k : d.keys) keys.push_back(k.ToJson());
    a.push_back({{"name", d.name}, {"description", d.description}, {"keys", keys}});
  }
  return a;
}

}  // namespace

Status Registry::AddKeys(const std::string& owner, const std::vector<SettingDef>& keys) {
  for (const auto& k : keys) {
    auto it = std::find_if(settings_.begin(), settings_.end(),
                           [&](const SettingDef& d) { return d.key == k.key; });
    if (it == settings_.end()) {
      settings_.push_back(k);
    } else if (it->type != k.type || it->asset_key != k.asset_key) {
      return Fail(Error::Internal(owner + ": key '" + k.key + "' is already declared as " +
                                  SettingTypeName(it->type)));
    }
  }
  return Ok();
}

Status Registry::AddSource(SourceDescriptor d) {
  TEND_RETURN_NOT_OK(CheckName(sources_, "source", d.name));
  if (!d.open) return Fail(Error::Internal("source '" + d.name + "' has no factory"));
  TEND_RETURN_NOT_OK(AddKeys("source " + d.name, d.keys));
  sources_.push_back(std::move(d));
  return Ok();
}

Status Registry::AddModelKind(ModelKindDescriptor d) {
  TEND_RETURN_NOT_OK(CheckName(kinds_, "model kind", d.name));
  if (!d.load) return Fail(Error::Internal("model kind '" + d.name + "' has no factory"));
  TEND_RETURN_NOT_OK(AddKeys("model kind " + d.name, d.keys));
  kinds_.push_back(std::move(d));
  return Ok();
}

Status Registry::AddSink(SinkDescriptor d) {
  TEND_RETURN_NOT_OK(CheckName(sinks_, "sink", d.name));
  if (!d.create) return Fail(Error::Internal("sink '" + d.name + "' has no factory"));
  TEND_RETURN_NOT_OK(AddKeys("sink " + d.name, d.keys));
  sinks_.push_back(std::move(d));
  return Ok();
}

Status Registry::AddStage(StageDescriptor d) {
  TEND_RETURN_NOT_OK(CheckName(stages_, "stage", d.name));
  if (!d.create) return Fail(Error::Internal("stage '" + d.name + "' has no factory"));
  TEND_RETURN_NOT_OK(AddKeys("stage " + d.name, d.keys));
  stages_.push_back(std::move(d));
  return Ok();
}

Result<const SourceDescriptor*> Registry::SourceFor(const std::string& spec) const {
  if (spec.empty()) return Fail(Error::Invalid("empty source"));
  for (const auto& d : sources_) {
    if (HasScheme(spec, d.name)) return &d;
    for (const auto& s : d.schemes) {
      if (HasScheme(spec, s)) return &d;
    }
  }
  const std::string ext = fs::LowerExtension(spec);
  for (const auto& d : sources_) {
    if (std::find(d.extensions.begin(), d.extensions.end(), ext) != d.extensions.end()) return &d;
  }
  std::ifstream probe(spec);
  if (!probe) {
    return Fail(
        Error::NotFound("source '" + spec + "': no such file (expected " +
                        "a file one of the sources reads, or a scheme: see `tend doctor`)"));
  }
  for (const auto& d : sources_) {
    if (d.sniff && d.sniff(spec)) return &d;
  }
  std::string names;
  for (const auto& d : sources_) names += (names.empty() ? "" : ", ") + d.name;
  return Fail(Error::Unsupported("source '" + spec + "': unknown kind (sources: " + names + ")"));
}

Result<const ModelKindDescriptor*> Registry::ModelKind(const std::string& name) const {
  for (const auto& d : kinds_) {
    if (d.name == name) return &d;
  }
  std::string names;
  for (const auto& d : kinds_) names += (names.empty() ? "" : ", ") + d.name;
  return Fail(Error::Unsupported("model kind '" + name +
                                 "' is not built into this tend (kinds: " + names + ")"));
}

Result<std::unique_ptr<Registry>> MakeRegistry(RegisterFn register_components) {
  auto r = std::make_unique<Registry>();
  TEND_RETURN_NOT_OK(r->AddSettings("runtime", CoreRunSettings()));
  if (register_components) TEND_RETURN_NOT_OK(register_components(*r));
  return r;
}

nlohmann::json Registry::Describe() const {
  return {{"sources", DescribeList(sources_)},
          {"stages", DescribeList(stages_)},
          {"model_kinds", DescribeList(kinds_)},
          {"sinks", DescribeList(sinks_)}};
}

}  // namespace tend::runtime
