#include "runtime/frame_fit.h"

#include <algorithm>

namespace tend::runtime {

bool TakesFrames(const agent::ModelInput& in) {
  const EventSpec& e = in.event;
  return !in.windowing && e.type == ElementType::kU8 && e.rank == 3 &&
         (e.dims[2] == 1 || e.dims[2] == 3);
}

FrameFitter::FrameFitter(const agent::ModelInput& in) {
  vision::PreprocessSpec p;
  p.roi = {in.roi.x, in.roi.y, in.roi.width, in.roi.height};
  p.width = static_cast<int>(in.event.dims[1]);
  p.height = static_cast<int>(in.event.dims[0]);
  p.channels = static_cast<int>(in.event.dims[2]);
  p.color = p.channels == 1 ? "grey" : "rgb";
  p.intensity = "raw";
  p.fit = in.frame_fit;
  if (in.frame_fit == "letterbox" && in.frame_standardize) p.intensity = "standardize";
  fit_ = std::make_unique<vision::Preprocessor>(p);
}

Result<std::span<const std::byte>> FrameFitter::Fit(const vision::ImageView& img) {
  const auto& p = fit_->spec();
  if (p.fit == "stretch" && p.roi.whole() && img.width == p.width && img.height == p.height &&
      img.channels == p.channels) {
    fitted_.Reset(img.width, img.height, img.channels);
    std::copy(img.data, img.data + img.size(), fitted_.data());
  } else {
    TEND_RETURN_NOT_OK(fit_->RunU8(img, fitted_));
  }
  return std::as_bytes(std::span<const uint8_t>(fitted_.pixels()));
}

}  // namespace tend::runtime
