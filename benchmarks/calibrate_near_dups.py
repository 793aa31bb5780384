"""Calibrate the near-duplicate thresholds on copies of real photos made here (no published list).

python benchmarks/calibrate_near_dups.py [--originals 100] [--distinct 600] [--cifar]

Positives: each original from CATS_DOGS/train against its re-encoded, resized, cropped, shifted
and colour-jittered copy. Negatives: every pair among other distinct photos (CATS_DOGS/test,
where the same breed recurs). Prints each pass's similarity per copy kind and the highest
negative similarities, so the thresholds in imgclf/tools/near_duplicates.py can be justified.

--cifar: the same at 32 px. Originals are CIFAR-10 train images from the JPEG zip; the copies
are what a 32 px duplicate looks like (1-4 px crops and shifts, rescales, JPEG re-encodes,
colour shifts, a mirror), the negatives every pair among distinct train images of one class
each (the hardest case: same class, other shot). Also prints, per kind, the recall at the
thresholds in force and how many negative pairs pass them.
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

from common import CATS_DOGS, CIFAR_ZIP, machine

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

SMALL_KINDS = {
    "reencoded_q40": lambda im: im,
    "cropped_1px": lambda im: im.crop((1, 1, im.width - 1, im.height - 1)),
    "cropped_2px": lambda im: im.crop((2, 2, im.width - 2, im.height - 2)),
    "cropped_4px": lambda im: im.crop((4, 4, im.width - 4, im.height - 4)),
    "shifted_2px": lambda im: im.crop((2, 0, im.width, im.height)),
    "shifted_4px": lambda im: im.crop((4, 0, im.width, im.height)),
    "upscaled_2x": lambda im: im.resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC),
    "down_up_24": lambda im: im.resize((24, 24)).resize((im.width, im.height)),
    "colour_jitter": KINDS["colour_jitter"],
    "flipped": KINDS["flipped"],
}


def cifar_images(tmp: Path, originals: int, distinct: int) -> tuple[list[str], list[str]]:
    """Originals and distinct photos (disjoint), CIFAR-10 train JPEGs unpacked under tmp."""
    import zipfile

    with zipfile.ZipFile(CIFAR_ZIP) as z:
        names = sorted(n for n in z.namelist() if n.startswith("train/") and n.endswith(".jpg"))
        pick = names[:: len(names) // (originals + distinct)][: originals + distinct]
        for n in pick:
            (tmp / n).parent.mkdir(parents=True, exist_ok=True)
            (tmp / n).write_bytes(z.read(n))
    paths = [str(tmp / n) for n in pick]
    return paths[:originals], paths[originals:]


def pass_counts(h: np.ndarray, e: np.ndarray, nd: object) -> np.ndarray:
    """Which pairs the audit's rule joins: hash (with features agreeing) or features alone."""
    return ((h >= nd.HASH_MIN) & (e >= nd.HASH_EMBED_MIN)) | (e >= nd.EMBED_MIN)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--originals", type=int, default=100)
    ap.add_argument("--distinct", type=int, default=600)
    ap.add_argument("--size", type=int, default=0, help="fingerprint size (default: imgclf's)")
    ap.add_argument("--cifar", action="store_true", help="32 px CIFAR-10 train images")
    a = ap.parse_args()
    import imgclf.tools.near_duplicates as nd

    nd.SIZE = a.size or nd.SIZE
    from imgclf.data.folder import scan_class_folder
    from imgclf.tools.near_duplicates import fingerprints

    tmp = Path(tempfile.mkdtemp(prefix="calib-"))
    kinds = SMALL_KINDS if a.cifar else KINDS
    if a.cifar:
        originals, distinct = cifar_images(tmp / "cifar", a.originals, a.distinct)
    else:
        originals = scan_class_folder(CATS_DOGS / "train").paths[:: 3000 // a.originals]
        originals = originals[: a.originals]
        distinct = scan_class_folder(CATS_DOGS / "test").paths[: a.distinct]
    copies = []
    for kind, fn in kinds.items():
        for i, p in enumerate(originals):
            out = tmp / kind / f"{i:04d}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            fn(Image.open(p).convert("RGB")).save(out, quality=40 if "reencoded" in kind else 90)
            copies.append(str(out))
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
    for k, kind in enumerate(kinds):
        idx = np.arange(n)
        h = hash_sim[idx, n + k * n + idx]
        e = emb_sim[idx, n + k * n + idx]
        res["positives"][kind] = {
            "hash_min": round(float(h.min()), 3),
            "hash_p05": round(float(np.percentile(h, 5)), 3),
            "embed_min": round(float(e.min()), 3),
            "embed_p05": round(float(np.percentile(e, 5)), 3),
            "found": round(float(pass_counts(h, e, nd).mean()), 3),
        }
    d0 = n + len(copies)
    iu = np.triu_indices(len(distinct), 1)
    neg_h = hash_sim[d0:, d0:][iu]
    neg_e = emb_sim[d0:, d0:][iu]
    if a.cifar:  # negatives of one class only: the pairs a look-alike could come from
        cls = np.array([Path(p).parent.name for p in distinct])
        same = cls[iu[0]] == cls[iu[1]]
        neg_h, neg_e, iu = neg_h[same], neg_e[same], (iu[0][same], iu[1][same])
    res["negatives"] = {
        "pairs": int(len(neg_h)),
        "hash_top5": np.sort(neg_h)[-5:].round(3).tolist(),
        "embed_top5": np.sort(neg_e)[-5:].round(3).tolist(),
        "passing": int(pass_counts(neg_h, neg_e, nd).sum()),
        "embed_quantiles_999_9999": np.quantile(neg_e, [0.999, 0.9999]).round(3).tolist(),
    }
    if a.cifar:  # candidate feature thresholds for small images: recall per kind vs false pairs
        pos = {
            kind: emb_sim[np.arange(n), n + k * n + np.arange(n)] for k, kind in enumerate(kinds)
        }
        res["embed_sweep"] = {
            f"{t:.2f}": {
                "negatives_passing": int((neg_e >= t).sum()),
                **{kind: round(float((e >= t).mean()), 3) for kind, e in pos.items()},
            }
            for t in (0.70, 0.72, 0.74, 0.76, 0.78, 0.80, 0.82, 0.84, 0.86)
        }
    top = np.argsort(neg_e)[-5:]
    res["negatives"]["embed_top5_pairs"] = [(distinct[iu[0][t]], distinct[iu[1][t]]) for t in top]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
