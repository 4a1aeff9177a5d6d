#include "fleet/pki.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/json.h"
#include "telemetry/identity.h"

namespace tend::fleet::pki {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(FILE* f) const { std::fclose(f); }
};
using Key = std::unique_ptr<EVP_PKEY, Free>;
using Cert = std::unique_ptr<X509, Free>;

std::string SslError(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return what + ": " + buf;
}

Status ValidName(const std::string& what, const std::string& v) {
  telemetry::Identity id{"f", "l", "a", v};
  auto st = id.Validate();
  if (!st) return Fail(Error::Invalid("pki: " + what + " '" + v + "' is not a valid identifier"));
  return Ok();
}

Result<Key> NewKey() {
  EVP_PKEY* k = EVP_EC_gen("P-256");
  if (!k) return Fail(Error::Internal(SslError("pki: generate EC key")));
  return Key(k);
}

Status WritePem(const std::string& path, EVP_PKEY* key, X509* cert) {
  std::string tmp = path + ".tmp";
  ::umask(077);
  std::unique_ptr<FILE, Free> f(std::fopen(tmp.c_str(), "w"));
  if (!f) return Fail(fs::ErrnoError("pki: write " + tmp, errno));
  if (key) {
    ::chmod(tmp.c_str(), 0600);
    if (!PEM_write_PrivateKey(f.get(), key, nullptr, nullptr, 0, nullptr, nullptr)) {
      return Fail(Error::Io(SslError("pki: write key " + path)));
    }
  } else {
    ::chmod(tmp.c_str(), 0644);
    if (!PEM_write_X509(f.get(), cert)) return Fail(Error::Io(SslError("pki: write " + path)));
  }
  if (std::fflush(f.get()) != 0) return Fail(fs::ErrnoError("pki: write " + tmp, errno));
  f.reset();
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Fail(fs::ErrnoError("pki: rename " + tmp, errno));
  }
  return Ok();
}

Result<Key> LoadKey(const std::string& path) {
  std::unique_ptr<FILE, Free> f(std::fopen(path.c_str(), "r"));
  if (!f) return Fail(fs::ErrnoError("pki: " + path + " (run `tend pki init` first?)", errno));
  EVP_PKEY* k = PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr);
  if (!k) return Fail(Error::Corrupt(SslError("pki: " + path)));
  return Key(k);
}

Result<Cert> LoadCert(const std::string& path) {
  std::unique_ptr<FILE, Free> f(std::fopen(path.c_str(), "r"));
  if (!f) return Fail(fs::ErrnoError("pki: " + path, errno));
  X509* c = PEM_read_X509(f.get(), nullptr, nullptr, nullptr);
  if (!c) return Fail(Error::Corrupt(SslError("pki: " + path)));
  return Cert(c);
}

Status AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return Fail(Error::Invalid(SslError("pki: extension '" + value + "'")));
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return Ok();
}

// Builds and signs a certificate for `key`; issuer == nullptr means self-signed.
Result<Cert> MakeCert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                      const CertOptions& o, const std::vector<std::pair<int, std::string>>& exts) {
  if (o.days < 1) return Fail(Error::Invalid("pki: --days must be >= 1"));
  Cert c(X509_new());
  X509_set_version(c.get(), 2);
  std::unique_ptr<BIGNUM, Free> bn(BN_new());
  BN_rand(bn.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY);
  BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(c.get()));
  const long back = static_cast<long>(o.backdate_days) * 86400L;
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -back);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), static_cast<long>(o.days) * 86400L - back);
  X509_set_pubkey(c.get(), key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("tend"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509* iss = issuer ? issuer : c.get();
  for (const auto& [nid, value] : exts) TEND_RETURN_NOT_OK(AddExt(c.get(), iss, nid, value));
  TEND_RETURN_NOT_OK(AddExt(c.get(), iss, NID_subject_key_identifier, "hash"));
  if (issuer)
    TEND_RETURN_NOT_OK(AddExt(c.get(), iss, NID_authority_key_identifier, "keyid:always"));
  if (!X509_sign(c.get(), issuer_key, EVP_sha256())) {
    return Fail(Error::Internal(SslError("pki: sign " + cn)));
  }
  return c;
}

Status IssueLeaf(const std::string& dir, const std::string& base, const std::string& cn,
                 const CertOptions& o, const std::vector<std::pair<int, std::string>>& exts) {
  TEND_ASSIGN_OR_RETURN(auto ca_key, LoadKey(dir + "/ca.key"));
  TEND_ASSIGN_OR_RETURN(auto ca, LoadCert(dir + "/ca.crt"));
  TEND_ASSIGN_OR_RETURN(auto key, NewKey());
  TEND_ASSIGN_OR_RETURN(auto cert, MakeCert(key.get(), cn, ca.get(), ca_key.get(), o, exts));
  TEND_RETURN_NOT_OK(WritePem(base + ".key", key.get(), nullptr));
  return WritePem(base + ".crt", nullptr, cert.get());
}

std::vector<std::pair<int, std::string>> ClientExts() {
  return {{NID_basic_constraints, "critical,CA:FALSE"},
          {NID_key_usage, "critical,digitalSignature"},
          {NID_ext_key_usage, "clientAuth"}};
}

}  // namespace

