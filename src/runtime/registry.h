// The registry of components the runtime assembles agents from: sources (where an asset's events
// come from), event stages (what tags an event between its source and the agent, e.g. the PLC's
// part number), model kinds (how a model file turns an event into a score) and sinks (where
// decisions go). Each is a descriptor: a name, a one-line description, the config keys it reads
// (type, default, range, flag, help: validation and `tend doctor` come from them) and a factory.
// Registration is explicit (no global constructors): each component file defines one
// TEND_COMPONENT function, and CMake's tend_add_component() generates the calls (see
// docs/architecture.md, "Adding a component").
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "agent/asset_monitor.h"
#include "agent/event_reader.h"
#include "agent/model.h"
#include "agent/served_model.h"
#include "core/settings.h"
#include "core/status.h"
#include "decide/decision.h"

namespace tend::metrics {
class Exporter;
}
namespace tend::telemetry {
class Telemetry;
struct Identity;
}  // namespace tend::telemetry

namespace tend::runtime {

struct AssetSpec;

// --- sources -----------------------------------------------------------------------------------

struct SourceRequest {
  std::string spec;                // as configured: "a.wav", "sim:strokes=3", "-", "fakecam:..."
  const agent::ModelInput* input;  // what the asset's model takes
  const Settings* settings;        // the asset's settings (this component's keys included)
  std::string asset_id;
};

struct SourceDescriptor {
  std::string name;         // also the scheme: a spec "NAME" or "NAME:..." opens this source
  std::string description;  // one line
  std::vector<std::string> extensions;  // file extensions this source reads (lower case, no dot)
  std::vector<std::string> schemes;     // more spec prefixes (e.g. "-", "fd" for raw input)
  std::vector<SettingDef> keys;
  std::function<Result<std::unique_ptr<agent::EventReader>>(const SourceRequest&)> open;
  // Optional: claims a file with an unknown extension by its content (WAV: "RIFF").
  std::function<bool(const std::string& path)> sniff;
};

// --- model kinds -------------------------------------------------------------------------------

struct ModelRequest {
  std::string path;
  const Settings* settings;                            // the asset's settings
  const std::map<std::string, std::string>* metadata;  // the file's metadata_props
  agent::ServeOptions serve;                           // session options, top-k, warm-up runs
};

struct ModelKindDescriptor {
  std::string name;  // the model file's tend.input_kind (or the asset's model_kind setting)
  std::string description;
  std::vector<SettingDef> keys;
  // Run settings whose default this kind changes (an image model decides parts: debounce 1 of 1,
  // a 200 ms deadline); a value the user set (flag, config, per-asset) wins.
  std::vector<std::pair<std::string, SettingValue>> defaults;
  std::function<Result<std::unique_ptr<agent::Model>>(const ModelRequest&)> load;
};

// --- sinks -------------------------------------------------------------------------------------

// What sinks share on one device: services made by earlier sinks (a sink may use those of sinks
// registered before it: the MQTT sink reads health figures from the Prometheus exporter).
struct DeviceServices {
  metrics::Exporter* exporter = nullptr;      // set by the "prometheus" sink
  telemetry::Telemetry* telemetry = nullptr;  // set by the "mqtt" sink
};

struct DeviceContext {
  const Settings* settings;  // device-wide settings
  const std::vector<AssetSpec>* assets;
  const telemetry::Identity* identity;  // factory, line, first asset, device id
  std::string state_dir;
  DeviceServices* services;
  // Call before using state_dir: creates and locks it (one agent per state directory).
  std::function<Status()> use_state_dir;
};

struct AssetContext {
  const AssetSpec* spec;
  const Settings* settings;  // this asset's settings
  const agent::EventReader* reader;
  const agent::Model* model;
  // A replay: a sink that queues decisions waits for room instead of dropping one.
  bool lossless = false;
  // The asset's monitors (health, drift, input health, adaptive baseline; monitors.*), which
  // the agent runs before the sinks; nullptr when they are off. Valid for the sink's life.
  const agent::AssetMonitor* monitor = nullptr;
};

// One sink instance per run, shared by the assets it watches.
class Sink {
 public:
  virtual ~Sink() = default;
  // The DecisionSink for one asset (owned by this Sink, valid until it is destroyed); nullptr
  // when this sink does not watch that asset. Called before Start().
  virtual Result<DecisionSink*> ForAsset(const AssetContext& asset) = 0;
  virtual Status Start() { return Ok(); }
  // The run is over: deliver what is queued (bounded time; log what is waited for).
  virtual void Stop() {}
  // Adds this sink's figures to the run summary (e.g. "telemetry": {...}, or per asset).
  virtual void Report(nlohmann::json& /*summary*/) const {}
};

struct SinkDescriptor {
  std::string name;
  std::string description;
  std::vector<SettingDef> keys;
  // Called once per run; nullptr when the settings do not ask for this sink (e.g. no MQTT URL).
  std::function<Result<std::unique_ptr<Sink>>(DeviceContext&)> create;
};

// --- event stages ------------------------------------------------------------------------------

// One asset's stage: sees every event of the asset's source on the acquisition thread, before the
// agent copies it, and may tag it (EventView::part_id). Never blocks (network I/O belongs on the
// stage's own thread) and allocates nothing per event.
class EventStage {
 public:
  virtual ~EventStage() = default;
  // `ev.arrival`: when the event was complete (set by the runtime when the source did not);
  // `span`: the wall-clock time the event covers before it (EventReader::event_span_s()).
  virtual void OnEvent(EventView& ev, std::chrono::steady_clock::duration span) = 0;
  // The source ended: no more events for this asset.
  virtual void OnEnd() {}
};

// One stage instance per run, shared by the assets it works for (the counterpart of Sink).
class Stage {
 public:
  virtual ~Stage() = default;
  // The EventStage for one asset (owned by this Stage); nullptr when the asset does not use it.
  // Called while the assets are built (asset.reader is the source's reader, before any stage).
  virtual Result<EventStage*> ForAsset(const AssetContext& asset) = 0;
  // Before the sources run (the device services, e.g. the Prometheus exporter, exist by now).
  virtual Status Start() { return Ok(); }
  // Every source has ended.
  virtual void Stop() {}
  virtual void Report(nlohmann::json& /*summary*/) const {}
};

struct StageDescriptor {
  std::string name;
  std::string description;
  std::vector<SettingDef> keys;
  // Called once per run; nullptr when no asset's settings ask for this stage.
  std::function<Result<std::unique_ptr<Stage>>(DeviceContext&)> create;
};

// --- the registry ------------------------------------------------------------------------------

class Registry {
 public:
  // A duplicate name, or a key declared twice with another type, is an error.
  Status AddSource(SourceDescriptor d);
  Status AddModelKind(ModelKindDescriptor d);
  Status AddSink(SinkDescriptor d);
  Status AddStage(StageDescriptor d);
  // Settings that belong to no component (the runtime's own: CoreRunSettings()).
  Status AddSettings(const std::string& owner, const std::vector<SettingDef>& keys) {
    return AddKeys(owner, keys);
  }

