#include "optimize/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "core/json.h"

namespace tend::optimize {

namespace {

using Clock = std::chrono::steady_clock;

struct Loaded {
  std::unique_ptr<model::Session> session;
  size_t output = 0;
  size_t width = 1;            // values per window in the scored output
  std::vector<float> outputs;  // N * width
};

std::string Precision(const model::Session& s) {
  auto it = s.metadata().find("tend.precision");
  if (it == s.metadata().end()) return "fp32";
  // The model card stores every value as JSON text; accept a bare word too.
  auto j = tend::json::ParseJson(it->second, "tend.precision");
  if (j && j->is_string()) return j->get<std::string>();
  return it->second;
}

Result<Loaded> Load(const std::string& path, const ValidationSet& v, const CompareOptions& opt) {
  Loaded l;
  TEND_ASSIGN_OR_RETURN(l.session, model::Session::LoadFile(path, opt.session));
  auto& s = *l.session;
  if (s.inputs().size() != 1) {
    return Fail(Error::Unsupported(
        fmt::format("{}: has {} inputs; compare feeds one input", path, s.inputs().size())));
  }
  std::vector<int64_t> shape = v.x.shape;
  shape[0] = 1;
  if (auto st = s.Prepare({shape}); !st) {
    // The session's message names the model already.
    return Fail(Error::Invalid(fmt::format("{} (shape {}) does not fit the model: {}", v.name,
                                           ShapeString(v.x.shape), st.error().message)));
  }
  if (!opt.output.empty()) {
    auto it = std::find_if(s.outputs().begin(), s.outputs().end(),
                           [&](const model::TensorInfo& t) { return t.name == opt.output; });
    if (it == s.outputs().end()) {
      std::string names;
      for (const auto& t : s.outputs()) names += (names.empty() ? "" : ", ") + t.name;
      return Fail(
          Error::Invalid(fmt::format("{}: no output '{}' (outputs: {})", path, opt.output, names)));
    }
    l.output = static_cast<size_t>(it - s.outputs().begin());
  } else {
    for (size_t i = 0; i < s.outputs().size(); ++i) {
      if (s.outputs()[i].name == "anomaly_score") l.output = i;
    }
  }
  if (s.outputs()[l.output].type != model::ElementType::kFloat) {
    return Fail(Error::Unsupported(
        fmt::format("{}: output '{}' is not float32", path, s.outputs()[l.output].name)));
  }
  l.width = s.output(l.output).size();
  if (l.width == 0) {
    return Fail(
        Error::Model(fmt::format("{}: output '{}' is empty", path, s.outputs()[l.output].name)));
  }
  return l;
}

double Pearson(const std::vector<float>& a, const std::vector<float>& b) {
  const double n = static_cast<double>(a.size());
  double ma = std::accumulate(a.begin(), a.end(), 0.0) / n;
  double mb = std::accumulate(b.begin(), b.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  if (saa == 0 || sbb == 0) return a == b ? 1.0 : 0.0;
  return sab / std::sqrt(saa * sbb);
}

std::string HumanBytes(int64_t b) {
  if (b >= 1 << 20) return fmt::format("{:.2f} MB", static_cast<double>(b) / (1 << 20));
  if (b >= 1 << 10) return fmt::format("{:.1f} kB", static_cast<double>(b) / (1 << 10));
  return fmt::format("{} B", b);
}

}  // namespace

Result<double> RocAuc(std::span<const float> scores, std::span<const float> labels) {
  if (scores.size() != labels.size()) {
    return Fail(
        Error::Invalid(fmt::format("{} scores but {} labels", scores.size(), labels.size())));
  }
  double pos = 0, neg = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] == 1.0f) {
      ++pos;
    } else if (labels[i] == 0.0f) {
      ++neg;
    } else {
      return Fail(Error::Invalid(
          fmt::format("label {} at index {} is not 0 or 1 (AUC needs 0 = normal, 1 = anomalous)",
                      labels[i], i)));
    }
  }
  if (pos == 0 || neg == 0) {
    return Fail(Error::Invalid(
        fmt::format("labels have {} anomalous and {} normal windows; AUC needs both", pos, neg)));
  }
  std::vector<size_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Mann-Whitney U with mid-ranks for ties.
  double rank_sum_pos = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && scores[idx[j + 1]] == scores[idx[i]]) ++j;
    const double mid_rank = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) {
      if (labels[idx[k]] == 1.0f) rank_sum_pos += mid_rank;
    }
    i = j + 1;
  }
  return (rank_sum_pos - pos * (pos + 1) / 2.0) / (pos * neg);
}

