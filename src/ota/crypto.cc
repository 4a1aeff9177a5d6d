#include "ota/crypto.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/json.h"

namespace tend::ota {
namespace {

Status InitSodium() {
  if (sodium_init() < 0) return Fail(Error::Internal("libsodium: sodium_init failed"));
  return Ok();
}

}  // namespace

std::string ToHex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

Result<std::string> FromHex(const std::string& hex, const std::string& what) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;  // upper case is refused: one spelling per key keeps key ids unique
  };
  if (hex.size() % 2 != 0) return Fail(Error::Corrupt(what + ": odd-length hex string"));
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return Fail(Error::Corrupt(what + ": not lower-case hex"));
    out[i] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::string Sha256Hex(std::span<const uint8_t> bytes) {
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return ToHex(std::span<const uint8_t>(md, len));
}

std::string Sha256Hex(const std::string& bytes) {
  return Sha256Hex(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

Result<std::string> KeyIdOf(const std::string& public_hex) {
  TEND_ASSIGN_OR_RETURN(std::string raw, FromHex(public_hex, "public key"));
  if (raw.size() != crypto_sign_PUBLICKEYBYTES) {
    return Fail(Error::Corrupt("public key: expected 32 bytes, got " + std::to_string(raw.size())));
  }
  return Sha256Hex(raw);
}

Result<KeyPair> GenerateKeyPair() {
  TEND_RETURN_NOT_OK(InitSodium());
  uint8_t pk[crypto_sign_PUBLICKEYBYTES];
  uint8_t sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_keypair(pk, sk);
  KeyPair kp;
  kp.public_hex = ToHex(pk);
  kp.private_hex = ToHex(sk);
  sodium_memzero(sk, sizeof sk);
  TEND_ASSIGN_OR_RETURN(kp.keyid, KeyIdOf(kp.public_hex));
  return kp;
}

Result<std::string> SignHex(const std::string& message, const KeyPair& key) {
  TEND_RETURN_NOT_OK(InitSodium());
  TEND_ASSIGN_OR_RETURN(std::string sk, FromHex(key.private_hex, "private key " + key.keyid));
  if (sk.size() != crypto_sign_SECRETKEYBYTES) {
    return Fail(Error::Corrupt("private key " + key.keyid + ": expected 64 bytes"));
  }
  uint8_t sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const uint8_t*>(message.data()),
                       message.size(), reinterpret_cast<const uint8_t*>(sk.data()));
  sodium_memzero(sk.data(), sk.size());
  return ToHex(sig);
}

bool VerifyHex(const std::string& message, const std::string& sig_hex,
               const std::string& public_hex) {
  if (!InitSodium()) return false;
  auto sig = FromHex(sig_hex, "signature");
  auto pk = FromHex(public_hex, "public key");
  if (!sig || !pk || sig->size() != crypto_sign_BYTES || pk->size() != crypto_sign_PUBLICKEYBYTES) {
    return false;
  }
  return crypto_sign_verify_detached(reinterpret_cast<const uint8_t*>(sig->data()),
                                     reinterpret_cast<const uint8_t*>(message.data()),
                                     message.size(),
                                     reinterpret_cast<const uint8_t*>(pk->data())) == 0;
}

Status WriteKeyPair(const KeyPair& key, const std::string& private_path,
                    const std::string& public_path) {
  nlohmann::json pub = {{"keytype", "ed25519"}, {"keyid", key.keyid}, {"public", key.public_hex}};
  nlohmann::json priv = pub;
  priv["private"] = key.private_hex;
  // Create the private file 0600 before any secret is written to it.
  int fd = ::open(private_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Fail(fs::ErrnoError("create " + private_path, errno));
  std::string text = priv.dump(2) + "\n";
  ssize_t n = ::write(fd, text.data(), text.size());
  int e = errno;
  bool ok = n == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return Fail(fs::ErrnoError("write " + private_path, e));
  return fs::WriteFileAtomic(public_path, pub.dump(2) + "\n");
}

namespace {

Result<KeyPair> ReadKey(const std::string& path, bool need_private) {
  TEND_ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path));
  auto parsed = tend::json::ParseJson(text, path, {1 << 20, 8});
  if (!parsed) return Fail(parsed.error());
  nlohmann::json& j = *parsed;
  if (!j.is_object()) {
    return Fail(Error::Corrupt(path + ": not a JSON key file"));
  }
  if (j.value("keytype", "") != "ed25519") {
    return Fail(Error::Unsupported(path + ": keytype must be \"ed25519\""));
  }
  if (!j.contains("public") || !j["public"].is_string()) {
    return Fail(Error::Corrupt(path + ": missing \"public\""));
  }
  KeyPair kp;
  kp.public_hex = j["public"].get<std::string>();
  auto id = KeyIdOf(kp.public_hex);
  if (!id) return Fail(id.error().Wrap(path));
  kp.keyid = *id;
  if (need_private) {
    if (!j.contains("private") || !j["private"].is_string()) {
      return Fail(Error::Invalid(path + ": not a private key file (no \"private\")"));
    }
    kp.private_hex = j["private"].get<std::string>();
    auto sk = FromHex(kp.private_hex, path + ": private key");
    if (!sk) return Fail(sk.error());
    // libsodium's secret key ends with its public key: a mismatched pair would sign junk.
    if (sk->size() != crypto_sign_SECRETKEYBYTES ||
        ToHex(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(sk->data()) + 32, 32)) !=
            kp.public_hex) {
      return Fail(Error::Corrupt(path + ": private key does not match its public key"));
    }
  }
  return kp;
}

}  // namespace

Result<KeyPair> ReadPrivateKey(const std::string& path) { return ReadKey(path, true); }
Result<KeyPair> ReadPublicKey(const std::string& path) { return ReadKey(path, false); }

}  // namespace tend::ota