Status InitCa(const std::string& dir, const std::string& cn, const CertOptions& o) {
  TEND_RETURN_NOT_OK(fs::MakeDirs(dir));
  if (fs::Exists(dir + "/ca.key")) {
    return Fail(Error::Invalid("pki: " + dir + "/ca.key already exists; refusing to replace a CA"));
  }
  TEND_ASSIGN_OR_RETURN(auto key, NewKey());
  TEND_ASSIGN_OR_RETURN(auto cert, MakeCert(key.get(), cn, nullptr, key.get(), o,
                                            {{NID_basic_constraints, "critical,CA:TRUE"},
                                             {NID_key_usage, "critical,keyCertSign,cRLSign"}}));
  TEND_RETURN_NOT_OK(WritePem(dir + "/ca.key", key.get(), nullptr));
  TEND_RETURN_NOT_OK(WritePem(dir + "/ca.crt", nullptr, cert.get()));
  return WriteAcl(dir);
}

Status IssueBroker(const std::string& dir, const std::string& cn,
                   const std::vector<std::string>& sans, const CertOptions& o) {
  if (cn.empty()) return Fail(Error::Invalid("pki: broker CN is empty"));
  std::string san;
  for (const auto& s : sans) {
    if (s.rfind("DNS:", 0) != 0 && s.rfind("IP:", 0) != 0) {
      return Fail(Error::Invalid("pki: SAN '" + s + "' must start with DNS: or IP:"));
    }
    san += (san.empty() ? "" : ",") + s;
  }
  if (san.empty()) san = "DNS:" + cn;
  return IssueLeaf(dir, dir + "/broker", cn, o,
                   {{NID_basic_constraints, "critical,CA:FALSE"},
                    {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
                    {NID_ext_key_usage, "serverAuth"},
                    {NID_subject_alt_name, san}});
}

Status IssueDevice(const std::string& dir, const DeviceSpec& d, const CertOptions& o) {
  telemetry::Identity probe{d.factory_id, d.line_id, "a", d.device_id};
  TEND_RETURN_NOT_OK(probe.Validate());
  if (d.asset_ids.empty()) return Fail(Error::Invalid("pki: device needs at least one --asset"));
  for (const auto& a : d.asset_ids) TEND_RETURN_NOT_OK(ValidName("asset", a));
  if (d.device_id.rfind("fleet", 0) == 0) {
    return Fail(Error::Invalid("pki: device ids starting with 'fleet' are reserved for clients"));
  }
  TEND_RETURN_NOT_OK(fs::MakeDirs(dir + "/devices"));
  std::string base = dir + "/devices/" + d.device_id;
  TEND_RETURN_NOT_OK(IssueLeaf(dir, base, d.device_id, o, ClientExts()));
  nlohmann::json j = {{"device_id", d.device_id},
                      {"factory_id", d.factory_id},
                      {"line_id", d.line_id},
                      {"asset_ids", d.asset_ids}};
  TEND_RETURN_NOT_OK(fs::WriteFileAtomic(base + ".json", j.dump(2) + "\n"));
  return WriteAcl(dir);
}

Status IssueClient(const std::string& dir, const std::string& name, const CertOptions& o) {
  TEND_RETURN_NOT_OK(ValidName("client name", name));
  TEND_RETURN_NOT_OK(fs::MakeDirs(dir + "/clients"));
  std::string base = dir + "/clients/" + name;
  TEND_RETURN_NOT_OK(IssueLeaf(dir, base, name, o, ClientExts()));
  nlohmann::json j = {{"name", name}, {"read", "factory/#"}};
  TEND_RETURN_NOT_OK(fs::WriteFileAtomic(base + ".json", j.dump(2) + "\n"));
  return WriteAcl(dir);
}

Status Rotate(const std::string& dir, const std::string& id, const CertOptions& o) {
  TEND_RETURN_NOT_OK(ValidName("id", id));
  std::string base;
  for (const char* sub : {"/devices/", "/clients/"}) {
    if (fs::Exists(dir + sub + id + ".json")) base = dir + sub + id;
  }
  if (base.empty()) {
    return Fail(Error::NotFound("pki: no device or client '" + id + "' under " + dir));
  }
  std::string stamp = std::to_string(static_cast<int64_t>(std::time(nullptr)));
  for (const char* ext : {".crt", ".key"}) {
    std::string from = base + ext, to = base + ext + "." + stamp + ".old";
    if (fs::Exists(from) && std::rename(from.c_str(), to.c_str()) != 0) {
      return Fail(fs::ErrnoError("pki: keep old " + from, errno));
    }
  }
  return IssueLeaf(dir, base, id, o, ClientExts());
}

Status WriteAcl(const std::string& dir) {
  std::string acl =
      "# Generated by `tend pki` from devices/*.json and clients/*.json; do not edit.\n"
      "# Mosquitto takes the username from the client certificate's CN\n"
      "# (use_identity_as_username true): each device may write only its own topics.\n";
  std::vector<std::filesystem::path> files;
  for (const char* sub : {"devices", "clients"}) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir + "/" + sub, ec)) {
      if (e.path().extension() == ".json") files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& p : files) {
    TEND_ASSIGN_OR_RETURN(auto text, fs::ReadFile(p.string()));
    auto parsed = tend::json::ParseJson(text, "pki: " + p.string());
    if (!parsed) return Fail(parsed.error());
    nlohmann::json& j = *parsed;
    if (!j.is_object()) {
      return Fail(Error::Corrupt("pki: " + p.string() + ": not a JSON object"));
    }
    try {
      if (j.contains("device_id")) {
        std::string dev = j["device_id"], f = j["factory_id"], l = j["line_id"];
        acl += "\nuser " + dev + "\n";
        // Exactly the topics the agent publishes (telemetry::PublishedTopics), once each: the
        // asset topics per asset, the edge topics (status, device states such as ota) once.
        std::vector<std::string> granted;
        for (const auto& a : j["asset_ids"]) {
          telemetry::Identity id{f, l, a.get<std::string>(), dev};
          if (auto v = id.Validate(); !v) {  // a hand-edited record must not inject ACL lines
            return Fail(Error::Corrupt("pki: " + p.string() + ": " + v.error().message));
          }
          for (const auto& t : telemetry::PublishedTopics(id)) {
            if (std::find(granted.begin(), granted.end(), t.topic) != granted.end()) continue;
            granted.push_back(t.topic);
            acl += "topic write " + t.topic + "\n";
          }
        }
      } else {
        std::string name = j["name"], read = j["read"];
        TEND_RETURN_NOT_OK(ValidName("client name in " + p.string(), name));
        if (read.find_first_of("\r\n") != std::string::npos) {
          return Fail(Error::Corrupt("pki: " + p.string() + ": 'read' spans several lines"));
        }
        acl += "\nuser " + name + "\ntopic read " + read + "\n";
      }
    } catch (const nlohmann::json::exception& e) {
      return Fail(Error::Corrupt("pki: " + p.string() + ": " + e.what()));
    }
  }
  return fs::WriteFileAtomic(dir + "/acl", acl);
}

Result<CertInfo> ReadCert(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(auto c, LoadCert(path));
  CertInfo info;
  char buf[256];
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(c.get()), NID_commonName, buf, sizeof buf) >
      0)
    info.subject_cn = buf;
  if (X509_NAME_get_text_by_NID(X509_get_issuer_name(c.get()), NID_commonName, buf, sizeof buf) > 0)
    info.issuer_cn = buf;
  auto to_unix = [](const ASN1_TIME* t) -> int64_t {
    std::tm tm{};
    if (!ASN1_TIME_to_tm(t, &tm)) return 0;
    return static_cast<int64_t>(timegm(&tm));
  };
  info.not_before = to_unix(X509_get0_notBefore(c.get()));
  info.not_after = to_unix(X509_get0_notAfter(c.get()));
  return info;
}

}  // namespace tend::fleet::pki
