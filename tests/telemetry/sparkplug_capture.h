// What a Sparkplug host sees: mosquitto_sub on spBv1.0/# (persistent session, QoS 1), payloads
// as hex, decoded by an independent codec (Eclipse Tahu's JavaScript sparkplug-payload in
// TEND_SPARKPLUG_JS_DIR, installed by the sparkplug_js_setup test).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "telemetry/test_support.h"

namespace tend::testing {

inline const std::string kJs = TEND_SPARKPLUG_JS_DIR;

// mosquitto_sub on spBv1.0/# (persistent session, QoS 1), payloads as hex, decoded by Tahu's codec.
class Capture {
 public:
  Capture(int port, std::string id) : port_(port), id_(std::move(id)) { dir_ = MakeTempDir("spb"); }
  ~Capture() {
    Stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void Start() {
    pid_ = Spawn({"/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(port_), "-q",
                  "1", "-c", "-i", id_, "-t", "spBv1.0/#", "-F", "%r %q %t %x"},
                 dir_ + "/raw.txt", false);
  }
  void Stop() {
    if (pid_ > 0) StopChild(pid_);
    pid_ = -1;
  }
  // Every message so far, decoded.
  std::vector<nlohmann::json> Messages() const {
    std::string cmd = "node " + kJs + "/decode.js < " + dir_ + "/raw.txt > " + dir_ + "/dec.jsonl";
    if (std::system(cmd.c_str()) != 0) return {};
    std::vector<nlohmann::json> out;
    std::istringstream in(ReadAll(dir_ + "/dec.jsonl"));
    std::string line;
    while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
    return out;
  }
  std::vector<nlohmann::json> On(const std::string& type) const {
    std::vector<nlohmann::json> out;
    for (auto& m : Messages()) {
      if (Type(m) == type) out.push_back(m);
    }
    return out;
  }
  static std::string Type(const nlohmann::json& m) {
    auto t = m["topic"].get<std::string>();
    auto a = t.find('/', 8);
    return t.substr(a + 1, t.find('/', a + 1) - a - 1);
  }

 private:
  int port_;
  std::string id_, dir_;
  pid_t pid_ = -1;
};

inline const nlohmann::json* Metric(const nlohmann::json& msg, const std::string& name) {
  for (const auto& m : msg["payload"]["metrics"]) {
    if (m["name"] == name) return &m;
  }
  return nullptr;
}

}  // namespace tend::testing
