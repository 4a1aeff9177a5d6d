#include "telemetry/mqtt_url.h"

#include <mqtt/async_client.h>

#include <charconv>

#include "core/net.h"

namespace tend::telemetry {

Result<BrokerAddress> ParseBrokerUrl(const std::string& url) {
  BrokerAddress a;
  std::string rest;
  auto starts = [&](const char* p) { return url.rfind(p, 0) == 0; };
  if (starts("mqtt://") || starts("tcp://")) {
    rest = url.substr(url.find("://") + 3);
    a.port = 1883;
  } else if (starts("mqtts://") || starts("ssl://")) {
    rest = url.substr(url.find("://") + 3);
    a.tls = true;
    a.port = 8883;
  } else {
    return Fail(Error::Invalid("broker URL '" + url +
                               "': expected mqtt://host[:port] or mqtts://host[:port]"));
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos || rest.find('@') != std::string::npos) {
    return Fail(Error::Invalid(
        "broker URL '" + url +
        "': no path or credentials allowed (put username and password under [mqtt] in the "
        "config file)"));
  }
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']') == std::string::npos) {
    std::string port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    int p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p < 1 || p > 65535) {
      return Fail(Error::Invalid("broker URL '" + url + "': bad port '" + port + "'"));
    }
    a.port = p;
  }
  if (rest.empty()) return Fail(Error::Invalid("broker URL '" + url + "': missing host"));
  a.host = rest;
  a.paho_uri = std::string(a.tls ? "ssl://" : "tcp://") + a.host + ":" + std::to_string(a.port);
  return a;
}

std::string DescribeConnectFailure(const BrokerAddress& addr, int return_code, int reason_code,
                                   std::chrono::milliseconds timeout) {
  if (reason_code >= 0x80) {
    const char* s = MQTTReasonCode_toString(static_cast<enum MQTTReasonCodes>(reason_code));
    return std::string("the broker refused the connection: ") + (s ? s : "unknown reason") +
           " (MQTT 5 reason code " + std::to_string(reason_code) + ")";
  }
  static const char* const kConnack[] = {"unacceptable protocol version", "client id rejected",
                                         "server unavailable", "bad user name or password",
                                         "not authorized"};
  if (return_code >= 1 && return_code <= 5) {
    return std::string("the broker refused the connection: ") + kConnack[return_code - 1];
  }
  std::string tcp = net::ProbeConnect(addr.host, addr.port, timeout);
  if (!tcp.empty()) return tcp;
  return std::string("TCP to ") + addr.host + ":" + std::to_string(addr.port) + " works, but the " +
         (addr.tls ? "TLS handshake (check the CA, certificate and key, and that the broker's "
                     "certificate names this host) or "
                   : "") +
         "MQTT CONNECT failed (Paho rc " + std::to_string(return_code) + ")";
}

mqtt::ssl_options BrokerSslOptions(const std::string& ca_file, const std::string& cert_file,
                                   const std::string& key_file) {
  mqtt::ssl_options ssl;
  ssl.set_trust_store(ca_file);
  if (!cert_file.empty()) {
    ssl.set_key_store(cert_file);
    ssl.set_private_key(key_file);
  }
  ssl.set_enable_server_cert_auth(true);
  ssl.set_verify(true);
  return ssl;
}

}  // namespace tend::telemetry
