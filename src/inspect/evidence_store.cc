#include "inspect/evidence_store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "vision/decode.h"
#include "vision/overlay.h"

namespace tend::inspect {

namespace stdfs = std::filesystem;

namespace {

int64_t UnixMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// Plain write (no fsync: evidence is a convenience, the decision log is the record).
Status WriteWhole(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Fail(fs::ErrnoError("open " + path, errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : ENOSPC;
      ::close(fd);
      return Fail(fs::ErrnoError("write " + path, e));
    }
    off += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return Fail(fs::ErrnoError("close " + path, errno));
  return Ok();
}

bool IsRecordName(const std::string& n) {
  return n.size() == 33 && n[8] == 'T' && n[19] == 'Z' && n[20] == '-';
}

}  // namespace

std::string EvidenceStore::RefFor(const Decision& d) {
  const int64_t ms = UnixMs(d.timestamp);
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%S", &tm);
  return fmt::format("{}.{:03d}Z-{:012d}", buf, static_cast<int>(ms % 1000),
                     std::max<int64_t>(0, d.window_index));
}

Result<std::unique_ptr<EvidenceStore>> EvidenceStore::Open(const EvidenceOptions& o) {
  if (o.dir.empty()) return Fail(Error::Invalid("evidence: no folder given"));
  if (o.max_records < 1 || o.max_bytes < 1 || !(o.max_age_s > 0) || o.queue < 1) {
    return Fail(
        Error::Invalid("evidence: max_records, max_bytes, max_age and queue must be positive"));
  }
  TEND_RETURN_NOT_OK(fs::MakeDirs(o.dir));
  std::unique_ptr<EvidenceStore> s(new EvidenceStore(o));
  TEND_RETURN_NOT_OK(s->Index());
  s->Evict(0, UnixMs(std::chrono::system_clock::now()));
  for (size_t i = 0; i < o.queue; ++i) s->free_.push_back(std::make_unique<Slot>());
  s->worker_ = std::thread([p = s.get()] { p->Run(); });
  return s;
}

EvidenceStore::~EvidenceStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

Status EvidenceStore::Index() {
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(opt_.dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".tmp-", 0) == 0) {  // a write cut short by a crash
      stdfs::remove_all(e.path(), ec);
      continue;
    }
    if (!e.is_directory(ec) || !IsRecordName(name)) continue;
    Record r{name, 0, 0};
    for (const auto& f : stdfs::directory_iterator(e.path(), ec))
      r.bytes += static_cast<int64_t>(f.file_size(ec));
    auto t = stdfs::last_write_time(e.path(), ec);
    r.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::file_clock::to_sys(t).time_since_epoch())
                    .count();
    records_.push_back(r);
  }
  if (ec) return Fail(Error::Io(fmt::format("evidence: list {}: {}", opt_.dir, ec.message())));
  std::sort(records_.begin(), records_.end(),
            [](const Record& a, const Record& b) { return a.name < b.name; });
  for (const auto& r : records_) stats_.bytes += r.bytes;
  stats_.records = static_cast<int64_t>(records_.size());
  return Ok();
}

void EvidenceStore::Stage(int64_t event_index, const vision::ImageView& frame,
                          std::span<const float> map, int map_width, int map_height,
                          const vision::Roi& roi, float lo, float hi) {
  std::lock_guard<std::mutex> lock(mu_);
  Slot& s = staging_;
  s.event_index = event_index;
  s.frame.Reset(frame.width, frame.height, frame.channels);
  std::memcpy(s.frame.data(), frame.data, frame.size());
  s.map.assign(map.begin(), map.end());
  s.map_width = map_width;
  s.map_height = map_height;
  s.roi = roi;
  s.lo = lo;
  s.hi = hi;
}

std::string EvidenceStore::Submit(const Decision& d) {
  if (!d.is_alert) return "";
  std::lock_guard<std::mutex> lock(mu_);
  if (staging_.event_index != d.window_index || staging_.event_index < 0) {
    ++stats_.dropped_no_frame;
    return "";
  }
  staging_.event_index = -1;
  if (free_.empty()) {
    ++stats_.dropped_queue_full;
    return "";
  }
  std::unique_ptr<Slot> slot = std::move(free_.front());
  free_.pop_front();
  std::swap(*slot, staging_);  // moves the pixels; the staging slot gets the free slot's buffers
  slot->event_index = d.window_index;
  slot->ref = RefFor(d);
  slot->score = d.anomaly_score;
  slot->severity = d.fail_safe ? "FAIL_SAFE" : SeverityName(d.severity);
  slot->model = d.model_name;
  slot->version = d.model_version;
  slot->unix_ms = UnixMs(d.timestamp);
  std::string ref = slot->ref;
  queue_.push_back(std::move(slot));
  ++stats_.queued;
  cv_.notify_one();
  return ref;
}

