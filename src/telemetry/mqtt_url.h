// Broker addresses as users write them (mqtt://host:port, mqtts://host:port) turned into what
// the Paho client expects, with clear errors for anything else.
#pragma once

#include <mqtt/ssl_options.h>

#include <chrono>
#include <string>

#include "core/status.h"

namespace tend::telemetry {

struct BrokerAddress {
  bool tls = false;
  std::string host;
  int port = 0;
  std::string paho_uri;  // tcp://host:port or ssl://host:port
};

// Default ports: 1883 (mqtt), 8883 (mqtts). tcp:// and ssl:// are accepted as synonyms.
Result<BrokerAddress> ParseBrokerUrl(const std::string& url);

// Why a connection attempt to `addr` failed, in words for a log line: the broker's refusal
// (an MQTT 5 CONNACK reason code >= 0x80, or an MQTT 3.1.1 CONNACK return code 1-5), else what
// a plain TCP connection to it says ("Connection refused", "cannot resolve host ...", "timed out
// after 1 s"), else that TCP works and the TLS handshake or MQTT CONNECT did not. The TCP probe
// blocks for up to `timeout` plus name resolution.
std::string DescribeConnectFailure(const BrokerAddress& addr, int return_code, int reason_code,
                                   std::chrono::milliseconds timeout);

// TLS to the broker as tend does it everywhere (agent and fleet): the broker's certificate is
// verified against `ca_file` (chain and host name), and `cert_file`/`key_file` are presented
// when given (one client certificate per device).
mqtt::ssl_options BrokerSslOptions(const std::string& ca_file, const std::string& cert_file,
                                   const std::string& key_file);

}  // namespace tend::telemetry
