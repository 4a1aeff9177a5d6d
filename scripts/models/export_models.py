#!/usr/bin/python3
"""Exports the ONNX models tend's model runtime is tested and benchmarked on.

    /usr/bin/python3 scripts/models/export_models.py OUTDIR [--set tests|bench|all]

Everything is made with PyTorch 1.13's torch.onnx.export (opsets 13-17), weights from a fixed
seed, so the files are reproducible and nothing binary is committed.

  bench: lstm.onnx        LSTM, x [1,60,14] -> y [1,1]                     (opset 14)
         cnn1d.onnx       1D CNN over a 2,000-sample window, x [1,1,2000] -> y [1,1] (opset 13)
         mobilenet_v2.onnx torchvision MobileNet-V2 (random init), x [batch,3,224,224] -> [batch,1000] (opset 17)
  tests: tiny_static.onnx, tiny_dynamic.onnx (dynamic batch), two_io.onnx (2 inputs, 2 outputs),
         int64_input.onnx (embedding, int64 ids), with_metadata.onnx (metadata_props set),
         bad_op.onnx (well-formed protobuf, unknown operator),
         lstm.onnx and cnn1d.onnx, and expected.json: for each model an input and the output
         PyTorch computed for it, which the C++ tests compare against ONNX Runtime's.
"""
import argparse
import json
import os
import sys
import warnings

import numpy as np
import onnx
import torch
from torch import nn

warnings.filterwarnings("ignore")


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)


class TwoIo(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, a, b):
        return self.lin(a * b), a.sum(dim=1, keepdim=True) - b.mean(dim=1, keepdim=True)


class Embed(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)

    def forward(self, ids):
        return self.emb(ids).sum(dim=1)


class Lstm(nn.Module):
    """Sequence model over 60 steps of 14 features (e.g. a few seconds of per-stroke features)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(input_size=14, hidden_size=64, num_layers=2, batch_first=True)
        self.head = nn.Linear(64, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])


class Cnn1d(nn.Module):
    """Raw-window model: one 200 ms stroke at 10 kHz = 2,000 samples."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 16, kernel_size=9, stride=2, padding=4), nn.BatchNorm1d(16), nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(16, 32, kernel_size=7, stride=2, padding=3), nn.BatchNorm1d(32), nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(32, 64, kernel_size=5, stride=2, padding=2), nn.BatchNorm1d(64), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1))
        self.head = nn.Linear(64, 1)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def export(model, args, path, input_names, output_names, opset, dynamic_axes=None):
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, args, path, input_names=input_names, output_names=output_names,
                          opset_version=opset, dynamic_axes=dynamic_axes, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(path))


def tensor_json(t):
    a = t.detach().numpy()
    return {"shape": list(a.shape), "data": [float(v) if a.dtype.kind == "f" else int(v)
                                             for v in a.reshape(-1)]}


def record(expected, name, model, inputs, input_names, output_names):
    with torch.no_grad():
        outs = model(*inputs)
    if not isinstance(outs, tuple):
        outs = (outs,)
    expected[name] = {
        "inputs": {n: tensor_json(t) for n, t in zip(input_names, inputs)},
        "outputs": {n: tensor_json(t) for n, t in zip(output_names, outs)},
    }


def rand(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float32)


def export_tests(out, expected):
    gen = torch.Generator().manual_seed(1234)
    torch.manual_seed(7)

    mlp = Mlp().eval()
    x = rand(gen, 1, 4)
    export(mlp, (x,), os.path.join(out, "tiny_static.onnx"), ["x"], ["y"], 17)
    record(expected, "tiny_static", mlp, (x,), ["x"], ["y"])

    x3 = rand(gen, 3, 4)
    export(mlp, (x3,), os.path.join(out, "tiny_dynamic.onnx"), ["x"], ["y"], 16,
           dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    record(expected, "tiny_dynamic", mlp, (x3,), ["x"], ["y"])

    two = TwoIo().eval()
    a, b = rand(gen, 1, 4), rand(gen, 1, 4)
    export(two, (a, b), os.path.join(out, "two_io.onnx"), ["a", "b"], ["lin", "diff"], 15)
    record(expected, "two_io", two, (a, b), ["a", "b"], ["lin", "diff"])

    emb = Embed().eval()
    ids = torch.tensor([[1, 2, 3, 4, 5]], dtype=torch.int64)
    export(emb, (ids,), os.path.join(out, "int64_input.onnx"), ["ids"], ["y"], 13)

    # Same network as tiny_static, with metadata_props the way tend stores them.
    m = onnx.load(os.path.join(out, "tiny_static.onnx"))
    for k, v in (("name", "tiny"), ("version", "1.2.0"), ("threshold", "0.75")):
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, os.path.join(out, "with_metadata.onnx"))

    # Valid protobuf, invalid model: ONNX Runtime itself must reject it (unknown operator).
    from onnx import helper, TensorProto
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"])], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              os.path.join(out, "bad_op.onnx"))

    export_bench(out, expected, include_mobilenet=False)


def export_bench(out, expected, include_mobilenet=True):
    torch.manual_seed(11)
    gen = torch.Generator().manual_seed(99)

    lstm = Lstm().eval()
    x = rand(gen, 1, 60, 14)
    export(lstm, (x,), os.path.join(out, "lstm.onnx"), ["x"], ["y"], 14)
    record(expected, "lstm", lstm, (x,), ["x"], ["y"])

    cnn = Cnn1d().eval()
    w = rand(gen, 1, 1, 2000)
    export(cnn, (w,), os.path.join(out, "cnn1d.onnx"), ["x"], ["y"], 13)
    record(expected, "cnn1d", cnn, (w,), ["x"], ["y"])

    if include_mobilenet:
        import torchvision
        net = torchvision.models.mobilenet_v2(weights=None).eval()
        img = rand(gen, 1, 3, 224, 224)
        export(net, (img,), os.path.join(out, "mobilenet_v2.onnx"), ["input"], ["logits"], 17,
               dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--set", choices=["tests", "bench", "all"], default="all")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    expected = {}
    if args.set in ("tests", "all"):
        export_tests(args.outdir, expected)
    if args.set in ("bench", "all"):
        export_bench(args.outdir, expected)
    # Written last and atomically: its presence means the whole set is there.
    tmp = os.path.join(args.outdir, "expected.json.tmp")
    with open(tmp, "w") as f:
        json.dump(expected, f)
    os.replace(tmp, os.path.join(args.outdir, "expected.json"))
    print("exported to %s: %s" % (args.outdir, ", ".join(sorted(
        f for f in os.listdir(args.outdir) if f.endswith(".onnx")))))


if __name__ == "__main__":
    sys.exit(main())
