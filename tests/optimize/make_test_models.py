#!/usr/bin/python3
"""Small ONNX models and .npy data for the optimize tests.

Usage: /usr/bin/python3 make_test_models.py OUTDIR

Writes (all with fixed seeds, so the files are the same on every run):
  cnn.onnx            Conv1d/ReLU x2 -> GlobalAveragePool -> Flatten -> Gemm, input [N,1,256]
  cnn_fixed.onnx      the same network with a fixed batch of 1 (input [1,1,256])
  cnn_opset11.onnx    the same network exported at opset 11 (the quantiser upgrades it to 13)
  mlp.onnx            Linear/ReLU/Linear/Sigmoid on [N,8] features, output "anomaly_score" [N]
  lstm_head.onnx      Conv1d -> LSTM -> Linear: the LSTM has no INT8 conversion (stays FP32)
  known_weights.onnx  hand-built Conv + MatMul with known weights (per-channel scale checks)
  two_inputs.onnx     two float inputs (calibration is single-input only)
  cnn_neg.onnx        cnn.onnx with its score negated (a "variant" that loses all accuracy)
  quadratic.onnx      z = (x - mean) / std; score = sum(z * (z @ P)): a Mahalanobis-like
                      feature model (FP32 arithmetic around one MatMul), input "features" [N,8]
  cnn_calib.npy       [64,1,256] float32 calibration windows for the CNNs
  cnn_val.npy         [96,1,256] validation windows, cnn_labels.npy [96] 0/1 labels
  mlp_calib.npy       [64,8] float32
  known_calib.npy     [32,2,5] float32
  cnn_rank_labels.npy [96] labels = FP32 cnn score above its median (so the FP32 AUC is 1)
  bad_f64.npy, empty.npy [0,1,256], cnn_calib_small.npy [5,1,256]: bad calibration inputs
The models carry metadata_props (tend.name, tend.version, tend.input_kind) so tests can check
that quantisation keeps them.
"""
import os
import sys

import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

warnings.filterwarnings("ignore")
torch.manual_seed(0)
np.random.seed(0)


def add_metadata(path, props):
    m = onnx.load(path)
    for k, v in props.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, path)


class Cnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv1d(1, 8, 7, stride=2, padding=3)
        self.c2 = torch.nn.Conv1d(8, 16, 5, stride=2, padding=2)
        self.fc = torch.nn.Linear(16, 1)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = x.mean(dim=2)
        return self.fc(x)


class Negated(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return -self.inner(x)


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(8, 16)
        self.l2 = torch.nn.Linear(16, 1)

    def forward(self, x):
        return torch.sigmoid(self.l2(torch.relu(self.l1(x)))).squeeze(1)


class LstmHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 4, 5, stride=4, padding=2)
        self.lstm = torch.nn.LSTM(4, 8, batch_first=True)
        self.fc = torch.nn.Linear(8, 1)

    def forward(self, x):
        h = torch.relu(self.conv(x)).transpose(1, 2)
        y, _ = self.lstm(h)
        return self.fc(y[:, -1, :])


def windows(n, rng, anomalous):
    """Damped 300 Hz bursts in noise; anomalous windows ring at a lower frequency with rattle."""
    t = np.arange(256) / 2000.0
    out = np.zeros((n, 1, 256), np.float32)
    for i in range(n):
        f = 300.0 * (0.9 if anomalous[i] else 1.0) * (1 + 0.02 * rng.standard_normal())
        a = 1.0 + 0.1 * rng.standard_normal()
        s = a * np.exp(-t / 0.03) * np.sin(2 * np.pi * f * t)
        if anomalous[i]:
            s += 0.4 * np.exp(-np.maximum(t - 0.02, 0) / 0.005) * (t > 0.02)
        out[i, 0] = s + 0.05 * rng.standard_normal(256)
    return out


def export(model, x, path, opset, dynamic=True, names=("input", "output")):
    model.eval()
    kw = {}
    if dynamic:
        kw["dynamic_axes"] = {names[0]: {0: "N"}, names[1]: {0: "N"}}
    torch.onnx.export(model, x, path, opset_version=opset, input_names=[names[0]],
                      output_names=[names[1]], **kw)


