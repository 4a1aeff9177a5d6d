// Sink "decision_log": every decision as a JSON line in a rotated local file
// (agent.decision_log, per asset or shared), written by its own thread.
#include <map>

#include "agent/decision_log.h"
#include "core/log.h"
#include "runtime/decision_queue.h"
#include "runtime/spec.h"

namespace tend::runtime {
namespace {

class DecisionLogSink final : public Sink {
 public:
  DecisionLogSink(int64_t max_bytes, int keep)
      : max_bytes_(max_bytes),
        keep_(keep),
        queue_(
            "decision log", 4096, [this](const Decision& d, int tag) { Write(d, tag); },
            [this] { FlushAll(); }) {}

  Result<DecisionSink*> ForAsset(const AssetContext& asset) override {
    const std::string& path = asset.settings->GetString("agent.decision_log");
    if (path.empty()) return static_cast<DecisionSink*>(nullptr);
    int tag = -1;
    for (size_t i = 0; i < logs_.size(); ++i) {
      if (paths_[i] == path) tag = static_cast<int>(i);
    }
    if (tag < 0) {
      TEND_ASSIGN_OR_RETURN(auto log, agent::DecisionLog::Open(path, max_bytes_, keep_));
      logs_.push_back(std::move(log));
      paths_.push_back(path);
      tag = static_cast<int>(logs_.size() - 1);
    }
    adapters_.push_back(std::make_unique<Adapter>(this, tag, asset.lossless));
    return static_cast<DecisionSink*>(adapters_.back().get());
  }
  Status Start() override {
    queue_.Start();
    return Ok();
  }
  void Stop() override {
    queue_.Stop();
    FlushAll();
  }
  void Report(nlohmann::json& summary) const override {
    if (queue_.dropped() > 0) summary["decision_log_dropped"] = queue_.dropped();
  }

 private:
  struct Adapter final : DecisionSink {
    Adapter(DecisionLogSink* s, int t, bool l) : sink(s), tag(t), lossless(l) {}
    void OnDecision(const Decision& d) override { sink->queue_.Push(d, tag, lossless); }
    DecisionLogSink* sink;
    int tag;
    bool lossless;
  };

  void Write(const Decision& d, int tag) {
    line_ = agent::DecisionJson(d, d.asset_id).dump();
    auto st = logs_[static_cast<size_t>(tag)]->Append(line_);
    if (!st) TEND_LOG_ERROR("{}", st.error().message);
  }
  void FlushAll() {
    for (auto& l : logs_) {
      auto st = l->Flush();
      if (!st) TEND_LOG_ERROR("{}", st.error().message);
    }
  }

  const int64_t max_bytes_;
  const int keep_;
  std::vector<std::unique_ptr<agent::DecisionLog>> logs_;
  std::vector<std::string> paths_;
  std::vector<std::unique_ptr<Adapter>> adapters_;
  std::string line_;  // writer thread only
  DecisionQueue queue_;
};

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(sink_decision_log) {
  using namespace tend;
  runtime::SinkDescriptor d;
  d.name = "decision_log";
  d.description = "JSON line per decision in a rotated local file (agent.decision_log)";
  d.keys = {
      SettingDef::Path("agent.decision_log", "", "JSONL decision log (rotated; \"\" = none)")
          .Flag("--decision-log")
          .PerAsset("decision_log"),
      SettingDef::Int("agent.decision_log_max_bytes", 64ll << 20, 4096, 1e12,
                      "Rotate the decision log at this size"),
      SettingDef::Int("agent.decision_log_keep", 5, 1, 1000, "Rotated decision logs kept"),
  };
  d.create = [](runtime::DeviceContext& ctx) -> Result<std::unique_ptr<runtime::Sink>> {
    return std::unique_ptr<runtime::Sink>(std::make_unique<runtime::DecisionLogSink>(
        ctx.settings->GetInt("agent.decision_log_max_bytes"),
        static_cast<int>(ctx.settings->GetInt("agent.decision_log_keep"))));
  };
  return registry.AddSink(std::move(d));
}
