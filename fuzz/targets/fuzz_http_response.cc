// An HTTP response as a registry (or whoever answers in its place) sends it, fed to the OTA
// fetcher's parser whole and in pieces: never a crash, never more body than allowed, and the
// same outcome however the bytes are split.
#include <string>

#include "fuzz_util.h"
#include "ota/http_response.h"

namespace {

using tend::ota::HttpResponseParser;

constexpr size_t kMaxHeader = 4096;
constexpr int64_t kMaxBody = 8192;

struct Outcome {
  bool ok = false, done = false;
  int status = 0;
  std::string body;
};

Outcome Run(std::string_view in, size_t piece, bool body_200_only) {
  HttpResponseParser p(kMaxHeader, kMaxBody);
  if (body_200_only) p.set_body_status(200);
  Outcome o;
  o.ok = true;
  for (size_t at = 0; at < in.size() && o.ok && !p.done(); at += piece) {
    o.ok = p.Feed(in.substr(at, piece)).has_value();
  }
  if (o.ok && !p.done()) o.ok = p.Finish().has_value();
  TEND_FUZZ_CHECK(static_cast<int64_t>(p.body().size()) <= kMaxBody);
  o.done = p.done();
  o.status = p.status();
  o.body.assign(p.body().begin(), p.body().end());
  if (o.ok && o.done && p.content_length() >= 0 && o.status >= 200 && o.status != 204 &&
      o.status != 304 && (!body_200_only || o.status == 200)) {
    TEND_FUZZ_CHECK(static_cast<int64_t>(o.body.size()) == p.content_length());
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks how the rest arrives: in pieces of 1..64 bytes.
  const size_t piece = 1 + data[0] % 64;
  const std::string_view in = tend::fuzz::AsText(data + 1, size - 1);
  for (bool only_200 : {false, true}) {
    const Outcome whole = Run(in, in.size() + 1, only_200);
    const Outcome split = Run(in, piece, only_200);
    TEND_FUZZ_CHECK(whole.ok == split.ok);
    if (whole.ok) {
      TEND_FUZZ_CHECK(whole.done == split.done && whole.status == split.status);
      TEND_FUZZ_CHECK(whole.body == split.body);
    }
  }
  return 0;
}
