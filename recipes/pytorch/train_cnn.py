#!/usr/bin/python3
"""Train a 1D CNN on raw press-stroke windows in PyTorch and export it for tend.

The recipe (see README.md next to this file):
  1. `tend simulate` writes labelled press runs (float32 WAV + labels CSV with each stroke's onset
     and die wear), so training and serving see the same simulator.
  2. Stroke windows are cut the way `tend run` cuts them: 2,000 samples at 10 kHz starting 200
     samples (the pre-trigger) before the onset.
  3. A small 1D CNN is trained on them (CPU, torch 1.13), supervised with the simulator's wear
     labels: healthy (wear <= 0.1) vs worn (wear >= 0.3) strokes; the score is the predicted
     probability of wear. (`tend train` covers the one-class case, healthy data only.)
  4. Severity thresholds come from held-out healthy strokes (log-normal fit, see thresholds()).
  5. torch.onnx.export writes the model (input "window" [N,1,2000], output "anomaly_score" [N])
     and the tend model card goes into metadata_props, so `tend run/score/eval` serve it as a
     raw-window model and `tend quantize` keeps the card.
  6. calib.npy (representative windows for `tend quantize`), val.npy + val_labels.npy (healthy vs
     wear >= 0.3, for `tend compare`) are written next to the model.

Usage:
  /usr/bin/python3 recipes/pytorch/train_cnn.py --tend build/tend --out out/cnn
  /usr/bin/python3 recipes/pytorch/train_cnn.py --tend build/tend --out /tmp/cnn --quick   # CI budget
"""
import argparse
import csv
import datetime
import json
import math
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import scipy.io.wavfile
import torch

SAMPLE_RATE = 10000
WINDOW = 2000
PRETRIGGER = 200


# ---- data -------------------------------------------------------------------------------------

def simulate(tend, spec, wav, labels):
    """Runs `tend simulate` (the same simulator `tend run` reads with --source sim:...)."""
    subprocess.run([tend, "simulate", "--sim", spec, "--out", wav, "--labels", labels],
                   check=True, stdout=subprocess.DEVNULL)


def stroke_windows(wav, labels, shift=0):
    """Cuts one window per labelled stroke: [onset - pretrigger, onset - pretrigger + WINDOW)."""
    rate, x = scipy.io.wavfile.read(wav)
    if rate != SAMPLE_RATE:
        sys.exit(f"{wav}: sample rate {rate}, expected {SAMPLE_RATE}")
    if x.ndim > 1:
        x = x[:, 0]
    x = x.astype(np.float32)
    out, wear = [], []
    with open(labels) as f:
        for row in csv.DictReader(f):
            start = int(row["onset_frame"]) - PRETRIGGER + shift
            if start < 0 or start + WINDOW > len(x):
                continue
            out.append(x[start:start + WINDOW])
            wear.append(float(row["wear"]))
    return np.stack(out)[:, None, :], np.array(wear, np.float32)


def make_run(tend, workdir, name, strokes, wear, wear_end, seed):
    wav = os.path.join(workdir, f"{name}.wav")
    lab = os.path.join(workdir, f"{name}.labels.csv")
    simulate(tend, f"sim:strokes={strokes},wear={wear},wear_end={wear_end},seed={seed}", wav, lab)
    return stroke_windows(wav, lab)


# ---- model ------------------------------------------------------------------------------------

class StrokeCnn(torch.nn.Module):
    """Four strided Conv1d/ReLU blocks, global average pooling, a linear head.

    Only ops that tend's INT8 quantiser converts (Conv, Relu, GlobalAveragePool, Flatten, Gemm),
    so the whole network runs on integer kernels; the final sigmoid (the graph output) stays FP32.
    """

    def __init__(self):
        super().__init__()
        chans = [1, 16, 32, 64, 64]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [torch.nn.Conv1d(cin, cout, 9, stride=2, padding=4), torch.nn.ReLU()]
        self.features = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool1d(1),
                                            torch.nn.Flatten())
        self.head = torch.nn.Linear(64, 1)

    def forward(self, x):
        return torch.sigmoid(self.head(self.features(x)).flatten())


def batches(n, size, rng):
    idx = rng.permutation(n)
    for i in range(0, n, size):
        yield idx[i:i + size]


def train(model, x, y, args, log):
    rng = np.random.default_rng(args.seed)
    xt = torch.from_numpy(x)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-6)
    yt = torch.from_numpy(y)
    for epoch in range(args.epochs):
        model.train()
        total, t0 = 0.0, time.time()
        for b in batches(len(x), args.batch, rng):
            xb = xt[b]
            # Small random shifts: the onset detector in `tend run` is a few samples off the label.
            shift = int(rng.integers(-40, 41))
            xb = torch.roll(xb, shift, dims=2)
            loss = torch.nn.functional.binary_cross_entropy(model(xb), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        log(f"epoch {epoch + 1}/{args.epochs}: loss {total / len(x):.5f} ({time.time() - t0:.1f}s)")


def scores(model, x):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(x[i:i + 256])) for i in range(0, len(x), 256)]).numpy()