Result<CompareReport> CompareModels(const std::vector<std::string>& paths, const ValidationSet& v,
                                    const CompareOptions& opt) {
  if (paths.empty()) return Fail(Error::Invalid("no models to compare"));
  const int64_t n = v.x.rows();
  if (n == 0 || v.x.data.empty())
    return Fail(Error::Invalid(v.name + ": validation data is empty"));
  if (!v.labels.empty() && static_cast<int64_t>(v.labels.size()) != n) {
    return Fail(Error::Invalid(
        fmt::format("{}: {} labels for {} validation windows", v.name, v.labels.size(), n)));
  }
  std::vector<Loaded> models;
  for (const auto& p : paths) {
    TEND_ASSIGN_OR_RETURN(Loaded l, Load(p, v, opt));
    if (!models.empty() && l.width != models[0].width) {
      return Fail(Error::Invalid(fmt::format(
          "{}: output '{}' has {} values per window but {} has {}: not variants of one model", p,
          l.session->outputs()[l.output].name, l.width, paths[0], models[0].width)));
    }
    models.push_back(std::move(l));
  }

  CompareReport report;
  report.max_drop = opt.max_drop;
  report.samples = n;
  const size_t width = models[0].width;
  if (!v.labels.empty()) report.metric = width == 1 ? "auc" : "accuracy";
  const size_t row = static_cast<size_t>(v.x.row_size());

  // Scores on every window (after warm-up, which also pays for first-run allocations).
  for (size_t m = 0; m < models.size(); ++m) {
    auto& s = *models[m].session;
    TEND_RETURN_NOT_OK(s.Warmup(std::max(1, opt.warmup)));
    models[m].outputs.resize(static_cast<size_t>(n) * width);
    for (int64_t i = 0; i < n; ++i) {
      auto in = s.input(0);
      std::copy_n(v.x.row(i).begin(), row, in.begin());
      if (auto st = s.Run(); !st) return Fail(st.error().Wrap(paths[m]));
      auto out = s.output(models[m].output);
      std::copy(
          out.begin(), out.end(),
          models[m].outputs.begin() + static_cast<std::ptrdiff_t>(i * static_cast<int64_t>(width)));
      if (opt.progress && (i % 64 == 0 || i + 1 == n)) {
        opt.progress("scoring", (static_cast<double>(m) +
                                 static_cast<double>(i + 1) / static_cast<double>(n)) /
                                    static_cast<double>(models.size()));
      }
    }
  }

  // Timed runs, interleaved across models.
  const int rounds = std::max(1, opt.rounds);
  const int per_round = std::max(1, (std::max(1, opt.iterations) + rounds - 1) / rounds);
  std::vector<std::vector<double>> samples(models.size());
  std::vector<double> wall(models.size(), 0.0);
  for (int r = 0; r < rounds; ++r) {
    for (size_t m = 0; m < models.size(); ++m) {
      auto& s = *models[m].session;
      const auto block = Clock::now();
      for (int k = 0; k < per_round; ++k) {
        const int64_t i = (static_cast<int64_t>(r) * per_round + k) % n;
        auto in = s.input(0);
        std::copy_n(v.x.row(i).begin(), row, in.begin());
        const auto t0 = Clock::now();
        if (auto st = s.Run(); !st) return Fail(st.error().Wrap(paths[m]));
        samples[m].push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      wall[m] += std::chrono::duration<double>(Clock::now() - block).count();
    }
    if (opt.progress) opt.progress("timing", static_cast<double>(r + 1) / rounds);
  }

  for (size_t m = 0; m < models.size(); ++m) {
    ModelResult res;
    res.path = paths[m];
    res.precision = Precision(*models[m].session);
    std::error_code ec;
    res.size_bytes = static_cast<int64_t>(std::filesystem::file_size(paths[m], ec));
    res.provider = models[m].session->provider();
    res.output = models[m].session->outputs()[models[m].output].name;
    res.latency = model::ComputeLatencyStats(samples[m], wall[m]);
    const auto& out = models[m].outputs;
    if (width == 1) {
      res.scores = out;
    } else {
      res.scores.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        auto b = out.begin() + static_cast<std::ptrdiff_t>(i * static_cast<int64_t>(width));
        res.scores[static_cast<size_t>(i)] =
            static_cast<float>(std::max_element(b, b + static_cast<std::ptrdiff_t>(width)) - b);
      }
    }
    if (report.metric == "auc") {
      auto auc = RocAuc(res.scores, v.labels);
      if (!auc) return Fail(auc.error().Wrap(v.name));
      res.metric = *auc;
    } else if (report.metric == "accuracy") {
      double correct = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float y = v.labels[static_cast<size_t>(i)];
        if (y < 0 || y >= static_cast<float>(width) || y != std::floor(y)) {
          return Fail(Error::Invalid(
              fmt::format("{}: label {} at index {} is not a class index of a {}-class output",
                          v.name, y, i, width)));
        }
        correct += res.scores[static_cast<size_t>(i)] == y;
      }
      res.metric = correct / static_cast<double>(n);
    }
    const auto& ref = models[0].outputs;
    double sum = 0;
    for (size_t k = 0; k < out.size(); ++k) {
      const double d = std::fabs(static_cast<double>(out[k]) - ref[k]);
      res.max_abs_diff = std::max(res.max_abs_diff, d);
      sum += d;
    }
    res.mean_abs_diff = sum / static_cast<double>(out.size());
    res.correlation = Pearson(ref, out);
    report.models.push_back(std::move(res));
  }
  Judge(report, opt.max_drop, opt.slower_below);
  return report;
}

