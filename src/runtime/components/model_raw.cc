// Model kind "raw": a tend model file whose graph takes the planar window itself,
// [1, channels, window] (or [1, window] mono), e.g. a CNN trained in PyTorch (recipes/pytorch).
#include "runtime/component_util.h"

TEND_COMPONENT(model_raw) {
  using namespace tend;
  runtime::ModelKindDescriptor d;
  d.name = "raw";
  d.description = "tend model over the raw planar window [1, channels, samples]";
  d.load = [](const runtime::ModelRequest& req) -> Result<std::unique_ptr<agent::Model>> {
    TEND_ASSIGN_OR_RETURN(auto m, agent::ServedModel::Load(req.path, req.serve));
    if (m->kind() != "raw") {
      return Fail(Error::Model(req.path + ": tend.input_kind is '" + m->kind() + "', not 'raw'"));
    }
    return std::unique_ptr<agent::Model>(std::move(m));
  };
  return registry.AddModelKind(std::move(d));
}
