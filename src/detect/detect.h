// Anomaly detectors trained on normal feature vectors and exported as self-describing ONNX
// models: one include for the whole module (training, calibration, model card, export).
#pragma once

#include "detect/calibrate.h"
#include "detect/detector.h"
#include "detect/model_card.h"
#include "detect/onnx_export.h"
#include "detect/select.h"
