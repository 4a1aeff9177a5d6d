#include "ota/crypto.h"

#include <gtest/gtest.h>

#include "ota_test_util.h"

namespace tend::ota {
namespace {

using testing::ScratchDir;

TEST(OtaCrypto, Sha256MatchesKnownVectors) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(Sha256Hex(std::string()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex(std::string("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(OtaCrypto, HexRoundTripAndRefusals) {
  std::string raw("\x00\x7f\xff\x10", 4);
  std::string hex =
      ToHex(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(raw.data()), 4));
  EXPECT_EQ(hex, "007fff10");
  EXPECT_EQ(*FromHex(hex, "x"), raw);
  EXPECT_FALSE(FromHex("abc", "x"));  // odd length
  EXPECT_FALSE(FromHex("zz", "x"));   // not hex
  EXPECT_FALSE(FromHex("AB", "x"));   // upper case: one spelling per key
}

TEST(OtaCrypto, SignVerify) {
  auto k = GenerateKeyPair();
  ASSERT_TRUE(k);
  EXPECT_EQ(k->keyid, *KeyIdOf(k->public_hex));
  auto sig = SignHex("hello", *k);
  ASSERT_TRUE(sig);
  EXPECT_TRUE(VerifyHex("hello", *sig, k->public_hex));
  EXPECT_FALSE(VerifyHex("hellp", *sig, k->public_hex));
  auto other = GenerateKeyPair();
  EXPECT_FALSE(VerifyHex("hello", *sig, other->public_hex));
  std::string flipped = *sig;
  flipped[0] = flipped[0] == '0' ? '1' : '0';
  EXPECT_FALSE(VerifyHex("hello", flipped, k->public_hex));
  EXPECT_FALSE(VerifyHex("hello", "", k->public_hex));
  EXPECT_FALSE(VerifyHex("hello", *sig, "00"));
}

TEST(OtaCrypto, KeyFiles) {
  ScratchDir d;
  auto k = GenerateKeyPair();
  ASSERT_TRUE(WriteKeyPair(*k, d / "k.key", d / "k.pub"));
  auto priv = ReadPrivateKey(d / "k.key");
  ASSERT_TRUE(priv) << priv.error().message;
  EXPECT_EQ(priv->private_hex, k->private_hex);
  EXPECT_EQ(priv->keyid, k->keyid);
  EXPECT_EQ(std::filesystem::status(d / "k.key").permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto pub = ReadPublicKey(d / "k.pub");
  ASSERT_TRUE(pub);
  EXPECT_TRUE(pub->private_hex.empty());
  // Never overwrite an existing private key.
  EXPECT_FALSE(WriteKeyPair(*k, d / "k.key", d / "k2.pub"));
  // A public file is not a private key.
  auto not_priv = ReadPrivateKey(d / "k.pub");
  ASSERT_FALSE(not_priv);
  EXPECT_NE(not_priv.error().message.find("not a private key"), std::string::npos);
  // A private key whose halves do not belong together.
  auto other = GenerateKeyPair();
  KeyPair mixed = *k;
  mixed.public_hex = other->public_hex;
  mixed.keyid = other->keyid;
  ASSERT_TRUE(WriteKeyPair(mixed, d / "m.key", d / "m.pub"));
  auto bad = ReadPrivateKey(d / "m.key");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("does not match"), std::string::npos);
  testing::WriteText(d / "junk.key", "{not json");
  EXPECT_EQ(ReadPrivateKey(d / "junk.key").error().code, ErrorCode::kCorrupt);
}

}  // namespace
}  // namespace tend::ota
