#!/usr/bin/python3
"""Synthetic anomalies for choosing an image detector without looking at real defects.

From the good images tend train holds out for thresholds (never fitted: image i of the fitting set
with i % K == K - 1), writes DIR/good/ (copies) and DIR/synthetic/ (one altered copy each, the
alteration cycling through four generic kinds: a patch cut from another good image and pasted
rotated, a dark or bright blob, a thin line, a rectangle of noise; sizes and places drawn from a
seeded generator). `tend eval --normal DIR/good --anomalous DIR/synthetic` then gives an AUROC
that does not depend on any real defect folder. Python 3 + Debian's python3-pil only.

  scripts/vision_synthetic.py --input "../shared/data/magnetic-tiles/MT_Free@skip=5" --out DIR
"""
import argparse
import math
import os
import random
import shutil
import sys

from PIL import Image, ImageDraw, ImageFilter


def list_images(spec):
    """The fitting set tend reads from DIR[@every=K|@skip=K] (name order; X.png next to X.jpg is
    a mask, not an image)."""
    path, _, sel = spec.partition("@")
    names = sorted(os.listdir(path))
    files = []
    for n in names:
        stem, ext = os.path.splitext(n)
        ext = ext.lower()
        if ext in (".jpg", ".jpeg"):
            files.append(os.path.join(path, n))
        elif ext == ".png" and not any(stem + e in names for e in (".jpg", ".jpeg", ".JPG")):
            files.append(os.path.join(path, n))
    if sel:
        key, _, val = sel.partition("=")
        k = int(val)
        picked = [f for i, f in enumerate(files) if i % k == 0]
        files = picked if key == "every" else [f for i, f in enumerate(files) if i % k != 0]
    return files


def alter(img, donor, kind, rng):
    w, h = img.size
    side = min(w, h)
    out = img.copy()
    s = max(4, int(side * rng.uniform(0.04, 0.15)))  # the anomaly's size
    x, y = rng.randint(0, max(0, w - s)), rng.randint(0, max(0, h - s))
    if kind == 0:  # cut-paste from another good image, rotated
        dw, dh = donor.size
        dx, dy = rng.randint(0, max(0, dw - s)), rng.randint(0, max(0, dh - s))
        patch = donor.crop((dx, dy, dx + s, dy + s)).rotate(rng.choice([90, 180, 270]))
        out.paste(patch, (x, y))
    elif kind == 1:  # dark or bright blob with soft edges
        mask = Image.new("L", img.size, 0)
        ImageDraw.Draw(mask).ellipse((x, y, x + s, y + int(s * rng.uniform(0.5, 1.5))), fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(max(1, s // 6)))
        shade = Image.new(img.mode, img.size, rng.choice([rng.randint(0, 40), rng.randint(200, 255)]))
        out = Image.composite(shade, out, mask)
    elif kind == 2:  # a thin line
        a = rng.uniform(0, math.pi)
        length = side * rng.uniform(0.1, 0.4)
        cx, cy = x + s / 2, y + s / 2
        d = ImageDraw.Draw(out)
        d.line((cx - length / 2 * math.cos(a), cy - length / 2 * math.sin(a),
                cx + length / 2 * math.cos(a), cy + length / 2 * math.sin(a)),
               fill=rng.choice([rng.randint(0, 50), rng.randint(190, 255)]),
               width=rng.randint(1, 3))
    else:  # a rectangle of noise
        noise = Image.effect_noise((s, s), rng.uniform(30, 80)).convert(img.mode)
        out.paste(noise, (x, y))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, action="append", help="the fitting image set(s)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--holdout-every", type=int, default=4, help="round(1/--holdout) of tend train (--holdout 0.25)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    files = [f for spec in a.input for f in list_images(spec)]
    k = a.holdout_every
    held = [f for i, f in enumerate(files) if i % k == k - 1]
    if not held:
        sys.exit("no held-out images")
    rng = random.Random(a.seed)
    for sub in ("good", "synthetic"):
        os.makedirs(os.path.join(a.out, sub), exist_ok=True)
    for i, f in enumerate(held):
        base = os.path.splitext(os.path.basename(f))[0]
        shutil.copyfile(f, os.path.join(a.out, "good", os.path.basename(f)))
        img = Image.open(f).convert("L")
        donor = Image.open(rng.choice(held)).convert("L")
        alter(img, donor, i % 4, rng).save(os.path.join(a.out, "synthetic", base + ".jpg"),
                                           quality=95)
    print(f"{len(held)} held-out good images -> {a.out}/good, {a.out}/synthetic")


if __name__ == "__main__":
    main()
