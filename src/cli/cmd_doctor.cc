// `tend doctor`: what this machine offers tend (versions, execution providers, CPU features,
// memory, thermal sensors), the components this binary was built with (sources, model kinds,
// sinks and their config keys), and whether it can run the agent, checked by actually running a
// tiny model through ONNX Runtime.
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <onnx/onnx_pb.h>
#include <onnxruntime_cxx_api.h>
#include <sqlite3.h>

#include "cli/commands.h"
#include "model/session.h"
#include "runtime/registry.h"

namespace tend::cli {
namespace {

std::string ReadFirstLineMatching(const std::string& path, const std::string& prefix) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(prefix, 0) == 0) return line;
  }
  return {};
}

// y = x + 1 over float[1,4]: the smallest model that exercises load, prepare and run.
std::string TinyModel() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("tend-doctor");
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("doctor");
  auto* one = g->add_initializer();
  one->set_name("one");
  one->set_data_type(onnx::TensorProto::FLOAT);
  one->add_float_data(1.0f);
  auto* n = g->add_node();
  n->set_op_type("Add");
  n->add_input("x");
  n->add_input("one");
  n->add_output("y");
  for (auto* vi : {g->add_input(), g->add_output()}) {
    vi->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    auto* shape = vi->mutable_type()->mutable_tensor_type()->mutable_shape();
    shape->add_dim()->set_dim_value(1);
    shape->add_dim()->set_dim_value(4);
  }
  g->mutable_input(0)->set_name("x");
  g->mutable_output(0)->set_name("y");
  return m.SerializeAsString();
}

// The components for people: name and description, one per line, by kind.
void PrintComponents(const nlohmann::json& j) {
  if (j.contains("components_error")) {
    std::printf("  components        ERROR: %s\n",
                j["components_error"].get<std::string>().c_str());
    return;
  }
  for (const auto& [key, title] : {std::pair{"sources", "sources"},
                                   {"stages", "event stages"},
                                   {"model_kinds", "model kinds"},
                                   {"sinks", "sinks"}}) {
    std::printf("\n%s:\n", title);
    for (const auto& c : j[key]) {
      std::printf("  %-14s %s\n", c["name"].get<std::string>().c_str(),
                  c["description"].get<std::string>().c_str());
    }
  }
}

void DoDoctor(bool json) {
  bool ok = true;
  nlohmann::json j;
  utsname u{};
  uname(&u);
  j["tend"] = TEND_VERSION;
  j["onnxruntime"] = Ort::GetVersionString();
  j["sqlite"] = sqlite3_libversion();
  j["kernel"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  j["providers_available"] = model::AvailableProviders();
  j["cpus"] = ::sysconf(_SC_NPROCESSORS_ONLN);
  long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  j["memory_mb"] = pages > 0 ? pages / 1024 * page / 1024 : 0;
  std::string flags = ReadFirstLineMatching("/proc/cpuinfo", "flags");
  if (flags.empty()) flags = ReadFirstLineMatching("/proc/cpuinfo", "Features");
  std::set<std::string> have;
  std::istringstream fs(flags.substr(flags.find(':') == std::string::npos ? 0 : flags.find(':') + 1));
  for (std::string f; fs >> f;) have.insert(f);
  nlohmann::json feats = nlohmann::json::array();
  for (const char* f : {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni",
                        "amx_int8", "neon", "asimd", "asimddp", "fphp"}) {
    if (have.count(f)) feats.push_back(f);
  }
  j["cpu_features"] = feats;
  std::string model_name = ReadFirstLineMatching("/proc/cpuinfo", "model name");
  if (!model_name.empty()) j["cpu_model"] = model_name.substr(model_name.find(':') + 2);
  int thermal = 0;
  std::error_code ec;
  if (std::filesystem::exists("/sys/class/thermal", ec)) {
    for (auto& e : std::filesystem::directory_iterator("/sys/class/thermal", ec)) {
      if (e.path().filename().string().rfind("thermal_zone", 0) == 0) ++thermal;
    }
  }
  j["thermal_zones"] = thermal;

  // Can this machine run the agent? Load and run a model for real.
  std::string bytes = TinyModel();
  auto session = model::Session::LoadBytes(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), {},
      "doctor");
  std::string check;
  if (!session) {
    ok = false;
    check = "FAILED: " + session.error().message;
  } else if (auto st = (*session)->Prepare({{1, 4}}); !st) {
    ok = false;
    check = "FAILED: " + st.error().message;
  } else {
    auto in = (*session)->input(0);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
    auto st2 = (*session)->Run();
    auto out = (*session)->output(0);
    if (!st2 || out.size() != 4 || out[3] != 4.0f) {
      ok = false;
      check = st2 ? "FAILED: wrong result from a test model" : "FAILED: " + st2.error().message;
    } else {
      check = "ok (" + (*session)->provider() + ")";
    }
  }
  j["inference_check"] = check;
  j["can_run_agent"] = ok;
  auto registry = runtime::MakeRegistry(&runtime::RegisterLinkedComponents);
  if (registry) {
    j.update((*registry)->Describe());
  } else {
    ok = false;
    j["can_run_agent"] = false;
    j["components_error"] = registry.error().message;
  }
  if (json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("tend %s\n", TEND_VERSION);
    std::printf("  ONNX Runtime      %s\n", j["onnxruntime"].get<std::string>().c_str());
    std::printf("  SQLite            %s\n", j["sqlite"].get<std::string>().c_str());
    std::printf("  kernel            %s\n", j["kernel"].get<std::string>().c_str());
    if (j.contains("cpu_model")) std::printf("  CPU               %s\n", j["cpu_model"].get<std::string>().c_str());
    std::printf("  CPUs / memory     %ld / %ld MB\n", j["cpus"].get<long>(), j["memory_mb"].get<long>());
    std::string fl, pv;
    for (auto& f : j["cpu_features"]) fl += f.get<std::string>() + " ";
    for (auto& p : j["providers_available"]) pv += p.get<std::string>() + " ";
    std::printf("  CPU features      %s\n", fl.c_str());
    std::printf("  providers         %s\n", pv.c_str());
    std::printf("  thermal zones     %d\n", thermal);
    std::printf("  inference check   %s\n", check.c_str());
    std::printf("  can run the agent %s\n", ok ? "yes" : "NO");
    PrintComponents(j);
  }
  if (!ok) throw ExitCode{1};
}

}  // namespace

void RegisterDoctor(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("doctor", "Check this machine: versions, providers, CPU, can it run the agent");
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([json] { DoDoctor(*json); });
}

}  // namespace tend::cli
