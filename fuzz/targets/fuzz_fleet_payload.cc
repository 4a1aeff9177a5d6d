// A message a device (or anyone who can publish) sends to the fleet: the first line is the
// topic, the rest the payload. Parsed, clock-checked and stored in an in-memory SQLite fleet
// store. Must never crash; what is accepted has ids inside the id alphabet and stores cleanly.
#include <memory>

#include "fleet/ingest.h"
#include "fleet/message.h"
#include "fleet/store.h"
#include "fuzz_util.h"
#include "telemetry/identity.h"

namespace {

using namespace tend::fleet;

constexpr int64_t kNowMs = 1800000000000;
std::unique_ptr<FleetStore> g_store;
DuplicateDeviceDetector g_duplicates(600000);

bool IdOk(const std::string& s) { return s.empty() || tend::telemetry::ValidateId("id", s); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int64_t runs = 0;
  if (g_store && ++runs % 5000 == 0) {
    // Read back what was stored (the paths `tend fleet status` uses), then start afresh so
    // memory stays bounded over millions of runs.
    TEND_FUZZ_CHECK(g_store->Devices().has_value());
    TEND_FUZZ_CHECK(g_store->Alerts(0, 1000).has_value());
    TEND_FUZZ_CHECK(g_store->OtaEvents(0, "", 1000).has_value());
    g_store.reset();
  }
  if (!g_store) {
    auto s = OpenSqliteStore(":memory:");
    if (!s) tend::fuzz::Violated("cannot open an in-memory fleet store");
    g_store = std::move(*s);
  }
  const std::string_view text = tend::fuzz::AsText(data, size);
  const size_t nl = text.find('\n');
  const std::string topic(text.substr(0, nl));
  const std::string payload(nl == std::string_view::npos ? "" : text.substr(nl + 1));
  ParseOutcome o = ParseFleetMessage(topic, payload, 64 * 1024);
  if (o.reason == Malformed::kNone) {
    o.reason = CheckClock(o.message, kNowMs, kDefaultMaxClockSkewMs, &o.detail);
  }
  if (o.reason != Malformed::kNone) {
    TEND_FUZZ_CHECK(!o.detail.empty());
    (void)MalformedName(o.reason);
    return 0;
  }
  const FleetMessage& m = o.message;
  TEND_FUZZ_CHECK(IdOk(m.factory_id) && IdOk(m.line_id) && IdOk(m.asset_id) && IdOk(m.device_id));
  TEND_FUZZ_CHECK(IsSafeText(m.model_version));
  if (m.kind == tend::telemetry::TopicKind::kStatus && !m.instance.empty()) {
    (void)g_duplicates.OnOnline(m.device_id, m.instance, m.session_ms, kNowMs);
  }
  auto stored = g_store->Store(m, kNowMs);
  TEND_FUZZ_CHECK(stored.has_value());
  return 0;
}
