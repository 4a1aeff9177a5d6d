// What the health and drift monitors (decide/health.h, decide/drift.h) need from a model file:
// the commissioning distribution of the score (the calibration's log-normal fit) and of each
// feature (deciles and bin shares, "tend.feature_reference"). Serving, `tend score --health` and
// training share these, so the monitors see the same baselines everywhere.
#pragma once

#include <nlohmann/json.hpp>
#include <span>

#include "core/status.h"
#include "decide/drift.h"
#include "decide/health.h"
#include "detect/model_card.h"

namespace tend::agent {

// From the card's calibration (log_offset, log_mean, log_sd); an error naming the missing or
// bad field otherwise (models calibrated by another rule cannot be monitored this way).
Result<ScoreBaseline> ScoreBaselineOf(const detect::ModelCard& card);

// Health options for a model: the defaults, with alarm_z at the evidence of the model's LOW
// threshold (so that only windows over the alert threshold feed the alarm).
Result<HealthOptions> HealthOptionsFor(const detect::ModelCard& card);

// The card's "tend.feature_reference" as a drift reference sized to the card's features.
// Errors name the problem ("absent": a model from before drift monitoring).
Result<DriftReference> FeatureReferenceOf(const detect::ModelCard& card);
// Strict parse of the JSON object itself, for `features` features.
Result<DriftReference> ParseFeatureReference(const nlohmann::json& j, size_t features);
nlohmann::json FeatureReferenceJson(const DriftReference& ref);

}  // namespace tend::agent
