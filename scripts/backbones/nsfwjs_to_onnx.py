#!/usr/bin/python3
"""Convert the Keras MobileNetV2 that the nsfwjs npm package carries (TF.js layers format,
uint8-quantised weights) into an ONNX backbone for tend's image anomaly detectors.

    nsfwjs_to_onnx.py nsfwjs-4.4.0.tgz mobilenet_v2_imagenet.onnx

What comes out, and why it is an ImageNet backbone: nsfwjs fine-tuned Keras' MobileNetV2 (width
1.0, ImageNet weights) on its own five classes with the lower layers frozen. The package's
topology marks every layer up to and including block_10 `trainable: false`, so those weights are
Keras' ImageNet weights, stored by the TF.js converter as uint8 with a per-tensor min and scale
(dequantised here: w = min + scale * q). Blocks 11-16 were fine-tuned; the classification head is
dropped. The graph is fully convolutional: input `image` float [N,3,H,W] (RGB, (x/255 - 0.5)/0.5,
i.e. Keras' [-1, 1] "tf" preprocessing), one output per Keras layer of interest, each ONNX tensor
named after its Keras layer (`block_6_expand_relu`, ...). BatchNormalization is folded into the
preceding convolution; ZeroPadding2D into the next convolution's pads.

Only Python's standard library, numpy and onnx (Debian python3-numpy, python3-onnx) are used:
the JavaScript module text is parsed as data, never executed.
"""
import base64
import hashlib
import io
import json
import re
import sys
import tarfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PACKAGE = "nsfwjs"
MODEL_DIR = "package/dist/models/mobilenet_v2/"
DEFAULT_LAYERS = ["block_5_add", "block_9_add", "block_12_add"]


class JsLiteral:
    """Recursive-descent parser for the JavaScript object literal inside a TF.js UMD module:
    unquoted keys, double-quoted strings, numbers such as `.5` or `1e-3`, `!0`/`!1` booleans,
    null."""

    _num = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
    _ident = re.compile(r"[A-Za-z_$][\w$]*")

    def __init__(self, text, pos):
        self.s, self.i = text, pos

    def parse(self):
        c = self.s[self.i]
        if c == "{":
            return self._object()
        if c == "[":
            return self._array()
        if c == '"':
            return self._string()
        if self.s.startswith("!0", self.i) or self.s.startswith("!1", self.i):
            self.i += 2
            return self.s[self.i - 1] == "0"
        for word, value in (("null", None), ("true", True), ("false", False)):
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return value
        m = self._num.match(self.s, self.i)
        if not m:
            raise ValueError(f"unexpected {self.s[self.i:self.i + 20]!r} at {self.i}")
        self.i = m.end()
        return float(m.group(0)) if any(ch in m.group(0) for ch in ".eE") else int(m.group(0))

    def _string(self):
        end = self.i + 1
        while self.s[end] != '"':
            end += 2 if self.s[end] == "\\" else 1
        value = json.loads(self.s[self.i:end + 1])
        self.i = end + 1
        return value

    def _object(self):
        out = {}
        self.i += 1
        while self.s[self.i] != "}":
            if self.s[self.i] == '"':
                key = self._string()
            else:
                m = self._ident.match(self.s, self.i)
                if not m:
                    raise ValueError(f"bad key at {self.i}")
                key, self.i = m.group(0), m.end()
            assert self.s[self.i] == ":", self.s[self.i:self.i + 20]
            self.i += 1
            out[key] = self.parse()
            if self.s[self.i] == ",":
                self.i += 1
        self.i += 1
        return out

    def _array(self):
        out = []
        self.i += 1
        while self.s[self.i] != "]":
            out.append(self.parse())
            if self.s[self.i] == ",":
                self.i += 1
        self.i += 1
        return out


def read_package(tgz_path):
    with tarfile.open(tgz_path, "r:gz") as tar:
        def text(name):
            return tar.extractfile(MODEL_DIR + name).read().decode("utf-8")
        module = text("model.min.js")
        marker = "exports={"
        model = JsLiteral(module, module.index(marker) + len(marker) - 1).parse()
        blobs = []
        for group in model["weightsManifest"]:
            for path in group["paths"]:
                shard = text(path + ".min.js")
                m = re.search(r'exports="([A-Za-z0-9+/=]+)"', shard)
                if not m:
                    raise ValueError(f"{path}: no base64 weight string found")
                blobs.append(base64.b64decode(m.group(1)))
        version = json.loads(tar.extractfile("package/package.json").read())["version"]
    return model, b"".join(blobs), version


