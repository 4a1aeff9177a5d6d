// A test component added the way a user adds one: this file plus one tend_add_component() line.
// Event stage "stamp": tags every event of every asset with part_id = stamp.base + the event's
// index (a stand-in for a barcode reader or a PLC's part tracking), so a test can see the tag
// reach the decisions.
#include "runtime/registry.h"

namespace {

class Stamp final : public tend::runtime::Stage, public tend::runtime::EventStage {
 public:
  explicit Stamp(int64_t base) : base_(base) {}
  tend::Result<tend::runtime::EventStage*> ForAsset(const tend::runtime::AssetContext&) override {
    return static_cast<tend::runtime::EventStage*>(this);
  }
  void OnEvent(tend::EventView& ev, std::chrono::steady_clock::duration) override {
    ev.part_id = base_ + ev.index;
  }

 private:
  int64_t base_;
};

}  // namespace

TEND_COMPONENT(stage_stamp) {
  using namespace tend;
  runtime::StageDescriptor d;
  d.name = "stamp";
  d.description = "test: part_id = stamp.base + event index on every event";
  d.keys = {SettingDef::Int("stamp.base", -1, 0, 1e12, "First part number (-1: off)")
                .Special({-1})
                .Flag("--stamp")};
  d.create = [](runtime::DeviceContext& ctx) -> Result<std::unique_ptr<runtime::Stage>> {
    const int64_t base = ctx.settings->GetInt("stamp.base");
    if (base < 0) return std::unique_ptr<runtime::Stage>();
    return std::unique_ptr<runtime::Stage>(std::make_unique<Stamp>(base));
  };
  return registry.AddStage(std::move(d));
}
