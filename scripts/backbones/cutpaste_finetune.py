#!/usr/bin/python3
"""Fine-tune the nsfwjs MobileNetV2 self-supervised on good images only (CutPaste, Li et al.
2021, "CutPaste: Self-Supervised Learning for Anomaly Detection and Localization") and write it
as an ONNX backbone with the same tensor names as nsfwjs_to_onnx.py's, so that
`tend train --backbone OUT.onnx` uses it unchanged.

    cutpaste_finetune.py nsfwjs-4.4.0.tgz GOOD_DIR OUT.onnx [--steps 300] [--seed 0]

The objective needs no labels and no defect image: each training example is a random crop of a
good image, the same crop with a rectangle cut from elsewhere in it and pasted (CutPaste), and
the same crop with a thin rotated "scar" pasted (CutPaste-Scar); a small head on the globally
pooled block_9_add and block_12_add features learns to tell the three apart. Patch sizes are the
paper's (area 2-15 % of the crop, aspect 0.3-3.3; scars 2-16 x 10-25 px, rotated +-45 degrees),
not chosen for any defect kind.

Which images: GOOD_DIR's images in name order, minus every 5th (index 0, 5, 10, ... = tend's
`GOOD_DIR@every=5`, kept unseen for judging) and minus every 4th of the rest (index 3, 7, ... =
the quarter `tend train --holdout 0.25` holds out to calibrate thresholds). So the backbone sees
exactly the images PaDiM is then fitted on (`tend train --input GOOD_DIR@skip=5`).

Each image is prepared as tend's default preprocessing does (grey, PIL-bilinear resize to
256x256, u8 levels, per-frame standardisation 0.4 (v - mean) / sd, replicated to 3 channels).
Layers up to block_5 (ImageNet, frozen in nsfwjs too) stay as they are (`--train-from`); blocks
6-12 are trained
(BatchNorm statistics frozen, so the converter folds them as before); blocks 13-16 are unused by
tend's default layers and left as nsfwjs has them. Seeded; one run on a given thread count
(`--threads`, default 2) gives the same weights.

Needs Debian's python3-torch (1.13), python3-numpy, python3-onnx, python3-pil.
"""
import argparse
import glob
import hashlib
import math
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nsfwjs_to_onnx import dequantise, read_package, to_onnx  # noqa: E402

SIZE = 256
TRAINED_FROM_BLOCK = 6
LAST = "block_12_add"
HEAD_LAYERS = ["block_9_add", "block_12_add"]


def fitting_images(folder):
    names = sorted(p for p in glob.glob(os.path.join(folder, "*"))
                   if p.lower().endswith((".jpg", ".jpeg", ".png", ".bmp"))
                   and not (p.lower().endswith(".png") and os.path.exists(p[:-4] + ".jpg")))
    skip5 = [p for i, p in enumerate(names) if i % 5 != 0]
    return [p for j, p in enumerate(skip5) if j % 4 != 3]


def load_levels(path):
    """tend's resample: grey, antialiased bilinear to SIZE x SIZE, rounded to u8 levels."""
    im = Image.open(path).convert("L").resize((SIZE, SIZE), Image.BILINEAR)
    return np.asarray(im, np.float32)


def to_input(levels):
    x = 0.4 * (levels - levels.mean()) / max(float(levels.std()), 1.0)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]
    return t.expand(1, 3, *t.shape[2:])


