#include "metrics/system_collector.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <string_view>

#include "core/log.h"

namespace tend::metrics {
namespace {

namespace stdfs = std::filesystem;

// Reads at most `max_bytes` from the start of a (pseudo-)file. sysfs and procfs files are small
// and report a size of 4096 or 0, so we read until EOF rather than trusting stat().
std::optional<std::string> ReadHead(const std::string& path, size_t max_bytes = 4096) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out(max_bytes, '\0');
  size_t got = 0;
  while (got < max_bytes) {
    ssize_t n = ::read(fd, out.data() + got, max_bytes - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return std::nullopt;  // e.g. EIO/ENODATA from a sensor that is powered down
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

template <typename T>
std::optional<T> ParseNumber(std::string_view s, int base = 10) {
  s = Trim(s);
  if (s.empty()) return std::nullopt;
  T v{};
  std::from_chars_result r;
  if constexpr (std::is_floating_point_v<T>) {
    r = std::from_chars(s.data(), s.data() + s.size(), v);
  } else {
    r = std::from_chars(s.data(), s.data() + s.size(), v, base);
  }
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<int64_t> ReadInt(const std::string& path) {
  auto s = ReadHead(path, 64);
  if (!s) return std::nullopt;
  return ParseNumber<int64_t>(*s);
}

std::optional<std::string> ReadLine(const std::string& path) {
  auto s = ReadHead(path, 256);
  if (!s) return std::nullopt;
  return std::string(Trim(*s));
}

// Entries of `dir` whose name starts with `prefix`, sorted so that output order is stable.
std::vector<std::string> ListDir(const std::string& dir, std::string_view prefix) {
  std::vector<std::string> names;
  std::error_code ec;
  stdfs::directory_iterator it(dir, ec);
  if (ec) return names;
  for (; it != stdfs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    std::string name = it->path().filename().string();
    if (name.starts_with(prefix)) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool IsCpuDirName(std::string_view name) {
  if (!name.starts_with("cpu") || name.size() == 3) return false;
  return std::all_of(name.begin() + 3, name.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Sensors that describe the processor (CPU package/cores, GPU, SoC, Tegra junction) as opposed to
// boards, PMICs, drives, Wi-Fi cards or ACPI zones: the device temperature is the hottest of these,
// because that is what throttles.
bool IsProcessorSensor(std::string_view name) {
  const std::string n = Lower(name);
  for (const char* key : {"cpu", "gpu", "soc", "pkg", "package", "core", "tctl", "tdie", "tccd",
                          "tj-therm", "k10temp", "zenpower"}) {
    if (n.find(key) != std::string::npos) return true;
  }
  return false;
}

// Sensors report millidegrees Celsius; some dead sensors report absurd values.
std::optional<double> MilliCelsius(std::optional<int64_t> raw) {
  if (!raw) return std::nullopt;
  double c = static_cast<double>(*raw) / 1000.0;
  if (c < -60.0 || c > 200.0) return std::nullopt;
  return c;
}

// Cooling devices whose non-zero state means the CPU/GPU is being slowed for heat (as opposed to
// fans, whose state only means "spinning").
bool IsThrottlingCoolingDevice(std::string_view type) {
  for (const char* prefix : {"Processor", "intel_powerclamp", "cpufreq", "thermal-cpufreq",
                             "cpu-balanced", "gpu-balanced", "devfreq", "thermal-devfreq"}) {
    if (type.starts_with(prefix)) return true;
  }
  return false;
}

bool IsTegraGpuName(std::string_view name) {
  const std::string n = Lower(name);
  for (const char* key : {"gpu", "gk20a", "gm20b", "gp10b", "gv11b", "ga10b"}) {
    if (n.find(key) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

// NVML through dlopen: the library ships with the NVIDIA driver (proprietary), so tend never links
// against it; on machines without it this simply stays null.
struct SystemCollector::Nvml {
  using Device = void*;
  struct Utilization {
    unsigned int gpu;
    unsigned int memory;
  };
  using InitFn = int (*)();
  using ShutdownFn = int (*)();
  using CountFn = int (*)(unsigned int*);
  using HandleFn = int (*)(unsigned int, Device*);
  using UtilFn = int (*)(Device, Utilization*);
  using TempFn = int (*)(Device, int, unsigned int*);
  using ThrottleFn = int (*)(Device, unsigned long long*);

  // nvmlClocksThrottleReasons: HW slowdown, SW thermal slowdown, HW thermal slowdown.
  static constexpr unsigned long long kThermalReasons = 0x8ULL | 0x20ULL | 0x40ULL;

  void* lib = nullptr;
  ShutdownFn shutdown = nullptr;
  UtilFn utilization = nullptr;
  TempFn temperature = nullptr;
  ThrottleFn throttle_reasons = nullptr;  // optional (older drivers)
  std::vector<Device> devices;

  ~Nvml() {
    if (shutdown) shutdown();
    if (lib) dlclose(lib);
  }

  template <typename Fn>
  Fn Symbol(const char* name) {
    return reinterpret_cast<Fn>(dlsym(lib, name));
  }

  static std::unique_ptr<Nvml> Open(const std::string& path) {
    auto n = std::make_unique<Nvml>();
    n->lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) return nullptr;
    auto init = n->Symbol<InitFn>("nvmlInit_v2");
    auto count = n->Symbol<CountFn>("nvmlDeviceGetCount_v2");
    auto handle = n->Symbol<HandleFn>("nvmlDeviceGetHandleByIndex_v2");
    n->utilization = n->Symbol<UtilFn>("nvmlDeviceGetUtilizationRates");
    n->temperature = n->Symbol<TempFn>("nvmlDeviceGetTemperature");
    n->throttle_reasons = n->Symbol<ThrottleFn>("nvmlDeviceGetCurrentClocksThrottleReasons");
    auto shutdown = n->Symbol<ShutdownFn>("nvmlShutdown");
    if (!init || !count || !handle || !n->utilization || !shutdown) {
      TEND_LOG_WARN("metrics: {} lacks the NVML functions tend needs; GPU load not exported", path);
      return nullptr;
    }
    if (int rc = init(); rc != 0) {
      TEND_LOG_INFO("metrics: NVML present but nvmlInit failed (code {}); no NVIDIA GPU figures",
                    rc);
      return nullptr;
    }
    n->shutdown = shutdown;
    unsigned int num = 0;
    if (count(&num) != 0) num = 0;
    for (unsigned int i = 0; i < num; ++i) {
      Device d = nullptr;
      if (handle(i, &d) == 0) n->devices.push_back(d);
    }
    if (n->devices.empty()) return nullptr;
    TEND_LOG_INFO("metrics: NVML reports {} NVIDIA GPU(s)", n->devices.size());
    return n;
  }
};

SystemCollector::SystemCollector(const Options& options) : options_(options) {}
SystemCollector::~SystemCollector() = default;

bool SystemCollector::has_nvml() const { return nvml_ != nullptr; }

Result<std::unique_ptr<SystemCollector>> SystemCollector::Create(const Options& options) {
  const std::string stat = options.proc_root + "/stat";
  if (!ReadHead(stat, 16)) {
    return Fail(Error::NotFound(stat + ": cannot read (proc_root must point at a Linux /proc)"));
  }
  std::unique_ptr<SystemCollector> c(new SystemCollector(options));
  if (!options.nvml_library.empty()) c->nvml_ = Nvml::Open(options.nvml_library);
  c->Collect();  // first sample for the CPU and throttle-counter deltas
  return c;
}

namespace {

// Memory: MemAvailable is the kernel's own estimate of what can be handed out without swapping
// (3.14+); older kernels get free + buffers + page cache. And this process's resident set.
void CollectMemory(const std::string& proc, SystemSnapshot& s) {
  if (auto meminfo = ReadHead(proc + "/meminfo", 8192)) {
    std::map<std::string_view, uint64_t, std::less<>> kb;
    std::string_view rest(*meminfo);
    while (!rest.empty()) {
      std::string_view line = rest.substr(0, rest.find('\n'));
      rest.remove_prefix(std::min(rest.size(), line.size() + 1));
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view value = Trim(line.substr(colon + 1));
      if (value.ends_with(" kB")) value.remove_suffix(3);
      if (auto v = ParseNumber<uint64_t>(value)) kb[line.substr(0, colon)] = *v;
    }
    auto get = [&](std::string_view k) -> std::optional<uint64_t> {
      auto it = kb.find(k);
      if (it == kb.end()) return std::nullopt;
      return it->second;
    };
    auto total = get("MemTotal");
    std::optional<uint64_t> avail = get("MemAvailable");
    if (!avail && get("MemFree")) {
      avail = *get("MemFree") + get("Buffers").value_or(0) + get("Cached").value_or(0);
    }
    if (total && *total > 0 && avail) {
      const double used = static_cast<double>(*total) - static_cast<double>(*avail);
      s.mem_pct = std::clamp(100.0 * used / static_cast<double>(*total), 0.0, 100.0);
    }
  }

  // This process's resident set: VmRSS in /proc/self/status.
  if (auto status = ReadHead(proc + "/self/status", 8192)) {
    size_t at = status->starts_with("VmRSS:") ? 0 : status->find("\nVmRSS:");
    if (at != std::string::npos) {
      if (at > 0) ++at;  // past the newline
      std::string_view line(status->data() + at + 6);
      line = Trim(line.substr(0, line.find('\n')));
      if (line.ends_with(" kB")) line.remove_suffix(3);
      if (auto v = ParseNumber<uint64_t>(line))
        s.process_rss_bytes = static_cast<double>(*v) * 1024;
    }
  }
}

// Temperatures: thermal zones (ACPI, x86_pkg_temp, Jetson CPU-therm/GPU-therm, Raspberry Pi
// cpu-thermal) and hwmon chips (coretemp, k10temp, amdgpu, nvme...).
void CollectTemperatures(const std::string& sys, SystemSnapshot& s) {
  const std::string thermal = sys + "/class/thermal";
  for (const auto& zone : ListDir(thermal, "thermal_zone")) {
    auto type = ReadLine(thermal + "/" + zone + "/type");
    auto c = MilliCelsius(ReadInt(thermal + "/" + zone + "/temp"));
    if (!c) continue;
    const std::string t = type.value_or("unknown");
    s.temperatures.push_back({zone + "/" + t, *c, IsProcessorSensor(t)});
  }
  const std::string hwmon = sys + "/class/hwmon";
  for (const auto& chip : ListDir(hwmon, "hwmon")) {
    const std::string dir = hwmon + "/" + chip;
    const std::string name = ReadLine(dir + "/name").value_or("unknown");
    for (const auto& f : ListDir(dir, "temp")) {
      if (!f.ends_with("_input")) continue;
      auto c = MilliCelsius(ReadInt(dir + "/" + f));
      if (!c) continue;
      const std::string idx = f.substr(0, f.size() - 6);  // "temp1"
      const std::string label = ReadLine(dir + "/" + idx + "_label").value_or(idx);
      s.temperatures.push_back({chip + "/" + name + "/" + label, *c,
                                IsProcessorSensor(name) || IsProcessorSensor(label)});
    }
  }
}

}  // namespace

void SystemCollector::CollectCpu(SystemSnapshot& s) {
  const std::string& proc = options_.proc_root;
  // CPU: the aggregate "cpu" line of /proc/stat; busy = everything but idle and iowait. guest
  // time is already counted in user, so only the first eight fields make up the total.
  if (auto stat = ReadHead(proc + "/stat", 1024)) {
    std::string_view line(*stat);
    line = line.substr(0, line.find('\n'));
    if (line.starts_with("cpu ")) {
      std::array<uint64_t, 8> f{};
      size_t n = 0;
      size_t pos = 4;
      while (n < f.size() && pos < line.size()) {
        while (pos < line.size() && line[pos] == ' ') ++pos;
        size_t end = line.find(' ', pos);
        if (end == std::string_view::npos) end = line.size();
        auto v = ParseNumber<uint64_t>(line.substr(pos, end - pos));
        if (!v) break;
        f[n++] = *v;
        pos = end;
      }
      if (n >= 4) {
        uint64_t total = 0;
        for (size_t i = 0; i < n; ++i) total += f[i];
        const uint64_t idle = f[3] + (n > 4 ? f[4] : 0);
        const uint64_t busy = total - idle;
        if (prev_cpu_ && total > prev_cpu_->second && busy >= prev_cpu_->first) {
          s.cpu_pct = 100.0 * static_cast<double>(busy - prev_cpu_->first) /
                      static_cast<double>(total - prev_cpu_->second);
        }
        prev_cpu_ = std::make_pair(busy, total);
      }
    }
  }
}

void SystemCollector::CollectFrequencyAndThrottling(SystemSnapshot& s,
                                                    std::optional<bool>& throttled) {
  const std::string& sys = options_.sys_root;
  const std::string thermal = sys + "/class/thermal";
  // CPU frequency and Intel's thermal_throttle counters, per CPU. Package counters repeat in
  // every CPU of the package, so they are counted once per physical package.
  const std::string cpus = sys + "/devices/system/cpu";
  double freq_sum_khz = 0;
  int freq_n = 0;
  std::optional<int64_t> max_khz;
  std::optional<int64_t> throttle_events;
  std::map<int64_t, int64_t> package_events;
  for (const auto& cpu : ListDir(cpus, "cpu")) {
    if (!IsCpuDirName(cpu)) continue;
    const std::string dir = cpus + "/" + cpu;
    auto cur = ReadInt(dir + "/cpufreq/scaling_cur_freq");
    if (!cur) cur = ReadInt(dir + "/cpufreq/cpuinfo_cur_freq");
    if (cur && *cur > 0) {
      freq_sum_khz += static_cast<double>(*cur);
      ++freq_n;
    }
    if (auto mx = ReadInt(dir + "/cpufreq/cpuinfo_max_freq"); mx && *mx > 0) {
      max_khz = std::max(max_khz.value_or(0), *mx);
    }
    if (auto core = ReadInt(dir + "/thermal_throttle/core_throttle_count")) {
      throttle_events = throttle_events.value_or(0) + *core;
    }
    if (auto pkg = ReadInt(dir + "/thermal_throttle/package_throttle_count")) {
      const int64_t id = ReadInt(dir + "/topology/physical_package_id").value_or(0);
      package_events[id] = std::max(package_events[id], *pkg);
    }
  }
  for (const auto& [id, n] : package_events) throttle_events = throttle_events.value_or(0) + n;
  if (freq_n > 0) s.cpu_freq_mhz = freq_sum_khz / freq_n / 1000.0;
  if (max_khz) s.cpu_max_freq_mhz = static_cast<double>(*max_khz) / 1000.0;

  // Throttling indicators; each one present makes `throttled` known.
  auto indicate = [&](bool on) { throttled = throttled.value_or(false) || on; };
  s.throttle_events = throttle_events;
  if (throttle_events) {
    if (prev_throttle_events_) indicate(*throttle_events > *prev_throttle_events_);
    prev_throttle_events_ = throttle_events;
  }
  for (const auto& dev : ListDir(thermal, "cooling_device")) {
    auto type = ReadLine(thermal + "/" + dev + "/type");
    if (!type || !IsThrottlingCoolingDevice(*type)) continue;
    // intel_powerclamp reads -1 while idle.
    if (auto state = ReadInt(thermal + "/" + dev + "/cur_state")) indicate(*state > 0);
  }
  // Raspberry Pi firmware: bit 1 = ARM frequency capped, bit 2 = currently throttled,
  // bit 3 = soft temperature limit active.
  if (auto fw = ReadLine(sys + "/devices/platform/soc/soc:firmware/get_throttled")) {
    std::string_view v(*fw);
    if (v.starts_with("0x")) v.remove_prefix(2);
    if (auto bits = ParseNumber<uint64_t>(v, 16)) indicate((*bits & 0xEULL) != 0);
  }
}

void SystemCollector::CollectGpu(SystemSnapshot& s, std::optional<bool>& throttled) {
  const std::string& sys = options_.sys_root;
  auto indicate = [&](bool on) { throttled = throttled.value_or(false) || on; };
  // GPU load: Jetson exposes it in per-mille under the GPU's platform device (path differs by
  // L4T release); devfreq GPUs expose the same file under the devfreq node.
  std::optional<double> gpu;
  auto gpu_load = [&](const std::string& path) {
    if (auto v = ReadInt(path); v && *v >= 0 && *v <= 1000) {
      gpu = std::max(gpu.value_or(0.0), static_cast<double>(*v) / 10.0);
      return true;
    }
    return false;
  };
  if (!gpu_load(sys + "/devices/gpu.0/load")) gpu_load(sys + "/devices/platform/gpu.0/load");
  if (!gpu) {
    for (const auto& dev : ListDir(sys + "/class/devfreq", "")) {
      if (IsTegraGpuName(dev)) gpu_load(sys + "/class/devfreq/" + dev + "/device/load");
    }
  }
  if (nvml_) {
    for (size_t i = 0; i < nvml_->devices.size(); ++i) {
      Nvml::Device d = nvml_->devices[i];
      Nvml::Utilization u{};
      if (nvml_->utilization(d, &u) == 0) gpu = std::max(gpu.value_or(0.0), double(u.gpu));
      unsigned int t = 0;
      if (nvml_->temperature && nvml_->temperature(d, 0, &t) == 0) {
        s.temperatures.push_back({"nvml/gpu" + std::to_string(i), double(t), true});
      }
      unsigned long long reasons = 0;
      if (nvml_->throttle_reasons && nvml_->throttle_reasons(d, &reasons) == 0) {
        indicate((reasons & Nvml::kThermalReasons) != 0);
      }
    }
  }
  s.gpu_pct = gpu;
}

SystemSnapshot SystemCollector::Collect() {
  SystemSnapshot s;
  s.taken = std::chrono::system_clock::now();
  CollectCpu(s);
  CollectMemory(options_.proc_root, s);
  CollectTemperatures(options_.sys_root, s);
  std::optional<bool> throttled;
  CollectFrequencyAndThrottling(s, throttled);
  CollectGpu(s, throttled);
  s.throttled = throttled;

  // Device temperature: the hottest processor sensor; a machine that only has other sensors
  // (an ACPI zone) reports the hottest of those.
  std::optional<double> hottest, hottest_any;
  for (const auto& t : s.temperatures) {
    hottest_any = std::max(hottest_any.value_or(-1e9), t.celsius);
    if (t.processor) hottest = std::max(hottest.value_or(-1e9), t.celsius);
  }
  s.temp_c = hottest ? hottest : hottest_any;
  return s;
}

nlohmann::json HealthFields(const SystemSnapshot& s) {
  auto round1 = [](double v) { return std::round(v * 10.0) / 10.0; };
  auto opt1 = [&](const std::optional<double>& v) -> nlohmann::json {
    return v ? nlohmann::json(round1(*v)) : nlohmann::json(nullptr);
  };
  nlohmann::json j;
  j["cpu_pct"] = opt1(s.cpu_pct);
  j["gpu_pct"] = opt1(s.gpu_pct);
  j["temp_c"] = opt1(s.temp_c);
  if (s.mem_pct) j["mem_pct"] = round1(*s.mem_pct);
  if (s.cpu_freq_mhz) j["cpu_freq_mhz"] = std::round(*s.cpu_freq_mhz);
  if (s.throttled) j["throttled"] = *s.throttled;
  if (s.throttle_events) j["throttle_events"] = *s.throttle_events;
  if (s.process_rss_bytes > 0) j["process_rss_bytes"] = static_cast<int64_t>(s.process_rss_bytes);
  return j;
}

}  // namespace tend::metrics
