#!/usr/bin/python3
"""Calibration input for `tend quantize` of an image model: the fitting images (tend train's
split: every image but each K-th, K = round(1/--holdout)), preprocessed as tend's default image
preprocessing does (grey, antialiased bilinear resize, rounding to u8 levels, per-frame
standardisation to std 0.2 around 0.5, then (x - mean) / std, grey replicated to 3 channels),
written as one float32 .npy [N, 3, H, W]. PIL's resampler is not tend's, so values differ
slightly from served inputs: good enough for activation ranges, not for scoring.

  scripts/vision_calibration.py --input "../shared/data/magnetic-tiles/MT_Free@skip=5" --out calib.npy
  build/tend quantize model.onnx --calibration calib.npy --ops Conv,Clip,Add,AveragePool \\
    --exclude tend_emb_concat_Concat --reduce-range --max-samples 128 --out model.int8.onnx
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vision_synthetic import list_images  # noqa: E402  (same image-set rules)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, action="append", help="the fitting image set(s)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", default="256x256", help="WIDTHxHEIGHT of the model")
    ap.add_argument("--holdout-every", type=int, default=4, help="round(1/--holdout) of tend train")
    ap.add_argument("--mean", type=float, default=0.5)
    ap.add_argument("--std", type=float, default=0.5)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    files = [f for spec in a.input for f in list_images(spec)]
    k = a.holdout_every
    fit = [f for i, f in enumerate(files) if i % k != k - 1]
    out = np.zeros((len(fit), 3, h, w), np.float32)
    for i, f in enumerate(fit):
        v = np.asarray(Image.open(f).convert("L").resize((w, h), Image.BILINEAR), np.float32)
        v = np.round(v)
        s = 0.2 / max(float(v.std()), 1.0)
        out[i] = (s * v + (0.5 - s * float(v.mean())) - a.mean) / a.std
    np.save(a.out, out)
    print(f"{len(fit)} fitting images -> {a.out} {list(out.shape)}")


if __name__ == "__main__":
    main()
