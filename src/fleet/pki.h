// `tend pki`: a small certificate authority for a plant — one CA, a broker certificate and one
// client certificate per device (CN = device id) — plus the Mosquitto ACL that lets each device
// write only under its own topics. Keys are ECDSA P-256, written 0600.
//
// Layout under the PKI directory:
//   ca.key ca.crt                          the CA (keep ca.key offline in production)
//   broker.key broker.crt                  server certificate (SANs for hostnames/IPs)
//   devices/<id>.key <id>.crt <id>.json    one per device; .json holds its factory/line/assets
//   clients/<name>.key <name>.crt <name>.json  cloud-side readers such as `tend fleet ingest`
//   acl                                    generated from devices/*.json and clients/*.json
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace tend::fleet::pki {

struct CertOptions {
  int days = 365;
  // Start validity this many days in the past (clock skew, or a deliberately expired test cert
  // with backdate_days > days).
  int backdate_days = 0;
};

Status InitCa(const std::string& dir, const std::string& cn, const CertOptions& o);
// sans like {"DNS:localhost", "IP:127.0.0.1"}.
Status IssueBroker(const std::string& dir, const std::string& cn,
                   const std::vector<std::string>& sans, const CertOptions& o);
struct DeviceSpec {
  std::string device_id, factory_id, line_id;
  std::vector<std::string> asset_ids;
};
Status IssueDevice(const std::string& dir, const DeviceSpec& d, const CertOptions& o);
// A cloud reader (fleet ingest): may read factory/# (ACL), may not publish.
Status IssueClient(const std::string& dir, const std::string& name, const CertOptions& o);
// New key and certificate for an existing device or client (same CN and ACL); the previous pair
// is kept as <id>.crt.<unix>.old / .key.<unix>.old.
Status Rotate(const std::string& dir, const std::string& device_or_client, const CertOptions& o);
// Writes <dir>/acl from the device and client records.
Status WriteAcl(const std::string& dir);

// Subject CN and notAfter (Unix seconds) of a PEM certificate: for `tend pki show` and tests.
struct CertInfo {
  std::string subject_cn, issuer_cn;
  int64_t not_before = 0, not_after = 0;
};
Result<CertInfo> ReadCert(const std::string& path);

}  // namespace tend::fleet::pki