void Judge(CompareReport& report, double max_drop, double slower_below) {
  report.pass = true;
  if (report.models.empty()) return;
  const auto& ref = report.models[0];
  for (size_t i = 0; i < report.models.size(); ++i) {
    auto& r = report.models[i];
    r.speedup_p50 = r.latency.p50_ms > 0 ? ref.latency.p50_ms / r.latency.p50_ms : 0;
    r.slower = i > 0 && r.speedup_p50 < slower_below;
    if (!report.metric.empty()) {
      r.drop = ref.metric - r.metric;
      r.pass = r.drop <= max_drop + 1e-12;
    }
    report.pass = report.pass && r.pass;
  }
}

nlohmann::json CompareReport::ToJson() const {
  nlohmann::json j;
  j["metric"] = metric.empty() ? nlohmann::json(nullptr) : nlohmann::json(metric);
  j["max_drop"] = max_drop;
  j["samples"] = samples;
  j["pass"] = pass;
  j["models"] = nlohmann::json::array();
  for (size_t i = 0; i < models.size(); ++i) {
    const auto& m = models[i];
    nlohmann::json o = {{"path", m.path},
                        {"reference", i == 0},
                        {"precision", m.precision},
                        {"size_bytes", m.size_bytes},
                        {"provider", m.provider},
                        {"output", m.output},
                        {"max_abs_diff", m.max_abs_diff},
                        {"mean_abs_diff", m.mean_abs_diff},
                        {"score_correlation", m.correlation},
                        {"mean_ms", m.latency.mean_ms},
                        {"p50_ms", m.latency.p50_ms},
                        {"p95_ms", m.latency.p95_ms},
                        {"p99_ms", m.latency.p99_ms},
                        {"p999_ms", m.latency.p999_ms},
                        {"max_ms", m.latency.max_ms},
                        {"throughput_fps", m.latency.throughput_fps},
                        {"runs", m.latency.n},
                        {"speedup_p50", m.speedup_p50},
                        {"slower", m.slower},
                        {"pass", m.pass}};
    if (!metric.empty()) {
      o[metric] = m.metric;
      o["drop"] = m.drop;
    }
    j["models"].push_back(o);
  }
  return j;
}