def dequantise(model, blob):
    weights, off = {}, 0
    for group in model["weightsManifest"]:
        for w in group["weights"]:
            n = int(np.prod(w["shape"]))
            q = w.get("quantization")
            if q and q["dtype"] == "uint8":
                raw = np.frombuffer(blob, np.uint8, n, off).astype(np.float64)
                value = q["min"] + q["scale"] * raw
                off += n
            elif q and q["dtype"] == "uint16":
                raw = np.frombuffer(blob, np.uint16, n, off).astype(np.float64)
                value = q["min"] + q["scale"] * raw
                off += 2 * n
            elif not q and w["dtype"] == "float32":
                value = np.frombuffer(blob, np.float32, n, off).astype(np.float64)
                off += 4 * n
            else:
                raise ValueError(f"{w['name']}: unsupported encoding {q or w['dtype']}")
            weights[w["name"]] = value.reshape(w["shape"])
    if off != len(blob):
        raise ValueError(f"weights use {off} bytes, shards hold {len(blob)}")
    return weights


class Builder:
    def __init__(self, layers, weights):
        self.layers = {l["name"]: l for l in layers}
        self.order = [l["name"] for l in layers]
        self.w = weights
        self.nodes, self.inits = [], []
        self.tensor = {}     # Keras layer name -> ONNX tensor carrying its output
        self.pending_pad = {}  # ZeroPadding2D layer name -> (input tensor, [t, l, b, r])
        self.frozen = []

    def inbound(self, layer):
        return [n[0] for n in layer["inbound_nodes"][0]]

    def conv(self, name, src, kernel, cfg, group, bias=None):
        pads = [0, 0, 0, 0]
        if src in self.pending_pad:
            src, pads = self.pending_pad[src]
        k = cfg["kernel_size"]
        if cfg["padding"] == "same":
            if cfg["strides"] != [1, 1] or k[0] % 2 == 0 or k[1] % 2 == 0:
                raise ValueError(f"{name}: 'same' padding only for odd kernels at stride 1")
            pads = [pads[0] + k[0] // 2, pads[1] + k[1] // 2, pads[2] + k[0] // 2, pads[3] + k[1] // 2]
        bn = self.following_bn(name)
        b = np.zeros(kernel.shape[0]) if bias is None else bias
        if bn:
            cb = self.layers[bn]["config"]
            gamma = self.w[f"{bn}/gamma"] if cb["scale"] else 1.0
            beta = self.w[f"{bn}/beta"] if cb["center"] else 0.0
            s = gamma / np.sqrt(self.w[f"{bn}/moving_variance"] + cb["epsilon"])
            kernel = kernel * s.reshape(-1, 1, 1, 1)
            b = (b - self.w[f"{bn}/moving_mean"]) * s + beta
        out = bn or name
        wn, bname = f"{name}/W", f"{name}/B"
        self.inits += [numpy_helper.from_array(kernel.astype(np.float32), wn),
                       numpy_helper.from_array(b.astype(np.float32), bname)]
        self.nodes.append(helper.make_node(
            "Conv", [self.tensor[src], wn, bname], [out], name=name, kernel_shape=k,
            strides=cfg["strides"], pads=pads, group=group, dilations=cfg["dilation_rate"]))
        self.tensor[name] = out
        if bn:
            self.tensor[bn] = out
        return bn

    def following_bn(self, name):
        users = [n for n in self.order if name in self.inbound_or_empty(n)]
        if len(users) == 1 and self.layers[users[0]]["class_name"] == "BatchNormalization":
            return users[0]
        return None

    def inbound_or_empty(self, name):
        l = self.layers[name]
        return self.inbound(l) if l["inbound_nodes"] else []

    def build(self, last):
        for name in self.order:
            l = self.layers[name]
            cls, cfg = l["class_name"], l["config"]
            if cls == "InputLayer":
                self.tensor[name] = "image"
                continue
            if name in self.tensor:  # a BatchNormalization already folded
                continue
            src = self.inbound(l)
            if cfg.get("trainable") is False:
                self.frozen.append(name)
            if cls == "ZeroPadding2D":
                (t, b), (lft, r) = cfg["padding"]
                self.pending_pad[name] = (src[0], [t, lft, b, r])
                self.tensor[name] = None
            elif cls == "Conv2D":
                k = self.w[f"{name}/kernel"].transpose(3, 2, 0, 1)
                bias = self.w.get(f"{name}/bias") if cfg["use_bias"] else None
                self.conv(name, src[0], k, cfg, 1, bias)
            elif cls == "DepthwiseConv2D":
                dk = self.w[f"{name}/depthwise_kernel"]  # [kh, kw, in, mult]
                kh, kw, cin, mult = dk.shape
                k = dk.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
                bias = self.w.get(f"{name}/bias") if cfg["use_bias"] else None
                self.conv(name, src[0], k, cfg, cin, bias)
            elif cls == "ReLU":
                lo, hi = f"{name}/min", f"{name}/max"
                self.inits += [numpy_helper.from_array(np.array(0, np.float32), lo),
                               numpy_helper.from_array(np.array(cfg["max_value"], np.float32), hi)]
                self.nodes.append(helper.make_node("Clip", [self.tensor[src[0]], lo, hi], [name], name=name))
                self.tensor[name] = name
            elif cls == "Add":
                self.nodes.append(helper.make_node("Add", [self.tensor[s] for s in src], [name], name=name))
                self.tensor[name] = name
            else:
                raise ValueError(f"{name}: layer type {cls} not handled")
            if name == last:
                return
        raise ValueError(f"layer {last} not found")


def to_onnx(model, weights, version, sha512, extra=None):
    """The ONNX backbone for these (possibly retrained) Keras weights: same graph, same tensor
    names. `extra` is merged into the provenance (tend.backbone metadata)."""
    layers = model["modelTopology"]["model_config"]["config"]["layers"]
    b = Builder(layers, weights)
    b.build("out_relu")
    outputs = [n for n in b.order if n.endswith("_relu") or n.endswith("_add") or n.endswith("_project_BN")]
    outputs = [n for n in outputs if b.tensor.get(n)]
    graph = helper.make_graph(
        b.nodes, "mobilenet_v2_nsfwjs",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(b.tensor[n], TensorProto.FLOAT, ["N", None, None, None])
         for n in outputs],
        b.inits)
    m = helper.make_model(graph, producer_name="tend scripts/backbones/nsfwjs_to_onnx.py",
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    frozen_blocks = sorted({n.split("_")[1] for n in b.frozen if n.startswith("block_")}, key=int)
    provenance = {
        "architecture": "MobileNetV2 (Keras applications, width 1.0), to out_relu; head dropped",
        "source": f"npm {PACKAGE}@{version} (MIT, Infinite Red), {MODEL_DIR}",
        "source_sha512": "sha512-" + base64.b64encode(sha512).decode(),
        "weights": "ImageNet (Keras applications) for every layer marked trainable:false in the "
                   f"package: Conv1, expanded_conv, block_1..block_{frozen_blocks[-1]}; later blocks "
                   "fine-tuned by nsfwjs on its 5 classes",
        "imagenet_layers": b.frozen,
        "weight_encoding": "uint8 per tensor (TF.js quantisation), dequantised; BatchNorm folded",
        "preprocess": {"color": "rgb", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        # What `tend train` uses unless --layers says otherwise (docs/vision.md: the choice).
        "default_layers": DEFAULT_LAYERS,
        "converter": "scripts/backbones/nsfwjs_to_onnx.py",
    }
    provenance.update(extra or {})
    m.metadata_props.add(key="tend.backbone", value=json.dumps(provenance))
    onnx.checker.check_model(m)
    return m, len(b.nodes), len(outputs), frozen_blocks[-1]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tgz, out = sys.argv[1], sys.argv[2]
    with open(tgz, "rb") as f:
        sha512 = hashlib.sha512(f.read()).digest()
    model, blob, version = read_package(tgz)
    m, nodes, outputs, last_frozen = to_onnx(model, dequantise(model, blob), version, sha512)
    onnx.save(m, out)
    print(f"{out}: MobileNetV2 from {PACKAGE}@{version}, {nodes} nodes, "
          f"{outputs} named layer outputs, ImageNet layers up to block_{last_frozen}")


if __name__ == "__main__":
    main()
