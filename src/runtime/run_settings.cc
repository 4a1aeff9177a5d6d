// The runtime's own settings: each written once, here, with its type, default, range, flag and
// help. Components declare theirs in their descriptors (src/runtime/components).
#include "runtime/registry.h"

namespace tend::runtime {
namespace {

constexpr double kDay = 86400;
constexpr double kYear = 365 * kDay;

std::vector<SettingDef> AssetSettings() {
  using D = SettingDef;
  return {
      D::Path("agent.model", "", "Model (.onnx)").Flag("--model,-m").PerAsset("model"),
      D::String("agent.model_kind", "",
                "Model kind (see `tend doctor`); default: the model file's tend.input_kind")
          .PerAsset("model_kind"),
      D::String("agent.source", "",
                "WAV/CSV path, sim[:wear=0,wear_end=1,strokes=300,seed=1], or - for float32 stdin")
          .Type(SettingType::kSource)
          .Flag("--source,-s")
          .PerAsset("source"),
      D::Float("agent.speed", 1.0, 0, 1000,
               "Replay speed factor (1 = real time, 0 = as fast as possible, every window decided)")
          .Flag("--speed")
          .PerAsset("speed"),
      D::Int("agent.max_windows", -1, 1, 1e15, "Stop after N decisions (-1: no limit)")
          .Special({-1})
          .Flag("--max-windows")
          .PerAsset("max_windows"),
      D::Float("agent.duration_s", -1, 0.001, 1e9,
               "Stop after this many seconds of signal (-1: no limit)")
          .Special({-1})
          .Flag("--duration")
          .PerAsset("duration_s"),
      D::Float("agent.deadline_s", 3.3, 0.001, 3600, "Per-window deadline in seconds")
          .Flag("--deadline")
          .PerAsset("deadline_s"),
      D::String("agent.fail_safe", "alert", "Decision when the deadline passes: alert | pass")
          .Choices({"alert", "pass"})
          .Flag("--fail-safe")
          .PerAsset("fail_safe"),
      D::Int("agent.queue_windows", 256, 1, 65536, "Backlog capacity in windows")
          .Flag("--queue")
          .PerAsset("queue_windows"),
      D::Float("agent.sample_rate", 0, 1, 1e7,
               "Sample rate of raw stdin / CSV without a time column (0: from the input)")
          .Special({0})
          .Flag("--sample-rate")
          .PerAsset("sample_rate"),
      D::Int("agent.channels", 0, 1, 256, "Channel count of raw stdin (0: from the model)")
          .Special({0})
          .Flag("--channels")
          .PerAsset("channels"),
      D::Int("agent.channel", -1, 0, 255, "Use one channel of a multi-channel file (-1: all)")
          .Special({-1})
          .Flag("--channel")
          .PerAsset("channel"),
      D::Int("decide.debounce_k", 2, 1, 1000, "Alert when k of the last n windows cross LOW")
          .Flag("--debounce-k")
          .PerAsset("debounce_k"),
      D::Int("decide.debounce_n", 3, 1, 1000, "Debounce window n")
          .Flag("--debounce-n")
          .PerAsset("debounce_n"),
      D::Int("decide.top_sensors", 3, 0, 64, "How many top contributing features to report")
          .Flag("--top")
          .PerAsset("top_sensors"),
      D::String("identity.asset", "asset-1", "Asset id (MQTT topics, metric labels)")
          .Flag("--asset")
          .PerAsset("id"),
  };
}

// The asset's monitors (agent/asset_monitor.h, docs/alarms.md), run by the agent before the
// sinks; the `monitors` sink reports them.
std::vector<SettingDef> MonitorSettings() {
  using D = SettingDef;
  const HealthOptions h;
  const DriftOptions dr;
  const AdaptiveOptions ad;
  return {
      D::Bool("monitors.health", true,
              "Health over many events: CUSUM warning and alarm against the model's "
              "commissioning score distribution (in every decision)")
          .PerAsset("health_monitor"),
      D::Bool("monitors.drift", true,
              "Per-feature drift (PSI) against the model's commissioning deciles")
          .PerAsset("drift_monitor"),
      D::Bool("monitors.input_health", true,
              "Input health of the raw window: flat-lined channel, clipping, NaN bursts, "
              "sample-rate glitch (live sources)")
          .PerAsset("input_health"),
      D::Float("monitors.health_warning_h", h.h_warning, 1, 1000,
               "Warning CUSUM level (commissioning sd): higher = fewer false warnings")
          .PerAsset("health_warning_h"),
      D::Float("monitors.health_alarm_h", h.h_alarm, 1, 1000,
               "Alarm CUSUM level (evidence over the alert threshold)")
          .PerAsset("health_alarm_h"),
      D::Int("monitors.drift_window", dr.window, 10, 1000000,
             "Events in the rolling drift window (no drift figure before it is full)")
          .PerAsset("drift_window"),
      D::Float("monitors.drift_warn", dr.warn, 0.001, 10, "PSI of a drift warning")
          .PerAsset("drift_warn"),
      D::Float("monitors.drift_alert", dr.alert, 0.001, 10, "PSI of a drift alert")
          .PerAsset("drift_alert"),
      D::Bool("monitors.adaptive_baseline", false,
              "Adaptive baseline: windows judged healthy move the feature standardisation, "
              "rate-limited and capped (docs/alarms.md); a reload (SIGHUP) resets it")
          .Flag("--adaptive-baseline")
          .PerAsset("adaptive_baseline"),
      D::Float("monitors.adaptive_max_shift_sd", ad.max_shift_sd, 0.01, 10,
               "Cap on the adaptive baseline's distance from commissioning, per feature, in "
               "commissioning sd")
          .PerAsset("adaptive_max_shift_sd"),
      D::Float("monitors.adaptive_rate", ad.rate, 1e-6, 0.5,
               "Weight of one accepted healthy window in the adaptive baseline's estimate")
          .PerAsset("adaptive_rate"),
      D::Int("monitors.adaptive_commit_every", ad.commit_every, 1, 1000000,
             "Healthy windows accepted between two adaptive baseline steps (the rate limit)")
          .PerAsset("adaptive_commit_every"),
  };
}

std::vector<SettingDef> DeviceSettings() {
  using D = SettingDef;
  return {
      D::String("identity.factory", "factory-1", "Factory id (MQTT topics, metric labels)")
          .Flag("--factory"),
      D::String("identity.line", "line-1", "Line id").Flag("--line"),
      D::String("identity.device_id", "", "Device id (default: host name)").Flag("--device-id"),
      D::Path("agent.state_dir", "tend-state",
              "Where the spool and caches live; one agent per state directory")
          .Flag("--state-dir"),
      D::Int("model.intra_op_threads", 1, 0, 64, "ONNX Runtime intra-op threads (0: one per core)")
          .Flag("--threads"),
      D::List("model.providers", "Execution providers in preference order").Flag("--provider"),
      D::Int("model.warmup_runs", 10, 0, 1000, "Warm-up runs before serving"),
      D::Int("model.cuda_device", 0, 0, 63, "CUDA device id"),
      D::Path("model.trt_engine_cache_dir", "", "TensorRT engine cache"),
      D::Bool("model.trt_fp16", false, "TensorRT: allow FP16 kernels"),
      D::Bool("model.trt_int8", false, "TensorRT: allow INT8 kernels"),
      D::String("model.trt_int8_calibration_table", "", "TensorRT INT8 calibration table name"),
      D::Path("model.state_dir", "", "Session state (TensorRT engine cache) directory"),
  };
}

std::vector<SettingDef> OtaSettings() {
  using D = SettingDef;
  return {
      D::Path("ota.registry", "", "Signed model registry: http://host:port[/prefix] or a directory")
          .Flag("--ota-registry"),
      D::Path("ota.model_dir", "", "Where verified models, their backup and the OTA state live")
          .Flag("--ota-model-dir"),
      D::String("ota.profile", "x86-cpu-fp32", "This device's profile").Flag("--ota-profile"),
      D::Path("ota.root", "", "Pinned root.json: the trust anchor").Flag("--ota-root"),
      D::String("ota.model_name", "press-anomaly", "Model name in the registry").Flag("--ota-name"),
      D::Float("ota.interval_s", 3600, 1, 30 * kDay,
               "Seconds between registry checks (with jitter)")
          .Flag("--ota-interval"),
      D::Float("ota.min_quality", 0, 0, 1, "Minimum reference-set AUC a new model must reach")
          .Flag("--ota-min-quality"),
      D::PathList("ota.reference_normal", "Reference set: normal inputs")
          .Flag("--ota-reference-normal"),
      D::PathList("ota.reference_anomalous", "Reference set: anomalous inputs")
          .Flag("--ota-reference-anomalous"),
      D::Int("ota.probation_s", 86400, 0, 10 * kYear, "Seconds a new model is on probation")
          .Flag("--ota-probation"),
      D::Int("ota.max_model_age_s", 8 * 7 * 86400, 1, 10 * kYear,
             "Seconds without a new model before the device is stale")
          .Flag("--ota-max-model-age"),
      D::Int("ota.max_fail_safe", 3, 0, 1e6,
             "Probation: roll back after this many fail-safe decisions of the new model (0 = off)")
          .Flag("--ota-max-fail-safe"),
      D::Int("ota.storm_alerts", 20, 0, 1e6,
             "Probation: roll back on more than this many alerts in the last storm_windows "
             "windows (0 = off)")
          .Flag("--ota-storm-alerts"),
      D::Int("ota.storm_windows", 100, 1, 1e6, "Probation: alert storm window count")
          .Flag("--ota-storm-windows"),
      D::Float("ota.storm_ratio", 5, 1, 1e6,
               "Probation: ... and an alert rate above this many times the previous model's")
          .Flag("--ota-storm-ratio"),
      D::Float("ota.watch_interval_s", 1, 0.01, 3600, "Probation: seconds between checks"),
  };
}

}  // namespace

std::vector<SettingDef> CoreRunSettings() {
  std::vector<SettingDef> all = AssetSettings();
  for (auto* part : {&MonitorSettings, &DeviceSettings, &OtaSettings}) {
    auto v = (*part)();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

}  // namespace tend::runtime
