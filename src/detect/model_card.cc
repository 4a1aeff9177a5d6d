#include "detect/model_card.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>
#include <set>

#include "core/json.h"

namespace tend::detect {

namespace {

using nlohmann::json;

// A card's values are a few levels deep (the feature spec is the deepest, about 5); a model file
// can be large (train statistics of many features), hence the byte bound.
constexpr tend::json::JsonLimits kCardJsonLimits{64u << 20, 32};

Error MetaError(const std::string& key, const std::string& what) {
  return Error::Model(fmt::format("model metadata: '{}' {}", key, what));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::vector<std::string> parts;
  for (int64_t d : shape) parts.push_back(d < 0 ? "?" : std::to_string(d));
  return fmt::format("[{}]", fmt::join(parts, ","));
}

Result<json> ParseKey(const std::map<std::string, std::string>& props, const char* key,
                      bool required) {
  auto it = props.find(key);
  if (it == props.end()) {
    if (required) return Fail(Error::Model(fmt::format("model metadata: missing key '{}'", key)));
    return json();
  }
  // Model files come from outside (OTA, a USB stick): bounded, so that a deeply nested value is
  // refused here instead of overflowing the stack when the card is copied or printed.
  tend::json::JsonProblem why;
  auto j = tend::json::ParseJson(it->second, fmt::format("model metadata: '{}'", key),
                                 kCardJsonLimits, &why);
  if (!j) {
    if (why != tend::json::JsonProblem::kSyntax) return Fail(Error::Model(j.error().message));
    std::string shown = it->second.substr(0, 40);
    return Fail(MetaError(key, fmt::format("is not valid JSON ('{}{}')", shown,
                                           it->second.size() > 40 ? "..." : "")));
  }
  return std::move(*j);
}

Result<std::string> GetString(const json& j, const char* key) {
  if (!j.is_string()) return Fail(MetaError(key, "must be a JSON string"));
  return j.get<std::string>();
}

Result<std::vector<float>> GetFloats(const json& j, const char* key) {
  if (!j.is_array()) return Fail(MetaError(key, "must be a JSON array of numbers"));
  std::vector<float> out;
  out.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_number())
      return Fail(MetaError(key, fmt::format("element {} must be a number", i)));
    out.push_back(j[i].get<float>());
  }
  return out;
}

Result<float> GetNumber(const json& obj, const char* key, const char* field) {
  auto it = obj.find(field);
  if (it == obj.end()) return Fail(MetaError(key, fmt::format("has no field '{}'", field)));
  if (!it->is_number())
    return Fail(MetaError(key, fmt::format("field '{}' must be a number", field)));
  return it->get<float>();
}

// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm): avoids
// timegm/TZ games.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

Status Thresholds::Validate() const {
  if (!std::isfinite(low) || !std::isfinite(medium) || !std::isfinite(high))
    return Fail(Error::Invalid(
        fmt::format("thresholds must be finite (low {}, medium {}, high {})", low, medium, high)));
  if (!(low > 0) || !(low <= medium) || !(medium <= high))
    return Fail(Error::Invalid(fmt::format(
        "thresholds must satisfy 0 < low <= medium <= high (low {}, medium {}, high {})", low,
        medium, high)));
  return Ok();
}

nlohmann::json Thresholds::ToJson() const {
  return {{"low", low}, {"medium", medium}, {"high", high}};
}

std::string NowIso8601Utc() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<int64_t> ParseIso8601Utc(const std::string& s) {
  auto bad = [&] {
    return Fail(
        Error::Invalid(fmt::format("'{}' is not an ISO-8601 UTC time (YYYY-MM-DDTHH:MM:SSZ)", s)));
  };
  // Fixed layout: digits at known positions.
  if (s.size() < 20) return bad();
  auto num = [&](size_t pos, size_t len, int& out) {
    out = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, se;
  if (!num(0, 4, y) || s[4] != '-' || !num(5, 2, mo) || s[7] != '-' || !num(8, 2, d) ||
      (s[10] != 'T' && s[10] != ' ') || !num(11, 2, h) || s[13] != ':' || !num(14, 2, mi) ||
      s[16] != ':' || !num(17, 2, se))
    return bad();
  size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    const size_t start = pos;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) ++pos;
    if (pos == start) return bad();
  }
  const std::string zone = s.substr(pos);
  if (zone != "Z" && zone != "+00:00") return bad();
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1] || (mo == 2 && !leap && d > 28) || h > 23 ||
      mi > 59 || se > 60)
    return bad();
  return DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 + h * 3600 +
         mi * 60 + se;
}