def known_weights(path):
    # input x [N,2,5] -> Conv(W [2,2,3], B [2]) -> y [N,2,3] -> Reshape [N,6] -> MatMul(M [6,2])
    w = np.array([[[1.0, -2.0, 0.5], [0.25, 0.0, 0.1]],
                  [[0.3, -0.6, 0.2], [0.1, 0.05, -0.15]]], np.float32)  # |max| per channel 2.0, 0.6
    b = np.array([0.5, -0.25], np.float32)
    m = np.array([[1.0, -0.5], [2.0, 0.25], [-4.0, 0.1], [0.5, 0.0], [0.0, 0.3], [1.5, -0.2]],
                 np.float32)  # |max| per column 4.0, 0.5
    shape = np.array([-1, 6], np.int64)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["y"], name="conv"),
         helper.make_node("Relu", ["y"], ["r"], name="relu"),
         helper.make_node("Reshape", ["r", "shape"], ["f"], name="flat"),
         helper.make_node("MatMul", ["f", "M"], ["score"], name="matmul")],
        "known",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"),
         numpy_helper.from_array(m, "M"), numpy_helper.from_array(shape, "shape")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def quadratic(path, rng):
    a = rng.standard_normal((8, 8)).astype(np.float32)
    prec = (a @ a.T / 8 + np.eye(8, dtype=np.float32)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Sub", ["features", "mean"], ["centred"], name="sub"),
         helper.make_node("Div", ["centred", "std"], ["z"], name="div"),
         helper.make_node("MatMul", ["z", "P"], ["zp"], name="matmul"),
         helper.make_node("Mul", ["z", "zp"], ["terms"], name="mul"),
         helper.make_node("ReduceSum", ["terms", "axes"], ["anomaly_score"], name="sum",
                          keepdims=0)],
        "quadratic",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("anomaly_score", TensorProto.FLOAT, ["N"])],
        [numpy_helper.from_array(np.full(8, 0.5, np.float32), "mean"),
         numpy_helper.from_array(np.full(8, 2.0, np.float32), "std"),
         numpy_helper.from_array(prec, "P"),
         numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def two_inputs(path):
    g = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])], "two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1)
    meta = {"tend.name": "test-cnn", "tend.version": "3", "tend.input_kind": "raw"}

    cnn = Cnn()
    x = torch.zeros(1, 1, 256)
    export(cnn, x, f"{out}/cnn.onnx", 13)
    add_metadata(f"{out}/cnn.onnx", meta)
    export(cnn, x, f"{out}/cnn_fixed.onnx", 13, dynamic=False)
    export(cnn, x, f"{out}/cnn_opset11.onnx", 11)

    calib = windows(64, rng, np.zeros(64, bool))
    labels = (np.arange(96) % 2).astype(np.int64)
    val = windows(96, rng, labels.astype(bool))
    np.save(f"{out}/cnn_calib.npy", calib)
    np.save(f"{out}/cnn_val.npy", val)
    np.save(f"{out}/cnn_labels.npy", labels)

    with torch.no_grad():
        ref = cnn(torch.from_numpy(val))[:, 0].numpy()
    np.save(f"{out}/cnn_rank_labels.npy", (ref > np.median(ref)).astype(np.int64))
    export(Negated(cnn), x, f"{out}/cnn_neg.onnx", 13)
    np.save(f"{out}/bad_f64.npy", calib.astype(np.float64))
    np.save(f"{out}/empty.npy", np.zeros((0, 1, 256), np.float32))
    np.save(f"{out}/cnn_calib_small.npy", calib[:5])

    mlp = Mlp()
    export(mlp, torch.zeros(1, 8), f"{out}/mlp.onnx", 13, names=("features", "anomaly_score"))
    add_metadata(f"{out}/mlp.onnx", {"tend.name": "test-mlp", "tend.input_kind": "features"})
    np.save(f"{out}/mlp_calib.npy", rng.standard_normal((64, 8)).astype(np.float32))

    export(LstmHead(), torch.zeros(1, 1, 256), f"{out}/lstm_head.onnx", 13)

    known_weights(f"{out}/known_weights.onnx")
    np.save(f"{out}/known_calib.npy", rng.standard_normal((32, 2, 5)).astype(np.float32))
    two_inputs(f"{out}/two_inputs.onnx")
    quadratic(f"{out}/quadratic.onnx", rng)


if __name__ == "__main__":
    main()
