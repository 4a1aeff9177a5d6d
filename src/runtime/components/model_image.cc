// Model kind "image": a tend image model (tend.input_kind "image", see `tend train --input DIR`):
// an ONNX backbone plus a patch detector in one graph, with the preprocessing (ROI, resize,
// grey/RGB, normalisation) in its card. The event is the frame's ROI u8 [height, width, channels]
// at the network's input size (the "images" source crops the ROI, ModelInput::roi, and fits it
// with the same resampler, as fitting did); the score is the image's anomaly score, the
// thresholds those calibrated on held-out good images.
//
// Defaults for parts (ModelKindDescriptor::defaults; the user's explicit setting wins): every
// part is its own event, so debounce 1 of 1; the deadline is 200 ms from frame arrival.
//
// Evidence (images.evidence_dir set): every frame scoring at or above LOW is staged with its
// anomaly map into an inspect::EvidenceStore (bounded by count, bytes and age; PNG encoding and
// writing on its own worker behind a bounded queue, drops counted), and the record's image_ref
// becomes the decision's evidence_ref (the MQTT alert's image_ref, the decision log's).
#include <fmt/format.h>

#include "core/log.h"
#include "inspect/evidence_store.h"
#include "inspect/image_model.h"
#include "runtime/component_util.h"

namespace tend::runtime {
namespace {

class ImageAgentModel final : public agent::Model {
 public:
  ImageAgentModel(std::unique_ptr<inspect::ImageModel> m,
                  std::unique_ptr<inspect::EvidenceStore> evidence)
      : m_(std::move(m)), evidence_(std::move(evidence)) {
    const auto& p = m_->preprocess();
    input_.event =
        EventSpec::Make(ElementType::kU8, {p.height, p.width, p.color == "grey" ? 1 : 3});
    input_.roi = {p.roi.x, p.roi.y, p.roi.width, p.roi.height};
    input_.frame_fit = p.fit;
    input_.frame_standardize = p.intensity == "standardize";
    m_->PrepareOut(sc_);
  }
  const std::string& kind() const override { return kind_; }
  const std::string& name() const override { return m_->card().name; }
  const std::string& version() const override { return m_->card().version; }
  const std::string& path() const override { return m_->path(); }
  const agent::ModelInput& input() const override { return input_; }
  SeverityThresholds thresholds() const override { return m_->thresholds(); }
  ModelInfo info() const override { return m_->info(); }
  const std::vector<std::string>& contributor_names() const override { return none_; }
  void PrepareOut(agent::ScoreOut& out) const override {
    out.top.clear();
    out.n_top = 0;
  }

  Status Score(const EventView& ev, agent::ScoreOut& out) override {
    auto px = ev.as<uint8_t>();
    if (!(ev.spec == input_.event) || px.size() != input_.event.bytes()) {
      return Fail(Error::Invalid(fmt::format("frame {}: {} given, the model takes {}", ev.index,
                                             ev.spec.ToString(), input_.event.ToString())));
    }
    const vision::ImageView view{px.data(), static_cast<int>(ev.spec.dims[1]),
                                 static_cast<int>(ev.spec.dims[0]),
                                 static_cast<int>(ev.spec.dims[2])};
    TEND_RETURN_NOT_OK(m_->Score(view, sc_));
    out.score = sc_.score;
    out.n_top = 0;
    out.features_ms = sc_.preprocess_ms;
    out.inference_ms = sc_.inference_ms + sc_.scoring_ms;
    out.evidence_ref.clear();
    if (evidence_ && sc_.score >= m_->thresholds().low) KeepEvidence(ev.index, view, out);
    return Ok();
  }
  ~ImageAgentModel() override {
    if (!evidence_) return;
    const auto st = evidence_->stats();
    TEND_LOG_INFO(
        "evidence {}: {} written, {} dropped (queue full), {} failed, {} deleted by retention",
        evidence_->dir(), st.written, st.dropped_queue_full, st.failed, st.deleted);
  }

 private:
  void KeepEvidence(int64_t index, const vision::ImageView& view, agent::ScoreOut& out) {
    const auto t = m_->thresholds();
    evidence_->Stage(index, view, sc_.map, sc_.map_width, sc_.map_height, vision::Roi{}, 0, t.high);
    d_.window_index = index;
    d_.is_alert = true;
    d_.fail_safe = false;
    d_.anomaly_score = sc_.score;
    d_.severity = sc_.score >= t.high     ? Severity::kHigh
                  : sc_.score >= t.medium ? Severity::kMedium
                                          : Severity::kLow;
    d_.model_name.assign(m_->card().name);
    d_.model_version.assign(m_->card().version);
    d_.timestamp = std::chrono::system_clock::now();
    out.evidence_ref = evidence_->Submit(d_);
  }

  std::unique_ptr<inspect::ImageModel> m_;
  std::unique_ptr<inspect::EvidenceStore> evidence_;
  Decision d_;
  agent::ModelInput input_;
  inspect::ImageScore sc_;
  std::string kind_ = "image";
  std::vector<std::string> none_;
};

Result<std::unique_ptr<agent::Model>> Load(const ModelRequest& req) {
  inspect::ImageServeOptions o;
  o.session = req.serve.session;
  o.warmup_runs = req.serve.warmup_runs;
  o.frames_fitted = true;
  TEND_ASSIGN_OR_RETURN(auto m, inspect::ImageModel::Load(req.path, o));
  if (m->card().input_kind != "image") {
    return Fail(Error::Model(req.path + ": tend.input_kind is '" + m->card().input_kind +
                             "', not 'image'"));
  }
  std::unique_ptr<inspect::EvidenceStore> evidence;
  const Settings& s = *req.settings;
  if (!s.GetString("images.evidence_dir").empty()) {
    inspect::EvidenceOptions eo;
    eo.dir = s.GetString("images.evidence_dir");
    eo.max_records = s.GetInt("images.evidence_max_records");
    eo.max_age_s = s.GetFloat("images.evidence_max_age_s");
    eo.max_bytes = s.GetInt("images.evidence_max_mb") << 20;
    TEND_ASSIGN_OR_RETURN(evidence, inspect::EvidenceStore::Open(eo));
  }
  return std::unique_ptr<agent::Model>(new ImageAgentModel(std::move(m), std::move(evidence)));
}

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(model_image) {
  using namespace tend;
  runtime::ModelKindDescriptor d;
  d.name = "image";
  d.description = "tend image model: backbone + patch detector over a frame u8 [h,w,c]";
  using D = SettingDef;
  d.keys = {
      D::Path("images.evidence_dir", "",
              "Keep each reject's frame and anomaly-map overlay (PNG) here (\"\": none)")
          .Flag("--evidence-dir")
          .PerAsset("evidence_dir"),
      D::Int("images.evidence_max_records", 1000, 1, 1e9, "Evidence records kept at most")
          .PerAsset("evidence_max_records"),
      D::Float("images.evidence_max_age_s", 7 * 86400.0, 1, 1e10,
               "Evidence older than this is deleted")
          .PerAsset("evidence_max_age_s"),
      D::Int("images.evidence_max_mb", 512, 1, 1e7, "Evidence store size bound in MiB")
          .PerAsset("evidence_max_mb"),
  };
  d.defaults = {{"decide.debounce_k", int64_t{1}},
                {"decide.debounce_n", int64_t{1}},
                {"agent.deadline_s", 0.2}};
  d.load = runtime::Load;
  return registry.AddModelKind(std::move(d));
}
