#include "ota/http_response.h"

#include <algorithm>
#include <cctype>

namespace tend::ota {
namespace {

constexpr size_t kMaxChunkLine = 1024;  // "1a2b;ext=..." lines; real ones are a few bytes

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool TokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// A printable excerpt of what the server sent, for error messages.
std::string Shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 40)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 40) out += "...";
  return out;
}

Error Malformed(const std::string& what) { return Error::Corrupt("malformed response: " + what); }

}  // namespace

Status HttpResponseParser::Feed(std::string_view data) {
  while (!data.empty() && state_ != State::kDone) {
    if (failed_) return Fail(Malformed("already failed"));
    auto st = Step(data);
    if (!st) {
      failed_ = true;
      return st;
    }
  }
  return Ok();
}

Status HttpResponseParser::Finish() {
  if (state_ == State::kDone) return Ok();
  if (state_ == State::kBody && remaining_ < 0) {
    state_ = State::kDone;
    return Ok();
  }
  if (state_ == State::kStatus || state_ == State::kHeaders) {
    return Fail(Error::Corrupt("connection closed in the response headers"));
  }
  return Fail(Error::Corrupt("connection closed after " + std::to_string(body_.size()) +
                             " body bytes, before the response was complete"));
}

Result<bool> HttpResponseParser::TakeLine(std::string_view& in, size_t cap,
                                          std::string_view* line) {
  const size_t nl = in.find('\n');
  const size_t take = nl == std::string_view::npos ? in.size() : nl + 1;
  if (line_.size() + take > cap) {
    if (state_ == State::kChunkSize || state_ == State::kChunkEnd) {
      return Fail(Malformed("chunk size line longer than " + std::to_string(cap) + " bytes"));
    }
    return Fail(
        Error::Security("response headers exceed " + std::to_string(max_header_) + " bytes"));
  }
  line_.append(in.data(), take);
  in.remove_prefix(take);
  if (nl == std::string_view::npos) return false;
  line_raw_ = line_.size();
  line_.pop_back();
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  *line = line_;
  return true;
}

Status HttpResponseParser::Step(std::string_view& in) {
  std::string_view line;
  const bool header_state =
      state_ == State::kStatus || state_ == State::kHeaders || state_ == State::kTrailers;
  if (header_state || state_ == State::kChunkSize || state_ == State::kChunkEnd) {
    const size_t cap = header_state ? max_header_ - header_bytes_ : kMaxChunkLine;
    TEND_ASSIGN_OR_RETURN(bool complete, TakeLine(in, cap, &line));
    if (!complete) return Ok();
    if (header_state) header_bytes_ += line_raw_;
    Status st;
    switch (state_) {
      case State::kStatus:
        st = OnStatusLine(line);
        break;
      case State::kHeaders:
        st = line.empty() ? OnHeadersEnd() : OnHeaderLine(line);
        break;
      case State::kTrailers:
        if (line.empty()) {
          state_ = State::kDone;
        } else if (line.find(':') == std::string_view::npos) {
          st = Fail(Malformed("trailer without ':' (\"" + Shown(line) + "\")"));
        }
        break;
      case State::kChunkSize:
        st = OnChunkSize(line);
        break;
      default:  // kChunkEnd
        if (!line.empty()) st = Fail(Malformed("chunk data longer than its size"));
        state_ = State::kChunkSize;
        break;
    }
    line_.clear();
    return st;
  }
  // Body bytes: Content-Length, close-delimited or the data of one chunk.
  size_t n = in.size();
  if (remaining_ >= 0) n = static_cast<size_t>(std::min<int64_t>(remaining_, n));
  TEND_RETURN_NOT_OK(AppendBody(in.substr(0, n)));
  in.remove_prefix(n);
  if (remaining_ >= 0) {
    remaining_ -= static_cast<int64_t>(n);
    if (remaining_ == 0) state_ = state_ == State::kChunkData ? State::kChunkEnd : State::kDone;
  }
  if (state_ == State::kDone) in = {};  // bytes after the body are not ours to read
  return Ok();
}