std::map<std::string, std::string> ModelCard::ToMetadata() const {
  std::map<std::string, std::string> m;
  m[kKeyFormat] = json(kCardFormat).dump();
  m[kKeyName] = json(name).dump();
  m[kKeyVersion] = json(version).dump();
  m[kKeyDetector] = json(detector).dump();
  m[kKeyCreated] = json(created).dump();
  m[kKeyFeatureSpec] = feature_spec.dump();
  m[kKeyInputKind] = json(input_kind).dump();
  m[kKeyFeatureNames] = json(feature_names).dump();
  m[kKeyThresholds] = thresholds.ToJson().dump();
  if (!train_mean.empty()) m[kKeyTrainMean] = json(train_mean).dump();
  if (!train_std.empty()) m[kKeyTrainStd] = json(train_std).dump();
  if (!training_summary.is_null()) m[kKeyTrainingSummary] = training_summary.dump();
  if (!calibration.is_null()) m[kKeyCalibration] = calibration.dump();
  return m;
}

Result<ModelCard> ModelCard::FromMetadata(const std::map<std::string, std::string>& props) {
  ModelCard c;
  TEND_ASSIGN_OR_RETURN(json format, ParseKey(props, kKeyFormat, true));
  if (!format.is_number_integer()) return Fail(MetaError(kKeyFormat, "must be an integer"));
  if (format.get<int64_t>() > kCardFormat)
    return Fail(Error::Unsupported(
        fmt::format("model metadata: '{}' is {}, newer than this build understands ({})",
                    kKeyFormat, format.get<int64_t>(), kCardFormat)));

  TEND_ASSIGN_OR_RETURN(json j, ParseKey(props, kKeyName, true));
  TEND_ASSIGN_OR_RETURN(c.name, GetString(j, kKeyName));
  TEND_ASSIGN_OR_RETURN(j, ParseKey(props, kKeyVersion, true));
  TEND_ASSIGN_OR_RETURN(c.version, GetString(j, kKeyVersion));
  TEND_ASSIGN_OR_RETURN(j, ParseKey(props, kKeyDetector, true));
  TEND_ASSIGN_OR_RETURN(c.detector, GetString(j, kKeyDetector));
  TEND_ASSIGN_OR_RETURN(j, ParseKey(props, kKeyCreated, true));
  TEND_ASSIGN_OR_RETURN(c.created, GetString(j, kKeyCreated));
  TEND_ASSIGN_OR_RETURN(j, ParseKey(props, kKeyInputKind, true));
  TEND_ASSIGN_OR_RETURN(c.input_kind, GetString(j, kKeyInputKind));

  TEND_ASSIGN_OR_RETURN(c.feature_spec, ParseKey(props, kKeyFeatureSpec, true));
  if (!c.feature_spec.is_object()) return Fail(MetaError(kKeyFeatureSpec, "must be a JSON object"));

  TEND_ASSIGN_OR_RETURN(j, ParseKey(props, kKeyFeatureNames, true));
  if (!j.is_array()) return Fail(MetaError(kKeyFeatureNames, "must be a JSON array of strings"));
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string())
      return Fail(MetaError(kKeyFeatureNames, fmt::format("element {} must be a string", i)));
    c.feature_names.push_back(j[i].get<std::string>());
  }

  TEND_ASSIGN_OR_RETURN(j, ParseKey(props, kKeyThresholds, true));
  if (!j.is_object()) return Fail(MetaError(kKeyThresholds, "must be a JSON object"));
  TEND_ASSIGN_OR_RETURN(c.thresholds.low, GetNumber(j, kKeyThresholds, "low"));
  TEND_ASSIGN_OR_RETURN(c.thresholds.medium, GetNumber(j, kKeyThresholds, "medium"));
  TEND_ASSIGN_OR_RETURN(c.thresholds.high, GetNumber(j, kKeyThresholds, "high"));

  TEND_ASSIGN_OR_RETURN(j, ParseKey(props, kKeyTrainMean, false));
  if (!j.is_null()) {
    TEND_ASSIGN_OR_RETURN(c.train_mean, GetFloats(j, kKeyTrainMean));
  }
  TEND_ASSIGN_OR_RETURN(j, ParseKey(props, kKeyTrainStd, false));
  if (!j.is_null()) {
    TEND_ASSIGN_OR_RETURN(c.train_std, GetFloats(j, kKeyTrainStd));
  }

  TEND_ASSIGN_OR_RETURN(j, ParseKey(props, kKeyTrainingSummary, false));
  if (!j.is_null() && !j.is_object())
    return Fail(MetaError(kKeyTrainingSummary, "must be a JSON object"));
  c.training_summary = j.is_null() ? json::object() : j;
  TEND_ASSIGN_OR_RETURN(j, ParseKey(props, kKeyCalibration, false));
  if (!j.is_null() && !j.is_object())
    return Fail(MetaError(kKeyCalibration, "must be a JSON object"));
  c.calibration = j.is_null() ? json::object() : j;

  auto st = c.Validate();
  if (!st) return Fail(Error::Model("model metadata: " + st.error().message));
  return c;
}

