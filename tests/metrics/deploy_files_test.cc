// The shipped dashboard and alert rules only name metrics the exporter really exports, and the
// dashboard has the fleet overview and the per-device drill-down it promises.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "metrics/exporter.h"
#include "test_util.h"

namespace tend::metrics {
namespace {

using testing::ReadFileOrEmpty;
using testing::TempDir;
using testing::WriteFile;

std::string SourceDir() {
  const char* env = std::getenv("TEND_SOURCE_DIR");
  return env ? env : TEND_SOURCE_DIR;
}

// Every family the exporter can produce, from a fake machine that has every kind of sensor.
std::set<std::string> ExportedNames() {
  TempDir d;
  WriteFile(d.path() + "/proc/stat", "cpu  1 0 1 1 1 0 0 0 0 0\n");
  WriteFile(d.path() + "/proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 400 kB\n");
  WriteFile(d.path() + "/proc/self/status", "VmRSS:\t2048 kB\n");
  WriteFile(d.path() + "/sys/class/thermal/thermal_zone0/type", "CPU-therm\n");
  WriteFile(d.path() + "/sys/class/thermal/thermal_zone0/temp", "57000\n");
  WriteFile(d.path() + "/sys/devices/gpu.0/load", "250\n");
  const std::string cpu0 = d.path() + "/sys/devices/system/cpu/cpu0/";
  WriteFile(cpu0 + "cpufreq/scaling_cur_freq", "1500000\n");
  WriteFile(cpu0 + "cpufreq/cpuinfo_max_freq", "2000000\n");
  WriteFile(cpu0 + "thermal_throttle/core_throttle_count", "0\n");
  Exporter::Options o;
  o.port = 0;
  o.sys.proc_root = d.path() + "/proc";
  o.sys.sys_root = d.path() + "/sys";
  o.sys.nvml_library = "";
  auto e = Exporter::Create({"d", "a", "f"}, o);
  EXPECT_TRUE(e) << e.error().message;
  if (!e) return {};
  WriteFile(d.path() + "/proc/stat", "cpu  5 0 1 5 1 0 0 0 0 0\n");
  (*e)->RefreshSystemNow();
  (*e)->OnDecision(Decision{});
  (*e)->OnModelInfo({"m", "1", "CPUExecutionProvider", 1, 2});
  (*e)->SetTelemetryStatsProvider(
      [] { return TelemetryFigures{1, 2, 3, true, 4, 5, false, false, 0}; });
  (*e)->SetOtaStatusProvider([] {
    OtaFigures f;
    f.last_check_unix = 1;
    f.model_installed_unix = 1;
    return f;
  });
  std::set<std::string> names;
  for (const auto& s : testing::ParseExposition((*e)->ScrapeText())) names.insert(s.name);
  return names;
}

// edge_* and process_* identifiers in PromQL text.
std::set<std::string> ReferencedNames(const std::string& text) {
  std::set<std::string> out;
  std::regex re(R"(\b((edge|process)_[a-z_]+)\b)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it) {
    out.insert((*it)[1].str());
  }
  return out;
}

TEST(DeployFilesTest, RulesAndDashboardNameOnlyExportedMetrics) {
  const auto exported = ExportedNames();
  ASSERT_FALSE(exported.empty());
  ASSERT_TRUE(exported.count("edge_gpu_usage_percent"));
  ASSERT_TRUE(exported.count("edge_cpu_usage_percent"));
  for (const char* file :
       {"/deploy/prometheus/tend_rules.yml", "/deploy/grafana/tend-fleet.json"}) {
    const std::string text = ReadFileOrEmpty(SourceDir() + file);
    ASSERT_FALSE(text.empty()) << file;
    const auto referenced = ReferencedNames(text);
    EXPECT_GE(referenced.size(), 5u) << file;
    for (const auto& name : referenced) {
      EXPECT_TRUE(exported.count(name)) << file << " uses " << name << ", which is not exported";
    }
  }
}

// docs/spec.md (the contract as implemented) lists every exported family and nothing else, so
// the page cannot drift from the exporter (#16 item 8).
TEST(DeployFilesTest, SpecPageNamesExactlyTheExportedMetrics) {
  std::set<std::string> exported;
  for (const auto& n : ExportedNames()) {
    std::string base = n;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string sx = suffix;
      if (base.size() > sx.size() && base.compare(base.size() - sx.size(), sx.size(), sx) == 0) {
        base.resize(base.size() - sx.size());
      }
    }
    exported.insert(base);
  }
  const std::string text = ReadFileOrEmpty(SourceDir() + "/docs/spec.md");
  ASSERT_FALSE(text.empty()) << "docs/spec.md";
  const size_t from = text.find("## Prometheus metrics"), to = text.find("\n## ", from + 1);
  ASSERT_NE(from, std::string::npos);
  std::set<std::string> documented;
  std::istringstream lines(text.substr(from, to - from));
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("| `", 0) != 0) continue;
    const std::string cell = line.substr(0, line.find('|', 1));  // the name column
    for (const auto& n : ReferencedNames(cell)) documented.insert(n);
  }
  EXPECT_GE(documented.size(), 30u);
  for (const auto& n : documented) {
    EXPECT_TRUE(exported.count(n)) << "docs/spec.md names " << n << ", which is not exported";
  }
  for (const auto& n : exported) {
    EXPECT_TRUE(documented.count(n)) << n << " is exported but missing from docs/spec.md";
  }
}

TEST(DeployFilesTest, DashboardHasOverviewAndDrillDown) {
  const std::string text = ReadFileOrEmpty(SourceDir() + "/deploy/grafana/tend-fleet.json");
  auto j = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << "tend-fleet.json is not valid JSON";
  EXPECT_EQ(j.value("uid", ""), "tend-fleet");

  std::set<std::string> vars;
  for (const auto& v : j["templating"]["list"]) vars.insert(v.value("name", ""));
  EXPECT_TRUE(vars.count("datasource"));
  EXPECT_TRUE(vars.count("factory_id"));
  EXPECT_TRUE(vars.count("device_id"));

  std::vector<std::string> rows;
  std::set<int> ids;
  int panels = 0;
  std::string device_row_exprs;
  std::string current_row;
  for (const auto& p : j["panels"]) {
    EXPECT_TRUE(ids.insert(p.value("id", -1)).second) << "duplicate panel id " << p.value("id", -1);
    if (p.value("type", "") == "row") {
      rows.push_back(p.value("title", ""));
      current_row = p.value("title", "");
      continue;
    }
    ++panels;
    ASSERT_TRUE(p.contains("targets")) << p.value("title", "");
    for (const auto& t : p["targets"]) {
      ASSERT_TRUE(t.contains("expr")) << p.value("title", "");
      if (current_row.find("$device_id") != std::string::npos) {
        device_row_exprs += t["expr"].get<std::string>() + "\n";
      }
    }
  }
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_NE(rows[0].find("Fleet"), std::string::npos);
  EXPECT_NE(rows[1].find("$device_id"), std::string::npos);
  EXPECT_GE(panels, 15);
  // The drill-down filters on the device and shows latency next to temperature and throttling.
  EXPECT_NE(device_row_exprs.find("device_id=\"$device_id\""), std::string::npos);
  EXPECT_NE(device_row_exprs.find("edge_inference_latency_ms_bucket"), std::string::npos);
  EXPECT_NE(device_row_exprs.find("edge_device_temperature_c"), std::string::npos);
  EXPECT_NE(device_row_exprs.find("edge_thermal_throttled"), std::string::npos);
}

}  // namespace
}  // namespace tend::metrics