Status HttpResponseParser::OnStatusLine(std::string_view line) {
  // "HTTP/1.1 200 OK": version, three digits, an optional reason.
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || !std::isdigit(uint8_t(line[7])) ||
      line[8] != ' ' || !std::isdigit(uint8_t(line[9])) || !std::isdigit(uint8_t(line[10])) ||
      !std::isdigit(uint8_t(line[11])) || (line.size() > 12 && line[12] != ' ')) {
    return Fail(Malformed("bad status line \"" + Shown(line) + "\""));
  }
  status_ = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (status_ < 100) return Fail(Malformed("status " + std::to_string(status_)));
  content_length_ = -1;
  chunked_ = false;
  state_ = State::kHeaders;
  return Ok();
}

Status HttpResponseParser::OnHeaderLine(std::string_view line) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Fail(Malformed("header line without a name (\"" + Shown(line) + "\")"));
  }
  const std::string_view name = line.substr(0, colon);
  for (char c : name) {
    // Also refuses obsolete line folding (a continuation line starts with a space).
    if (!TokenChar(c)) return Fail(Malformed("bad header name \"" + Shown(name) + "\""));
  }
  const std::string_view value = Trim(line.substr(colon + 1));
  if (IEquals(name, "content-length")) {
    if (value.empty() || value.size() > 18 ||
        !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return Fail(Malformed("Content-Length \"" + Shown(value) + "\""));
    }
    const int64_t n = std::stoll(std::string(value));
    if (content_length_ >= 0 && content_length_ != n) {
      return Fail(Malformed("two different Content-Length headers"));
    }
    content_length_ = n;
  } else if (IEquals(name, "transfer-encoding")) {
    if (IEquals(value, "chunked")) {
      chunked_ = true;
    } else if (!IEquals(value, "identity")) {
      return Fail(Error::Unsupported("Transfer-Encoding \"" + Shown(value) + "\" not supported"));
    }
  } else if (IEquals(name, "content-encoding") && !IEquals(value, "identity")) {
    return Fail(Error::Unsupported("Content-Encoding \"" + Shown(value) + "\" was not asked for"));
  }
  return Ok();
}

Status HttpResponseParser::OnHeadersEnd() {
  if (status_ == 101) return Fail(Error::Unsupported("101 Switching Protocols"));
  if (status_ < 200) {  // 100 Continue, 103 Early Hints: the real response follows
    state_ = State::kStatus;
    return Ok();
  }
  if (chunked_ && content_length_ >= 0) {
    return Fail(Malformed("both Content-Length and chunked transfer coding"));
  }
  if ((body_status_ != 0 && status_ != body_status_) || status_ == 204 || status_ == 304) {
    state_ = State::kDone;
    return Ok();
  }
  if (chunked_) {
    state_ = State::kChunkSize;
    return Ok();
  }
  if (content_length_ > max_body_) {
    return Fail(Error::Security("announces " + std::to_string(content_length_) +
                                " bytes, more than the " + std::to_string(max_body_) + " allowed"));
  }
  if (content_length_ >= 0) {
    body_.reserve(static_cast<size_t>(content_length_));
    remaining_ = content_length_;
    state_ = content_length_ == 0 ? State::kDone : State::kBody;
    return Ok();
  }
  // HTTP/1.0 style: the body ends when the server closes the connection.
  remaining_ = -1;
  state_ = State::kBody;
  return Ok();
}

Status HttpResponseParser::OnChunkSize(std::string_view line) {
  const size_t end = std::min(line.find(';'), line.size());
  const std::string_view hex = Trim(line.substr(0, end));
  if (hex.empty() || hex.size() > 15 ||
      !std::all_of(hex.begin(), hex.end(), [](char c) { return std::isxdigit(uint8_t(c)); })) {
    return Fail(Malformed("bad chunk size \"" + Shown(line) + "\""));
  }
  const int64_t n = std::stoll(std::string(hex), nullptr, 16);
  if (n == 0) {
    state_ = State::kTrailers;
    return Ok();
  }
  if (static_cast<int64_t>(body_.size()) + n > max_body_) {
    return Fail(
        Error::Security("sent more than the " + std::to_string(max_body_) + " bytes allowed"));
  }
  remaining_ = n;
  state_ = State::kChunkData;
  return Ok();
}

Status HttpResponseParser::AppendBody(std::string_view data) {
  if (static_cast<int64_t>(body_.size() + data.size()) > max_body_) {
    return Fail(
        Error::Security("sent more than the " + std::to_string(max_body_) + " bytes allowed"));
  }
  body_.insert(body_.end(), data.begin(), data.end());
  return Ok();
}

}  // namespace tend::ota
