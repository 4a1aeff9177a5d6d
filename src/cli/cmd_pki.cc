// `tend pki init|broker|device|client|rotate|acl|show`: the plant's certificate authority and the
// Mosquitto ACL generated from it (see src/fleet/pki.h and deploy/mosquitto/README.md).
#include <cstdio>

#include "cli/commands.h"
#include "fleet/pki.h"
#include "telemetry/payload.h"

namespace tend::cli {

void RegisterPki(CLI::App& app) {
  auto* pki = app.add_subcommand("pki", "Certificates for the broker and each device; ACLs");
  pki->require_subcommand(1);
  auto dir = std::make_shared<std::string>("pki");
  auto opts = std::make_shared<fleet::pki::CertOptions>();
  auto add_common = [&](CLI::App* c) {
    c->add_option("--dir", *dir, "PKI directory (default ./pki)");
    c->add_option("--days", opts->days, "Validity in days (default 365)");
    c->add_option("--backdate-days", opts->backdate_days,
                  "Start validity N days in the past (> --days makes an expired certificate)");
  };

  auto* init = pki->add_subcommand("init", "Create the CA (ca.key, ca.crt)");
  auto ca_cn = std::make_shared<std::string>("tend plant CA");
  add_common(init);
  init->add_option("--cn", *ca_cn, "CA common name");
  init->callback([dir, opts, ca_cn] {
    OrDie(fleet::pki::InitCa(*dir, *ca_cn, *opts), "pki init");
    std::printf("%s/ca.crt\n", dir->c_str());
  });

  auto* broker = pki->add_subcommand("broker", "Issue the broker's server certificate");
  auto bcn = std::make_shared<std::string>("localhost");
  auto sans = std::make_shared<std::vector<std::string>>();
  add_common(broker);
  broker->add_option("--cn", *bcn, "Broker host name (default localhost)");
  broker->add_option("--san", *sans,
                     "Subject alternative names, e.g. DNS:broker.local IP:10.0.0.5");
  broker->callback([dir, opts, bcn, sans] {
    OrDie(fleet::pki::IssueBroker(*dir, *bcn, *sans, *opts), "pki broker");
    std::printf("%s/broker.crt\n", dir->c_str());
  });

  auto* device =
      pki->add_subcommand("device", "Issue a device certificate (CN = device id) and its ACL");
  auto spec = std::make_shared<fleet::pki::DeviceSpec>();
  add_common(device);
  device->add_option("--device-id", spec->device_id, "Device id")->required();
  device->add_option("--factory", spec->factory_id, "Factory id")->required();
  device->add_option("--line", spec->line_id, "Line id")->required();
  device->add_option("--asset", spec->asset_ids, "Asset id(s) the device reports for")->required();
  device->callback([dir, opts, spec] {
    OrDie(fleet::pki::IssueDevice(*dir, *spec, *opts), "pki device");
    std::printf("%s/devices/%s.crt\n", dir->c_str(), spec->device_id.c_str());
  });

  auto* client = pki->add_subcommand("client", "Issue a cloud reader certificate (fleet ingest)");
  auto name = std::make_shared<std::string>();
  add_common(client);
  client->add_option("--name", *name, "Client name (CN), e.g. fleet-1")->required();
  client->callback([dir, opts, name] {
    OrDie(fleet::pki::IssueClient(*dir, *name, *opts), "pki client");
    std::printf("%s/clients/%s.crt\n", dir->c_str(), name->c_str());
  });

  auto* rotate = pki->add_subcommand("rotate", "New key and certificate for a device or client");
  auto rid = std::make_shared<std::string>();
  add_common(rotate);
  rotate->add_option("--id", *rid, "Device id or client name")->required();
  rotate->callback([dir, opts, rid] {
    OrDie(fleet::pki::Rotate(*dir, *rid, *opts), "pki rotate");
    std::printf("rotated %s\n", rid->c_str());
  });

  auto* acl = pki->add_subcommand(
      "acl", "Rewrite the broker ACL from the device and client records (after an upgrade)");
  add_common(acl);
  acl->callback([dir] {
    OrDie(fleet::pki::WriteAcl(*dir), "pki acl");
    std::printf("%s/acl\n", dir->c_str());
  });

  auto* show = pki->add_subcommand("show", "Print a certificate's subject, issuer and validity");
  auto path = std::make_shared<std::string>();
  show->add_option("cert", *path, "PEM certificate")->required();
  show->callback([path] {
    auto info = OrDie(fleet::pki::ReadCert(*path), "pki show");
    auto fmt = [](int64_t s) {
      return telemetry::FormatIso8601(
          std::chrono::system_clock::time_point{std::chrono::seconds(s)});
    };
    std::printf("subject CN: %s\nissuer CN: %s\nnot before: %s\nnot after: %s\n",
                info.subject_cn.c_str(), info.issuer_cn.c_str(), fmt(info.not_before).c_str(),
                fmt(info.not_after).c_str());
  });
}

}  // namespace tend::cli
