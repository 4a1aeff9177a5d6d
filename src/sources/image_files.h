// Image sets on disk: a folder, a glob or one file, in name order, with an optional selection so
// that one folder can be split reproducibly (fit on four fifths, judge on the fifth never seen):
//
//   parts/                  every JPEG/PNG in the folder (not recursive)
//   "parts/*.jpg"           a glob
//   parts/@every=5          images 0, 5, 10, ... (index in name order)
//   parts/@every=5,offset=2 images 2, 7, 12, ...
//   parts/@skip=5           all the others: the complement of @every=5
//
// An "images:" prefix is accepted and ignored. A PNG named like a JPEG next to it (X.png beside
// X.jpg) is that image's defect mask, as in the magnetic-tile set, not an image of its own.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace tend::sources {

struct ImageEntry {
  std::string path;
  std::string mask;  // "" when there is none
};

struct ImageSetSpec {
  std::string pattern;  // folder, glob or file
  int every = 0;        // 0 = no selection
  int offset = 0;
  bool skip = false;  // the complement of every/offset

  static Result<ImageSetSpec> Parse(const std::string& text);
  std::string ToString() const;
  bool Selected(size_t index) const;
};

// Errors: nothing matches, a folder without images, a selection that leaves nothing.
Result<std::vector<ImageEntry>> ListImages(const ImageSetSpec& spec);

// ".jpg", ".jpeg", ".png" in any case.
bool HasImageExtension(const std::string& path);
// A folder holding images, a glob, an image file, or any "images:" spec.
bool LooksLikeImageSet(const std::string& text);

}  // namespace tend::sources
