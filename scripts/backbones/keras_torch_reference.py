#!/usr/bin/python3
"""An independent reading of the nsfwjs Keras models, run with PyTorch (Debian's python3-torch):
BatchNorm as BatchNorm (not folded), ZeroPadding2D as an explicit pad, 'same' padding as
TensorFlow defines it. Used to check nsfwjs_to_onnx.py: a test (tests/inspect,
"DefaultBackboneMatchesAnIndependentReadingOfTheKerasModel") feeds the same input to this and to
the ONNX file (run by ONNX Runtime from C++) and compares every named layer. `run` also reads
InceptionV3's layer types (pooling, Concatenate, BatchNorm without gamma) for padim_reference.py.

    keras_torch_reference.py nsfwjs-4.4.0.tgz OUT_DIR [--size 96]

writes OUT_DIR/input.npy (float32 [1,3,S,S], already normalised) and OUT_DIR/<layer>.npy for the
layers listed in LAYERS, each float32 [1,C,h,w].
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nsfwjs_to_onnx import dequantise, read_package  # noqa: E402  (weights only: the parsing)

LAYERS = ["Conv1_relu", "block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
          "block_8_add", "block_10_expand_relu", "block_13_expand_relu", "out_relu"]


def tf_same_pads(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def same_pads(x, k, s):
    """F.pad's (left, right, top, bottom) for TensorFlow 'same' padding of x [N,C,H,W]."""
    ph, pw = tf_same_pads(x.shape[2], k, s), tf_same_pads(x.shape[3], k, s)
    return (pw[0], pw[1], ph[0], ph[1])


def conv(l, w, x):
    cls, cfg, name = l["class_name"], l["config"], l["name"]
    if cls == "Conv2D":
        k = torch.from_numpy(w[f"{name}/kernel"]).permute(3, 2, 0, 1)
        groups = 1
    else:
        dk = torch.from_numpy(w[f"{name}/depthwise_kernel"])
        groups = dk.shape[2]
        k = dk.permute(2, 3, 0, 1).reshape(groups * dk.shape[3], 1, dk.shape[0], dk.shape[1])
    if cfg["padding"] == "same":
        x = F.pad(x, same_pads(x, k.shape[2], cfg["strides"][0]))
    b = torch.from_numpy(w[f"{name}/bias"]) if cfg["use_bias"] else None
    return F.conv2d(x, k, b, stride=cfg["strides"], groups=groups)


def pool(l, x):
    cfg = l["config"]
    k, s = cfg["pool_size"][0], cfg["strides"][0]
    if l["class_name"] == "MaxPooling2D":
        if cfg["padding"] == "same":
            x = F.pad(x, same_pads(x, k, s), value=-1e30)
        return F.max_pool2d(x, k, s)
    if cfg["padding"] != "same" or s != 1:
        return None  # not an Inception branch pool: MobileNetV2's classifier head
    return F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)  # Keras: pads not counted


def layer(l, w, src):
    """One Keras layer on its inputs; None for a layer type not handled (the classifier head)."""
    cls, cfg, name = l["class_name"], l["config"], l["name"]
    if cls == "ZeroPadding2D":
        (top, bottom), (left, right) = cfg["padding"]
        return F.pad(src[0], (left, right, top, bottom))
    if cls in ("Conv2D", "DepthwiseConv2D"):
        return conv(l, w, src[0])
    if cls == "BatchNormalization":  # InceptionV3's have no gamma (scale=False)
        ones = torch.ones(src[0].shape[1], dtype=src[0].dtype)
        t = lambda k, d: torch.from_numpy(w[k]) if k in w else d  # noqa: E731
        return F.batch_norm(src[0], t(f"{name}/moving_mean", None), t(f"{name}/moving_variance", None),
                            t(f"{name}/gamma", ones), t(f"{name}/beta", 0 * ones),
                            training=False, eps=cfg["epsilon"])
    if cls == "ReLU":
        return torch.clamp(src[0], 0, cfg["max_value"])
    if cls == "Activation" and cfg["activation"] == "relu":
        return F.relu(src[0])
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        return pool(l, src[0])
    if cls == "Add":
        return src[0] + src[1]
    if cls == "Concatenate":
        return torch.cat(src, 1)
    return None


def run(layers, w, x, last=None):
    """Every layer's output by name, up to `last` (or the first layer type not handled)."""
    t = {}
    for l in layers:
        name = l["name"]
        if l["class_name"] == "InputLayer":
            t[name] = x
            continue
        y = layer(l, w, [t[n[0]] for n in l["inbound_nodes"][0]])
        if y is None:
            break
        t[name] = y
        if name == last:
            break
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tgz")
    ap.add_argument("out_dir")
    ap.add_argument("--size", type=int, default=96)
    a = ap.parse_args()
    model, blob, _ = read_package(a.tgz)
    w = dequantise(model, blob)
    layers = model["modelTopology"]["model_config"]["config"]["layers"]
    rng = np.random.default_rng(7)
    # A smooth random image in [-1, 1] (what the backbone's preprocessing produces).
    base = rng.uniform(-1, 1, (1, 3, a.size // 8, a.size // 8))
    x = np.kron(base, np.ones((1, 1, 8, 8))) + 0.2 * rng.standard_normal((1, 3, a.size, a.size))
    x = np.clip(x, -1, 1).astype(np.float32)
    with torch.no_grad():
        t = run(layers, w, torch.from_numpy(x.astype(np.float64)))
    os.makedirs(a.out_dir, exist_ok=True)
    np.save(os.path.join(a.out_dir, "input.npy"), x)
    for name in LAYERS:
        np.save(os.path.join(a.out_dir, name + ".npy"), t[name].numpy().astype(np.float32))
    print(f"{a.out_dir}: input and {len(LAYERS)} reference layers at {a.size}x{a.size}")


if __name__ == "__main__":
    main()
