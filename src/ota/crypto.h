// Cryptographic primitives of the OTA trust chain: Ed25519 signatures (libsodium) and SHA-256
// (OpenSSL). Keys and signatures travel as lower-case hex; a key id is the SHA-256 of the raw
// public key, so a verifier recomputes it instead of trusting a label.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/status.h"

namespace tend::ota {

struct KeyPair {
  std::string keyid;        // hex SHA-256 of the raw 32-byte public key
  std::string public_hex;   // 32 bytes
  std::string private_hex;  // 64 bytes (libsodium secret key: seed || public)
};

std::string ToHex(std::span<const uint8_t> bytes);
Result<std::string> FromHex(const std::string& hex, const std::string& what);

std::string Sha256Hex(std::span<const uint8_t> bytes);
std::string Sha256Hex(const std::string& bytes);

// Key id for a hex public key, after checking it is a well-formed Ed25519 public key.
Result<std::string> KeyIdOf(const std::string& public_hex);

Result<KeyPair> GenerateKeyPair();
Result<std::string> SignHex(const std::string& message, const KeyPair& key);
// True only for a valid signature of `message` by `public_hex`; malformed inputs are false.
bool VerifyHex(const std::string& message, const std::string& sig_hex,
               const std::string& public_hex);

// Key files: {"keytype":"ed25519","keyid":..,"public":..,"private":..} (private, mode 0600) and
// the same without "private" (public).
Status WriteKeyPair(const KeyPair& key, const std::string& private_path,
                    const std::string& public_path);
Result<KeyPair> ReadPrivateKey(const std::string& path);
Result<KeyPair> ReadPublicKey(const std::string& path);  // private_hex stays empty

}  // namespace tend::ota
