// Broker addresses as users write them (mqtt://host:port, mqtts://host:port) turned into what
// the Paho client expects, with clear errors for anything else.
#pragma once

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

}  // namespace tend::telemetry
