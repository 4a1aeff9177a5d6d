// The model card: everything a model file says about itself, stored in the ONNX file's
// metadata_props under "tend.*" keys, so that whatever serves the model rebuilds the exact
// feature vector, decision tiers and drift baselines from the file alone (no train/serve skew).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::detect {

// Score tiers: score >= low -> LOW (the alert threshold), >= medium -> MEDIUM, >= high -> HIGH.
// A valid set has 0 < low <= medium <= high, all finite.
struct Thresholds {
  float low = 0, medium = 0, high = 0;
  Status Validate() const;
  nlohmann::json ToJson() const;
};

// Metadata keys. Every value is JSON text (strings are quoted), so every key parses the same way
// and a wrong type is caught: "tend.name" = "\"press-anomaly\"", "tend.thresholds" =
// {"low":..,"medium":..,"high":..}, "tend.feature_names" = ["rms", ...].
inline constexpr const char* kKeyFormat = "tend.format";  // integer, kCardFormat
inline constexpr const char* kKeyName = "tend.name";
inline constexpr const char* kKeyVersion = "tend.version";
inline constexpr const char* kKeyDetector = "tend.detector";
inline constexpr const char* kKeyCreated = "tend.created";
inline constexpr const char* kKeyFeatureSpec = "tend.feature_spec";
inline constexpr const char* kKeyInputKind = "tend.input_kind";
inline constexpr const char* kKeyFeatureNames = "tend.feature_names";
inline constexpr const char* kKeyThresholds = "tend.thresholds";
inline constexpr const char* kKeyTrainMean = "tend.train_mean";              // optional
inline constexpr const char* kKeyTrainStd = "tend.train_std";                // optional
inline constexpr const char* kKeyTrainingSummary = "tend.training_summary";  // optional
inline constexpr const char* kKeyCalibration = "tend.calibration";           // optional
// The commissioning distribution per feature for drift monitoring (decide/drift.h):
// {"rows": n, "deciles": [[9 cut points] per feature], "shares": [[10 bin shares] per feature]}.
inline constexpr const char* kKeyFeatureReference = "tend.feature_reference";  // optional
inline constexpr int kCardFormat = 1;

// Graph contract names.
inline constexpr const char* kInputName = "features";
inline constexpr const char* kScoreOutput = "anomaly_score";
inline constexpr const char* kContributionsOutput = "contributions";
// Image models (input_kind "image"): input "image" float [N,C,H,W] as tend.feature_spec's
// "preprocess" object describes it (vision/preprocess.h); outputs "anomaly_score" [N] and
// "anomaly_map" [N,h,w] (patch scores on the feature grid, same units as the score).
inline constexpr const char* kImageInputName = "image";
inline constexpr const char* kAnomalyMapOutput = "anomaly_map";

struct ModelCard {
  std::string name = "press-anomaly", version = "1", detector;
  std::string created;                  // ISO-8601 UTC, "2024-05-01T12:00:00Z"
  nlohmann::json feature_spec;          // opaque here: dsp's FeatureSpec plus windowing; an object
  // "features" (input [N,F]), "raw" (input = raw window) or "image" (input [N,C,H,W])
  std::string input_kind = "features";
  std::vector<std::string> feature_names;  // input columns ("features") / contribution columns
  Thresholds thresholds;
  std::vector<float> train_mean, train_std;  // per-feature training statistics (drift checks)
  nlohmann::json training_summary = nlohmann::json::object();
  nlohmann::json calibration = nlohmann::json::object();  // how the thresholds were set
  nlohmann::json feature_reference;  // null when absent (models from before drift monitoring)

  std::map<std::string, std::string> ToMetadata() const;
  // Parses and validates; errors name the key: "model metadata: missing key 'tend.thresholds'".
  // Keys outside "tend.*" are ignored.
  static Result<ModelCard> FromMetadata(const std::map<std::string, std::string>& props);

  // Internal consistency: required fields present, thresholds ordered, statistics sized to the
  // feature count, `created` parses.
  Status Validate() const;

  // Checks the card against the graph. Outputs by position: [0] anomaly_score [N],
  // [1] (optional) contributions [N,F]. -1 (a dynamic dimension) matches anything.
  // "features": input [N,F] with F = feature_names.size(). "raw": input rank >= 2 and, when the
  // feature spec names windowing.window, the last input dimension equals it.
  Status CheckAgainstGraph(const std::vector<int64_t>& input_shape,
                           const std::vector<std::vector<int64_t>>& output_shapes) const;
  // Same, with outputs found by name (order free; other outputs are ignored).
  Status CheckAgainstGraph(const std::vector<int64_t>& input_shape,
                           const std::vector<std::string>& output_names,
                           const std::vector<std::vector<int64_t>>& output_shapes) const;

  // `created` as Unix seconds.
  Result<int64_t> CreatedUnix() const;
  // Leading integer of `version` ("3.1" -> 3), 0 when it has none: edge_model_version's value.
  int64_t VersionMajor() const;
};

std::string NowIso8601Utc();
// Accepts "YYYY-MM-DDTHH:MM:SS[.fff]Z" (also "+00:00" as the zone).
Result<int64_t> ParseIso8601Utc(const std::string& text);

}  // namespace tend::detect
