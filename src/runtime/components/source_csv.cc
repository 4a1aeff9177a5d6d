// Source "csv": a CSV/TSV recording, one column per channel (an optional time column gives the
// rate), replayed as a sample stream.
#include "runtime/component_util.h"

TEND_COMPONENT(source_csv) {
  using namespace tend;
  runtime::SourceDescriptor d;
  d.name = "csv";
  d.description = "CSV/TSV recording, one column per channel (time column or --sample-rate)";
  d.extensions = {"csv", "tsv"};
  d.open = [](const runtime::SourceRequest& req) {
    return runtime::OpenStreamReader(
        req, sources::OpenCsv(req.spec, runtime::SourceOptionsFor(req)), false);
  };
  return registry.AddSource(std::move(d));
}
