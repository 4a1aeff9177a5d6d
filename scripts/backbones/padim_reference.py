#!/usr/bin/python3
"""A PaDiM reference in PyTorch + numpy for measuring feature levers on the magnetic tiles without
building a tend model per candidate: backbone features (the nsfwjs Keras MobileNetV2 or
InceptionV3, read from the npm package as nsfwjs_to_onnx.py reads it), a fixed random channel
subset, per-location Gaussians fitted on the same good tiles `tend train --input MT_Free@skip=5`
fits on, Mahalanobis maps, image score = the map's maximum. Prints the AUROC of each defect folder
on both halves (dev: odd file index, `DIR@skip=2`; test: even, `DIR@every=2`) against the unseen
good tiles (`MT_Free@every=5`).

    padim_reference.py nsfwjs-4.4.0.tgz ../shared/data/magnetic-tiles [--net inception_v3]
        [--layers mixed1,mixed3] [--border 32] [--pool 1] [--dims 100] [--norm none|z|mean]
    padim_reference.py nsfwjs-4.4.0.tgz --self-check

It is not tend's pipeline (PIL's resize, not tend's; its own channel subset), so its numbers
differ from `tend eval`'s by a point or two; what it is for is comparing levers one at a time.
--self-check compares this generic reading of the Keras layers with cutpaste_finetune.py's
MobileNetV2 (whose untrained export reproduces tend's default backbone) on a random input and
exits 1 if a default layer differs; the InceptionV3 reading has no second implementation to check
against. --norm divides each location's distance by its mean over tend's threshold hold-out of good tiles
('mean') or standardises it ('z') before the maximum. Needs Debian's python3-torch, -numpy, -pil.
"""
import argparse
import glob
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cutpaste_finetune as cp  # noqa: E402
import nsfwjs_to_onnx as conv  # noqa: E402

KINDS = ("Blowhole", "Crack", "Fray")
DEFAULT_LAYERS = {"mobilenet_v2": "block_5_add,block_9_add,block_12_add",
                  "inception_v3": "mixed1,mixed3"}


def names(root, folder):
    return sorted(glob.glob(os.path.join(root, folder, "*.jpg")))


def splits(root):
    """tend's selections: fit = MT_Free@skip=5 minus every 4th (the threshold hold-out)."""
    free = names(root, "MT_Free")
    skip5 = [p for i, p in enumerate(free) if i % 5 != 0]
    return {
        "fit": [p for j, p in enumerate(skip5) if j % 4 != 3],
        "holdout": [p for j, p in enumerate(skip5) if j % 4 == 3],
        "good": [p for i, p in enumerate(free) if i % 5 == 0],
        "dev": {k: [p for i, p in enumerate(names(root, "MT_" + k)) if i % 2] for k in KINDS},
        "test": {k: [p for i, p in enumerate(names(root, "MT_" + k)) if i % 2 == 0] for k in KINDS},
    }


def auroc(neg, pos):
    s = np.concatenate([neg, pos])
    r = s.argsort().argsort().astype(float) + 1
    return (r[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos))


class KerasNet(torch.nn.Module):
    """Runs the Keras layers of an nsfwjs model up to the last wanted one (inference only)."""

    def __init__(self, tgz, net, last):
        super().__init__()
        conv.MODEL_DIR = f"package/dist/models/{net}/"
        model, blob, _ = conv.read_package(tgz)
        self.w = {k: torch.from_numpy(v.astype(np.float32))
                  for k, v in conv.dequantise(model, blob).items()}
        layers = model["modelTopology"]["model_config"]["config"]["layers"]
        self.layers = layers[:[l["name"] for l in layers].index(last) + 1]

    @staticmethod
    def same(x, k, s):
        ph, pw = cp.tf_same_pads(x.shape[2], k, s), cp.tf_same_pads(x.shape[3], k, s)
        return (pw[0], pw[1], ph[0], ph[1])

    def conv(self, l, x):
        cfg, name = l["config"], l["name"]
        s = cfg["strides"][0]
        if l["class_name"] == "Conv2D":
            k, groups = self.w[f"{name}/kernel"].permute(3, 2, 0, 1), 1
        else:
            dk = self.w[f"{name}/depthwise_kernel"]
            groups = dk.shape[2]
            k = dk.permute(2, 3, 0, 1).reshape(groups * dk.shape[3], 1, dk.shape[0], dk.shape[1])
        if cfg["padding"] == "same":
            x = F.pad(x, self.same(x, k.shape[2], s))
        b = self.w[f"{name}/bias"] if cfg["use_bias"] else None
        return F.conv2d(x, k, b, stride=s, groups=groups)

    def pool(self, l, x):
        cfg = l["config"]
        k, s = cfg["pool_size"][0], cfg["strides"][0]
        if l["class_name"] == "MaxPooling2D":
            if cfg["padding"] == "same":
                x = F.pad(x, self.same(x, k, s), value=-1e30)
            return F.max_pool2d(x, k, s)
        if cfg["padding"] != "same" or s != 1:
            raise ValueError(f"{l['name']}: average pooling {cfg} not handled")
        return F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)  # Keras: pads not counted

    def layer(self, l, src):
        cls, cfg, name = l["class_name"], l["config"], l["name"]
        if cls in ("Conv2D", "DepthwiseConv2D"):
            return self.conv(l, src[0])
        if cls == "BatchNormalization":
            c = src[0].shape[1]
            return F.batch_norm(src[0], self.w[f"{name}/moving_mean"],
                                self.w[f"{name}/moving_variance"],
                                self.w.get(f"{name}/gamma", torch.ones(c)),
                                self.w.get(f"{name}/beta", torch.zeros(c)), False, 0.0,
                                cfg["epsilon"])
        if cls == "ReLU":
            return torch.clamp(src[0], 0, cfg["max_value"])
        if cls == "Activation" and cfg["activation"] == "relu":
            return F.relu(src[0])
        if cls in ("MaxPooling2D", "AveragePooling2D"):
            return self.pool(l, src[0])
        if cls == "ZeroPadding2D":
            (top, bottom), (left, right) = cfg["padding"]
            return F.pad(src[0], (left, right, top, bottom))
        if cls == "Add":
            return src[0] + src[1]
        if cls == "Concatenate":
            return torch.cat(src, 1)
        raise ValueError(f"{name}: layer type {cls} not handled")

    @torch.no_grad()
    def forward(self, x, want):
        t = {}
        for l in self.layers:
            src = [t[n[0]] for n in l["inbound_nodes"][0]] if l["inbound_nodes"] else [x]
            t[l["name"]] = src[0] if l["class_name"] == "InputLayer" else self.layer(l, src)
        return {k: t[k] for k in want}


