#include "agent/model.h"

namespace tend::agent {

std::string ModelInput::Describe() const {
  std::string s = event.ToString();
  if (windowing) s += " windows " + windowing->ToJson().dump();
  return s;
}

bool ModelInput::SameAs(const ModelInput& o) const {
  if (!(event == o.event) || windowing.has_value() != o.windowing.has_value()) return false;
  return !windowing || windowing->ToJson() == o.windowing->ToJson();
}

}  // namespace tend::agent