EvidenceStats EvidenceStore::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void EvidenceStore::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

void EvidenceStore::SetBeforeWriteForTest(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(mu_);
  before_write_ = std::move(hook);
}

void EvidenceStore::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // Wake at least once a minute so that records age out even when nothing is rejected.
    cv_.wait_for(lock, std::chrono::seconds(60), [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) {
      if (stop_) return;
      lock.unlock();
      Evict(0, UnixMs(std::chrono::system_clock::now()));
      lock.lock();
      continue;
    }
    std::unique_ptr<Slot> slot = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    auto hook = before_write_;
    lock.unlock();
    if (hook) hook();
    Write(*slot);
    lock.lock();
    free_.push_back(std::move(slot));
    busy_ = false;
    idle_cv_.notify_all();
  }
}

void EvidenceStore::RemoveRecord(const Record& r) {
  std::error_code ec;
  stdfs::remove_all(stdfs::path(opt_.dir) / r.name, ec);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.deleted;
  stats_.bytes -= r.bytes;
  --stats_.records;
}

void EvidenceStore::Evict(int64_t need_bytes, int64_t now_ms) {
  const int64_t oldest_ok = now_ms - static_cast<int64_t>(opt_.max_age_s * 1000.0);
  const size_t extra = need_bytes > 0 ? 1 : 0;
  int64_t bytes = 0;
  for (const auto& r : records_) bytes += r.bytes;
  while (!records_.empty() &&
         (records_.size() + extra > static_cast<size_t>(opt_.max_records) ||
          bytes + need_bytes > opt_.max_bytes || records_.front().unix_ms < oldest_ok)) {
    bytes -= records_.front().bytes;
    RemoveRecord(records_.front());
    records_.pop_front();
  }
}

void EvidenceStore::Write(Slot& s) {
  auto fail = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.failed;
  };
  auto png = vision::EncodePng(s.frame.view());
  if (!png) return fail();
  std::string overlay_png;
  if (opt_.overlay && !s.map.empty()) {
    vision::Image over;
    vision::OverlayOptions oo;
    oo.lo = s.lo;
    oo.hi = s.hi > s.lo ? s.hi : s.lo + 1;
    auto st =
        vision::RenderOverlay(s.frame.view(), s.roi, s.map, s.map_width, s.map_height, oo, over);
    auto enc = st ? vision::EncodePng(over.view()) : Result<std::string>(Fail(st.error()));
    if (!enc) return fail();
    overlay_png = std::move(*enc);
  }
  const std::string meta =
      nlohmann::json{{"image_ref", s.ref},
                     {"event_index", s.event_index},
                     {"unix_ms", s.unix_ms},
                     {"anomaly_score", s.score},
                     {"severity", s.severity},
                     {"model", s.model},
                     {"model_version", s.version},
                     {"frame", {s.frame.width(), s.frame.height(), s.frame.channels()}}}
          .dump() +
      "\n";
  const int64_t total = static_cast<int64_t>(png->size() + overlay_png.size() + meta.size());
  if (total > opt_.max_bytes) return fail();  // could never fit
  Evict(total, UnixMs(std::chrono::system_clock::now()));
  const stdfs::path tmp = stdfs::path(opt_.dir) / (".tmp-" + s.ref),
                    dst = stdfs::path(opt_.dir) / s.ref;
  std::error_code ec;
  stdfs::create_directory(tmp, ec);
  Status st = ec ? Fail(Error::Io("evidence: mkdir " + tmp.string() + ": " + ec.message())) : Ok();
  if (st) st = WriteWhole((tmp / "frame.png").string(), *png);
  if (st && !overlay_png.empty()) st = WriteWhole((tmp / "overlay.png").string(), overlay_png);
  if (st) st = WriteWhole((tmp / "record.json").string(), meta);
  if (st) {
    stdfs::rename(tmp, dst, ec);
    if (ec) st = Fail(Error::Io("evidence: rename " + dst.string() + ": " + ec.message()));
  }
  if (!st) {
    stdfs::remove_all(tmp, ec);
    return fail();
  }
  records_.push_back({s.ref, total, s.unix_ms});
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.written;
  ++stats_.records;
  stats_.bytes += total;
}

}  // namespace tend::inspect
