"""`imgclf audit --label-issues` on data built here (no published list of errors is read).

python benchmarks/bench_label_issues.py [--flips 30] [--junk 20] [--cifar [--no-cats-dogs]]

CATS_DOGS: a copy of the 4,000 photos with --flips CAT files moved into DOG and as many back
(seeded), and --junk non-animal pictures (scikit-image's sample photos: a rocket, coins, a
coffee cup, text, the moon, ...) dropped into the train classes. Runs the real CLI cold (empty
cache), then reports the recall of the flips among the flagged train images, the number flagged,
which junk pictures came out as outliers, and the time. --cifar: the CIFAR-10 JPEG zip, cold and
warm (the second run reuses the cached features).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import CATS_DOGS, CIFAR_ZIP, machine

JUNK = (
    "astronaut coffee coins rocket moon text page camera brick grass gravel hubble_deep_field "
    "retina logo clock colorwheel immunohistochemistry cell checkerboard binary_blobs"
).split()


def junk_images(n: int) -> list[np.ndarray]:
    import skimage.data as sk

    out = []
    for name in JUNK[:n]:
        im = np.asarray(getattr(sk, name)() if name != "colorwheel" else sk.colorwheel())
        if im.dtype == bool:
            im = im.astype(np.uint8) * 255
        if im.ndim == 2:
            im = np.stack([im] * 3, -1)
        out.append(np.ascontiguousarray(im[..., :3]).astype(np.uint8))
    return out


def build_flipped(root: Path, flips: int, junk: int, seed: int = 0) -> tuple[set, set]:
    """Copy CATS_DOGS into root with `flips` labels swapped each way; return (flipped, junk)."""
    shutil.copytree(CATS_DOGS, root, ignore=shutil.ignore_patterns("*.md", "SHA256SUMS"))
    rng = random.Random(seed)
    moved = set()
    for src, dst in (("CAT", "DOG"), ("DOG", "CAT")):
        for p in rng.sample(sorted((root / "train" / src).iterdir()), flips):
            target = root / "train" / dst / p.name
            p.rename(target)
            moved.add(str(target))
    added = set()
    for i, im in enumerate(junk_images(junk)):
        p = root / "train" / ("CAT", "DOG")[i % 2] / f"junk_{JUNK[i]}.jpg"
        Image.fromarray(im).save(p, quality=90)
        added.add(str(p))
    return moved, added


def audit(data: str, out: Path, cache: Path) -> tuple[dict, float]:
    t = time.perf_counter()
    exe = Path(sys.executable).parent / "imgclf"
    cmd = [str(exe), "audit", data, "--label-issues", "--out", str(out), "--cache-dir", str(cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads((out / "audit.json").read_text()), time.perf_counter() - t


def cats_dogs(tmp: Path, a: argparse.Namespace) -> dict:
    data = tmp / "cats_dogs"
    flipped, junk = build_flipped(data, a.flips, a.junk)
    report, seconds = audit(str(data), tmp / "audit-cd", tmp / "cache-cd")
    issues = {os.path.realpath(x["path"]) for x in report["label_issues"] if x["split"] == "train"}
    found = {os.path.realpath(p) for p in flipped} & issues
    outliers = {os.path.realpath(x["path"]) for x in report["outliers"]}
    junk_real = {os.path.realpath(p) for p in junk}
    clean_issues = [
        x for x in report["label_issues"] if os.path.realpath(x["path"]) not in {*found, *junk_real}
    ]
    return {
        "cold_s": round(seconds, 1),
        "summary": report["label_issue_summary"],
        "flipped": len(flipped),
        "flipped_found": len(found),
        "recall": round(len(found) / len(flipped), 3),
        "train_flagged": len(issues),
        "confident_flagged_train": sum(
            x["confident"] for x in report["label_issues"] if x["split"] == "train"
        ),
        "junk": len(junk),
        "junk_as_outliers": len(junk_real & outliers),
        "junk_missed": sorted(Path(p).name for p in junk_real - outliers),
        "outliers": len(outliers),
        "other_outliers": sorted(outliers - junk_real)[:40],
        "top_other_issues": [
            f"{x['path']} {x['given']}->{x['suggested']} {x['score']}" for x in clean_issues[:15]
        ],
    }


def cifar(tmp: Path) -> dict:
    res = {}
    for run in ("cold", "warm"):
        report, seconds = audit(str(CIFAR_ZIP), tmp / f"audit-cifar-{run}", tmp / "cache-cifar")
        res[f"{run}_s"] = round(seconds, 1)
    res["summary"] = report["label_issue_summary"]
    res["label_issues"] = len(report["label_issues"])
    res["outliers"] = len(report["outliers"])
    res["top_issues"] = [
        f"{x['path']} {x['given']}->{x['suggested']} {x['score']}"
        for x in report["label_issues"][:10]
    ]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flips", type=int, default=30)
    ap.add_argument("--junk", type=int, default=20)
    ap.add_argument("--cifar", action="store_true")
    ap.add_argument("--no-cats-dogs", action="store_true", help="CIFAR-10 only")
    ap.add_argument("--keep", default="", help="build and audit here (default: a temp folder)")
    a = ap.parse_args()
    tmp = Path(a.keep or tempfile.mkdtemp(prefix="label-issues-"))
    tmp.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": machine()}
    if not a.no_cats_dogs:
        result["cats_dogs"] = cats_dogs(tmp, a)
    if a.cifar:
        result["cifar10"] = cifar(tmp)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
