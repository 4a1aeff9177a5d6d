// Writes a trained detector as one self-describing ONNX model (ir_version 8, opset 13, default
// domain only, built with the ONNX protobuf schema: no Python) and reads one back.
//
// Graph contract: input "features" float [N,F] (N symbolic); outputs "anomaly_score" float [N]
// and "contributions" float [N,F] (summing to the score). Standardisation (x - mean) / std is
// inside the graph. Parameters are initializers with fixed names ("tend_mean", "tend_std",
// "tend_precision", "tend_residual_projector", "tend_ae_w<i>", "tend_ae_b<i>") so that a model
// can be read back for recalibration; the model card (model_card.h) is in metadata_props.
#pragma once

#include <string>

#include "core/status.h"
#include "detect/detector.h"
#include "detect/model_card.h"

namespace tend::detect {

// Serialized ModelProto bytes. Fields of `card` that come from the detector (detector,
// thresholds, train_mean, train_std, calibration; feature_names when empty) are taken from
// `det`; a card that contradicts `det` (other detector, other feature names) is an error.
// An empty `created` becomes now. The card must otherwise be complete (feature_spec, name...).
Result<std::string> ExportOnnx(const TrainedDetector& det, const ModelCard& card);

// The card of any model file (tend-built or external): metadata parsed and validated, then
// checked against the graph's input and output shapes. Accepts bytes or a file path.
Result<ModelCard> ReadModelCard(const std::string& onnx_bytes_or_path);

// Rebuilds the detector of a tend-built model (for Recalibrate / ScoreReference). Errors when
// metadata is missing, contradicts the graph (shapes, statistics, thresholds), or the graph is
// not the one tend builds for its detector (e.g. an external model).
Result<TrainedDetector> DetectorFromModel(const std::string& onnx_bytes_or_path);

// `s` is taken as a path when it names an existing file, otherwise as model bytes.
Result<std::string> LoadModelBytes(const std::string& onnx_bytes_or_path);

}  // namespace tend::detect
