// Linux system figures for the fleet: CPU and memory load, temperatures, CPU frequency, thermal
// throttling and GPU load, read from /proc and /sys (and NVIDIA's NVML when it is installed).
// Hardware that is not there gives an absent value, never a zero. Roots are configurable so tests
// run against a fake tree.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::metrics {

struct TemperatureReading {
  std::string sensor;  // "thermal_zone0/x86_pkg_temp", "hwmon1/coretemp/Package id 0", "nvml/gpu0"
  double celsius = 0;
  bool processor = false;  // a CPU, GPU or SoC sensor (these make up SystemSnapshot::temp_c)
};

struct SystemSnapshot {
  std::optional<double> cpu_pct;           // busy share of all CPUs since the previous Collect()
  std::optional<double> mem_pct;           // (MemTotal - MemAvailable) / MemTotal
  std::optional<double> temp_c;            // hottest processor sensor (CPU, GPU, SoC)
  std::optional<double> gpu_pct;           // busiest GPU (Jetson load / 10, or NVML)
  std::optional<double> cpu_freq_mhz;      // mean current frequency of the online CPUs
  std::optional<double> cpu_max_freq_mhz;  // highest cpuinfo_max_freq
  // True while a throttling indicator is active: throttle counters grew since the previous
  // Collect(), a CPU cooling device is engaged, the Raspberry Pi firmware reports throttling, or
  // NVML reports a thermal slowdown. Absent when the machine exposes none of these.
  std::optional<bool> throttled;
  std::optional<int64_t> throttle_events;        // Intel thermal_throttle counters, summed
  double process_rss_bytes = 0;                  // this process's resident set; 0 if unreadable
  std::vector<TemperatureReading> temperatures;  // every sensor that answered
  std::chrono::system_clock::time_point taken{};
};

class SystemCollector {
 public:
  struct Options {
    std::string proc_root = "/proc";
    std::string sys_root = "/sys";
    // NVIDIA Management Library, opened with dlopen when present (no link-time dependency).
    // Empty: do not try (tests on a fake tree).
    std::string nvml_library = "libnvidia-ml.so.1";
  };

  // Fails only when proc_root has no readable stat file (not a Linux /proc).
  static Result<std::unique_ptr<SystemCollector>> Create(const Options& options);
  ~SystemCollector();
  SystemCollector(const SystemCollector&) = delete;
  SystemCollector& operator=(const SystemCollector&) = delete;

  // Reads everything once. CPU % and the throttled flag from counters compare with the previous
  // sample (Create() takes the first one); CPU % is absent when no clock tick passed in between.
  SystemSnapshot Collect();

  bool has_nvml() const;

 private:
  struct Nvml;
  explicit SystemCollector(const Options& options);
  // The parts of Collect() that keep state between samples.
  void CollectCpu(SystemSnapshot& s);
  void CollectFrequencyAndThrottling(SystemSnapshot& s, std::optional<bool>& throttled);
  void CollectGpu(SystemSnapshot& s, std::optional<bool>& throttled);

  Options options_;
  std::unique_ptr<Nvml> nvml_;
  std::optional<std::pair<uint64_t, uint64_t>> prev_cpu_;  // (busy, total) jiffies
  std::optional<int64_t> prev_throttle_events_;
};

// The system part of the MQTT health message: cpu_pct, gpu_pct and temp_c (1 decimal) are always
// present as SPEC requires them (null when the hardware is absent); mem_pct, cpu_freq_mhz,
// throttled, throttle_events and process_rss_bytes appear only when known.
nlohmann::json HealthFields(const SystemSnapshot& snapshot);

}  // namespace tend::metrics
