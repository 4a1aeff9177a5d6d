#include "optimize/npy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>

#include "core/fs.h"

namespace tend::optimize {

int64_t NpyArray::row_size() const {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

std::span<const float> NpyArray::row(int64_t i) const {
  const auto n = static_cast<size_t>(row_size());
  return std::span<const float>(data).subspan(static_cast<size_t>(i) * n, n);
}

std::string ShapeString(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += shape[i] < 0 ? std::string("?") : std::to_string(shape[i]);
  }
  return s + "]";
}

namespace {

struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;
};

// The header is a Python dict literal written by numpy, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// We parse exactly that grammar: string keys, and values that are a string, True/False or a
// tuple of non-negative integers.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  Result<Header> Parse() {
    Header h;
    bool have_descr = false, have_order = false, have_shape = false;
    SkipSpace();
    if (!Eat('{')) return Bad("header is not a dict");
    for (;;) {
      SkipSpace();
      if (Eat('}')) break;
      TEND_ASSIGN_OR_RETURN(std::string key, String());
      SkipSpace();
      if (!Eat(':')) return Bad("expected ':' after key '" + key + "'");
      SkipSpace();
      if (key == "descr") {
        TEND_ASSIGN_OR_RETURN(h.descr, String());
        have_descr = true;
      } else if (key == "fortran_order") {
        if (Word("True")) {
          h.fortran_order = true;
        } else if (Word("False")) {
          h.fortran_order = false;
        } else {
          return Bad("fortran_order is not True/False");
        }
        have_order = true;
      } else if (key == "shape") {
        TEND_ASSIGN_OR_RETURN(h.shape, Tuple());
        have_shape = true;
      } else {
        return Bad("unexpected key '" + key + "'");
      }
      SkipSpace();
      if (Eat(',')) continue;
      SkipSpace();
      if (Eat('}')) break;
      return Bad("expected ',' or '}'");
    }
    if (!have_descr || !have_order || !have_shape) {
      return Bad("missing key (needs descr, fortran_order and shape)");
    }
    return h;
  }

 private:
  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n')) ++pos_;
  }
  bool Eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool Word(const char* w) {
    size_t n = std::strlen(w);
    if (s_.compare(pos_, n, w) == 0) {
      pos_ += n;
      return true;
    }
    return false;
  }
  Result<std::string> String() {
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) return Bad("expected a string");
    char q = s_[pos_++];
    size_t end = s_.find(q, pos_);
    if (end == std::string::npos) return Bad("unterminated string");
    std::string out = s_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }
  Result<std::vector<int64_t>> Tuple() {
    std::vector<int64_t> dims;
    if (!Eat('(')) return Bad("shape is not a tuple");
    for (;;) {
      SkipSpace();
      if (Eat(')')) break;
      if (pos_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
        return Bad("shape has a non-integer dimension");
      }
      int64_t v = 0;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10)
          return Bad("shape dimension too large");
        v = v * 10 + (s_[pos_++] - '0');
      }
      // numpy may write 3L on Python 2.
      Eat('L');
      dims.push_back(v);
      SkipSpace();
      if (Eat(',')) continue;
      SkipSpace();
      if (Eat(')')) break;
      return Bad("expected ',' or ')' in shape");
    }
    return dims;
  }
  tl::unexpected<Error> Bad(const std::string& what) const {
    return Fail(Error::Corrupt(path_ + ": bad .npy header: " + what));
  }

  const std::string& s_;
  const std::string& path_;
  size_t pos_ = 0;
};

Result<Header> ParseHeader(const std::vector<uint8_t>& bytes, const std::string& path) {
  static const uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (bytes.size() < 10 || std::memcmp(bytes.data(), kMagic, 6) != 0) {
    return Fail(
        Error::Invalid(path + ": not a .npy file (bad magic; expected NumPy's np.save format)"));
  }
  const int major = bytes[6];
  size_t header_len = 0, prefix = 0;
  if (major == 1) {
    header_len = bytes[8] | (static_cast<size_t>(bytes[9]) << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return Fail(Error::Corrupt(path + ": truncated .npy header"));
    header_len = bytes[8] | (static_cast<size_t>(bytes[9]) << 8) |
                 (static_cast<size_t>(bytes[10]) << 16) | (static_cast<size_t>(bytes[11]) << 24);
    prefix = 12;
  } else {
    return Fail(Error::Unsupported(path + ": unsupported .npy format version " +
                                   std::to_string(major) + "." + std::to_string(bytes[7])));
  }
  if (bytes.size() < prefix + header_len) {
    return Fail(Error::Corrupt(path + ": truncated .npy header"));
  }
  std::string text(bytes.begin() + static_cast<std::ptrdiff_t>(prefix),
                   bytes.begin() + static_cast<std::ptrdiff_t>(prefix + header_len));
  TEND_ASSIGN_OR_RETURN(Header h, HeaderParser(text, path).Parse());
  h.data_offset = prefix + header_len;
  return h;
}

// Checks the payload size against the header; returns the element count.
Result<size_t> CheckPayload(const std::vector<uint8_t>& bytes, const Header& h, size_t item,
                            const std::string& path) {
  if (h.fortran_order) {
    return Fail(Error::Unsupported(path + ": Fortran-order array; save it in C order " +
                                   "(np.ascontiguousarray)"));
  }
  size_t count = 1;
  for (int64_t d : h.shape) {
    if (d != 0 && count > std::numeric_limits<size_t>::max() / static_cast<size_t>(d) / item) {
      return Fail(Error::Corrupt(path + ": shape " + ShapeString(h.shape) + " is too large"));
    }
    count *= static_cast<size_t>(d);
  }
  const size_t have = bytes.size() - h.data_offset;
  if (have < count * item) {
    return Fail(Error::Corrupt(path + ": truncated data (shape " + ShapeString(h.shape) +
                               " needs " + std::to_string(count * item) + " bytes, got " +
                               std::to_string(have) + ")"));
  }
  if (have > count * item) {
    return Fail(Error::Corrupt(path + ": " + std::to_string(have - count * item) +
                               " bytes after the data of shape " + ShapeString(h.shape)));
  }
  return count;
}

}  // namespace

