#include "telemetry/mqtt_url.h"

#include <charconv>

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
    return Fail(Error::Invalid("broker URL '" + url +
                               "': no path or credentials allowed (use --mqtt-username)"));
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
