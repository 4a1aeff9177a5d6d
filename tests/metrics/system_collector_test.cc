#include "metrics/system_collector.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace tend::metrics {
namespace {

using testing::TempDir;
using testing::WriteFile;

// A fake machine: /proc and /sys under one temp dir.
class FakeMachine {
 public:
  FakeMachine() {
    SetStat(100, 50, 800, 50);
    Proc("meminfo",
         "MemTotal:        8000000 kB\nMemFree:         1000000 kB\n"
         "MemAvailable:    6000000 kB\nBuffers:          100000 kB\nCached:          2000000 kB\n");
    Proc("self/status", "Name:\ttend\nVmPeak:\t  20000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n");
  }
  // user, system, idle, iowait jiffies (the other fields stay 0).
  void SetStat(int user, int system, int idle, int iowait) {
    Proc("stat", "cpu  " + std::to_string(user) + " 0 " + std::to_string(system) + " " +
                     std::to_string(idle) + " " + std::to_string(iowait) +
                     " 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 12345 1 2 3\n");
  }
  void Proc(const std::string& rel, const std::string& content) {
    WriteFile(dir_.path() + "/proc/" + rel, content);
  }
  void Sys(const std::string& rel, const std::string& content) {
    WriteFile(dir_.path() + "/sys/" + rel, content + "\n");
  }
  SystemCollector::Options options(const std::string& nvml = "") const {
    SystemCollector::Options o;
    o.proc_root = dir_.path() + "/proc";
    o.sys_root = dir_.path() + "/sys";
    o.nvml_library = nvml;
    return o;
  }

  // An Intel box: x86_pkg_temp + acpitz zones, coretemp and nvme hwmon, two CPUs with cpufreq
  // and thermal_throttle counters in one package, a Processor cooling device and a fan.
  void MakeIntel() {
    Sys("class/thermal/thermal_zone0/type", "acpitz");
    Sys("class/thermal/thermal_zone0/temp", "27800");
    Sys("class/thermal/thermal_zone1/type", "x86_pkg_temp");
    Sys("class/thermal/thermal_zone1/temp", "55000");
    Sys("class/thermal/cooling_device0/type", "Processor");
    Sys("class/thermal/cooling_device0/cur_state", "0");
    Sys("class/thermal/cooling_device1/type", "Fan");
    Sys("class/thermal/cooling_device1/cur_state", "3");
    Sys("class/thermal/cooling_device2/type", "intel_powerclamp");
    Sys("class/thermal/cooling_device2/cur_state", "-1");
    Sys("class/hwmon/hwmon0/name", "nvme");
    Sys("class/hwmon/hwmon0/temp1_input", "61000");
    Sys("class/hwmon/hwmon0/temp1_label", "Composite");
    Sys("class/hwmon/hwmon1/name", "coretemp");
    Sys("class/hwmon/hwmon1/temp1_input", "57000");
    Sys("class/hwmon/hwmon1/temp1_label", "Package id 0");
    Sys("class/hwmon/hwmon1/temp2_input", "54000");
    Sys("class/hwmon/hwmon1/temp2_label", "Core 0");
    Sys("class/hwmon/hwmon1/temp2_crit", "100000");  // not an _input: ignored
    for (int cpu = 0; cpu < 2; ++cpu) {
      const std::string d = "devices/system/cpu/cpu" + std::to_string(cpu);
      Sys(d + "/cpufreq/scaling_cur_freq", cpu == 0 ? "2000000" : "3000000");
      Sys(d + "/cpufreq/cpuinfo_max_freq", "4000000");
      Sys(d + "/thermal_throttle/core_throttle_count", cpu == 0 ? "3" : "2");
      Sys(d + "/thermal_throttle/package_throttle_count", "5");
      Sys(d + "/topology/physical_package_id", "0");
    }
    Sys("devices/system/cpu/cpufreq/boost", "1");  // not a cpuN directory
  }

  const std::string& root() const { return dir_.path(); }