class Embedding:
    """image -> [locations, dims]: reflect border, pool, crop, resize to the finest grid."""

    def __init__(self, net, layers, border, pool, dims, seed=0):
        self.net, self.layers, self.border, self.pool = net, layers, border, pool
        self.dims, self.seed, self.sel = dims, seed, None

    def maps(self, x):
        b = self.border
        full = x.shape[2] + 2 * b
        if b:
            x = F.pad(x, (b, b, b, b), mode="reflect")
        out = []
        for m in self.net(x, self.layers).values():
            if self.pool > 1:
                m = F.avg_pool2d(m, self.pool, 1, self.pool // 2, count_include_pad=True)
            c = b * m.shape[2] // full
            out.append(m[:, :, c:m.shape[2] - c, c:m.shape[3] - c] if c else m)
        return out

    def __call__(self, path):
        maps = self.maps(cp.to_input(cp.load_levels(path)))
        g = max(m.shape[2] for m in maps)
        e = torch.cat([F.interpolate(m, size=(g, g), mode="bilinear", align_corners=False)
                       for m in maps], 1)[0]
        if self.sel is None:
            rng = np.random.default_rng(self.seed)
            self.sel = np.sort(rng.choice(e.shape[0], min(self.dims, e.shape[0]), replace=False))
        return e[self.sel].numpy().reshape(len(self.sel), -1).T.copy()


def fit_gaussians(embs, eps):
    e = np.stack(embs)
    mu = e.mean(0)
    x = e - mu
    cov = np.einsum("nld,nle->lde", x, x) / (len(e) - 1) + eps * np.eye(e.shape[2])
    return mu, np.linalg.inv(cov)


def distance_maps(emb, paths, mu, prec):
    out = []
    for p in paths:
        x = emb(p) - mu
        out.append(np.sqrt(np.einsum("ld,lde,le->l", x, prec, x)))
    return np.stack(out)


def self_check(tgz):
    model, blob, _ = conv.read_package(tgz)
    ref = cp.MobileNetV2(model["modelTopology"]["model_config"]["config"]["layers"],
                         conv.dequantise(model, blob))
    layers = DEFAULT_LAYERS["mobilenet_v2"].split(",")
    ours = KerasNet(tgz, "mobilenet_v2", layers[-1])
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.4, (1, 3, 96, 96)).astype(np.float32))
    with torch.no_grad():
        want = ref(x, set(layers))
    got = ours(x, layers)
    worst = 0.0
    for k in layers:
        err = float((got[k] - want[k]).abs().max() / want[k].abs().max())
        print(f"{k}: {tuple(got[k].shape)} max relative difference {err:.2e}")
        worst = max(worst, err)
    return 0 if worst < 1e-5 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tgz")
    ap.add_argument("tiles", nargs="?", help="the magnetic-tiles folder (MT_Free, MT_Blowhole, ...)")
    ap.add_argument("--self-check", action="store_true")
    ap.add_argument("--net", choices=sorted(DEFAULT_LAYERS), default="mobilenet_v2")
    ap.add_argument("--layers", help="comma-separated Keras layer names")
    ap.add_argument("--border", type=int, default=0)
    ap.add_argument("--pool", type=int, default=3)
    ap.add_argument("--dims", type=int, default=100)
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--norm", choices=("none", "z", "mean"), default="none")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.self_check:
        sys.exit(self_check(a.tgz))
    if not a.tiles or not os.path.isdir(os.path.join(a.tiles, "MT_Free")):
        sys.exit(f"{a.tiles}: not a magnetic-tiles folder (no MT_Free in it)")
    t0 = time.time()
    layers = (a.layers or DEFAULT_LAYERS[a.net]).split(",")
    emb = Embedding(KerasNet(a.tgz, a.net, layers[-1]), layers, a.border, a.pool, a.dims)
    s = splits(a.tiles)
    mu, prec = fit_gaussians([emb(p) for p in s["fit"]], a.eps)
    hold = distance_maps(emb, s["holdout"], mu, prec)
    norm = {"none": lambda m: m, "z": lambda m: (m - hold.mean(0)) / hold.std(0),
            "mean": lambda m: m / hold.mean(0)}[a.norm]
    score = lambda paths: norm(distance_maps(emb, paths, mu, prec)).max(1)  # noqa: E731
    good = score(s["good"])
    for half in ("dev", "test"):
        res = [auroc(good, score(s[half][k])) for k in KINDS]
        print(f"{half}: mean {np.mean(res):.3f}  " +
              "  ".join(f"{k} {v:.3f}" for k, v in zip(KINDS, res)), flush=True)
    print(f"({a.net} {','.join(layers)}, border {a.border}, pool {a.pool}, dims {a.dims}, "
          f"norm {a.norm}; {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
