// An HTTP/1.x response parser for the OTA fetcher: bytes in (as they arrive, in any split),
// status, headers and body out. Pure (no I/O), so it can be fuzzed. Everything a registry sends is
// bounded: the status line and headers together (including any 1xx interim responses and chunked
// trailers) by max_header_bytes, the body by max_body_bytes, each chunk-size line by a small cap.
// Only what a GET of a static file needs is accepted: Content-Length, chunked or close-delimited
// bodies, no content coding (we never ask for one).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tend::ota {

class HttpResponseParser {
 public:
  HttpResponseParser(size_t max_header_bytes, int64_t max_body_bytes)
      : max_header_(max_header_bytes), max_body_(max_body_bytes) {}

  // Consumes `data`. Errors: kSecurity for a limit (header or body too large), kCorrupt for
  // malformed framing, kUnsupported for a transfer/content coding we did not ask for. After an
  // error or once done(), further bytes are ignored.
  Status Feed(std::string_view data);
  // The server closed the connection: ends a close-delimited body; anything else unfinished is a
  // truncated response (kCorrupt).
  Status Finish();

  bool headers_done() const { return state_ > State::kHeaders; }
  bool done() const { return state_ == State::kDone; }
  int status() const { return status_; }
  // Content-Length when the server announced one, else -1.
  int64_t content_length() const { return content_length_; }
  const std::vector<uint8_t>& body() const { return body_; }
  std::vector<uint8_t>& mutable_body() { return body_; }
  // Only a response with this status has its body read; any other ends at its headers (done()).
  // 0 (default): every body is read.
  void set_body_status(int status) { body_status_ = status; }

 private:
  enum class State {
    kStatus,
    kHeaders,
    kBody,
    kChunkSize,
    kChunkData,
    kChunkEnd,
    kTrailers,
    kDone
  };

  Status Step(std::string_view& in);
  Result<bool> TakeLine(std::string_view& in, size_t cap, std::string_view* line);
  Status OnStatusLine(std::string_view line);
  Status OnHeaderLine(std::string_view line);
  Status OnHeadersEnd();
  Status OnChunkSize(std::string_view line);
  Status AppendBody(std::string_view data);

  size_t max_header_;
  int64_t max_body_;
  State state_ = State::kStatus;
  std::string line_;         // a line being assembled across Feed calls
  size_t header_bytes_ = 0;  // status lines, headers and trailers so far
  int status_ = 0;
  size_t line_raw_ = 0;  // bytes of the last complete line, its line ending included
  int64_t content_length_ = -1;
  bool chunked_ = false;
  bool failed_ = false;
  int body_status_ = 0;
  int64_t remaining_ = 0;  // bytes left in the current chunk or Content-Length body
  std::vector<uint8_t> body_;
};

}  // namespace tend::ota
