#!/usr/bin/python3
"""Alarm quality on real data, tend next to a plain numpy reference in the same run.

    scripts/measure_alarms.py --tend build/tend --out build/alarms      # or: make measure-alarms

FEMTO / PRONOSTIA bearings (../shared/data/femto): commission on the first 20 % of life with
`tend train` (defaults, plus --window 2560 = one snapshot, as SOURCE.md says), then score every
window to failure with the agent, `tend run --source BEARING.wav --speed 0 --debounce-k 2
--debounce-n 3 --json` (every window decided; the "monitors" sink's health state read back from
the state changes it logs; `--via score` uses `tend score --health` instead). Per bearing: the share of windows
alerting between 20 % and 50 % of life, when a sustained alarm starts (the health state stays
"alarm" from there to the end), and the ROC AUC of the healthy windows (20-50 %) against the
last 5 % of life. The numpy reference on the same split: Mahalanobis (Ledoit-Wolf) on log band
energies (24 equal bands to 0.45 fs per channel), thresholds by the same log-normal rule on the
last quarter of commissioning, the same 2-of-3 debounce, and the same CUSUM over its scores.

Valve sound (../shared/data/valve-sound): over several random splits, `tend train --input` on
25 normal clips and nothing else, `tend eval` on the other 25 normal and the 50 anomalous clips
(per-clip AUC), next to a numpy Mahalanobis on log band energies of 64 ms frames (16 equal bands
to 0.45 fs) fitted on the frames of the same 25 clips, a clip's score the mean (DCASE-style) or
the max of its frames' scores.

Writes table.md, results.json and femto_timelines.svg into --out.
"""
import argparse
import csv
import glob
import json
import math
import os
import subprocess
import sys
import wave

import numpy as np
from scipy.stats import t as student_t

BEARINGS = ["Bearing1_1", "Bearing1_2", "Bearing2_1", "Bearing2_2", "Bearing3_1", "Bearing3_2"]
SNAPSHOT = 2560


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return r.stdout


