// OTA metadata as a registry (or an attacker in its place) serves it: every way the updater reads
// one document — a pinned root, the next root of a rotation, timestamp.json, targets.json (pinned
// to these very bytes), the device's own state file — plus the field parsers run directly on the
// signed part, signatures or not. Must never crash; whatever verifies must be well-formed.
//
// The trusted root is made from a fixed test key, so the seeds (signed with it) pass their
// signature checks and mutations reach what comes after. Regenerate the seeds with
//   TEND_FUZZ_WRITE_SEEDS=fuzz/corpus/fuzz_ota_metadata build/fuzz/fuzz_ota_metadata
#include <sodium.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/fs.h"
#include "core/json.h"
#include "fuzz_util.h"
#include "ota/registry.h"
#include "ota/trust.h"
#include "ota/updater.h"

namespace {

using namespace tend::ota;

constexpr int64_t kNow = 1800000000;  // 2027-01-15
KeyPair g_key;
RootMeta g_root;

KeyPair FixedKey(uint8_t fill) {
  unsigned char seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES],
      sk[crypto_sign_SECRETKEYBYTES];
  for (auto& b : seed) b = fill;
  if (sodium_init() < 0) tend::fuzz::Violated("sodium_init");
  crypto_sign_seed_keypair(pk, sk, seed);
  KeyPair k;
  k.public_hex = ToHex(pk);
  k.private_hex = ToHex(sk);
  k.keyid = *KeyIdOf(k.public_hex);
  return k;
}

// root.json, 2.root.json (rotated to a second key), targets.json and timestamp.json.
void WriteSeeds(const std::string& dir) {
  const std::string reg = dir + "/.registry";
  (void)tend::fs::MakeDirs(reg);
  KeyPair next = FixedKey(2);
  if (!WriteRoot(reg, g_root, {g_key})) tend::fuzz::Violated("write root");
  (void)tend::fs::WriteFileAtomic(reg + "/model.onnx", std::string("not really a model"));
  PublishOptions p{reg + "/model.onnx", "press", 3, {"x86-cpu-fp32"}, 0.75, kNow};
  if (!Publish(reg, p, {g_key})) tend::fuzz::Violated("publish");
  for (const char* f : {"root.json", "targets.json", "timestamp.json"}) {
    (void)tend::fs::WriteFileAtomic(dir + "/" + f, *tend::fs::ReadFile(reg + "/" + f));
  }
  RootMeta r2 = MakeRoot({next}, 1, 2, kNow + 365 * kDay);
  if (!WriteRoot(reg, r2, {g_key, next})) tend::fuzz::Violated("rotate root");
  (void)tend::fs::WriteFileAtomic(dir + "/2.root.json", *tend::fs::ReadFile(reg + "/2.root.json"));
  std::error_code ec;
  std::filesystem::remove_all(reg, ec);
}

void ParseFields(std::string_view text) {
  auto env = ParseEnvelope(text, "fuzz");
  if (!env) return;
  TEND_FUZZ_CHECK(env->signed_part.is_object());
  (void)CanonicalJson(env->signed_part);
  if (auto r = ParseRoot(env->signed_part, "fuzz")) {
    for (const auto& [role, rk] : r->roles) {
      TEND_FUZZ_CHECK(rk.threshold >= 1 && rk.threshold <= int64_t(rk.keyids.size()));
    }
  }
  if (auto t = ParseTargets(env->signed_part, "fuzz")) {
    for (const auto& target : t->targets) TEND_FUZZ_CHECK(CheckTargetPath(target.path));
    (void)SelectTarget(*t, "press", "x86-cpu-fp32");
  }
  (void)ParseTimestamp(env->signed_part, "fuzz");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_key = FixedKey(1);
  g_root = MakeRoot({g_key}, 1, 1, kNow + 365 * kDay);
  if (const char* dir = std::getenv("TEND_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = tend::fuzz::AsText(data, size);
  ParseFields(text);
  if (auto r = VerifyPinnedRoot(text)) TEND_FUZZ_CHECK(r->version >= 1);
  if (auto r = VerifyRootUpdate(g_root, text)) TEND_FUZZ_CHECK(r->version == 2);
  if (auto ts = VerifyTimestamp(g_root, text, 0, kNow)) TEND_FUZZ_CHECK(ts->expires > kNow);
  TimestampMeta pin;  // as if a verified timestamp pinned exactly these bytes
  pin.targets_version = 1;
  pin.targets_length = static_cast<int64_t>(size);
  pin.targets_sha256 = Sha256Hex(std::string(text));
  for (int64_t v = 1; v <= 2; ++v) {
    pin.targets_version = v;
    if (auto t = VerifyTargets(g_root, pin, text, 0, kNow)) TEND_FUZZ_CHECK(t->version == v);
  }
  // The device's state file goes through the same bounded parser.
  if (auto j = tend::json::ParseJson(text, "state", kMetadataJsonLimits)) {
    if (auto s = OtaState::FromJson(*j, "state")) {
      (void)s->ToJson().dump();
      (void)StateStatusJson(*s, kNow, 86400).dump();
    }
  }
  return 0;
}
