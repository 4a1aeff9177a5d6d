#include "telemetry/payload.h"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <random>

#include "decide/drift.h"

namespace tend::telemetry {

std::string FormatMessageId(const std::string& device_id, const MessageId& id) {
  return device_id + "-" + std::to_string(id.boot) + "-" + std::to_string(id.seq);
}

std::string FormatIso8601(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  int64_t ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
  int frac = static_cast<int>(ms - secs * 1000);
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

namespace {
int DaysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}
}  // namespace

Result<int64_t> ParseIso8601Ms(const std::string& s) {
  auto bad = [&] {
    // Shown escaped: the text may come from a hostile sender and end up in a log line.
    std::string shown;
    for (char c : s.substr(0, 64)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
    return Fail(Error::Invalid("timestamp '" + shown +
                               "' is not ISO-8601 UTC (YYYY-MM-DDTHH:MM:SS[.fff]Z)"));
  };
  // Digits at fixed positions only: no signs, no spaces, no five-digit years.
  auto num = [&](size_t pos, size_t len, int& out) {
    out = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, sec;
  if (s.size() < 20 || !num(0, 4, y) || s[4] != '-' || !num(5, 2, mo) || s[7] != '-' ||
      !num(8, 2, d) || s[10] != 'T' || !num(11, 2, h) || s[13] != ':' || !num(14, 2, mi) ||
      s[16] != ':' || !num(17, 2, sec)) {
    return bad();
  }
  // A real calendar date: 2026-02-31 is not silently March 3rd.
  if (mo < 1 || mo > 12 || d < 1 || d > DaysInMonth(y, mo) || h > 23 || mi > 59 || sec > 60) {
    return bad();
  }
  size_t i = 19;
  int64_t frac_ms = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (digits < 3) frac_ms = frac_ms * 10 + (s[i] - '0');
      ++digits;
      ++i;
    }
    if (digits == 0) return bad();
    for (int k = digits; k < 3; ++k) frac_ms *= 10;
  }
  std::string tz = s.substr(i);
  if (tz != "Z" && tz != "+00:00") return bad();
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  int64_t secs = static_cast<int64_t>(timegm(&tm));
  return secs * 1000 + frac_ms;
}

double RoundTo(double v, int decimals) {
  if (!std::isfinite(v)) return v;
  double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

nlohmann::json ScoreJson(const Decision& d, const Identity& id, const MessageId& mid) {
  nlohmann::json j;
  j["timestamp"] = FormatIso8601(d.timestamp);
  j["asset_id"] = id.asset_id;
  // A non-finite score (model failure) cannot be encoded in JSON: send null, keep the decision.
  if (std::isfinite(d.anomaly_score)) {
    j["anomaly_score"] = RoundTo(d.anomaly_score, 4);
  } else {
    j["anomaly_score"] = nullptr;
  }
  j["is_alert"] = d.is_alert;
  j["severity"] = SeverityName(d.severity);
  j["top_sensors"] = d.top_sensors;
  // factory_id and line_id are in the topic; every byte here is paid once per stroke.
  j["device_id"] = id.device_id;
  j["model_name"] = d.model_name;
  j["model_version"] = d.model_version;
  j["msg_id"] = FormatMessageId(id.device_id, mid);
  j["seq"] = mid.seq;
  j["boot"] = mid.boot;
  j["latency_ms"] = RoundTo(d.latency_ms, 3);
  j["window_index"] = d.window_index;
  if (d.event_id >= 0) j["event_id"] = d.event_id;               // stroke or part number
  if (d.part_id >= 0) j["part_id"] = d.part_id;                  // the PLC's part number
  if (!d.evidence_ref.empty()) j["image_ref"] = d.evidence_ref;  // evidence kept on the device
  if (d.fail_safe) j["fail_safe"] = true;                        // absent = a normal decision
  // The asset's monitors (docs/spec.md): each field only when set.
  if (d.has_health) {
    j["health"] = HealthStateName(d.health);
    j["health_cusum"] = RoundTo(d.health_cusum, 4);
  }
  if (d.input_problems != 0) j["input_problems"] = InputProblemNames(d.input_problems);
  if (d.baseline_step >= 0) j["baseline_step"] = d.baseline_step;
  return j;
}

std::string ScorePayload(const Decision& d, const Identity& id, const MessageId& mid) {
  return ScoreJson(d, id, mid).dump();
}

std::string HealthPayload(std::chrono::system_clock::time_point t, const Identity& id,
                          const MessageId& mid, const nlohmann::json& extra) {
  nlohmann::json j;
  j["timestamp"] = FormatIso8601(t);
  j["device_id"] = id.device_id;
  j["cpu_pct"] = nullptr;
  j["gpu_pct"] = nullptr;
  j["temp_c"] = nullptr;
  if (extra.is_object()) {
    for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
  }
  // The SPEC fixes these three; round whatever the provider gave.
  if (j["cpu_pct"].is_number()) j["cpu_pct"] = RoundTo(j["cpu_pct"].get<double>(), 1);
  if (j["gpu_pct"].is_number()) j["gpu_pct"] = RoundTo(j["gpu_pct"].get<double>(), 1);
  if (j["temp_c"].is_number()) j["temp_c"] = RoundTo(j["temp_c"].get<double>(), 1);
  j["asset_id"] = id.asset_id;
  j["msg_id"] = FormatMessageId(id.device_id, mid);
  j["seq"] = mid.seq;
  j["boot"] = mid.boot;
  return j.dump();
}

std::string NewInstanceId() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

std::string StatusPayload(std::chrono::system_clock::time_point t, const Identity& id, bool online,
                          const StatusSession& session) {
  nlohmann::json j;
  j["device_id"] = id.device_id;
  j["status"] = online ? "online" : "offline";
  j["timestamp"] = FormatIso8601(t);
  if (session.session_ms > 0) j["session"] = session.session_ms;
  if (!session.instance.empty()) j["instance"] = session.instance;
  if (session.will) j["will"] = true;
  return j.dump();
}

}  // namespace tend::telemetry
