"""Calibrate the near-duplicate thresholds on copies of real photos made here (no published list).

python benchmarks/calibrate_near_dups.py [--originals 100] [--distinct 600]

Positives: each original from CATS_DOGS/train against its re-encoded, resized, cropped, shifted
and colour-jittered copy. Negatives: every pair among other distinct photos (CATS_DOGS/test,
where the same breed recurs). Prints each pass's similarity per copy kind and the highest
negative similarities, so the thresholds in imgclf/tools/near_duplicates.py can be justified.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (before anything imports TensorFlow)
from PIL import Image, ImageEnhance

from common import CATS_DOGS, machine

KINDS = {
    "reencoded_q40": lambda im: im,
    "resized_half": lambda im: im.resize((im.width // 2, im.height // 2)),
    "cropped_8pct": lambda im: im.crop(
        (im.width * 8 // 100, im.height * 8 // 100, im.width * 92 // 100, im.height * 92 // 100)
    ),
    "shifted_10pct": lambda im: im.crop((im.width // 10, 0, im.width, im.height)),
    "colour_jitter": lambda im: ImageEnhance.Color(
        ImageEnhance.Brightness(im).enhance(1.25)
    ).enhance(0.7),
    "flipped": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--originals", type=int, default=100)
    ap.add_argument("--distinct", type=int, default=600)
    ap.add_argument("--size", type=int, default=0, help="fingerprint size (default: imgclf's)")
    a = ap.parse_args()
    import imgclf.tools.near_duplicates as nd

    nd.SIZE = a.size or nd.SIZE
    from imgclf.data.folder import scan_class_folder
    from imgclf.tools.near_duplicates import fingerprints

    tmp = Path(tempfile.mkdtemp(prefix="calib-"))
    originals = scan_class_folder(CATS_DOGS / "train").paths[:: 3000 // a.originals][: a.originals]
    copies = []
    for kind, fn in KINDS.items():
        for i, p in enumerate(originals):
            out = tmp / kind / f"{i:04d}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            fn(Image.open(p).convert("RGB")).save(out, quality=40 if "reencoded" in kind else 90)
            copies.append(str(out))
    distinct = scan_class_folder(CATS_DOGS / "test").paths[: a.distinct]
    paths = originals + copies + distinct
    t0 = time.perf_counter()
    rows, codes, mirrored, feats = fingerprints(paths, str(tmp / "cache"), 2, False)
    took = time.perf_counter() - t0
    assert len(rows) == len(paths)
    n = len(originals)
    res: dict = {
        "machine": machine(),
        "size": nd.SIZE,
        "fingerprint_s": round(took, 1),
        "positives": {},
    }
    hash_sim = np.maximum(codes @ codes.T, codes @ mirrored.T) / 64
    emb_sim = feats @ feats.T
    for k, kind in enumerate(KINDS):
        idx = np.arange(n)
        h = hash_sim[idx, n + k * n + idx]
        e = emb_sim[idx, n + k * n + idx]
        res["positives"][kind] = {
            "hash_min": round(float(h.min()), 3),
            "hash_p05": round(float(np.percentile(h, 5)), 3),
            "embed_min": round(float(e.min()), 3),
            "embed_p05": round(float(np.percentile(e, 5)), 3),
        }
    d0 = n + len(copies)
    iu = np.triu_indices(len(distinct), 1)
    neg_h = hash_sim[d0:, d0:][iu]
    neg_e = emb_sim[d0:, d0:][iu]
    res["negatives"] = {
        "pairs": int(len(neg_h)),
        "hash_top5": np.sort(neg_h)[-5:].round(3).tolist(),
        "embed_top5": np.sort(neg_e)[-5:].round(3).tolist(),
    }
    top = np.argsort(neg_e)[-5:]
    res["negatives"]["embed_top5_pairs"] = [(distinct[iu[0][t]], distinct[iu[1][t]]) for t in top]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
