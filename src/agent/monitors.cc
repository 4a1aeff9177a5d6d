#include "agent/monitors.h"

#include <fmt/format.h>

#include <cmath>

namespace tend::agent {
namespace {

Result<double> Number(const nlohmann::json& j, const char* key, const char* where) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) {
    return Fail(Error::Model(fmt::format("{}: '{}' is missing or not a number", where, key)));
  }
  return j[key].get<double>();
}

template <size_t N>
Result<std::array<float, N>> Row(const nlohmann::json& j, const char* key, size_t i) {
  if (!j.is_array() || j.size() != N) {
    return Fail(Error::Model(fmt::format(
        "model feature reference: '{}'[{}] must be an array of {} numbers", key, i, N)));
  }
  std::array<float, N> out{};
  for (size_t k = 0; k < N; ++k) {
    if (!j[k].is_number()) {
      return Fail(Error::Model(
          fmt::format("model feature reference: '{}'[{}][{}] is not a number", key, i, k)));
    }
    out[k] = j[k].get<float>();
  }
  return out;
}

}  // namespace

Result<ScoreBaseline> ScoreBaselineOf(const detect::ModelCard& card) {
  const char* where = "model calibration (tend.calibration)";
  ScoreBaseline b;
  TEND_ASSIGN_OR_RETURN(b.log_offset, Number(card.calibration, "log_offset", where));
  TEND_ASSIGN_OR_RETURN(b.log_mean, Number(card.calibration, "log_mean", where));
  TEND_ASSIGN_OR_RETURN(b.log_sd, Number(card.calibration, "log_sd", where));
  TEND_RETURN_NOT_OK(b.Validate().map_error([&](Error e) { return e.Wrap(where); }));
  return b;
}

Result<HealthOptions> HealthOptionsFor(const detect::ModelCard& card) {
  TEND_ASSIGN_OR_RETURN(ScoreBaseline b, ScoreBaselineOf(card));
  HealthOptions o;
  o.alarm_z = b.Z(card.thresholds.low);
  TEND_RETURN_NOT_OK(o.Validate());
  return o;
}

Result<DriftReference> ParseFeatureReference(const nlohmann::json& j, size_t features) {
  if (!j.is_object()) {
    return Fail(Error::Model("model feature reference: must be a JSON object"));
  }
  for (const auto& [key, value] : j.items()) {
    if (key != "rows" && key != "deciles" && key != "shares") {
      return Fail(Error::Model(fmt::format("model feature reference: unknown key '{}'", key)));
    }
  }
  if (!j.contains("rows") || !j["rows"].is_number_integer()) {
    return Fail(Error::Model("model feature reference: 'rows' must be an integer"));
  }
  DriftReference ref;
  ref.rows = j["rows"].get<int64_t>();
  for (const char* key : {"deciles", "shares"}) {
    if (!j.contains(key) || !j[key].is_array() || j[key].size() != features) {
      return Fail(Error::Model(
          fmt::format("model feature reference: '{}' must list {} features (one per model feature)",
                      key, features)));
    }
  }
  for (size_t i = 0; i < features; ++i) {
    TEND_ASSIGN_OR_RETURN(auto d, Row<kDriftBins - 1>(j["deciles"][i], "deciles", i));
    TEND_ASSIGN_OR_RETURN(auto s, Row<kDriftBins>(j["shares"][i], "shares", i));
    ref.deciles.push_back(d);
    ref.shares.push_back(s);
  }
  TEND_RETURN_NOT_OK(ref.Validate().map_error([](Error e) { return Error::Model(e.message); }));
  return ref;
}

Result<DriftReference> FeatureReferenceOf(const detect::ModelCard& card) {
  if (card.feature_reference.is_null()) {
    return Fail(Error::NotFound(fmt::format(
        "model {} v{} has no feature reference ({}): retrain it with this tend to monitor drift",
        card.name, card.version, detect::kKeyFeatureReference)));
  }
  return ParseFeatureReference(card.feature_reference, card.feature_names.size());
}

nlohmann::json FeatureReferenceJson(const DriftReference& ref) {
  nlohmann::json d = nlohmann::json::array(), s = nlohmann::json::array();
  for (const auto& row : ref.deciles) d.push_back(row);
  for (const auto& row : ref.shares) s.push_back(row);
  return {{"rows", ref.rows}, {"deciles", d}, {"shares", s}};
}

}  // namespace tend::agent
