// Model kind "features": a tend model file whose graph takes the feature vector [1, F] computed
// from each window by the feature spec in its metadata (time, spectrum, bands, envelope), and
// returns the anomaly score and per-feature contributions.
#include "runtime/component_util.h"

TEND_COMPONENT(model_features) {
  using namespace tend;
  runtime::ModelKindDescriptor d;
  d.name = "features";
  d.description = "tend model over a window's feature vector (dsp features from the model card)";
  d.load = [](const runtime::ModelRequest& req) -> Result<std::unique_ptr<agent::Model>> {
    TEND_ASSIGN_OR_RETURN(auto m, agent::ServedModel::Load(req.path, req.serve));
    if (m->kind() != "features") {
      return Fail(
          Error::Model(req.path + ": tend.input_kind is '" + m->kind() + "', not 'features'"));
    }
    return std::unique_ptr<agent::Model>(std::move(m));
  };
  return registry.AddModelKind(std::move(d));
}