Status ModelCard::Validate() const {
  if (name.empty()) return Fail(Error::Invalid(fmt::format("'{}' is empty", kKeyName)));
  if (version.empty()) return Fail(Error::Invalid(fmt::format("'{}' is empty", kKeyVersion)));
  if (detector.empty()) return Fail(Error::Invalid(fmt::format("'{}' is empty", kKeyDetector)));
  auto created_ok = ParseIso8601Utc(created);
  if (!created_ok) return Fail(created_ok.error().Wrap(kKeyCreated));
  if (input_kind != "features" && input_kind != "raw")
    return Fail(Error::Invalid(
        fmt::format("'{}' is '{}', expected 'features' or 'raw'", kKeyInputKind, input_kind)));
  if (!feature_spec.is_object() || feature_spec.empty())
    return Fail(Error::Invalid(fmt::format(
        "'{}' must be a non-empty object: the feature vector cannot be rebuilt without it",
        kKeyFeatureSpec)));
  if (input_kind == "features" && feature_names.empty())
    return Fail(Error::Invalid(fmt::format("'{}' is empty", kKeyFeatureNames)));
  std::set<std::string> seen;
  for (const auto& n : feature_names) {
    if (n.empty())
      return Fail(Error::Invalid(fmt::format("'{}' has an empty name", kKeyFeatureNames)));
    if (!seen.insert(n).second)
      return Fail(Error::Invalid(fmt::format("'{}' lists '{}' twice", kKeyFeatureNames, n)));
  }
  auto th = thresholds.Validate();
  if (!th) return Fail(th.error().Wrap(kKeyThresholds));
  const size_t f = feature_names.size();
  if (!train_mean.empty() && train_mean.size() != f)
    return Fail(Error::Invalid(fmt::format("'{}' has {} values but '{}' lists {} features",
                                           kKeyTrainMean, train_mean.size(), kKeyFeatureNames, f)));
  if (!train_std.empty() && train_std.size() != f)
    return Fail(Error::Invalid(fmt::format("'{}' has {} values but '{}' lists {} features",
                                           kKeyTrainStd, train_std.size(), kKeyFeatureNames, f)));
  if (train_mean.size() != train_std.size())
    return Fail(Error::Invalid(fmt::format("'{}' has {} values but '{}' has {}", kKeyTrainMean,
                                           train_mean.size(), kKeyTrainStd, train_std.size())));
  for (size_t i = 0; i < train_mean.size(); ++i) {
    if (!std::isfinite(train_mean[i]))
      return Fail(Error::Invalid(fmt::format("'{}'[{}] is not finite", kKeyTrainMean, i)));
    if (!std::isfinite(train_std[i]) || !(train_std[i] > 0))
      return Fail(Error::Invalid(
          fmt::format("'{}'[{}] = {} must be finite and > 0", kKeyTrainStd, i, train_std[i])));
  }
  return Ok();
}

