#include "sources/image_files.h"

#include <fmt/format.h>
#include <glob.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <system_error>

namespace tend::sources {

namespace stdfs = std::filesystem;

namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool IsGlob(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

Result<int> ParseInt(const std::string& key, const std::string& v) {
  size_t used = 0;
  int n = 0;
  try {
    n = std::stoi(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size()) {
    return Fail(Error::Invalid(fmt::format("image selection: {}='{}' is not an integer", key, v)));
  }
  return n;
}

// "every=5,offset=2" / "skip=5"; anything else is not a selection (the '@' is part of the path).
Result<bool> ParseSelection(const std::string& sel, ImageSetSpec& s) {
  if (sel.rfind("every=", 0) != 0 && sel.rfind("skip=", 0) != 0) return false;
  size_t start = 0;
  while (start <= sel.size()) {
    size_t comma = sel.find(',', start);
    std::string kv =
        sel.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      return Fail(Error::Invalid("image selection: expected key=value, got '" + kv + "'"));
    }
    std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    TEND_ASSIGN_OR_RETURN(int n, ParseInt(k, v));
    if (k == "every" || k == "skip") {
      if (s.every != 0) return Fail(Error::Invalid("image selection: give one of every= or skip="));
      s.every = n;
      s.skip = k == "skip";
    } else if (k == "offset") {
      s.offset = n;
    } else {
      return Fail(Error::Invalid(
          fmt::format("image selection: unknown key '{}' (every=N, skip=N, offset=K)", k)));
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (s.every < 1) return Fail(Error::Invalid("image selection: every/skip must be >= 1"));
  if (s.offset < 0 || s.offset >= s.every) {
    return Fail(Error::Invalid(fmt::format("image selection: offset must be in [0, {})", s.every)));
  }
  return true;
}

Result<std::vector<std::string>> Glob(const std::string& pattern) {
  glob_t g{};
  int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  if (rc != 0 && rc != GLOB_NOMATCH) {
    return Fail(Error::Io(fmt::format("glob '{}' failed (code {})", pattern, rc)));
  }
  return out;  // glob(3) sorts
}

}  // namespace

bool HasImageExtension(const std::string& path) {
  std::string ext = Lower(stdfs::path(path).extension().string());
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

Result<ImageSetSpec> ImageSetSpec::Parse(const std::string& text) {
  ImageSetSpec s;
  s.pattern = text.rfind("images:", 0) == 0 ? text.substr(7) : text;
  if (auto at = s.pattern.rfind('@'); at != std::string::npos) {
    TEND_ASSIGN_OR_RETURN(bool sel, ParseSelection(s.pattern.substr(at + 1), s));
    if (sel) s.pattern.resize(at);
  }
  if (s.pattern.empty()) return Fail(Error::Invalid("image set: empty path in '" + text + "'"));
  return s;
}

std::string ImageSetSpec::ToString() const {
  if (every == 0) return pattern;
  std::string sel = fmt::format("{}={}", skip ? "skip" : "every", every);
  if (offset) sel += fmt::format(",offset={}", offset);
  return pattern + "@" + sel;
}

bool ImageSetSpec::Selected(size_t index) const {
  if (every == 0) return true;
  const bool hit = static_cast<int>(index % static_cast<size_t>(every)) == offset;
  return skip ? !hit : hit;
}

Result<std::vector<ImageEntry>> ListImages(const ImageSetSpec& spec) {
  std::vector<std::string> files;
  std::error_code ec;
  if (IsGlob(spec.pattern)) {
    TEND_ASSIGN_OR_RETURN(files, Glob(spec.pattern));
    std::erase_if(files, [](const std::string& f) { return !HasImageExtension(f); });
  } else if (stdfs::is_directory(spec.pattern, ec)) {
    for (const auto& e : stdfs::directory_iterator(spec.pattern, ec)) {
      if (e.is_regular_file(ec) && HasImageExtension(e.path().string())) {
        files.push_back(e.path().string());
      }
    }
    if (ec) return Fail(Error::Io(fmt::format("list {}: {}", spec.pattern, ec.message())));
    std::sort(files.begin(), files.end());
  } else if (stdfs::is_regular_file(spec.pattern, ec)) {
    files.push_back(spec.pattern);
  } else {
    return Fail(
        Error::NotFound(fmt::format("{}: no such folder, file or matching images", spec.pattern)));
  }
  // X.png beside X.jpg / X.jpeg is X's mask.
  std::map<std::string, std::string> jpeg_by_stem;
  for (const auto& f : files) {
    std::string ext = Lower(stdfs::path(f).extension().string());
    if (ext != ".png") jpeg_by_stem[stdfs::path(f).replace_extension().string()] = f;
  }
  std::map<std::string, std::string> mask_of;
  std::vector<std::string> images;
  for (const auto& f : files) {
    std::string ext = Lower(stdfs::path(f).extension().string());
    auto it = jpeg_by_stem.find(stdfs::path(f).replace_extension().string());
    if (ext == ".png" && it != jpeg_by_stem.end()) {
      mask_of[it->second] = f;
    } else {
      images.push_back(f);
    }
  }
  std::vector<ImageEntry> out;
  for (size_t i = 0; i < images.size(); ++i) {
    if (!spec.Selected(i)) continue;
    auto m = mask_of.find(images[i]);
    out.push_back({images[i], m == mask_of.end() ? "" : m->second});
  }
  if (images.empty()) return Fail(Error::NotFound(spec.pattern + ": no JPEG or PNG images"));
  if (out.empty()) {
    return Fail(Error::Invalid(
        fmt::format("{}: the selection leaves none of {} images", spec.ToString(), images.size())));
  }
  return out;
}

bool LooksLikeImageSet(const std::string& text) {
  if (text.rfind("images:", 0) == 0) return true;
  auto spec = ImageSetSpec::Parse(text);
  if (!spec) return false;
  if (IsGlob(spec->pattern)) return true;
  std::error_code ec;
  if (stdfs::is_regular_file(spec->pattern, ec)) return HasImageExtension(spec->pattern);
  if (!stdfs::is_directory(spec->pattern, ec)) return false;
  for (const auto& e : stdfs::directory_iterator(spec->pattern, ec)) {
    if (HasImageExtension(e.path().string())) return true;
  }
  return false;
}

}  // namespace tend::sources
