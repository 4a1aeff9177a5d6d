#include <charconv>

#include "io/modbus_link.h"

namespace tend::io {
namespace {

bool ParseInt(const std::string& s, int lo, int hi, int& out) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi) return false;
  out = v;
  return true;
}

Status ParseQuery(const std::string& url, const std::string& query, ModbusAddress& a) {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    std::string kv = query.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
    size_t eq = kv.find('=');
    std::string key = kv.substr(0, eq);
    std::string val = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (key != "unit") {
      return Fail(Error::Invalid("PLC URL '" + url + "': unknown parameter '" + key +
                                 "' (only unit=N is known)"));
    }
    if (!ParseInt(val, 0, 255, a.unit)) {
      return Fail(Error::Invalid("PLC URL '" + url + "': unit '" + val + "' is not 0..255"));
    }
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return Ok();
}

}  // namespace

Result<ModbusAddress> ParseModbusUrl(const std::string& url) {
  const std::string scheme = "modbus://";
  if (url.rfind(scheme, 0) != 0) {
    return Fail(Error::Invalid("PLC URL '" + url + "': expected modbus://HOST[:PORT][?unit=N]"));
  }
  ModbusAddress a;
  std::string rest = url.substr(scheme.size());
  size_t q = rest.find('?');
  if (q != std::string::npos) {
    TEND_RETURN_NOT_OK(ParseQuery(url, rest.substr(q + 1), a));
    rest.resize(q);
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos || rest.find('@') != std::string::npos) {
    return Fail(Error::Invalid("PLC URL '" + url + "': no path or credentials allowed"));
  }
  if (!rest.empty() && rest.front() == '[') {  // [IPv6]:port
    size_t close = rest.find(']');
    if (close == std::string::npos) return Fail(Error::Invalid("PLC URL '" + url + "': bad IPv6"));
    a.host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') {
      return Fail(Error::Invalid("PLC URL '" + url + "': junk after the IPv6 address"));
    }
    if (!rest.empty()) rest = "x" + rest;  // reuse the port parsing below
  }
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos) {
    std::string port = rest.substr(colon + 1);
    if (!ParseInt(port, 1, 65535, a.port)) {
      return Fail(Error::Invalid("PLC URL '" + url + "': bad port '" + port + "'"));
    }
    rest.resize(colon);
  }
  if (a.host.empty()) a.host = rest;
  if (a.host.empty()) return Fail(Error::Invalid("PLC URL '" + url + "': missing host"));
  return a;
}

Status LinkOptions::Validate() const {
  TEND_RETURN_NOT_OK(ParseModbusUrl(url));
  if (!(timeout_s > 0 && timeout_s <= 60)) {
    return Fail(Error::Invalid("PLC: timeout must be > 0 and <= 60 s"));
  }
  if (!(reconnect_min_s > 0 && reconnect_max_s >= reconnect_min_s)) {
    return Fail(Error::Invalid("PLC: reconnect backoff needs 0 < min <= max"));
  }
  return Ok();
}

std::chrono::steady_clock::duration Backoff::Next() {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 17;
  rng_ ^= rng_ << 5;
  double jitter = 0.8 + 0.4 * (rng_ % 1000) / 1000.0;
  double s = cur_s_ * jitter;
  cur_s_ = std::min(cur_s_ * 2, max_s_);
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

const char* ModbusExceptionName(int code) {
  switch (code) {
    case 1:
      return "illegal function";
    case 2:
      return "illegal data address";
    case 3:
      return "illegal data value";
    case 4:
      return "server device failure";
    case 5:
      return "acknowledge";
    case 6:
      return "server device busy";
    case 7:
      return "negative acknowledge";
    case 8:
      return "memory parity error";
    case 10:
      return "gateway path unavailable";
    case 11:
      return "gateway target failed to respond";
  }
  return "unknown exception";
}

}  // namespace tend::io
