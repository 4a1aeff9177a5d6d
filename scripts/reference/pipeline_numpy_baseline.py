#!/usr/bin/env python3
"""The per-window path (window in -> features -> model -> decision out) written the way a user
would in Python with numpy: the reference feature code (dsp_reference.py) plus a small numpy
evaluator of the model's ONNX graph, timed per window. The baseline for `tend bench --pipeline`.

usage: pipeline_numpy_baseline.py MODEL.onnx RUN.wav RUN.wav.labels.csv [--windows N]
Prints one JSON object: per-stage p50/p99 in microseconds.
"""
import argparse
import csv
import json
import os
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsp_reference as ref  # noqa: E402


def read_wav_float(path):
    with open(path, "rb") as f:
        data = f.read()
    pos, fmt, pcm = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            pcm = body
        pos += 8 + size + (size & 1)
    channels = int.from_bytes(fmt[2:4], "little")
    rate = int.from_bytes(fmt[4:8], "little")
    x = np.frombuffer(pcm, dtype="<f4").reshape(-1, channels)
    return x, rate


class Graph:
    """Evaluates the ops tend's detectors use, node by node, with numpy."""

    def __init__(self, path):
        m = onnx.load(path)
        self.init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        self.nodes = [(n.op_type, list(n.input), list(n.output), {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
                      for n in m.graph.node]
        self.meta = {p.key: p.value for p in m.metadata_props}
        self.input = m.graph.input[0].name
        self.outputs = [o.name for o in m.graph.output]

    def run(self, x):
        v = dict(self.init)
        v[self.input] = x
        for op, ins, outs, at in self.nodes:
            a = [v[i] for i in ins if i]
            if op == "Sub": r = a[0] - a[1]
            elif op == "Add": r = a[0] + a[1]
            elif op == "Mul": r = a[0] * a[1]
            elif op == "Div": r = a[0] / a[1]
            elif op == "MatMul": r = a[0] @ a[1]
            elif op == "Gemm":
                A = a[0].T if at.get("transA") else a[0]
                B = a[1].T if at.get("transB") else a[1]
                r = at.get("alpha", 1.0) * (A @ B) + (at.get("beta", 1.0) * a[2] if len(a) > 2 else 0)
            elif op == "Relu": r = np.maximum(a[0], 0)
            elif op == "Tanh": r = np.tanh(a[0])
            elif op == "ReduceSum":
                axes = tuple(int(q) for q in a[1]) if len(a) > 1 else None
                r = np.sum(a[0], axis=axes, keepdims=bool(at.get("keepdims", 1)))
            elif op == "ReduceMean":
                axes = tuple(int(q) for q in a[1]) if len(a) > 1 else tuple(at.get("axes", []))
                r = np.mean(a[0], axis=axes or None, keepdims=bool(at.get("keepdims", 1)))
            elif op == "Reshape": r = a[0].reshape([int(q) for q in a[1]])
            elif op == "Squeeze": r = np.squeeze(a[0], axis=tuple(int(q) for q in a[1]) if len(a) > 1 else None)
            elif op == "Identity": r = a[0]
            else:
                raise SystemExit(f"numpy baseline: op {op} not supported")
            v[outs[0]] = r
        return [v[o] for o in self.outputs]


def pct(xs, p):
    return float(np.percentile(np.asarray(xs) * 1e6, p))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("wav")
    ap.add_argument("labels")
    ap.add_argument("--windows", type=int, default=300)
    a = ap.parse_args()
    g = Graph(a.model)
    fs = json.loads(g.meta["tend.feature_spec"])
    spec, win = fs["features"], fs["windowing"]
    n, pre = win["window"], win.get("pretrigger", 0)
    thresholds = json.loads(g.meta["tend.thresholds"])
    names = json.loads(g.meta["tend.feature_names"])
    x, rate = read_wav_float(a.wav)
    onsets = [int(r["onset_frame"]) for r in csv.DictReader(open(a.labels))]
    w = ref.make_window(spec)
    feat_t, model_t, total_t = [], [], []
    for k, on in enumerate(onsets[: a.windows]):
        window = np.ascontiguousarray(x[on - pre:on - pre + n, :].T)  # planar
        t0 = time.perf_counter()
        f = np.concatenate([ref.features(spec, window[c], w) for c in range(window.shape[0])]).astype(np.float32)
        t1 = time.perf_counter()
        score, contrib = g.run(f[None, :])[:2]
        s = float(np.ravel(score)[0])
        top = [names[i] for i in np.argsort(-np.ravel(contrib))[:3]]
        severity = "HIGH" if s >= thresholds["high"] else "MEDIUM" if s >= thresholds["medium"] else "LOW"
        alert = s >= thresholds["low"]
        t2 = time.perf_counter()
        if k >= 10:  # warm-up
            feat_t.append(t1 - t0)
            model_t.append(t2 - t1)
            total_t.append(t2 - t0)
    out = {"windows": len(total_t)}
    for key, xs in (("features", feat_t), ("model_and_decision", model_t), ("total", total_t)):
        out[key] = {"p50_us": pct(xs, 50), "p99_us": pct(xs, 99), "mean_us": float(np.mean(xs) * 1e6)}
    out["last"] = {"severity": severity, "is_alert": bool(alert), "top": top}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
