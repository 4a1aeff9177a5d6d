// A test component added the way a user adds one: this file plus one tend_add_component() line.
// Sink "tally": counts decisions and alerts per asset and writes them as JSON to tally.path when
// the run ends (a stand-in for a PLC link or an evidence store).
#include <fstream>
#include <map>
#include <mutex>

#include "runtime/registry.h"
#include "runtime/spec.h"

namespace {

class Tally final : public tend::runtime::Sink, public tend::DecisionSink {
 public:
  explicit Tally(std::string path) : path_(std::move(path)) {}
  tend::Result<tend::DecisionSink*> ForAsset(const tend::runtime::AssetContext&) override {
    return static_cast<tend::DecisionSink*>(this);
  }
  void OnDecision(const tend::Decision& d) override {
    std::lock_guard<std::mutex> lk(mu_);
    auto& c = counts_[d.asset_id];
    c.first++;
    if (d.is_alert) c.second++;
  }
  void Stop() override {
    std::lock_guard<std::mutex> lk(mu_);
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [asset, c] : counts_)
      j[asset] = {{"decisions", c.first}, {"alerts", c.second}};
    std::ofstream(path_) << j.dump() << "\n";
  }

 private:
  std::string path_;
  std::mutex mu_;
  std::map<std::string, std::pair<int64_t, int64_t>> counts_;
};

}  // namespace

TEND_COMPONENT(sink_tally) {
  using namespace tend;
  runtime::SinkDescriptor d;
  d.name = "tally";
  d.description = "test: decisions and alerts per asset, written to tally.path at the end";
  d.keys = {
      SettingDef::Path("tally.path", "", "Where the tally goes (\"\": no tally)").Flag("--tally")};
  d.create = [](runtime::DeviceContext& ctx) -> Result<std::unique_ptr<runtime::Sink>> {
    const std::string& path = ctx.settings->GetString("tally.path");
    if (path.empty()) return std::unique_ptr<runtime::Sink>();
    return std::unique_ptr<runtime::Sink>(std::make_unique<Tally>(path));
  };
  return registry.AddSink(std::move(d));
}
