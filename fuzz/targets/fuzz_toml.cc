// A configuration file (tend.toml): parsed strictly, read through every typed getter for the keys
// the agent uses (right and wrong types), then checked for unknown keys. Must never crash or
// throw; errors are values naming the file and line.
#include <string>
#include <vector>

#include "core/config.h"
#include "fuzz_util.h"

namespace {

const char* const kKeys[] = {"agent.model",
                             "agent.source",
                             "agent.speed",
                             "agent.deadline_s",
                             "agent.fail_safe",
                             "agent.queue_windows",
                             "decide.debounce_k",
                             "decide.top_sensors",
                             "model.providers",
                             "model.warmup_runs",
                             "identity.asset",
                             "identity.device_id",
                             "mqtt.url",
                             "mqtt.version",
                             "mqtt.spool_max_bytes",
                             "mqtt.health_interval_s",
                             "metrics.port",
                             "ota.registry",
                             "ota.interval_s",
                             "ota.reference_normal",
                             "a",
                             "a.b",
                             "a.b.c",
                             "x.y"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto cfg = tend::Config::Parse(std::string(tend::fuzz::AsText(data, size)), "fuzz.toml");
  if (!cfg) {
    TEND_FUZZ_CHECK(cfg.error().message.rfind("fuzz.toml", 0) == 0);
    return 0;
  }
  for (const char* key : kKeys) {
    std::string s;
    bool b = false;
    int64_t i64 = 0;
    int i = 0;
    double d = 0;
    std::vector<std::string> vs;
    std::vector<double> vd;
    (void)cfg->Get(key, s);
    (void)cfg->Get(key, b);
    (void)cfg->Get(key, i64);
    (void)cfg->Get(key, i);
    (void)cfg->Get(key, d);
    (void)cfg->Get(key, vs);
    (void)cfg->Get(key, vd);
    (void)cfg->Has(key);
  }
  (void)cfg->CheckNoUnknownKeys();
  return 0;
}
