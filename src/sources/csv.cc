// CSV source: streamed line by line (a recording can be larger than memory), with every error
// carrying file:line and the column's name.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/fs.h"
#include "core/log.h"
#include "sources/internal.h"
#include "sources/source.h"

namespace tend::sources {
namespace {

using internal::UniqueFd;

// Buffered line reader over a file descriptor; lines are returned without '\n' or '\r', and
// the first without a UTF-8 byte-order mark (Excel's "CSV UTF-8" starts with one; left there,
// it would hide the time column's name and turn a numeric first row into a header).
class LineReader {
 public:
  LineReader(int fd, std::string name) : fd_(fd), name_(std::move(name)), buf_(1 << 16) {}

  // Returns false at end of file. The view is valid until the next call.
  Result<bool> Next(std::string_view* line) {
    TEND_ASSIGN_OR_RETURN(bool more, NextRaw(line));
    if (more && first_) {
      first_ = false;
      if (line->substr(0, 3) == "\xEF\xBB\xBF") line->remove_prefix(3);
    }
    return more;
  }

 private:
  Result<bool> NextRaw(std::string_view* line) {
    for (;;) {
      const char* begin = buf_.data() + start_;
      const char* nl = static_cast<const char*>(std::memchr(begin, '\n', end_ - start_));
      if (nl != nullptr) {
        size_t len = nl - begin;
        start_ += len + 1;
        if (len > 0 && begin[len - 1] == '\r') --len;
        *line = std::string_view(begin, len);
        return true;
      }
      if (eof_) {
        if (start_ == end_) return false;
        size_t len = end_ - start_;
        start_ = end_;
        if (len > 0 && begin[len - 1] == '\r') --len;
        *line = std::string_view(begin, len);
        return true;
      }
      // Move the partial line to the front; grow only for a line longer than the buffer.
      std::memmove(buf_.data(), begin, end_ - start_);
      end_ -= start_;
      start_ = 0;
      if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);
      ssize_t n;
      do {
        n = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
      } while (n < 0 && errno == EINTR);
      if (n < 0) return Fail(fs::ErrnoError("read " + name_, errno));
      if (n == 0) eof_ = true;
      end_ += static_cast<size_t>(n);
    }
  }

  int fd_;
  std::string name_;
  std::vector<char> buf_;
  size_t start_ = 0, end_ = 0;
  bool eof_ = false;
  bool first_ = true;
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool Skippable(std::string_view line) {
  line = Trim(line);
  return line.empty() || line.front() == '#';
}

// Splits on sep into cells (trimmed); fills `cells` (capacity reused).
void Split(std::string_view line, char sep, std::vector<std::string_view>& cells) {
  cells.clear();
  size_t pos = 0;
  for (;;) {
    size_t q = line.find(sep, pos);
    cells.push_back(Trim(line.substr(pos, q == std::string_view::npos ? q : q - pos)));
    if (q == std::string_view::npos) break;
    pos = q + 1;
  }
}

enum class ParseResult { kOk, kNotNumber, kNotFinite, kOutOfRange };

// A number that underflows a double (1e-400) reads as what strtod makes of it: 0 or a signed
// subnormal, as it would as a float sample anyway. One that overflows (1e400) is out of range;
// "inf" and "nan" are not finite.
ParseResult ParseDouble(std::string_view s, double* out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return ParseResult::kNotNumber;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc::result_out_of_range && p == s.data() + s.size()) {
    const std::string copy(s);  // rare: only numbers beyond a double's range get here
    errno = 0;
    const double v = std::strtod(copy.c_str(), nullptr);
    if (std::fabs(v) >= 1.0) return ParseResult::kOutOfRange;  // HUGE_VAL: overflow
    *out = v;
    return ParseResult::kOk;
  }
  if (ec != std::errc() || p != s.data() + s.size()) return ParseResult::kNotNumber;
  return std::isfinite(*out) ? ParseResult::kOk : ParseResult::kNotFinite;
}

bool IsTimeName(std::string_view s) {
  std::string l(s);
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
  return l == "t" || l == "time" || l == "time_s" || l == "t_s";
}

std::string Unquote(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return std::string(s);
}

class CsvSource final : public Source {
 public:
  static Result<std::unique_ptr<Source>> Open(const std::string& path, const SourceOptions& opts);