  const std::vector<SourceDescriptor>& sources() const { return sources_; }
  const std::vector<ModelKindDescriptor>& model_kinds() const { return kinds_; }
  const std::vector<SinkDescriptor>& sinks() const { return sinks_; }
  const std::vector<StageDescriptor>& stages() const { return stages_; }

  // The source that reads `spec`: by scheme ("sim:..."), by file extension, then by content.
  Result<const SourceDescriptor*> SourceFor(const std::string& spec) const;
  Result<const ModelKindDescriptor*> ModelKind(const std::string& name) const;

  // Every setting a run reads: the runtime's own (agent, identity, model, ota) and every
  // component's keys, in that order, each key once.
  const std::vector<SettingDef>& RunSettings() const { return settings_; }

  // {"sources": [...], "stages": [...], "model_kinds": [...], "sinks": [...]}: name,
  // description, keys.
  nlohmann::json Describe() const;

 private:
  Status AddKeys(const std::string& owner, const std::vector<SettingDef>& keys);
  std::vector<SourceDescriptor> sources_;
  std::vector<ModelKindDescriptor> kinds_;
  std::vector<SinkDescriptor> sinks_;
  std::vector<StageDescriptor> stages_;
  std::vector<SettingDef> settings_;
};

using RegisterFn = Status (*)(Registry&);

// A registry with the runtime's own settings, then the components `register_components` adds.
Result<std::unique_ptr<Registry>> MakeRegistry(RegisterFn register_components);

// Generated by CMake for each binary that runs agents (tend_link_components): registers every
// component set the binary links, e.g. RegisterComponents_builtin for `tend`.
Status RegisterLinkedComponents(Registry& registry);
// Generated per component set (tend_add_component(... SET name)); "builtin" is tend's own.
Status RegisterComponents_builtin(Registry& registry);

// The runtime's own settings (agent, decide, model, identity, ota), before any component's.
std::vector<SettingDef> CoreRunSettings();

}  // namespace tend::runtime

// Defines a component's registration function; the generated code calls it. NAME is the
// component's file-level name given to tend_add_component().
#define TEND_COMPONENT(NAME) \
  ::tend::Status TendRegisterComponent_##NAME(::tend::runtime::Registry& registry)