Result<NpyArray> ReadNpy(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(auto bytes, fs::ReadBinaryFile(path));
  TEND_ASSIGN_OR_RETURN(Header h, ParseHeader(bytes, path));
  if (h.descr != "<f4") {
    return Fail(Error::Invalid(path + ": dtype '" + h.descr +
                               "' not supported; expected float32 ('<f4'): use "
                               "x.astype(np.float32)"));
  }
  TEND_ASSIGN_OR_RETURN(size_t count, CheckPayload(bytes, h, 4, path));
  NpyArray a;
  a.shape = h.shape;
  a.data.resize(count);
  if (count) std::memcpy(a.data.data(), bytes.data() + h.data_offset, count * 4);
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(a.data[i])) {
      return Fail(Error::Invalid(path + ": non-finite value (" + std::to_string(a.data[i]) +
                                 ") at flat index " + std::to_string(i)));
    }
  }
  return a;
}

Result<NpyArray> ReadNpyFileOrDir(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) return ReadNpy(path);
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
    if (e.path().extension() == ".npy") files.push_back(e.path().string());
  }
  if (ec) return Fail(fs::ErrnoError("list " + path, ec.value()));
  if (files.empty()) return Fail(Error::Invalid(path + ": directory has no .npy files"));
  std::sort(files.begin(), files.end());
  NpyArray all;
  for (const auto& f : files) {
    TEND_ASSIGN_OR_RETURN(NpyArray a, ReadNpy(f));
    if (a.shape.empty()) return Fail(Error::Invalid(f + ": a 0-d array has no sample axis"));
    if (all.shape.empty()) {
      all = std::move(a);
      continue;
    }
    if (!std::equal(a.shape.begin() + 1, a.shape.end(), all.shape.begin() + 1, all.shape.end())) {
      return Fail(Error::Invalid(f + ": shape " + ShapeString(a.shape) +
                                 " does not match the other files' " + ShapeString(all.shape) +
                                 " after the first axis"));
    }
    all.shape[0] += a.shape[0];
    all.data.insert(all.data.end(), a.data.begin(), a.data.end());
  }
  return all;
}

Result<std::vector<float>> ReadNpyLabels(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(auto bytes, fs::ReadBinaryFile(path));
  TEND_ASSIGN_OR_RETURN(Header h, ParseHeader(bytes, path));
  static const std::map<std::string, size_t> kItem = {
      {"<f4", 4}, {"<f8", 8}, {"<i4", 4}, {"<i8", 8}, {"|i1", 1}, {"|u1", 1}, {"|b1", 1}};
  auto it = kItem.find(h.descr);
  if (it == kItem.end()) {
    return Fail(Error::Invalid(path + ": labels dtype '" + h.descr +
                               "' not supported (use float32/64, int8/32/64, uint8 or bool)"));
  }
  if (!(h.shape.size() == 1 || (h.shape.size() == 2 && h.shape[1] == 1))) {
    return Fail(Error::Invalid(path + ": labels must be 1-D [N] (or [N,1]), got shape " +
                               ShapeString(h.shape)));
  }
  TEND_ASSIGN_OR_RETURN(size_t count, CheckPayload(bytes, h, it->second, path));
  std::vector<float> out(count);
  const uint8_t* p = bytes.data() + h.data_offset;
  for (size_t i = 0; i < count; ++i) {
    double v = 0;
    if (h.descr == "<f4") {
      float f;
      std::memcpy(&f, p + i * 4, 4);
      v = f;
    } else if (h.descr == "<f8") {
      std::memcpy(&v, p + i * 8, 8);
    } else if (h.descr == "<i4") {
      int32_t x;
      std::memcpy(&x, p + i * 4, 4);
      v = x;
    } else if (h.descr == "<i8") {
      int64_t x;
      std::memcpy(&x, p + i * 8, 8);
      v = static_cast<double>(x);
    } else if (h.descr == "|i1") {
      v = static_cast<int8_t>(p[i]);
    } else {
      v = p[i];
    }
    if (!std::isfinite(v)) {
      return Fail(Error::Invalid(path + ": non-finite label at index " + std::to_string(i)));
    }
    out[i] = static_cast<float>(v);
  }
  return out;
}

Status WriteNpy(const std::string& path, std::span<const int64_t> shape,
                std::span<const float> data) {
  size_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) return Fail(Error::Invalid("WriteNpy " + path + ": negative dimension"));
    count *= static_cast<size_t>(d);
  }
  if (count != data.size()) {
    return Fail(Error::Invalid("WriteNpy " + path + ": shape " + ShapeString(shape) + " needs " +
                               std::to_string(count) + " values, got " +
                               std::to_string(data.size())));
  }
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += std::to_string(shape[i]) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 2);  // (3, 4) but (3,) for 1-D
  if (shape.size() == 1) dims.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad so that the data starts on a 64-byte boundary; the header ends with '\n'.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(reinterpret_cast<const char*>(data.data()), data.size() * 4);
  return fs::WriteFileAtomic(path, out);
}

}  // namespace tend::optimize