Status ModelCard::CheckAgainstGraph(const std::vector<int64_t>& input_shape,
                                    const std::vector<std::vector<int64_t>>& output_shapes) const {
  const int64_t f = static_cast<int64_t>(feature_names.size());
  if (input_kind == "features") {
    if (input_shape.size() != 2)
      return Fail(
          Error::Model(fmt::format("graph input has shape {}, but a 'features' model takes [N,{}]",
                                   ShapeString(input_shape), f)));
    if (input_shape[1] >= 0 && input_shape[1] != f)
      return Fail(Error::Model(fmt::format(
          "model card lists {} features ('{}') but the graph input has {} columns (shape {})", f,
          kKeyFeatureNames, input_shape[1], ShapeString(input_shape))));
  } else {
    if (input_shape.size() < 2)
      return Fail(Error::Model(fmt::format(
          "graph input has shape {}, but a 'raw' model takes a batch of windows (rank >= 2)",
          ShapeString(input_shape))));
    const json* win = nullptr;
    if (feature_spec.contains("windowing") && feature_spec["windowing"].is_object() &&
        feature_spec["windowing"].contains("window"))
      win = &feature_spec["windowing"]["window"];
    if (win && win->is_number_integer() && input_shape.back() >= 0 &&
        input_shape.back() != win->get<int64_t>())
      return Fail(Error::Model(fmt::format(
          "feature spec windowing.window is {} samples but the graph input's last dimension is {}",
          win->get<int64_t>(), input_shape.back())));
  }
  if (output_shapes.empty())
    return Fail(Error::Model(fmt::format("graph has no outputs; expected '{}' [N]", kScoreOutput)));
  const auto& score = output_shapes[0];
  if (score.size() != 1)
    return Fail(Error::Model(fmt::format("graph output '{}' has shape {}, expected [N]",
                                         kScoreOutput, ShapeString(score))));
  const int64_t batch_in = input_shape[0];
  if (batch_in >= 0 && score[0] >= 0 && batch_in != score[0])
    return Fail(Error::Model(fmt::format("graph input batch is {} but '{}' has {} rows", batch_in,
                                         kScoreOutput, score[0])));
  if (output_shapes.size() >= 2) {
    const auto& contrib = output_shapes[1];
    if (contrib.size() != 2)
      return Fail(Error::Model(fmt::format("graph output '{}' has shape {}, expected [N,{}]",
                                           kContributionsOutput, ShapeString(contrib), f)));
    if (contrib[1] >= 0 && contrib[1] != f)
      return Fail(Error::Model(fmt::format(
          "graph output '{}' has {} columns but the model card lists {} features ('{}')",
          kContributionsOutput, contrib[1], f, kKeyFeatureNames)));
    if (batch_in >= 0 && contrib[0] >= 0 && batch_in != contrib[0])
      return Fail(Error::Model(fmt::format("graph input batch is {} but '{}' has {} rows", batch_in,
                                           kContributionsOutput, contrib[0])));
  }
  return Ok();
}

Status ModelCard::CheckAgainstGraph(const std::vector<int64_t>& input_shape,
                                    const std::vector<std::string>& output_names,
                                    const std::vector<std::vector<int64_t>>& output_shapes) const {
  if (output_names.size() != output_shapes.size())
    return Fail(Error::Internal("CheckAgainstGraph: output names and shapes differ in count"));
  std::vector<std::vector<int64_t>> ordered;
  for (const char* want : {kScoreOutput, kContributionsOutput}) {
    for (size_t i = 0; i < output_names.size(); ++i)
      if (output_names[i] == want) ordered.push_back(output_shapes[i]);
    if (ordered.empty())
      return Fail(Error::Model(fmt::format("graph has no output named '{}' (outputs: {})",
                                           kScoreOutput, fmt::join(output_names, ", "))));
  }
  return CheckAgainstGraph(input_shape, ordered);
}

Result<int64_t> ModelCard::CreatedUnix() const { return ParseIso8601Utc(created); }

int64_t ModelCard::VersionMajor() const {
  int64_t v = 0;
  size_t i = 0;
  while (i < version.size() && std::isdigit(static_cast<unsigned char>(version[i])) && i < 18)
    v = v * 10 + (version[i++] - '0');
  return v;
}

}  // namespace tend::detect