def tf_same_pads(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class MobileNetV2(torch.nn.Module):
    """The Keras graph up to LAST, weights as parameters; BatchNorm uses its moving statistics."""

    def __init__(self, layers, weights, trained_from=TRAINED_FROM_BLOCK):
        super().__init__()
        names = [l["name"] for l in layers]
        self.layers = layers[:names.index(LAST) + 1]
        used = {l["name"] for l in self.layers}
        self.p = torch.nn.ParameterDict()
        for k, v in weights.items():
            layer = k.split("/")[0]
            if layer not in used:
                continue
            block = int(layer.split("_")[1]) if layer.startswith("block_") else 0
            trainable = block >= trained_from and not k.endswith(("moving_mean", "moving_variance"))
            self.p[k.replace("/", "__")] = torch.nn.Parameter(
                torch.from_numpy(v.astype(np.float32)), requires_grad=trainable)

    def w(self, k):
        return self.p[k.replace("/", "__")]

    def conv(self, l, x):
        cls, cfg, name = l["class_name"], l["config"], l["name"]
        if cls == "Conv2D":
            k, groups = self.w(f"{name}/kernel").permute(3, 2, 0, 1), 1
        else:
            dk = self.w(f"{name}/depthwise_kernel")
            groups = dk.shape[2]
            k = dk.permute(2, 3, 0, 1).reshape(groups * dk.shape[3], 1, dk.shape[0], dk.shape[1])
        if cfg["padding"] == "same":
            ph = tf_same_pads(x.shape[2], k.shape[2], cfg["strides"][0])
            pw = tf_same_pads(x.shape[3], k.shape[3], cfg["strides"][1])
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        b = self.w(f"{name}/bias") if cfg["use_bias"] else None
        return F.conv2d(x, k, b, stride=cfg["strides"], groups=groups)

    def forward(self, x, want):
        t, out = {}, {}
        for l in self.layers:
            cls, cfg, name = l["class_name"], l["config"], l["name"]
            src = [t[n[0]] for n in l["inbound_nodes"][0]] if l["inbound_nodes"] else [x]
            if cls == "InputLayer":
                y = x
            elif cls == "ZeroPadding2D":
                (top, bottom), (left, right) = cfg["padding"]
                y = F.pad(src[0], (left, right, top, bottom))
            elif cls in ("Conv2D", "DepthwiseConv2D"):
                y = self.conv(l, src[0])
            elif cls == "BatchNormalization":
                y = F.batch_norm(src[0], self.w(f"{name}/moving_mean"), self.w(f"{name}/moving_variance"),
                                 self.w(f"{name}/gamma"), self.w(f"{name}/beta"), training=False,
                                 eps=cfg["epsilon"])
            elif cls == "ReLU":
                y = torch.clamp(src[0], 0, cfg["max_value"])
            elif cls == "Add":
                y = src[0] + src[1]
            else:
                raise ValueError(f"{name}: layer type {cls} not handled")
            t[name] = y
            if name in want:
                out[name] = y
        return out


class CutPaste:
    def __init__(self, rng):
        self.rng = rng

    def __call__(self, img, scar):
        rng, (H, W) = self.rng, img.shape
        out = img.copy()
        if scar:
            pw, ph = int(rng.integers(2, 17)), int(rng.integers(10, 26))
        else:
            area = rng.uniform(0.02, 0.15) * H * W
            ar = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
            pw = int(min(W - 1, max(2, round(math.sqrt(area * ar)))))
            ph = int(min(H - 1, max(2, round(math.sqrt(area / ar)))))
        y0, x0 = rng.integers(0, H - ph), rng.integers(0, W - pw)
        patch = img[y0:y0 + ph, x0:x0 + pw] * rng.uniform(0.9, 1.1) + rng.uniform(-20, 20)
        patch = np.clip(patch, 0, 255)
        if scar:
            im = Image.fromarray(patch.astype(np.uint8)).convert("LA")
            arr = np.asarray(im.rotate(rng.uniform(-45, 45), resample=Image.BILINEAR, expand=True),
                             np.float32)
            patch, mask = arr[..., 0], arr[..., 1] > 127
        else:
            mask = np.ones(patch.shape, bool)
        ph, pw = patch.shape
        y1, x1 = rng.integers(0, H - ph), rng.integers(0, W - pw)
        region = out[y1:y1 + ph, x1:x1 + pw]
        region[mask] = patch[mask]
        return out


def acc_ok(accuracy):
    return bool(np.isfinite(accuracy))  # no step taken (--steps 0): no accuracy, JSON has no NaN


def batch(images, rng, cut, size, crop):
    xs, ys = [], []
    for _ in range(size):
        im = images[rng.integers(len(images))]
        if rng.random() < 0.5:
            im = im[:, ::-1]
        y, x = rng.integers(0, SIZE - crop + 1), rng.integers(0, SIZE - crop + 1)
        c = np.ascontiguousarray(im[y:y + crop, x:x + crop])
        for label, v in enumerate([c, cut(c, False), cut(c, True)]):
            xs.append(to_input(v))
            ys.append(label)
    return torch.cat(xs), torch.tensor(ys)


def train(net, images, a, save):
    rng = np.random.default_rng(a.seed)
    cut = CutPaste(rng)
    head = torch.nn.Sequential(torch.nn.Linear(64 + 96, 128), torch.nn.ReLU(), torch.nn.Linear(128, 3))
    opt = torch.optim.Adam([{"params": [p for p in net.parameters() if p.requires_grad], "lr": a.lr},
                            {"params": head.parameters(), "lr": 1e-3}])
    t0, acc = time.time(), []
    for step in range(1, a.steps + 1):
        x, y = batch(images, rng, cut, a.batch, a.crop)
        o = net(x, HEAD_LAYERS)
        logits = head(torch.cat([o[n].mean((2, 3)) for n in HEAD_LAYERS], 1))
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc.append((logits.argmax(1) == y).float().mean().item())
        if a.save_every and step % a.save_every == 0 and step < a.steps:
            save(step, time.time() - t0, float(np.mean(acc[-50:])))
        if step % 50 == 0 or step == a.steps:
            print(f"step {step}/{a.steps}: loss {loss.item():.3f}, accuracy (last 50) "
                  f"{np.mean(acc[-50:]):.2f}, {time.time() - t0:.0f} s", flush=True)
    return time.time() - t0, float(np.mean(acc[-50:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tgz")
    ap.add_argument("good_dir")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8, help="crops per step (each x3: normal, cutpaste, scar)")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-from", type=int, default=TRAINED_FROM_BLOCK,
                    help="first block trained (earlier ones keep their weights)")
    ap.add_argument("--save-every", type=int, default=0,
                    help="also write OUT with .stepN before .onnx every N steps (learning curve)")
    a = ap.parse_args()
    if not a.out.endswith(".onnx"):
        sys.exit(f"{a.out}: the output must end with .onnx")
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    with open(a.tgz, "rb") as f:
        sha512 = hashlib.sha512(f.read()).digest()
    model, blob, version = read_package(a.tgz)
    weights = dequantise(model, blob)
    paths = fitting_images(a.good_dir)
    if len(paths) < 10:
        sys.exit(f"{a.good_dir}: {len(paths)} fitting images, need at least 10")
    images = [load_levels(p) for p in paths]
    net = MobileNetV2(model["modelTopology"]["model_config"]["config"]["layers"], weights, a.train_from)
    digest = hashlib.sha256("\n".join(os.path.basename(p) for p in paths).encode()).hexdigest()

    def save(step, seconds, accuracy):
        tuned = dict(weights)
        for k, v in net.p.items():
            tuned[k.replace("__", "/")] = v.detach().double().numpy()
        extra = {
            "weights": "nsfwjs MobileNetV2 (ImageNet up to block_10, nsfwjs classes after), then "
                       f"blocks {a.train_from}-12 fine-tuned self-supervised (CutPaste, Li et al. "
                       "2021: normal / cut-paste / scar) on good images only",
            "self_supervised": {
                "method": "CutPaste 3-way", "script": "scripts/backbones/cutpaste_finetune.py",
                "images": f"{len(paths)} of {os.path.basename(os.path.normpath(a.good_dir))} "
                          "(@skip=5, minus tend train's every-4th threshold hold-out)",
                "images_sha256": digest, "steps": step, "batch": a.batch, "crop": a.crop,
                "lr": a.lr, "seed": a.seed, "threads": a.threads,
                "trained_blocks": f"{a.train_from}-12",
                "final_accuracy": round(accuracy, 3) if acc_ok(accuracy) else None,
            },  # no training time here: the same seed gives the same file
            "converter": "scripts/backbones/nsfwjs_to_onnx.py + scripts/backbones/cutpaste_finetune.py",
        }
        m, nodes, _, _ = to_onnx(model, tuned, version, sha512, extra)
        out = a.out if step == a.steps else a.out[:-len(".onnx")] + f".step{step}.onnx"
        onnx.save(m, out)
        print(f"{out}: MobileNetV2 from nsfwjs@{version}, CutPaste-tuned on {len(paths)} images, "
              f"{step} steps in {seconds:.0f} s (accuracy {accuracy:.2f}), {nodes} nodes", flush=True)

    seconds, accuracy = train(net, images, a, save)
    save(a.steps, seconds, accuracy)


if __name__ == "__main__":
    main()
