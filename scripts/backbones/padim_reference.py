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

It is not tend's pipeline (PIL's resize, not tend's; its own channel subset), so its numbers
differ from `tend eval`'s by a point or two; what it is for is comparing levers one at a time.
The Keras layers are read by keras_torch_reference.run, which a test checks layer by layer
against the converted default backbone; its InceptionV3 layer types (pooling, Concatenate) have no
second implementation here to check against. --norm divides each location's distance by its mean
over tend's threshold hold-out of good tiles ('mean') or standardises it ('z') before the maximum. Needs Debian's python3-torch, -numpy, -pil.
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
import keras_torch_reference as reference  # noqa: E402
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


class KerasNet:
    """The layers of an nsfwjs model up to the last wanted one, read by keras_torch_reference.run
    (float32 here; the test that checks that reading against the converter runs it in float64)."""

    def __init__(self, tgz, net, last):
        conv.MODEL_DIR = f"package/dist/models/{net}/"
        model, blob, _ = conv.read_package(tgz)
        self.w = {k: v.astype(np.float32) for k, v in conv.dequantise(model, blob).items()}
        self.layers = model["modelTopology"]["model_config"]["config"]["layers"]
        self.last = last

    @torch.no_grad()
    def __call__(self, x, want):
        t = reference.run(self.layers, self.w, x, self.last)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tgz")
    ap.add_argument("tiles", help="the magnetic-tiles folder (MT_Free, MT_Blowhole, ...)")
    ap.add_argument("--net", choices=sorted(DEFAULT_LAYERS), default="mobilenet_v2")
    ap.add_argument("--layers", help="comma-separated Keras layer names")
    ap.add_argument("--border", type=int, default=0)
    ap.add_argument("--pool", type=int, default=3)
    ap.add_argument("--dims", type=int, default=100)
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--norm", choices=("none", "z", "mean"), default="none")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if not os.path.isdir(os.path.join(a.tiles, "MT_Free")):
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
