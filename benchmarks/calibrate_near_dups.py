"""Calibrate the near-duplicate thresholds on copies of real photos made here (no published list).

python benchmarks/calibrate_near_dups.py [--originals 100] [--distinct 600] [--cifar]

Positives: each original from CATS_DOGS/train against its re-encoded, resized, cropped, shifted
and colour-jittered copy. Negatives: every pair among other distinct photos (CATS_DOGS/test,
where the same breed recurs). Prints each pass's similarity per copy kind and the highest
negative similarities, so the thresholds in imgclf/audit/near_duplicates.py can be justified.

--cifar: the same at 32 px. Originals are CIFAR-10 train images from the JPEG zip; the copies
are what a 32 px duplicate looks like (1-4 px crops and shifts, rescales, JPEG re-encodes,
colour shifts, a mirror), the negatives every pair among distinct train images of one class
each (the hardest case: same class, other shot). At 32 px the audit's small-source rule applies
(features past a low gate, then the aligned pixel check): per kind, the recall of the photo rule
and of the rule in force, and how many negative pairs pass it.
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


def make_copies(tmp: Path, originals: list[str], kinds: dict) -> list[str]:
    copies = []
    for kind, fn in kinds.items():
        for i, p in enumerate(originals):
            out = tmp / kind / f"{i:04d}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            fn(Image.open(p).convert("RGB")).save(out, quality=40 if "reencoded" in kind else 90)
            copies.append(str(out))
    return copies


def negative_pairs(distinct: list[str], same_class: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every pair among the distinct images (of one class each with same_class)."""
    iu = np.triu_indices(len(distinct), 1)
    if not same_class:
        return iu
    cls = np.array([Path(p).parent.name for p in distinct])
    same = cls[iu[0]] == cls[iu[1]]
    return iu[0][same], iu[1][same]


def pair_scores(fp: object, i: np.ndarray, j: np.ndarray, small: bool) -> dict[str, np.ndarray]:
    """The audit's three signals for pairs (i, j) of fingerprint rows; aligned only where the
    features pass the small-source gate (as the audit computes it)."""
    from imgclf.audit.near_duplicates import SMALL_GATE
    from imgclf.backends.torch.aligned_match import aligned_scores

    h = np.maximum((fp.codes[i] * fp.codes[j]).sum(1), (fp.codes[i] * fp.mirrored[j]).sum(1)) / 64
    e = (fp.feats[i] * fp.feats[j]).sum(1)
    z = np.full(len(i), -1.0, np.float32)
    if small:
        gate = np.flatnonzero(e >= SMALL_GATE)
        z[gate] = aligned_scores(fp.thumbs, i[gate], j[gate])
    return {"hash": h, "embed": e, "aligned": z}


def summary(sc: dict[str, np.ndarray], small: bool) -> dict:
    from imgclf.audit.near_duplicates import joined

    h, e, z = sc["hash"], sc["embed"], sc["aligned"]
    return {
        "hash_min": round(float(h.min()), 3),
        "hash_p05": round(float(np.percentile(h, 5)), 3),
        "embed_p05": round(float(np.percentile(e, 5)), 3),
        "aligned_p05": round(float(np.percentile(z, 5)), 3),
        "found_photo_rule": round(float(joined(h, e).mean()), 3),
        "found": round(float(joined(h, e, z if small else None).mean()), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--originals", type=int, default=100)
    ap.add_argument("--distinct", type=int, default=600)
    ap.add_argument("--size", type=int, default=0, help="fingerprint size (default: imgclf's)")
    ap.add_argument("--cifar", action="store_true", help="32 px CIFAR-10 train images")
    a = ap.parse_args()
    import imgclf.audit.near_duplicates as nd
    from imgclf.audit.fingerprints import fingerprints
    from imgclf.audit.near_duplicates import joined
    from imgclf.data.folder import scan_class_folder

    nd.SIZE = a.size or nd.SIZE

    tmp = Path(tempfile.mkdtemp(prefix="calib-"))
    kinds = SMALL_KINDS if a.cifar else KINDS
    if a.cifar:
        originals, distinct = cifar_images(tmp / "cifar", a.originals, a.distinct)
    else:
        originals = scan_class_folder(CATS_DOGS / "train").paths[:: 3000 // a.originals]
        originals = originals[: a.originals]
        distinct = scan_class_folder(CATS_DOGS / "test").paths[: a.distinct]
    copies = make_copies(tmp, originals, kinds)
    t0 = time.perf_counter()
    fp = fingerprints(originals + copies + distinct, str(tmp / "cache"), 2, False)
    res: dict = {"machine": machine(), "size": nd.SIZE}
    res["fingerprint_s"] = round(time.perf_counter() - t0, 1)
    assert len(fp.rows) == len(originals) + len(copies) + len(distinct)
    n, idx = len(originals), np.arange(len(originals))
    t0 = time.perf_counter()
    res["positives"] = {
        kind: summary(pair_scores(fp, idx, n + k * n + idx, a.cifar), a.cifar)
        for k, kind in enumerate(kinds)
    }
    d0 = n + len(copies)
    ni, nj = negative_pairs(distinct, same_class=a.cifar)
    neg = pair_scores(fp, d0 + ni, d0 + nj, a.cifar)
    res["pair_check_s"] = round(time.perf_counter() - t0, 1)
    passing = np.flatnonzero(joined(neg["hash"], neg["embed"], neg["aligned"] if a.cifar else None))
    res["negatives"] = {
        "pairs": len(ni),
        "hash_top5": np.sort(neg["hash"])[-5:].round(3).tolist(),
        "embed_top5": np.sort(neg["embed"])[-5:].round(3).tolist(),
        "aligned_top5": np.sort(neg["aligned"])[-5:].round(3).tolist(),
        "gated": int((neg["aligned"] > -1).sum()),
        "passing": len(passing),
        "passing_pairs": [(distinct[ni[t]], distinct[nj[t]]) for t in passing[:10]],
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