  const StreamInfo& info() const override { return info_; }
  Result<size_t> Read(std::span<float> out, size_t max_frames) override;
  std::string Describe() const override {
    return fmt::format("csv:{} ({} Hz, {} ch)", path_, info_.sample_rate, info_.channels);
  }
  std::span<const double> FrameTimes() const override { return times_; }

 private:
  CsvSource() = default;
  // Parses one data line into row_ (all value columns) and checks the time column.
  Status ParseRow(std::string_view line);
  Result<bool> NextDataLine(std::string_view* line);

  std::string path_;
  UniqueFd fd_;
  std::unique_ptr<LineReader> reader_;
  char sep_ = ',';
  bool has_time_ = false;
  int columns_ = 0;                 // cells per row, time column included
  int pick_ = -1;                   // value column to deliver, or -1 for all
  std::vector<std::string> names_;  // value columns
  int64_t line_no_ = 0;
  int64_t frame_ = 0;
  double prev_t_ = 0;
  std::vector<std::string_view> cells_;
  std::vector<double> row_;
  // Rows read ahead at open (to learn the sample rate from the time column), served first.
  std::vector<float> ahead_;
  std::vector<double> ahead_times_;  // their time column
  size_t ahead_pos_ = 0;
  std::vector<double> times_;  // the time column of the frames the latest Read returned
  StreamInfo info_;
};

Result<bool> CsvSource::NextDataLine(std::string_view* line) {
  for (;;) {
    TEND_ASSIGN_OR_RETURN(bool more, reader_->Next(line));
    if (!more) return false;
    ++line_no_;
    if (!Skippable(*line)) return true;
  }
}

Status CsvSource::ParseRow(std::string_view line) {
  Split(line, sep_, cells_);
  if (static_cast<int>(cells_.size()) != columns_) {
    return Fail(Error::Corrupt(fmt::format("{}:{}: expected {} values, got {}", path_, line_no_,
                                           columns_, cells_.size())));
  }
  row_.resize(columns_);
  for (int i = 0; i < columns_; ++i) {
    const ParseResult r = ParseDouble(cells_[i], &row_[i]);
    if (r != ParseResult::kOk) {
      const bool time = has_time_ && i == 0;
      const std::string col = time ? "time" : names_[i - (has_time_ ? 1 : 0)];
      if (r == ParseResult::kNotFinite) {
        return Fail(Error::Corrupt(fmt::format("{}:{}: column '{}' is not finite: '{}'", path_,
                                               line_no_, col, cells_[i])));
      }
      if (r == ParseResult::kOutOfRange) {
        return Fail(Error::Corrupt(fmt::format("{}:{}: column '{}' is out of range: '{}'", path_,
                                               line_no_, col, cells_[i])));
      }
      return Fail(Error::Corrupt(fmt::format("{}:{}: column '{}' is not a number: '{}'", path_,
                                             line_no_, col, cells_[i])));
    }
  }
  for (int i = has_time_ ? 1 : 0; i < columns_; ++i) {
    if (std::fabs(row_[i]) > 3.4e38) {
      return Fail(
          Error::Corrupt(fmt::format("{}:{}: column '{}' is out of float range: '{}'", path_,
                                     line_no_, names_[i - (has_time_ ? 1 : 0)], cells_[i])));
    }
  }
  if (has_time_ && frame_ > 0) {
    const double dt = row_[0] - prev_t_;
    const double nominal = 1.0 / info_.sample_rate;
    if (!(dt > 0.5 * nominal && dt < 1.5 * nominal)) {
      return Fail(Error::Corrupt(
          fmt::format("{}:{}: time {} breaks uniform sampling (step {} s, expected {} s at {} Hz)",
                      path_, line_no_, row_[0], dt, nominal, info_.sample_rate)));
    }
  }
  if (has_time_) prev_t_ = row_[0];
  return Ok();
}

Result<std::unique_ptr<Source>> CsvSource::Open(const std::string& path,
                                                const SourceOptions& opts) {
  std::unique_ptr<CsvSource> s(new CsvSource());
  s->path_ = path;
  TEND_ASSIGN_OR_RETURN(s->fd_, internal::OpenInputFile(path, "CSV"));

  // Count data lines first so total_frames is known (one cheap pass of memchr).
  int64_t data_lines = 0;
  {
    LineReader counter(s->fd_.get(), path);
    std::string_view line;
    for (;;) {
      TEND_ASSIGN_OR_RETURN(bool more, counter.Next(&line));
      if (!more) break;
      if (!Skippable(line)) ++data_lines;
    }
    if (::lseek(s->fd_.get(), 0, SEEK_SET) != 0) return Fail(fs::ErrnoError("seek " + path, errno));
  }
  s->reader_ = std::make_unique<LineReader>(s->fd_.get(), path);

  std::string_view first;
  TEND_ASSIGN_OR_RETURN(bool any, s->NextDataLine(&first));
  if (!any) return Fail(Error::Corrupt(path + ": no data (empty CSV)"));
  const int64_t first_line_no = s->line_no_;
  for (char c : {',', ';', '\t'}) {
    if (first.find(c) != std::string_view::npos) {
      s->sep_ = c;
      break;
    }
  }
  Split(first, s->sep_, s->cells_);
  s->columns_ = static_cast<int>(s->cells_.size());
  // A header names every column; data has a number in every column. A first line with both is
  // an error: silently taking it as a header would lose a row and name channels after samples.
  int name_cells = 0;
  std::string_view a_name, a_number;
  for (auto cell : s->cells_) {
    double v;
    if (ParseDouble(cell, &v) == ParseResult::kNotNumber) {
      ++name_cells;
      if (a_name.empty()) a_name = cell.empty() ? "(empty)" : cell;
    } else if (a_number.empty()) {
      a_number = cell;
    }
  }
  if (name_cells > 0 && name_cells < s->columns_) {
    return Fail(Error::Corrupt(fmt::format(
        "{}:{}: first line mixes names and numbers ('{}', '{}'): a header needs a name in every "
        "column, a data row a number",
        path, first_line_no, a_name.substr(0, 40), a_number.substr(0, 40))));
  }
  const bool header = name_cells > 0;
  std::vector<std::string> names;
  if (header) {
    for (int i = 0; i < s->columns_; ++i) {
      std::string n = Unquote(s->cells_[i]);
      names.push_back(n.empty() ? fmt::format("ch{}", i) : n);
    }
    s->has_time_ = s->columns_ > 1 && IsTimeName(names[0]);
    if (s->has_time_) names.erase(names.begin());
    --data_lines;
  } else {
    for (int i = 0; i < s->columns_; ++i) names.push_back(fmt::format("ch{}", i));
  }
  s->names_ = names;
  const int value_cols = static_cast<int>(names.size());
  if (opts.wav_channel >= value_cols) {
    return Fail(Error::Invalid(fmt::format("{}: channel {} requested, the file has {}", path,
                                           opts.wav_channel, value_cols)));
  }
  s->pick_ = opts.wav_channel;
  s->info_.channels = s->pick_ >= 0 ? 1 : value_cols;
  s->info_.channel_names = s->pick_ >= 0 ? std::vector<std::string>{names[s->pick_]} : names;
  s->info_.total_frames = data_lines;

  // Read ahead: the first line (when it is data) and, with a time column, up to 1,000 rows to
  // estimate the sample rate from their span (robust to timestamps printed with few digits).
  std::vector<double> rows;
  auto take = [&](std::string_view line) -> Status {
    TEND_RETURN_NOT_OK(s->ParseRow(line));
    rows.insert(rows.end(), s->row_.begin(), s->row_.end());
    return Ok();
  };
  if (s->has_time_) {
    s->info_.sample_rate = 1;  // ParseRow skips the step check until the rate is known
    std::string_view line;
    int64_t n = 0;
    while (n < 1000) {
      TEND_ASSIGN_OR_RETURN(bool more, s->NextDataLine(&line));
      if (!more) break;
      s->frame_ = 0;  // no step check until the rate is known
      TEND_RETURN_NOT_OK(take(line));
      if (n > 0 && !(s->row_[0] > rows[(n - 1) * s->columns_])) {
        return Fail(Error::Corrupt(
            fmt::format("{}:{}: time {} does not increase", path, s->line_no_, s->row_[0])));
      }
      ++n;
    }
    if (n < 2) {
      return Fail(Error::Corrupt(path + ": a time column needs at least two rows to give a rate"));
    }
    const double span = rows[(n - 1) * s->columns_] - rows[0];
    s->info_.sample_rate = static_cast<double>(n - 1) / span;
    // Now that the rate is known, check the steps of the rows already read.
    for (int64_t i = 1; i < n; ++i) {
      const double dt = rows[i * s->columns_] - rows[(i - 1) * s->columns_];
      if (!(dt > 0.5 / s->info_.sample_rate && dt < 1.5 / s->info_.sample_rate)) {
        return Fail(Error::Corrupt(fmt::format(
            "{}: time column is not uniformly sampled near row {} (step {} s, mean {} s)", path,
            i + 1, dt, 1.0 / s->info_.sample_rate)));
      }
    }
    s->frame_ = n;
    if (opts.sample_rate > 0 &&
        std::fabs(opts.sample_rate - s->info_.sample_rate) > 0.01 * s->info_.sample_rate) {
      TEND_LOG_WARN("{}: time column gives {:.6g} Hz, not the {} Hz given; using the file's", path,
                    s->info_.sample_rate, opts.sample_rate);
    }
  } else {
    if (!(opts.sample_rate > 0) || !std::isfinite(opts.sample_rate)) {
      return Fail(Error::Invalid(path + ": no time column, so the sample rate must be given"));
    }
    s->info_.sample_rate = opts.sample_rate;
    if (!header) {
      s->line_no_ = first_line_no;
      TEND_RETURN_NOT_OK(take(first));
      s->frame_ = 1;
    }
  }
  // Keep only the delivered columns of the rows read ahead.
  const int off = s->has_time_ ? 1 : 0;
  const size_t nrows = rows.size() / s->columns_;
  for (size_t r = 0; r < nrows; ++r) {
    if (s->has_time_) s->ahead_times_.push_back(rows[r * s->columns_]);
    for (int c = 0; c < value_cols; ++c) {
      if (s->pick_ < 0 || c == s->pick_) {
        s->ahead_.push_back(static_cast<float>(rows[r * s->columns_ + off + c]));
      }
    }
  }
  return std::unique_ptr<Source>(std::move(s));
}

Result<size_t> CsvSource::Read(std::span<float> out, size_t max_frames) {
  const int ch = info_.channels;
  if (out.size() < max_frames * ch) {
    return Fail(Error::Internal(fmt::format("{}: Read buffer holds {} floats, {} frames need {}",
                                            path_, out.size(), max_frames, max_frames * ch)));
  }
  size_t done = 0;
  times_.clear();
  if (has_time_ && times_.capacity() < max_frames) times_.reserve(max_frames);
  while (done < max_frames && ahead_pos_ < ahead_.size()) {
    std::copy_n(ahead_.data() + ahead_pos_, ch, out.data() + done * ch);
    if (has_time_) times_.push_back(ahead_times_[ahead_pos_ / static_cast<size_t>(ch)]);
    ahead_pos_ += ch;
    ++done;
  }
  if (ahead_pos_ == ahead_.size() && !ahead_.empty()) {
    ahead_.clear();
    ahead_.shrink_to_fit();
    ahead_times_.clear();
    ahead_times_.shrink_to_fit();
    ahead_pos_ = 0;
  }
  const int off = has_time_ ? 1 : 0;
  std::string_view line;
  while (done < max_frames) {
    TEND_ASSIGN_OR_RETURN(bool more, NextDataLine(&line));
    if (!more) break;
    TEND_RETURN_NOT_OK(ParseRow(line));
    float* dst = out.data() + done * ch;
    if (pick_ >= 0) {
      dst[0] = static_cast<float>(row_[off + pick_]);
    } else {
      for (int c = 0; c < ch; ++c) dst[c] = static_cast<float>(row_[off + c]);
    }
    if (has_time_) times_.push_back(row_[0]);
    ++frame_;
    ++done;
  }
  return done;
}

}  // namespace

Result<std::unique_ptr<Source>> OpenCsv(const std::string& path, const SourceOptions& opts) {
  return CsvSource::Open(path, opts);
}

}  // namespace tend::sources
