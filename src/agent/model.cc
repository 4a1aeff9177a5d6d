#include "agent/model.h"

namespace tend::agent {

std::string ModelInput::Describe() const {
  std::string s = event.ToString();
  if (windowing) s += " windows " + windowing->ToJson().dump();
  if (!roi.whole()) {
    s += " of the frame region " + std::to_string(roi.x) + "," + std::to_string(roi.y) + " " +
         std::to_string(roi.width) + "x" + std::to_string(roi.height);
  }
  if (frame_fit != "stretch") s += " (" + frame_fit + ")";
  return s;
}

bool ModelInput::SameAs(const ModelInput& o) const {
  if (!(event == o.event) || !(roi == o.roi) || windowing.has_value() != o.windowing.has_value() ||
      frame_fit != o.frame_fit || frame_standardize != o.frame_standardize)
    return false;
  return !windowing || windowing->ToJson() == o.windowing->ToJson();
}

}  // namespace tend::agent