std::string CompareReport::ToTable() const {
  std::vector<std::vector<std::string>> rows;
  auto add = [&](std::string label, auto cell) {
    std::vector<std::string> r = {std::move(label)};
    for (size_t i = 0; i < models.size(); ++i) r.push_back(cell(i, models[i]));
    rows.push_back(std::move(r));
  };
  add("model", [](size_t, const ModelResult& m) {
    return std::filesystem::path(m.path).filename().string();
  });
  add("precision", [](size_t, const ModelResult& m) { return m.precision; });
  add("size", [](size_t, const ModelResult& m) { return HumanBytes(m.size_bytes); });
  add("provider", [](size_t, const ModelResult& m) {
    std::string p = m.provider;
    if (auto k = p.find("ExecutionProvider"); k != std::string::npos) p.erase(k);
    return p;
  });
  if (!metric.empty()) {
    add(metric == "auc" ? "AUC" : "accuracy",
        [](size_t, const ModelResult& m) { return fmt::format("{:.4f}", m.metric); });
    add("drop (points)", [](size_t i, const ModelResult& m) {
      return i == 0 ? std::string("-") : fmt::format("{:+.2f}", 100.0 * m.drop);
    });
  }
  add("max |score diff|", [](size_t i, const ModelResult& m) {
    return i == 0 ? std::string("-") : fmt::format("{:.4g}", m.max_abs_diff);
  });
  add("mean |score diff|", [](size_t i, const ModelResult& m) {
    return i == 0 ? std::string("-") : fmt::format("{:.4g}", m.mean_abs_diff);
  });
  add("score correlation", [](size_t i, const ModelResult& m) {
    return i == 0 ? std::string("-") : fmt::format("{:.5f}", m.correlation);
  });
  add("p50 ms",
      [](size_t, const ModelResult& m) { return fmt::format("{:.3f}", m.latency.p50_ms); });
  add("p95 ms",
      [](size_t, const ModelResult& m) { return fmt::format("{:.3f}", m.latency.p95_ms); });
  add("p99 ms",
      [](size_t, const ModelResult& m) { return fmt::format("{:.3f}", m.latency.p99_ms); });
  add("max ms",
      [](size_t, const ModelResult& m) { return fmt::format("{:.3f}", m.latency.max_ms); });
  add("runs/s",
      [](size_t, const ModelResult& m) { return fmt::format("{:.0f}", m.latency.throughput_fps); });
  add("speed-up (p50)",
      [](size_t, const ModelResult& m) { return fmt::format("{:.2f}x", m.speedup_p50); });
  const bool gated = !metric.empty();
  add("verdict", [&](size_t i, const ModelResult& m) {
    if (i == 0) return std::string("reference");
    std::string v = !gated   ? std::string("no labels")
                    : m.pass ? std::string("ok")
                             : fmt::format("FAIL (> {:.2f})", 100.0 * max_drop);
    // Accuracy kept is not enough: a variant slower than the reference has no reason to ship.
    if (m.slower) v += fmt::format(", SLOWER ({:.2f}x)", m.speedup_p50);
    return v;
  });
  std::vector<size_t> w(models.size() + 1, 0);
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) w[c] = std::max(w[c], r[c].size());
  }
  std::string out;
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) {
      out += r[c];
      if (c + 1 < r.size()) out.append(w[c] - r[c].size() + 2, ' ');
    }
    out += '\n';
  }
  return out;
}

}  // namespace tend::optimize
