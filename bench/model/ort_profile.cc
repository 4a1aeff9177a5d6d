// Per-operator time of an ONNX model in ONNX Runtime on one thread, from ORT's own profiler
// (SessionOptions::EnableProfiling): what an INT8 graph spends where, next to its FP32 original
// (docs/vision.md, "INT8"). Inputs are seeded N(0,1) floats; dynamic dims are 1.
//
//   build/bench/ort_profile MODEL.onnx [RUNS=100] [TOP=25] [PROFILE_PREFIX=/tmp/ort_profile]
//
// Prints the median of each node's kernel time over the runs (medians shrug off preemption on a
// shared machine), summed per op type and for the whole graph, and the TOP slowest nodes with
// their input and output shapes. The profile JSON stays at the printed path.
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

void RunModel(Ort::Session& s, int runs) {
  Ort::AllocatorWithDefaultOptions a;
  auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 1);
  std::vector<std::string> in_names, out_names;
  std::vector<std::vector<float>> bufs;
  std::vector<Ort::Value> ins;
  for (size_t i = 0; i < s.GetInputCount(); ++i) {
    in_names.push_back(s.GetInputNameAllocated(i, a).get());
    auto shape = s.GetInputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape();
    size_t n = 1;
    for (auto& d : shape) n *= static_cast<size_t>(d = d < 0 ? 1 : d);
    bufs.emplace_back(n);
    for (auto& v : bufs.back()) v = nd(rng);
    ins.push_back(
        Ort::Value::CreateTensor<float>(mem, bufs.back().data(), n, shape.data(), shape.size()));
  }
  for (size_t i = 0; i < s.GetOutputCount(); ++i)
    out_names.push_back(s.GetOutputNameAllocated(i, a).get());
  std::vector<const char*> ip, op;
  for (auto& x : in_names) ip.push_back(x.c_str());
  for (auto& x : out_names) op.push_back(x.c_str());
  for (int i = 0; i < runs; ++i)
    s.Run(Ort::RunOptions{nullptr}, ip.data(), ins.data(), ins.size(), op.data(), op.size());
}

std::string Shapes(const nlohmann::json& list) {
  std::string out;
  for (const auto& t : list) {
    for (const auto& [type, dims] : t.items()) out += (out.empty() ? "" : ",") + dims.dump();
  }
  return out;
}

// Each node's kernel times (ms, one per run) and its profile args, from ORT's profile JSON.
void ReadNodeTimes(const std::string& path, std::map<std::string, std::vector<double>>& times,
                   std::map<std::string, nlohmann::json>& args) {
  std::ifstream f(path);
  const std::string suffix = "_kernel_time";
  for (const auto& e : nlohmann::json::parse(f)) {
    const std::string name = e.value("name", "");
    if (e.value("cat", "") != "Node" || name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string node = name.substr(0, name.size() - suffix.size());
    times[node].push_back(e["dur"].get<double>() / 1000.0);
    args[node] = e["args"];
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.onnx [RUNS] [TOP] [PROFILE_PREFIX]\n", argv[0]);
    return 2;
  }
  const int runs = argc > 2 ? std::atoi(argv[2]) : 100, top = argc > 3 ? std::atoi(argv[3]) : 25;
  const std::string prefix = argc > 4 ? argv[4] : "/tmp/ort_profile";
  try {
    Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "ort_profile");
    Ort::SessionOptions so;
    so.SetIntraOpNumThreads(1);
    so.SetInterOpNumThreads(1);
    so.SetExecutionMode(ORT_SEQUENTIAL);
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    so.EnableProfiling(prefix.c_str());
    Ort::Session s(env, argv[1], so);
    RunModel(s, runs);
    Ort::AllocatorWithDefaultOptions a;
    const std::string path = s.EndProfilingAllocated(a).get();
    std::map<std::string, std::vector<double>> times;
    std::map<std::string, nlohmann::json> args;
    ReadNodeTimes(path, times, args);
    std::map<std::string, double> by_op;
    std::vector<std::pair<double, std::string>> nodes;
    double total = 0;
    for (const auto& [node, t] : times) {
      const double m = Median(t);
      total += m;
      by_op[args[node].value("op_name", "?")] += m;
      nodes.emplace_back(m, node);
    }
    std::printf("%s: %d runs, sum of node medians %.3f ms (profile: %s)\n", argv[1], runs, total,
                path.c_str());
    std::vector<std::pair<double, std::string>> ops;
    for (const auto& [op, t] : by_op) ops.emplace_back(t, op);
    std::sort(ops.rbegin(), ops.rend());
    for (const auto& [t, op] : ops) std::printf("  %-28s %8.3f ms\n", op.c_str(), t);
    std::sort(nodes.rbegin(), nodes.rend());
    std::printf("slowest nodes:\n");
    for (int i = 0; i < top && i < static_cast<int>(nodes.size()); ++i) {
      const auto& ar = args[nodes[i].second];
      std::printf("  %-50s %-20s %7.3f ms  %s -> %s\n", nodes[i].second.c_str(),
                  ar.value("op_name", "?").c_str(), nodes[i].first,
                  Shapes(ar.value("input_type_shape", nlohmann::json::array())).c_str(),
                  Shapes(ar.value("output_type_shape", nlohmann::json::array())).c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ort_profile: %s\n", e.what());
    return 1;
  }
  return 0;
}
