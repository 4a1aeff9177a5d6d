#include "agent/decision_log.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/fs.h"
#include "decide/drift.h"

namespace tend::agent {

double Round4(double x) { return std::isfinite(x) ? std::round(x * 1e4) / 1e4 : x; }

std::string IsoTimestamp(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

nlohmann::json DecisionJson(const Decision& d, const std::string& asset_id) {
  nlohmann::json j;
  j["timestamp"] = IsoTimestamp(d.timestamp);
  if (!asset_id.empty()) j["asset_id"] = asset_id;
  j["window"] = d.window_index;
  if (d.part_id >= 0) j["part_id"] = d.part_id;  // the PLC's part number (plc_trigger)
  j["t"] = std::round(d.t_start_s * 1e4) / 1e4;
  if (std::isfinite(d.anomaly_score)) {
    j["anomaly_score"] = Round4(d.anomaly_score);
  } else {
    j["anomaly_score"] = nullptr;
  }
  j["severity"] = SeverityName(d.severity);
  j["is_alert"] = d.is_alert;
  j["top_sensors"] = d.top_sensors;
  if (d.fail_safe) j["fail_safe"] = true;
  if (d.fail_safe && !d.fail_safe_reason.empty()) j["fail_safe_reason"] = d.fail_safe_reason;
  j["latency_ms"] = std::round(d.latency_ms * 1e4) / 1e4;
  if (!d.model_version.empty()) j["model_version"] = d.model_version;
  AddMonitorJson(d, j);
  return j;
}

void AddMonitorJson(const Decision& d, nlohmann::json& j) {
  if (d.has_health) {
    j["health"] = HealthStateName(d.health);
    j["health_cusum"] = Round4(d.health_cusum);
    j["health_alarm_cusum"] = Round4(d.health_alarm_cusum);
  }
  if (d.input_problems != 0) j["input_problems"] = InputProblemNames(d.input_problems);
  if (d.baseline_step >= 0) j["baseline_step"] = d.baseline_step;
  if (d.baseline_adapted) j["baseline_adapted"] = true;
}

Result<std::unique_ptr<DecisionLog>> DecisionLog::Open(const std::string& path, int64_t max_bytes,
                                                       int keep) {
  std::unique_ptr<DecisionLog> log(new DecisionLog());
  log->path_ = path;
  log->max_bytes_ = max_bytes;
  log->keep_ = std::max(1, keep);
  auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) TEND_RETURN_NOT_OK(fs::MakeDirs(dir.string()));
  log->f_ = std::fopen(path.c_str(), "ab");
  if (!log->f_) return Fail(fs::ErrnoError("open decision log " + path, errno));
  std::error_code ec;
  log->size_ = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  return log;
}

DecisionLog::~DecisionLog() {
  if (f_) std::fclose(f_);
}

Status DecisionLog::Rotate() {
  std::fclose(f_);
  f_ = nullptr;
  std::error_code ec;
  std::filesystem::remove(path_ + "." + std::to_string(keep_), ec);
  for (int i = keep_ - 1; i >= 1; --i) {
    std::filesystem::rename(path_ + "." + std::to_string(i), path_ + "." + std::to_string(i + 1),
                            ec);
  }
  std::filesystem::rename(path_, path_ + ".1", ec);
  f_ = std::fopen(path_.c_str(), "ab");
  if (!f_) return Fail(fs::ErrnoError("reopen decision log " + path_, errno));
  size_ = 0;
  return Ok();
}

Status DecisionLog::Append(const std::string& line) {
  if (max_bytes_ > 0 && size_ + static_cast<int64_t>(line.size()) + 1 > max_bytes_ && size_ > 0) {
    TEND_RETURN_NOT_OK(Rotate());
  }
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fputc('\n', f_) == EOF) {
    return Fail(fs::ErrnoError("write decision log " + path_, errno));
  }
  size_ += static_cast<int64_t>(line.size()) + 1;
  return Ok();
}

Status DecisionLog::Flush() {
  if (f_ && std::fflush(f_) != 0) return Fail(fs::ErrnoError("flush decision log " + path_, errno));
  return Ok();
}

}  // namespace tend::agent