def auc(s, y):
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted one half."""
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    pos = y == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def thresholds(healthy_scores):
    """Severity tiers from held-out healthy strokes.

    A normal fit to the logits of the healthy scores: LOW, MEDIUM, HIGH at
    one-sided false-alarm probabilities 1e-3, 1e-5, 1e-7 (z = 3.09, 4.26, 5.20), never below the
    largest held-out healthy score. With a few hundred held-out strokes an empirical 99.9 %
    quantile would be noise; the fit extrapolates the tail instead.
    """
    s = np.asarray(healthy_scores, np.float64)
    p = np.clip(s, 1e-7, 1 - 1e-7)
    t = np.log(p / (1 - p))
    back = lambda v: 1 / (1 + math.exp(-v))
    mu, sd = float(t.mean()), float(max(t.std(ddof=1), 1e-6))
    top = float(s.max())
    low, med, high = (max(back(mu + z * sd), top) for z in (3.09, 4.26, 5.20))
    med, high = max(med, low), max(high, med, low)
    rule = {"rule": "normal fit to the logits of held-out healthy scores",
            "false_alarm_probability": {"low": 1e-3, "medium": 1e-5, "high": 1e-7},
            "n_holdout": int(len(s)), "mu": mu, "sigma": sd, "max_holdout_score": top}
    return {"low": low, "medium": med, "high": high}, rule


def model_card(args, th, rule, summary):
    """tend's model card (src/detect/model_card.h): every value is JSON text."""
    windowing = {"sample_rate": SAMPLE_RATE, "channels": 1, "window": WINDOW, "mode": "trigger",
                 "pretrigger": PRETRIGGER, "threshold": 6.0, "holdoff_s": 0.5,
                 "trigger_channel": 0}
    card = {
        "tend.format": 1,
        "tend.name": args.name,
        "tend.version": args.version,
        "tend.detector": "pytorch-cnn1d",
        "tend.created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tend.input_kind": "raw",
        "tend.feature_spec": {"windowing": windowing},
        "tend.feature_names": [],
        "tend.thresholds": th,
        "tend.training_summary": summary,
        "tend.calibration": rule,
    }
    return {k: json.dumps(v) for k, v in card.items()}


def export(model, path, opset, props):
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 1, WINDOW), path, opset_version=opset,
                          input_names=["window"], output_names=["anomaly_score"],
                          dynamic_axes={"window": {0: "N"}, "anomaly_score": {0: "N"}})
    m = onnx.load(path)
    for k, v in props.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.producer_name = "tend recipes/pytorch/train_cnn.py"
    onnx.checker.check_model(m)
    onnx.save(m, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tend", default=os.environ.get("TEND", "build/tend"), help="tend binary")
    ap.add_argument("--out", default="out/pytorch-cnn", help="output directory")
    ap.add_argument("--strokes", type=int, default=800, help="simulated strokes per training run")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="press-cnn")
    ap.add_argument("--version", default="1")
    ap.add_argument("--quick", action="store_true", help="small budget for CI (about a minute)")
    args = ap.parse_args()
    if args.quick:
        args.strokes, args.epochs = 300, 4
    if not os.access(args.tend, os.X_OK):
        sys.exit(f"train_cnn.py: error: tend binary not found at {args.tend} (build it, or pass --tend)")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    work = os.path.join(args.out, "sim")
    os.makedirs(work, exist_ok=True)
    log = lambda msg: print(f"train_cnn: {msg}", flush=True)
    s = args.seed * 100

    # Healthy: wear 0..0.1 looks healthy by the simulator's design. Worn: wear >= 0.3.
    n = args.strokes
    healthy, _ = make_run(args.tend, work, "healthy", n, 0.0, 0.1, s + 1)
    holdout, _ = make_run(args.tend, work, "holdout", max(n // 3, 100), 0.0, 0.1, s + 2)
    val_h, _ = make_run(args.tend, work, "val_healthy", max(n // 3, 100), 0.0, 0.1, s + 3)
    val_w, _ = make_run(args.tend, work, "val_worn", max(n // 3, 100), 0.3, 1.0, s + 4)
    # Calibration for INT8: what the press will show in service, healthy through worn.
    calib, _ = make_run(args.tend, work, "calib", 500 if not args.quick else 200, 0.0, 1.0, s + 5)
    worn, _ = make_run(args.tend, work, "worn", n, 0.3, 1.0, s + 6)
    log(f"simulated {len(healthy)}+{len(worn)} training, {len(holdout)} holdout, "
        f"{len(val_h)}+{len(val_w)} validation, {len(calib)} calibration strokes")

    x = np.concatenate([healthy, worn])
    y = np.concatenate([np.zeros(len(healthy)), np.ones(len(worn))]).astype(np.float32)
    model = StrokeCnn()
    train(model, x, y, args, log)
    th, rule = thresholds(scores(model, holdout))
    val_x = np.concatenate([val_h, val_w])
    val_y = np.concatenate([np.zeros(len(val_h)), np.ones(len(val_w))]).astype(np.float32)
    val_auc = auc(scores(model, val_x), val_y)
    log(f"validation AUC (healthy vs wear >= 0.3): {val_auc:.4f}; thresholds LOW {th['low']:.4g} "
        f"MEDIUM {th['medium']:.4g} HIGH {th['high']:.4g}")

    summary = {"simulator": "tend simulate", "train_strokes": int(len(x)),
               "holdout_strokes": int(len(holdout)), "labels": "wear <= 0.1 healthy, >= 0.3 worn",
               "epochs": args.epochs, "validation_auc": val_auc, "seed": args.seed,
               "torch": torch.__version__}
    path = os.path.join(args.out, "cnn.onnx")
    export(model, path, args.opset, model_card(args, th, rule, summary))
    np.save(os.path.join(args.out, "calib.npy"), calib.astype(np.float32))
    np.save(os.path.join(args.out, "val.npy"), val_x.astype(np.float32))
    np.save(os.path.join(args.out, "val_labels.npy"), val_y)
    with open(os.path.join(args.out, "train_summary.json"), "w") as f:
        json.dump({**summary, "thresholds": th, "model": path}, f, indent=2)
    log(f"wrote {path}, calib.npy, val.npy, val_labels.npy in {args.out}")


if __name__ == "__main__":
    main()
