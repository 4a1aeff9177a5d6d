// Metadata-level attacks against the pure verification functions (no I/O).
#include "ota/trust.h"

#include <gtest/gtest.h>

#include "ota/registry.h"
#include "ota_test_util.h"

namespace tend::ota {
namespace {

using nlohmann::json;
using testing::kT0;
using testing::NewKey;

std::string Signed(const json& signed_part, const std::vector<KeyPair>& keys) {
  auto s = SignEnvelope(signed_part, keys);
  EXPECT_TRUE(s);
  return *s;
}

void ExpectSecurity(const Status& s, const std::string& needle) {
  ASSERT_FALSE(s) << "expected a refusal containing: " << needle;
  EXPECT_EQ(s.error().code, ErrorCode::kSecurity) << s.error().message;
  EXPECT_NE(s.error().message.find(needle), std::string::npos) << s.error().message;
}
template <typename T>
void ExpectSecurity(const Result<T>& r, const std::string& needle) {
  ExpectSecurity(r ? Ok() : Status(Fail(r.error())), needle);
}

TargetsMeta OneTarget(int64_t version, const std::string& sha, int64_t model_version = 1) {
  TargetsMeta tm;
  tm.version = version;
  tm.expires = kT0 + 10 * kDay;
  TargetInfo t;
  t.sha256 = sha;
  t.path = "files/" + sha + ".onnx";
  t.length = 100;
  t.name = "m";
  t.version = model_version;
  t.profiles = {"x86-cpu-fp32"};
  t.min_quality = 0.75;
  tm.targets.push_back(t);
  return tm;
}

TimestampMeta Pin(const std::string& targets_bytes, int64_t targets_version, int64_t version = 1) {
  TimestampMeta ts;
  ts.version = version;
  ts.expires = kT0 + kDay;
  ts.targets_version = targets_version;
  ts.targets_length = static_cast<int64_t>(targets_bytes.size());
  ts.targets_sha256 = Sha256Hex(targets_bytes);
  return ts;
}

TEST(OtaTrust, CanonicalJsonIgnoresKeyOrderAndWhitespace) {
  json a = json::parse(R"({"b": 1, "a": {"d": [1, 2], "c": "x"}})");
  json b = json::parse(R"({"a":{"c":"x","d":[1,2]},"b":1})");
  EXPECT_EQ(CanonicalJson(a), CanonicalJson(b));
  EXPECT_EQ(CanonicalJson(a), R"({"a":{"c":"x","d":[1,2]},"b":1})");
}

TEST(OtaTrust, TimeRoundTrip) {
  EXPECT_EQ(FormatTime(kT0), "2027-01-15T08:00:00Z");
  EXPECT_EQ(*ParseTime("2027-01-15T08:00:00Z", "t"), kT0);
  EXPECT_FALSE(ParseTime("2027-01-15 08:00:00", "t"));
  EXPECT_FALSE(ParseTime("2027-01-15T08:00:00+01:00", "t"));
  EXPECT_FALSE(ParseTime("2027-13-15T08:00:00Z", "t"));
}

TEST(OtaTrust, TargetPathSanitising) {
  EXPECT_TRUE(CheckTargetPath("files/abc.onnx"));
  EXPECT_TRUE(CheckTargetPath("timestamp.json"));
  for (const char* bad : {"../etc/passwd", "files/../../x", "/etc/passwd", "files//x", "files/./x",
                          "files/x\\..\\y", "files/a b", "", "files/", "..", "files/x%2e"}) {
    ExpectSecurity(CheckTargetPath(bad), "target path");
  }
}

TEST(OtaTrust, PinnedRootNeedsItsOwnThreshold) {
  KeyPair a = NewKey(), b = NewKey(), c = NewKey();
  RootMeta root = MakeRoot({a, b, c}, 2, 1, kT0 + 365 * kDay);
  EXPECT_TRUE(VerifyPinnedRoot(Signed(ToJson(root), {a, b})));
  ExpectSecurity(VerifyPinnedRoot(Signed(ToJson(root), {a})), "1 valid signature(s)");
  // Unsigned metadata.
  json unsigned_env = {{"signed", ToJson(root)}};
  ExpectSecurity(VerifyPinnedRoot(unsigned_env.dump()), "unsigned");
  json empty_sigs = {{"signed", ToJson(root)}, {"signatures", json::array()}};
  ExpectSecurity(VerifyPinnedRoot(empty_sigs.dump()), "0 valid signature(s)");
}

TEST(OtaTrust, OneSignatureCountedTwiceDoesNotReachTheThreshold) {
  KeyPair a = NewKey(), b = NewKey();
  RootMeta root = MakeRoot({a, b}, 2, 1, kT0 + 365 * kDay);
  json env = json::parse(Signed(ToJson(root), {a}));
  env["signatures"].push_back(env["signatures"][0]);  // same keyid, same signature
  ExpectSecurity(VerifyPinnedRoot(env.dump()), "1 valid signature(s)");

  // The same public key listed under a second, made-up key id is refused outright.
  json s = ToJson(root);
  std::string fake_id = std::string(64, 'a');
  s["keys"][fake_id] = {{"keytype", "ed25519"}, {"public", a.public_hex}};
  s["roles"]["root"]["keyids"].push_back(fake_id);
  auto sig = SignHex(CanonicalJson(s), a);
  json twice = {
      {"signed", s},
      {"signatures", {{{"keyid", a.keyid}, {"sig", *sig}}, {{"keyid", fake_id}, {"sig", *sig}}}}};
  ExpectSecurity(VerifyPinnedRoot(twice.dump()), "not the SHA-256 of its public key");
}

TEST(OtaTrust, WrongKeyAndFlippedBit) {
  KeyPair a = NewKey(), mallory = NewKey();
  RootMeta root = MakeRoot({a}, 1, 1, kT0 + 365 * kDay);
  std::string tbytes = Signed(ToJson(OneTarget(1, std::string(64, 'c'))), {a});
  TimestampMeta ts = Pin(tbytes, 1);
  EXPECT_TRUE(VerifyTimestamp(root, Signed(ToJson(ts), {a}), 0, kT0));
  // Signed by a key the root does not know.
  ExpectSecurity(VerifyTimestamp(root, Signed(ToJson(ts), {mallory}), 0, kT0),
                 "0 valid signature(s)");
  // Mallory's signature labelled with a's key id.
  json forged = json::parse(Signed(ToJson(ts), {mallory}));
  forged["signatures"][0]["keyid"] = a.keyid;
  ExpectSecurity(VerifyTimestamp(root, forged.dump(), 0, kT0), "0 valid signature(s)");
  // One flipped bit in the signed part: the value changes, the signature no longer matches.
  json flipped = json::parse(Signed(ToJson(ts), {a}));
  flipped["signed"]["meta"]["targets.json"]["length"] =
      flipped["signed"]["meta"]["targets.json"]["length"].get<int64_t>() ^ 1;
  ExpectSecurity(VerifyTimestamp(root, flipped.dump(), 0, kT0), "0 valid signature(s)");
  // A role's document presented as another role's.
  ExpectSecurity(VerifyTimestamp(root, tbytes, 0, kT0), "_type");
}

TEST(OtaTrust, TimestampExpiryAndRollback) {
  KeyPair a = NewKey();
  RootMeta root = MakeRoot({a}, 1, 1, kT0 + 365 * kDay);
  std::string tbytes = Signed(ToJson(OneTarget(1, std::string(64, 'c'))), {a});
  std::string ts = Signed(ToJson(Pin(tbytes, 1, 5)), {a});
  EXPECT_TRUE(VerifyTimestamp(root, ts, 5, kT0));
  ExpectSecurity(VerifyTimestamp(root, ts, 6, kT0), "rollback");
  ExpectSecurity(VerifyTimestamp(root, ts, 0, kT0 + kDay), "expired");
  ExpectSecurity(VerifyTimestamp(root, ts, 0, kT0 + 2 * kDay), "expired");
}

TEST(OtaTrust, TargetsMustBeTheBytesTheTimestampPins) {
  KeyPair a = NewKey();
  RootMeta root = MakeRoot({a}, 1, 1, kT0 + 365 * kDay);
  std::string t1 = Signed(ToJson(OneTarget(1, std::string(64, 'c'))), {a});
  std::string t2 = Signed(ToJson(OneTarget(2, std::string(64, 'd'), 2)), {a});
  TimestampMeta pins2 = Pin(t2, 2);
  auto ok = VerifyTargets(root, pins2, t2, 0, kT0);
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_EQ(ok->targets.size(), 1u);
  EXPECT_EQ(ok->targets[0].min_quality, 0.75);
  // Mix-and-match: an older, correctly signed targets file under the current timestamp.
  ExpectSecurity(VerifyTargets(root, pins2, t1, 0, kT0), "targets.json");
  // A flipped bit anywhere in targets.json.
  std::string flipped = t2;
  flipped[flipped.size() / 2] ^= 1;
  ExpectSecurity(VerifyTargets(root, pins2, flipped, 0, kT0), "SHA-256");
  // Version floor (rollback) and expiry.
  ExpectSecurity(VerifyTargets(root, pins2, t2, 3, kT0), "rollback");
  ExpectSecurity(VerifyTargets(root, pins2, t2, 0, kT0 + 10 * kDay), "expired");
  // The timestamp pins version 3 but the bytes say 2.
  TimestampMeta lying = pins2;
  lying.targets_version = 3;
  ExpectSecurity(VerifyTargets(root, lying, t2, 0, kT0), "timestamp pins 3");
}

TEST(OtaTrust, DotDotTargetPathIsRefusedEvenWhenSigned) {
  KeyPair a = NewKey();
  RootMeta root = MakeRoot({a}, 1, 1, kT0 + 365 * kDay);
  json t = ToJson(OneTarget(1, std::string(64, 'c')));
  json entry = t["targets"].begin().value();
  t["targets"] = {{"../../etc/cron.d/evil", entry}};
  std::string tbytes = Signed(t, {a});
  ExpectSecurity(VerifyTargets(root, Pin(tbytes, 1), tbytes, 0, kT0), "'.' or '..'");
}

TEST(OtaTrust, RootRotation) {
  KeyPair old1 = NewKey(), new1 = NewKey(), mallory = NewKey();
  RootMeta v1 = MakeRoot({old1}, 1, 1, kT0 + 365 * kDay);
  RootMeta v2 = MakeRoot({new1}, 1, 2, kT0 + 365 * kDay);
  auto ok = VerifyRootUpdate(v1, Signed(ToJson(v2), {old1, new1}));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->version, 2);
  // Signed only by the new key: an attacker's self-made root.
  ExpectSecurity(VerifyRootUpdate(v1, Signed(ToJson(v2), {new1})), "by the trusted root");
  // Signed only by the old key: the new keys never proved possession.
  ExpectSecurity(VerifyRootUpdate(v1, Signed(ToJson(v2), {old1})), "by its own keys");
  // Skipping a version.
  RootMeta v3 = MakeRoot({new1}, 1, 3, kT0 + 365 * kDay);
  ExpectSecurity(VerifyRootUpdate(v1, Signed(ToJson(v3), {old1, new1})), "expected 2");
  // A stolen root key can mint the next root when the threshold is 1; a threshold of 2 stops it.
  RootMeta evil = MakeRoot({mallory}, 1, 2, kT0 + 365 * kDay);
  EXPECT_TRUE(VerifyRootUpdate(v1, Signed(ToJson(evil), {old1, mallory})));
  RootMeta v1_strict = MakeRoot({old1, new1}, 2, 1, kT0 + 365 * kDay);
  ExpectSecurity(VerifyRootUpdate(v1_strict, Signed(ToJson(evil), {old1, mallory})),
                 "by the trusted root");
}

TEST(OtaTrust, ProfileSelectionAndBytes) {
  TargetsMeta tm = OneTarget(1, std::string(64, 'c'));
  TargetInfo jetson = tm.targets[0];
  jetson.path = "files/" + std::string(64, 'e') + ".onnx";
  jetson.version = 7;
  jetson.profiles = {"jetson-agx-orin-int8"};
  tm.targets.push_back(jetson);
  auto x86 = SelectTarget(tm, "m", "x86-cpu-fp32");
  ASSERT_TRUE(x86);
  EXPECT_EQ(x86->version, 1);  // v7 exists, but not for this profile
  auto nuc = SelectTarget(tm, "m", "intel-nuc-openvino");
  EXPECT_EQ(nuc.error().code, ErrorCode::kNotFound);
  // The refusal says what is published, so a misconfigured device is one log line away.
  EXPECT_EQ(nuc.error().message,
            "targets.json: no release of model \"m\" for profile \"intel-nuc-openvino\" (its "
            "profiles: \"jetson-agx-orin-int8\", \"x86-cpu-fp32\")");
  auto other = SelectTarget(tm, "other", "x86-cpu-fp32");
  EXPECT_EQ(other.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(other.error().message,
            "targets.json: no release of model \"other\" (models published: \"m\")");

  std::string body = testing::FakeModel(1, 100);
  TargetInfo t = tm.targets[0];
  t.sha256 = Sha256Hex(body);
  std::vector<uint8_t> bytes(body.begin(), body.end());
  EXPECT_TRUE(VerifyTargetBytes(t, bytes));
  bytes[42] ^= 0x10;
  ExpectSecurity(VerifyTargetBytes(t, bytes), "SHA-256");
  bytes.push_back(0);
  ExpectSecurity(VerifyTargetBytes(t, bytes), "signed length");
}

TEST(OtaTrust, MalformedMetadataNamesTheField) {
  KeyPair a = NewKey();
  RootMeta root = MakeRoot({a}, 1, 1, kT0 + 365 * kDay);
  json s = ToJson(root);
  s["roles"]["targets"]["threshold"] = 0;
  auto r = VerifyPinnedRoot(Signed(s, {a}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("role targets: threshold 0"), std::string::npos)
      << r.error().message;
  s = ToJson(root);
  s.erase("expires");
  r = VerifyPinnedRoot(Signed(s, {a}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("missing field \"expires\""), std::string::npos);
  EXPECT_EQ(VerifyPinnedRoot("not json").error().code, ErrorCode::kCorrupt);
}

}  // namespace
}  // namespace tend::ota
