#!/usr/bin/python3
"""Where an image model's scores go wrong: reads `tend score` JSON lines (good tiles and defect
tiles mixed; a defect is any file whose folder is not GOOD_FOLDER) and sets each score beside what
the image and, for a defect, its pixel mask (X.png next to X.jpg) show: saturation, size, aspect,
defect area and distance to the border at the model's 256x256 input. docs/vision.md, "Diagnosis".

    tend score --model m.onnx --input "$D/MT_Free@every=5" "$D/MT_Crack@skip=2" ... > s.jsonl
    scripts/vision_diagnose.py s.jsonl [--good MT_Free] [--size 256]

Debian python3-numpy, python3-scipy, python3-pil.
"""
import argparse
import json
import os

import numpy as np
from PIL import Image
from scipy.stats import spearmanr


def props(p, size):
    im = Image.open(p).convert('L')
    a = np.asarray(im, np.float32)
    r = dict(w=im.width, h=im.height, mean=a.mean(), sd=a.std(), sat=(a >= 250).mean())
    mp = p[:-4] + '.png'
    if os.path.exists(mp):
        m = np.asarray(Image.open(mp).convert('L').resize((size, size), Image.NEAREST)) > 127
        ys, xs = np.nonzero(m)
        r['area'] = int(m.sum())
        r['border'] = int(min(ys.min(), xs.min(), size - 1 - ys.max(), size - 1 - xs.max())) if len(ys) else -1
        r['bbox'] = (int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)) if len(ys) else None
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('scores')
    ap.add_argument('--good', default='MT_Free')
    ap.add_argument('--size', type=int, default=256)
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.scores)]
    folder = lambda r: os.path.basename(os.path.dirname(r['file']))
    g = [r for r in rows if folder(r) == a.good]
    s = [r['anomaly_score'] for r in g]
    P = [props(r['file'], a.size) for r in g]
    print(f'good: {len(g)}, score median {np.median(s):.1f}, max {max(s):.1f}')
    for k in ['mean', 'sd', 'sat', 'w', 'h']:
        print(f'  Spearman(score, {k}) = {spearmanr(s, [p[k] for p in P]).correlation:.2f}')
    for r, p in sorted(zip(g, P), key=lambda t: -t[0]['anomaly_score'])[:5]:
        print(f"  high good {r['anomaly_score']:.1f} {os.path.basename(r['file'])} {p['w']}x{p['h']} "
              f"mean {p['mean']:.0f} sd {p['sd']:.0f} saturated {p['sat']:.3f}")
    for kind in sorted({folder(r) for r in rows} - {a.good}):
        d = [r for r in rows if folder(r) == kind]
        Pd = [props(r['file'], a.size) for r in d]
        sd = [r['anomaly_score'] for r in d]
        print(f"{kind}: {len(d)}, score median {np.median(sd):.1f}, "
              f"{100 * np.mean([x < max(s) for x in sd]):.0f}% below the highest good; mask area median "
              f"{np.median([p.get('area', -1) for p in Pd]):.0f} px, border distance median "
              f"{np.median([p.get('border', -1) for p in Pd]):.0f} px, Spearman(score, area) "
              f"{spearmanr(sd, [p.get('area', -1) for p in Pd]).correlation:.2f}")
        for r, p in sorted(zip(d, Pd), key=lambda t: t[0]['anomaly_score'])[:5]:
            print(f"  low {r['anomaly_score']:.1f} {os.path.basename(r['file'])} {p['w']}x{p['h']} "
                  f"area {p.get('area')} bbox {p.get('bbox')} border {p.get('border')}")


if __name__ == '__main__':
    main()