def auc(neg, pos):
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    allv = np.concatenate([neg, pos])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    i = 0
    while i < len(sv):  # average ranks for ties
        j = i
        while j < len(sv) and sv[j] == sv[i]:
            j += 1
        ranks[order[i:j]] = (i + j + 1) / 2.0
        i = j
    return (ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def debounce(raw, k=2, n=3):
    out = np.zeros(len(raw), bool)
    for i in range(len(raw)):
        out[i] = raw[i] and raw[max(0, i - n + 1):i + 1].sum() >= k
    return out


def cusum_states(z, alarm_z, k=0.5, h_warn=8.0, k_alarm=0.0, h_alarm=20.0, clip=4.0):
    """The same rule as src/decide/health.cc, for the numpy reference's scores."""
    sw, sa, state, out = 0.0, 0.0, 0, []
    for v in z:
        sw = min(max(0.0, sw + np.clip(v, -clip, clip) - k), 2 * h_warn)
        sa = min(max(0.0, sa + np.clip(v - alarm_z, -clip, clip) - k_alarm), 2 * h_alarm)
        if sa >= h_alarm:
            state = 2
        elif state == 2:
            state = 2 if sa > 0 else (1 if sw >= h_warn else 0)
        elif sw >= h_warn:
            state = 1
        elif state == 1 and sw < 0.5 * h_warn:
            state = 0
        out.append(state)
    return np.array(out)


def sustained_from(flags):
    """First index from which flags stay true to the end (len if never)."""
    idx = len(flags)
    for i in range(len(flags) - 1, -1, -1):
        if not flags[i]:
            break
        idx = i
    return idx


def lognormal(hold, p=1e-3):
    c = 1e-6 * hold.mean()
    y = np.log(hold + c)
    m = len(y)
    sd = max(y.std(ddof=1), 0.01)
    thr = math.exp(y.mean() + student_t.ppf(1 - p, m - 1) * math.sqrt(1 + 1 / m) * sd) - c
    return max(thr, hold.max() * (1 + 1e-6)), c, y.mean(), sd


def ledoit_wolf(z):
    n, p = z.shape
    s = z.T @ z / n
    mu = np.trace(s) / p
    delta = ((s - mu * np.eye(p)) ** 2).sum() / p
    z2 = z ** 2
    beta = ((z2.T @ z2).sum() / n - (s ** 2).sum()) / (p * n)
    shrink = 0 if delta <= 0 else min(beta, delta) / delta
    return shrink * mu * np.eye(p) + (1 - shrink) * s


class Mahalanobis:
    def __init__(self, x):
        self.mu = x.mean(0)
        self.sd = x.std(0, ddof=1)
        self.sd[self.sd <= 0] = 1
        self.p = np.linalg.inv(ledoit_wolf((x - self.mu) / self.sd))

    def __call__(self, x):
        z = (x - self.mu) / self.sd
        return np.einsum("ij,jk,ik->i", z, self.p, z)


def band_energies(frames, fs, nbands=24):
    """frames: [..., L]; log10 energies of nbands equal bands from 0 to 0.45 fs (hann window,
    one-sided mean-square scaling, as tend's bands)."""
    n = frames.shape[-1]
    w = np.hanning(n + 1)[:-1]
    x = frames - frames.mean(-1, keepdims=True)
    p = np.abs(np.fft.rfft(x * w, axis=-1)) ** 2 / (n * (w ** 2).sum()) * 2
    f = np.fft.rfftfreq(n, 1 / fs)
    edges = np.linspace(0, 0.45 * fs, nbands + 1)
    out = [p[..., (f >= lo) & (f < hi)].sum(-1) for lo, hi in zip(edges[:-1], edges[1:])]
    return 10 * np.log10(np.stack(out, -1) + 1e-12)


def read_wav(path):
    with wave.open(path) as w:
        raw = w.readframes(w.getnframes())
        x = np.frombuffer(raw, "<i2").reshape(-1, w.getnchannels()).astype(np.float64) / 32768
        return x, w.getframerate()


# ------------------------------------------------------------------------------------------------
def femto_reference(wav, life, n20):
    x, fs = read_wav(wav)
    nw = len(life)
    win = x[:nw * SNAPSHOT].reshape(nw, SNAPSHOT, -1).transpose(0, 2, 1)
    feats = band_energies(win, fs).reshape(nw, -1)
    nh = max(8, round(0.25 * n20))
    det = Mahalanobis(feats[:n20 - nh])
    low, c, mu, sd = lognormal(det(feats[n20 - nh:n20]))
    s = det(feats)
    z = (np.log(s + c) - mu) / sd
    return s, debounce(s >= low), cusum_states(z, (math.log(low + c) - mu) / sd)


def health_from_log(stderr, asset, n):
    """Per-window health state (0 ok, 1 warning, 2 alarm) from the monitors sink's log lines
    "ASSET: health STATE at window N" / "ASSET: health ok again at window N"."""
    state = np.zeros(n, dtype=int)
    names = {"ok": 0, "warning": 1, "alarm": 2}
    for line in stderr.splitlines():
        key = f"{asset}: health "
        if key not in line or " at window " not in line:
            continue
        word = line.split(key, 1)[1].split()[0]
        w = int(line.split(" at window ", 1)[1].split()[0])
        if word in names and 0 <= w < n:
            state[w:] = names[word]
    return state


def femto_tend_run(tend, model, wav, work):
    r = subprocess.run([tend, "run", "--source", wav, "--model", model, "--speed", "0", "--json",
                        "--metrics-port", "0", "--debounce-k", "2", "--debounce-n", "3",
                        "--asset", "bearing", "--summary-json", os.path.join(work, "run.json")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"tend run failed ({r.returncode}) on {wav}\n{r.stderr[-2000:]}")
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    assert [d["window"] for d in rows] == list(range(len(rows))), "tend run skipped windows"
    s = np.array([d["anomaly_score"] for d in rows])
    alert = np.array([d["is_alert"] for d in rows])
    return s, alert, health_from_log(r.stderr, "bearing", len(rows))


def femto_tend(tend, wav, n20, work, detector, via="run"):
    model = os.path.join(work, os.path.basename(wav) + f".{detector}.onnx")
    cmd = [tend, "train", "--input", f"{wav}@0:{n20 * SNAPSHOT / 25600.0}", "--window",
           str(SNAPSHOT), "--out", model]
    if detector != "auto":
        cmd += ["--detector", detector]
    train_out = run(cmd)
    card_detector = [l for l in train_out.splitlines() if l.startswith("trained ")][0].split()[1]
    low = float([l for l in train_out.splitlines() if l.startswith("trained ")][0]
                .split("LOW ")[1].split(",")[0])
    if via == "run":
        s, alert, state = femto_tend_run(tend, model, wav, work)
        return card_detector, s, alert, state, low
    scores = os.path.join(work, os.path.basename(wav) + f".{detector}.jsonl")
    run([tend, "score", "--model", model, "--input", wav, "--health", "--debounce-k", "2",
         "--debounce-n", "3", "--out", scores])
    rows = [json.loads(l) for l in open(scores)]
    s = np.array([r["anomaly_score"] for r in rows])
    alert = np.array([r["is_alert"] for r in rows])
    state = np.array([{"ok": 0, "warning": 1, "alarm": 2}[r["health"]] for r in rows])
    return card_detector, s, alert, state, low


def femto_row(life, s, alert, state):
    n = min(len(life), len(s))
    life, s, alert, state = life[:n], s[:n], alert[:n], state[:n]
    healthy = (life >= 0.2) & (life < 0.5)
    end = life >= 0.95
    alarm_from = sustained_from(state == 2)
    warn = np.where((state >= 1) & (life >= 0.2))[0]
    first_alarm = np.where((state == 2) & (life >= 0.2))[0]
    return {
        "alerts_20_50": float(alert[healthy].mean()),
        "alarm_sustained_from": float(life[alarm_from]) if alarm_from < n else None,
        "first_warning_after_20": float(life[warn[0]]) if len(warn) else None,
        "first_alarm_after_20": float(life[first_alarm[0]]) if len(first_alarm) else None,
        "alarm_onsets_before_90": int(np.sum((np.diff((state == 2).astype(int)) == 1) & (life[1:] < 0.9))),
        "auc_healthy_vs_last5": float(auc(s[healthy], s[end])),
    }


def femto(args, work, out):
    results = {}
    for b in BEARINGS:
        wav = os.path.join(args.data, "femto", b + ".wav")
        life = np.array([float(r["life_fraction"]) for r in
                         csv.DictReader(open(os.path.join(args.data, "femto", b + ".csv")))])
        n20 = int(np.argmax(life >= 0.2))
        r = {"windows": len(life), "commissioning_windows": n20}
        for det in args.detectors:
            name, s, alert, state, low = femto_tend(args.tend, wav, n20, work, det, args.via)
            r[f"tend_{det}"] = dict(femto_row(life, s, alert, state), detector=name)
            r[f"tend_{det}"]["_series"] = (s.tolist(), alert.tolist(), state.tolist(), low)
        s, alert, state = femto_reference(wav, life, n20)
        r["numpy"] = femto_row(life, s, alert, state)
        r["_life"] = life.tolist()
        results[b] = r
        print(f"{b}: " + ", ".join(f"{k}={json.dumps({kk: vv for kk, vv in v.items() if kk != '_series'})}"
                                   for k, v in r.items() if isinstance(v, dict)), flush=True)
    return results


# ------------------------------------------------------------------------------------------------
def valve_reference(train, test_n, test_a):
    def frames(path):
        x, fs = read_wav(path)
        x = x[:, 0]
        n = 1024
        idx = np.arange(n)[None, :] + 512 * np.arange((len(x) - n) // 512 + 1)[:, None]
        return band_energies(x[idx], fs, 16)
    det = Mahalanobis(np.concatenate([frames(p) for p in train]))
    scores = {p: det(frames(p)) for p in test_n + test_a}
    return {agg: auc([f(scores[p]) for p in test_n], [f(scores[p]) for p in test_a])
            for agg, f in (("mean", np.mean), ("max", np.max))}


def valve(args, work):
    d = os.path.join(args.data, "valve-sound")
    normal = sorted(glob.glob(os.path.join(d, "*_normal_*.wav")))
    anomalous = sorted(glob.glob(os.path.join(d, "*_anomaly_*.wav")))
    rows = []
    for seed in range(1, args.splits + 1):
        perm = np.random.default_rng(seed).permutation(len(normal))
        train = [normal[i] for i in perm[:25]]
        test = [normal[i] for i in perm[25:]]
        model = os.path.join(work, f"valve_{seed}.onnx")
        out = run([args.tend, "train", "--input", *train, "--out", model])
        detector = [l for l in out.splitlines() if l.startswith("trained ")][0].split()[1]
        ev = json.loads(run([args.tend, "eval", "--json", "--model", model, "--normal", *test,
                             "--anomalous", *anomalous]))
        ref = valve_reference(train, test, anomalous)
        rows.append({"seed": seed, "detector": detector, "tend_clip_auc": ev["clip_auc"],
                     "tend_window_auc": ev["auc"], "numpy_clip_auc_mean": ref["mean"],
                     "numpy_clip_auc_max": ref["max"]})
        print(f"valve split {seed}: {rows[-1]}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------
def svg_timelines(results, det, path):
    """Score (log) over life per bearing: LOW threshold, alerts (red ticks), warning (amber) and
    alarm (red) bands under the curve."""
    w, h, left, top, gap = 900, 150, 60, 30, 40
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{top + len(results) * (h + gap)}' "
             "font-family='sans-serif' font-size='11'><rect width='100%' height='100%' fill='white'/>",
             f"<text x='{left}' y='18' font-size='14'>tend ({det}) on FEMTO bearings: anomaly score over life; "
             "shaded = commissioning (first 20 %); dashed = LOW; top red = alerts; bottom band: amber warning, red alarm</text>"]
    for k, (b, r) in enumerate(results.items()):
        s, alert, state, low = r[f"tend_{det}"]["_series"]
        life = np.array(r["_life"][:len(s)])
        ls = np.log10(np.maximum(np.array(s), 1e-6))
        lo, hi = min(ls.min(), math.log10(low)) - 0.1, max(ls.max(), math.log10(low)) + 0.1
        y0 = top + k * (h + gap)
        X = lambda f: left + f * (w - left - 20)
        Y = lambda v: y0 + h - (v - lo) / (hi - lo) * h
        parts.append(f"<text x='{left}' y='{y0 - 4}'>{b}</text>")
        parts.append(f"<rect x='{X(0)}' y='{y0}' width='{X(1) - X(0)}' height='{h}' fill='none' stroke='#999'/>")
        parts.append(f"<rect x='{X(0)}' y='{y0}' width='{X(0.2) - X(0)}' height='{h}' fill='#eef'/>")
        def runs(flags):  # [start, end) index runs where flags hold
            out, i = [], 0
            while i < len(flags):
                if flags[i]:
                    j = i
                    while j < len(flags) and flags[j]:
                        j += 1
                    out.append((i, j))
                    i = j
                else:
                    i += 1
            return out
        edge = lambda i: X(life[min(i, len(life) - 1)])
        for value, colour in ((1, "#f5c06b"), (2, "#e06060")):
            for a, e in runs([v == value for v in state]):
                parts.append(f"<rect x='{edge(a):.1f}' y='{y0 + h - 10}' width='{max(1.0, edge(e) - edge(a)):.1f}' "
                             f"height='10' fill='{colour}'/>")
        for a, e in runs(list(alert)):
            parts.append(f"<rect x='{edge(a):.1f}' y='{y0}' width='{max(1.0, edge(e) - edge(a)):.1f}' "
                         "height='7' fill='#c00'/>")
        step = max(1, len(s) // 900)
        pts = " ".join(f"{X(life[i]):.1f},{Y(ls[i]):.1f}" for i in range(0, len(s), step))
        parts.append(f"<polyline fill='none' stroke='#1f77b4' stroke-width='1' points='{pts}'/>")
        parts.append(f"<line x1='{X(0)}' y1='{Y(math.log10(low)):.1f}' x2='{X(1)}' y2='{Y(math.log10(low)):.1f}' "
                     "stroke='black' stroke-dasharray='4,3'/>")
        for f in (0, 0.2, 0.5, 0.95, 1.0):
            parts.append(f"<text x='{X(f):.1f}' y='{y0 + h + 12}' text-anchor='middle'>{f:g}</text>")
    parts.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(parts) + "\n")


def fmt_life(v):
    return "never" if v is None else f"{v:.3f}"


def table(results, valve_rows, dets):
    lines = ["| bearing | windows | method | detector | alerts 20-50 % | first warning | first alarm | "
             "sustained alarm from | AUC 20-50 % vs last 5 % |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    for b, r in results.items():
        for key in [f"tend_{d}" for d in dets] + ["numpy"]:
            x = r[key]
            lines.append(f"| {b} | {r['windows']} | {key} | {x.get('detector', 'mahalanobis')} | "
                         f"{100 * x['alerts_20_50']:.2f} % | {fmt_life(x['first_warning_after_20'])} | "
                         f"{fmt_life(x['first_alarm_after_20'])} | {fmt_life(x['alarm_sustained_from'])} | "
                         f"{x['auc_healthy_vs_last5']:.4f} |")
    for key in [f"tend_{d}" for d in dets] + ["numpy"]:
        rs = [r[key] for r in results.values()]
        lines.append(f"| **summary** | | {key} | | max {100 * max(x['alerts_20_50'] for x in rs):.2f} % | | | "
                     f"{sum(x['alarm_sustained_from'] is not None and x['alarm_sustained_from'] < 0.99 for x in rs)}"
                     f"/6 before 0.99 | median {np.median([x['auc_healthy_vs_last5'] for x in rs]):.4f} |")
    if valve_rows:
        lines += ["", "| valve split (seed) | tend detector | tend clip AUC | numpy clip AUC (mean of frames) | "
                  "numpy clip AUC (max of frames) |", "|---:|---|---:|---:|---:|"]
        for v in valve_rows:
            lines.append(f"| {v['seed']} | {v['detector']} | {v['tend_clip_auc']:.4f} | "
                         f"{v['numpy_clip_auc_mean']:.4f} | {v['numpy_clip_auc_max']:.4f} |")
        col = lambda k: [v[k] for v in valve_rows]
        mm = lambda x: f"{np.mean(x):.4f} ({min(x):.4f})"
        lines.append(f"| **mean (min)** | | {mm(col('tend_clip_auc'))} | {mm(col('numpy_clip_auc_mean'))} | "
                     f"{mm(col('numpy_clip_auc_max'))} |")
    return "\n".join(lines) + "\n"


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tend", default=os.path.join(root, "build", "tend"))
    ap.add_argument("--data", default=os.path.join(os.path.dirname(root), "shared", "data"))
    ap.add_argument("--out", default=os.path.join(root, "build", "alarms"))
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--detectors", nargs="+", default=["auto", "broadband"])
    ap.add_argument("--skip-valve", action="store_true")
    ap.add_argument("--via", choices=["run", "score"], default="run",
                    help="FEMTO windows through the agent (tend run) or tend score --health")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = femto(args, args.out, args.out)
    valve_rows = [] if args.skip_valve else valve(args, args.out)
    for d in args.detectors:
        svg_timelines(results, d, os.path.join(args.out, f"femto_timelines_{d}.svg"))
    text = table(results, valve_rows, args.detectors)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text)
    strip = {b: {k: ({kk: vv for kk, vv in v.items() if kk != "_series"} if isinstance(v, dict) else v)
                 for k, v in r.items() if k != "_life"} for b, r in results.items()}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"femto": strip, "valve": valve_rows}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