 private:
  TempDir dir_;
};

TEST(SystemCollectorTest, IntelMachine) {
  FakeMachine m;
  m.MakeIntel();
  auto c = SystemCollector::Create(m.options());
  ASSERT_TRUE(c) << c.error().message;
  m.SetStat(160, 70, 1050, 70);
  SystemSnapshot s = (*c)->Collect();

  ASSERT_TRUE(s.cpu_pct);
  EXPECT_NEAR(*s.cpu_pct, 100.0 * 80 / 350, 1e-9);  // busy +80 of +350 jiffies
  ASSERT_TRUE(s.mem_pct);
  EXPECT_DOUBLE_EQ(*s.mem_pct, 25.0);  // (8000000 - 6000000) / 8000000
  EXPECT_DOUBLE_EQ(s.process_rss_bytes, 12345.0 * 1024);

  // Hottest processor sensor: coretemp package 57 °C; the NVMe drive (61 °C) and the ACPI zone
  // are reported as sensors but do not make the device temperature.
  ASSERT_TRUE(s.temp_c);
  EXPECT_DOUBLE_EQ(*s.temp_c, 57.0);
  ASSERT_EQ(s.temperatures.size(), 5u);
  EXPECT_EQ(s.temperatures[0].sensor, "thermal_zone0/acpitz");
  EXPECT_FALSE(s.temperatures[0].processor);
  EXPECT_EQ(s.temperatures[1].sensor, "thermal_zone1/x86_pkg_temp");
  EXPECT_TRUE(s.temperatures[1].processor);
  EXPECT_EQ(s.temperatures[2].sensor, "hwmon0/nvme/Composite");
  EXPECT_DOUBLE_EQ(s.temperatures[2].celsius, 61.0);
  EXPECT_FALSE(s.temperatures[2].processor);
  EXPECT_EQ(s.temperatures[3].sensor, "hwmon1/coretemp/Package id 0");
  EXPECT_EQ(s.temperatures[4].sensor, "hwmon1/coretemp/Core 0");

  ASSERT_TRUE(s.cpu_freq_mhz);
  EXPECT_DOUBLE_EQ(*s.cpu_freq_mhz, 2500.0);
  ASSERT_TRUE(s.cpu_max_freq_mhz);
  EXPECT_DOUBLE_EQ(*s.cpu_max_freq_mhz, 4000.0);
  // Core counters summed (3 + 2), the package counter once (5).
  ASSERT_TRUE(s.throttle_events);
  EXPECT_EQ(*s.throttle_events, 10);
  ASSERT_TRUE(s.throttled);
  EXPECT_FALSE(
      *s.throttled);  // counters unchanged, Processor state 0, powerclamp idle, fan ignored

  EXPECT_FALSE(s.gpu_pct);  // no GPU in this machine: absent, not zero
  EXPECT_FALSE((*c)->has_nvml());

  // The kernel counts two more throttling events: throttled until the counter stops moving.
  m.Sys("devices/system/cpu/cpu1/thermal_throttle/core_throttle_count", "4");
  s = (*c)->Collect();
  EXPECT_EQ(*s.throttle_events, 12);
  EXPECT_TRUE(*s.throttled);
  s = (*c)->Collect();
  EXPECT_FALSE(*s.throttled);

  // The ACPI processor cooling device engaged (passive cooling) is throttling too.
  m.Sys("class/thermal/cooling_device0/cur_state", "2");
  s = (*c)->Collect();
  EXPECT_TRUE(*s.throttled);
}

TEST(SystemCollectorTest, JetsonMachine) {
  FakeMachine m;
  m.Sys("class/thermal/thermal_zone0/type", "CPU-therm");
  m.Sys("class/thermal/thermal_zone0/temp", "45500");
  m.Sys("class/thermal/thermal_zone1/type", "GPU-therm");
  m.Sys("class/thermal/thermal_zone1/temp", "47000");
  m.Sys("class/thermal/thermal_zone2/type", "PMIC-Die");  // reads a constant 100 °C on Jetsons
  m.Sys("class/thermal/thermal_zone2/temp", "100000");
  m.Sys("class/thermal/thermal_zone3/type", "AO-therm");
  m.Sys("class/thermal/thermal_zone3/temp", "41000");
  m.Sys("devices/gpu.0/load", "523");
  auto c = SystemCollector::Create(m.options());
  ASSERT_TRUE(c) << c.error().message;
  SystemSnapshot s = (*c)->Collect();
  ASSERT_TRUE(s.gpu_pct);
  EXPECT_DOUBLE_EQ(*s.gpu_pct, 52.3);
  ASSERT_TRUE(s.temp_c);
  EXPECT_DOUBLE_EQ(*s.temp_c, 47.0);
  EXPECT_EQ(s.temperatures.size(), 4u);
  // No cpufreq, no throttle counters, no cooling devices: absent, not "false" or zero.
  EXPECT_FALSE(s.cpu_freq_mhz);
  EXPECT_FALSE(s.cpu_max_freq_mhz);
  EXPECT_FALSE(s.throttle_events);
  EXPECT_FALSE(s.throttled);
}

TEST(SystemCollectorTest, OrinGpuThroughDevfreq) {
  FakeMachine m;
  m.Sys("class/devfreq/17000000.ga10b/device/load", "250");
  m.Sys("class/devfreq/3d00000.dmc/device/load", "900");  // memory controller, not a GPU
  auto c = SystemCollector::Create(m.options());
  ASSERT_TRUE(c) << c.error().message;
  auto s = (*c)->Collect();
  ASSERT_TRUE(s.gpu_pct);
  EXPECT_DOUBLE_EQ(*s.gpu_pct, 25.0);
}

TEST(SystemCollectorTest, RaspberryPiFirmwareThrottleFlags) {
  FakeMachine m;
  m.Sys("class/thermal/thermal_zone0/type", "cpu-thermal");
  m.Sys("class/thermal/thermal_zone0/temp", "62300");
  m.Sys("devices/platform/soc/soc:firmware/get_throttled", "0x0");
  auto c = SystemCollector::Create(m.options());
  ASSERT_TRUE(c) << c.error().message;
  auto s = (*c)->Collect();
  ASSERT_TRUE(s.throttled);
  EXPECT_FALSE(*s.throttled);
  EXPECT_DOUBLE_EQ(*s.temp_c, 62.3);
  // Bit 2 (currently throttled) with the sticky "has occurred" bits 16 and 18.
  m.Sys("devices/platform/soc/soc:firmware/get_throttled", "0x50005");
  s = (*c)->Collect();
  EXPECT_TRUE(*s.throttled);
  // Only the sticky bits: it throttled earlier, it does not now.
  m.Sys("devices/platform/soc/soc:firmware/get_throttled", "0x50000");
  s = (*c)->Collect();
  EXPECT_FALSE(*s.throttled);
}

TEST(SystemCollectorTest, NothingPresentMeansAbsent) {
  FakeMachine m;  // /proc only, empty /sys
  auto c = SystemCollector::Create(m.options());
  ASSERT_TRUE(c) << c.error().message;
  auto s = (*c)->Collect();
  EXPECT_FALSE(s.cpu_pct);  // the stat file did not change: no tick passed
  EXPECT_TRUE(s.mem_pct);
  EXPECT_FALSE(s.temp_c);
  EXPECT_FALSE(s.gpu_pct);
  EXPECT_FALSE(s.cpu_freq_mhz);
  EXPECT_FALSE(s.throttled);
  EXPECT_FALSE(s.throttle_events);
  EXPECT_TRUE(s.temperatures.empty());
}

TEST(SystemCollectorTest, BrokenSensorsAreSkipped) {
  FakeMachine m;
  m.Sys("class/thermal/thermal_zone0/type", "x86_pkg_temp");
  m.Sys("class/thermal/thermal_zone0/temp", "garbage");
  m.Sys("class/thermal/thermal_zone1/type", "cpu-thermal");
  m.Sys("class/thermal/thermal_zone1/temp", "-273150");  // a dead sensor's sentinel
  m.Sys("class/thermal/thermal_zone2/type", "acpitz");
  m.Sys("class/thermal/thermal_zone2/temp", "30000");
  m.Sys("devices/gpu.0/load", "5000");  // out of range per-mille
  m.Proc("meminfo", "MemTotal: 0 kB\n");
  auto c = SystemCollector::Create(m.options());
  ASSERT_TRUE(c) << c.error().message;
  auto s = (*c)->Collect();
  ASSERT_EQ(s.temperatures.size(), 1u);
  ASSERT_TRUE(s.temp_c);
  EXPECT_DOUBLE_EQ(*s.temp_c, 30.0);  // no processor sensor answered: the hottest of the rest
  EXPECT_FALSE(s.gpu_pct);
  EXPECT_FALSE(s.mem_pct);
}

TEST(SystemCollectorTest, OldKernelWithoutMemAvailable) {
  FakeMachine m;
  m.Proc("meminfo",
         "MemTotal:        1000 kB\nMemFree:          100 kB\nBuffers:           50 kB\n"
         "Cached:           250 kB\n");
  auto c = SystemCollector::Create(m.options());
  ASSERT_TRUE(c) << c.error().message;
  auto s = (*c)->Collect();
  ASSERT_TRUE(s.mem_pct);
  EXPECT_DOUBLE_EQ(*s.mem_pct, 60.0);  // 1000 - (100 + 50 + 250)
}

TEST(SystemCollectorTest, CpuPercentFromTwoSamples) {
  FakeMachine m;
  auto c = SystemCollector::Create(m.options());
  ASSERT_TRUE(c) << c.error().message;
  m.SetStat(100 + 300, 50 + 100, 800 + 100, 50);  // 400 busy of 500 ticks
  auto s = (*c)->Collect();
  ASSERT_TRUE(s.cpu_pct);
  EXPECT_DOUBLE_EQ(*s.cpu_pct, 80.0);
  m.SetStat(400, 150, 900 + 1000, 50);  // fully idle since
  s = (*c)->Collect();
  EXPECT_DOUBLE_EQ(*s.cpu_pct, 0.0);
}

TEST(SystemCollectorTest, NvmlThroughDlopen) {
  FakeMachine m;
  m.Sys("class/thermal/thermal_zone0/type", "x86_pkg_temp");
  m.Sys("class/thermal/thermal_zone0/temp", "50000");
  auto c = SystemCollector::Create(m.options(TEND_FAKE_NVML_PATH));
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE((*c)->has_nvml());
  auto s = (*c)->Collect();
  ASSERT_TRUE(s.gpu_pct);
  EXPECT_DOUBLE_EQ(*s.gpu_pct, 37.0);
  ASSERT_EQ(s.temperatures.size(), 2u);
  EXPECT_EQ(s.temperatures[1].sensor, "nvml/gpu0");
  EXPECT_DOUBLE_EQ(*s.temp_c, 71.0);  // the GPU is the hottest processor
  ASSERT_TRUE(s.throttled);
  EXPECT_TRUE(*s.throttled);  // HW thermal slowdown reported

  auto none = SystemCollector::Create(m.options(m.root() + "/no-such-libnvidia-ml.so.1"));
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_FALSE((*none)->has_nvml());
  EXPECT_FALSE((*none)->Collect().gpu_pct);
}

TEST(SystemCollectorTest, BadProcRoot) {
  TempDir d;
  SystemCollector::Options o;
  o.proc_root = d.path() + "/nope";
  o.sys_root = d.path();
  o.nvml_library = "";
  auto c = SystemCollector::Create(o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kNotFound);
  EXPECT_NE(c.error().message.find(d.path() + "/nope/stat"), std::string::npos)
      << c.error().message;
}

TEST(SystemCollectorTest, RealMachineDoesNotFail) {
  SystemCollector::Options o;
  o.nvml_library = "";
  auto c = SystemCollector::Create(o);
  ASSERT_TRUE(c) << c.error().message;
  auto s = (*c)->Collect();
  ASSERT_TRUE(s.mem_pct);  // every Linux has /proc/meminfo
  EXPECT_GT(*s.mem_pct, 0.0);
  EXPECT_LE(*s.mem_pct, 100.0);
  EXPECT_GT(s.process_rss_bytes, 1e5);
}

TEST(HealthFieldsTest, PresentAndAbsent) {
  SystemSnapshot s;
  s.cpu_pct = 12.345;
  s.mem_pct = 50.06;
  s.temp_c = 57.06;
  s.throttled = false;
  s.throttle_events = 12;
  s.cpu_freq_mhz = 2499.6;
  s.process_rss_bytes = 1024.0 * 1024;
  auto j = HealthFields(s);
  EXPECT_DOUBLE_EQ(j.at("cpu_pct").get<double>(), 12.3);
  EXPECT_DOUBLE_EQ(j.at("temp_c").get<double>(), 57.1);
  EXPECT_DOUBLE_EQ(j.at("mem_pct").get<double>(), 50.1);
  EXPECT_TRUE(j.at("gpu_pct").is_null());  // SPEC requires the field: null when no GPU
  EXPECT_EQ(j.at("throttled").get<bool>(), false);
  EXPECT_EQ(j.at("throttle_events").get<int64_t>(), 12);
  EXPECT_EQ(j.at("cpu_freq_mhz").get<double>(), 2500.0);
  EXPECT_EQ(j.at("process_rss_bytes").get<int64_t>(), 1048576);

  auto empty = HealthFields(SystemSnapshot{});
  EXPECT_TRUE(empty.at("cpu_pct").is_null());
  EXPECT_TRUE(empty.at("gpu_pct").is_null());
  EXPECT_TRUE(empty.at("temp_c").is_null());
  EXPECT_FALSE(empty.contains("mem_pct"));
  EXPECT_FALSE(empty.contains("throttled"));
  EXPECT_FALSE(empty.contains("process_rss_bytes"));
}

}  // namespace
}  // namespace tend::metrics
