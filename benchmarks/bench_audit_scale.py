"""How the audit's comparison passes grow with n (issue 44): exact (all pairs) vs indexed
(faiss HNSW for features, multi-index hashing for hashes) vs auto (the audit's own choice by
size), time and peak memory per n, the growth exponent, and near-duplicate recall on copies whose
originals are known.

  cd benchmarks && python bench_audit_scale.py [--sizes 10000 20000 40000 60000] [--copies]

Data: CIFAR-10 from ../shared (unpacked into --work), and with --copies a 240,000-image folder:
every image plus three copies generated here (mirrored; shifted 2 px; re-encoded at JPEG q40),
so the true duplicates are known. Fingerprints (decode, thumbnails, Lite0 features) are computed
once into --work's cache, which is linear in n and shared by every size; each (n, method) then runs
in a fresh process (its own peak RSS) over a seeded random subset of the originals:
  near-duplicates: the hash pass, the feature pass and the aligned pixel check (CIFAR is small);
  neighbours: the label-issue pass's k-NN outliers per split and each suspect's nearest train images
  (here: every 5th image), the stages that were all-pairs before.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from common import CIFAR_ZIP, machine, peak_rss_mb, run_phase

KINDS = ("m", "s", "q")  # mirrored, shifted 2 px, re-encoded q40
# exact: all pairs at every n; indexed: the approximate indexes at every n; auto: what the audit
# does, the exact search below neighbours.EXACT_BELOW vectors (per split for the neighbours)
METHODS = {"exact": False, "indexed": True, "auto": None}


def unpack(work: Path, data: str) -> Path:
    """CIFAR-10's folder: --data (e.g. a zip imgclf already unpacked), or unpacked into --work."""
    root = Path(data) if data else work / "cifar"
    if not (root / "test").is_dir():
        with zipfile.ZipFile(CIFAR_ZIP) as z:
            z.extractall(root)
    return root


def with_copies(root: Path) -> None:
    """Three copies of every image beside it (one folder, so one cache store: the originals'
    fingerprints are reused)."""
    from PIL import Image, ImageOps

    if (root / "copies-done").exists():
        return
    for p in files_of(root, copies=False):
        d, p = Path(p[0]).parent, Path(p[0])
        im = Image.open(p).convert("RGB")
        ImageOps.mirror(im).save(d / f"{p.stem}_m.jpg", quality=90)
        im.crop((2, 2, 32, 32)).resize((32, 32), Image.BICUBIC).save(
            d / f"{p.stem}_s.jpg", quality=90
        )
        im.save(d / f"{p.stem}_q.jpg", quality=40)
    (root / "copies-done").write_text("")


def files_of(root: Path, copies: bool) -> list[tuple[str, str]]:
    """(path, split) of the originals, and of their generated copies too with copies=True."""
    return [
        (str(p), p.relative_to(root).parts[0])
        for p in sorted(root.glob("*/*/*.jpg"))
        if copies or p.stem[-2:] not in {f"_{k}" for k in KINDS}
    ]


def fingerprints_of(root: Path, cache: str, copies: bool):  # noqa: ANN201
    from imgclf.audit.fingerprints import fingerprints

    files = files_of(root, copies)
    return files, fingerprints([p for p, _ in files], cache, 2, False)


def subset(fp, keep: np.ndarray):  # noqa: ANN001, ANN201
    from imgclf.audit.fingerprints import Fingerprints

    return Fingerprints(
        fp.rows[keep],
        fp.codes[keep],
        fp.mirrored[keep],
        fp.thumbs.subset(keep),
        fp.feats.subset(keep),
    )


def phase_one(a: argparse.Namespace) -> dict:
    """One (n, method) in this process: time each comparison stage."""
    from imgclf.audit import near_duplicates as nd
    from imgclf.audit.label_issues import nearest_train
    from imgclf.audit.suspects import find_outliers, split_indexes

    files, fp = fingerprints_of(unpack(Path(a.work), a.data), a.cache, copies=a.n > 60000)
    originals = np.arange(len(files))
    if a.n < len(files):
        originals = np.sort(np.random.default_rng(0).choice(len(files), a.n, replace=False))
    fp = subset(fp, originals)
    approx = METHODS[a.method]
    out: dict = {"n": len(originals), "method": a.method}
    t = time.perf_counter()
    pairs = nd._pairs(fp, small=True, approx=approx)
    out["near_duplicates_s"] = time.perf_counter() - t
    out["pairs"] = len(pairs)
    keys = sorted(pairs)
    out["pair_keys"] = [[int(originals[i]), int(originals[j])] for i, j in keys]
    splits = [files[r][1] for r in originals]
    t = time.perf_counter()
    indexes = split_indexes(fp.feats, splits, approx)  # forced either way, as near-duplicates'
    find_outliers(fp.feats, splits, indexes)
    nearest_train(list(range(0, len(originals), 5)), fp.feats, indexes)
    out["neighbours_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def recall_on_copies(root: Path, pair_keys: list[list[int]]) -> dict:
    """Of the generated copies, how many share a group with their original, per kind."""
    from imgclf.audit.similarity import Pair, group_pairs

    files = files_of(root, copies=True)
    index = {str(Path(p).with_suffix("")): i for i, (p, _) in enumerate(files)}
    groups = group_pairs(len(files), [Pair(i, j, 1.0, "x") for i, j in pair_keys])
    label = np.full(len(files), -1)
    for g, (members, _, _) in enumerate(groups):
        label[members] = g
    out = {}
    for kind in KINDS:
        hits = [
            label[i] >= 0 and label[i] == label[index[s[: -len(kind) - 1]]]
            for s, i in index.items()
            if s.endswith(f"_{kind}")
        ]
        out[kind] = float(np.mean(hits))
    return out


def exponent(rows: list[dict], key: str) -> float:
    if len(rows) < 2:
        return float("nan")
    n = np.log([r["n"] for r in rows])
    t = np.log([max(r[key], 1e-3) for r in rows])
    return float(np.polyfit(n, t, 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", default="")
    ap.add_argument("--work", default="/tmp/bench_audit_scale")
    ap.add_argument("--data", default="", help="CIFAR-10's unpacked folder (default: unpack)")
    ap.add_argument("--cache", default="", help="cache folder (default: WORK/cache)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[10000, 20000, 40000, 60000])
    ap.add_argument("--copies", action="store_true", help="also the 240,000-image folder")
    ap.add_argument("--copy-methods", nargs="+", default=["indexed"], choices=list(METHODS))
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--method", default="indexed")
    a = ap.parse_args()
    if a.phase == "one":
        print(json.dumps(phase_one(a)))
        return
    a.cache = a.cache or str(Path(a.work) / "cache")
    root = unpack(Path(a.work), a.data)
    passed = ["--work", a.work, "--data", str(root), "--cache", a.cache]
    t = time.perf_counter()
    fingerprints_of(root, a.cache, copies=False)
    print(
        f"fingerprints of 60,000 (decode, thumbnails, Lite0; cold or warm): "
        f"{time.perf_counter() - t:.0f} s",
        flush=True,
    )
    rows = []
    for n in a.sizes:
        for method in METHODS:
            r = run_phase(__file__, "one", *passed, "--n", str(n), "--method", method)
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "pair_keys"}), flush=True)
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        for key in ("near_duplicates_s", "neighbours_s"):
            print(f"{method} {key}: time ~ n^{exponent(mine, key):.2f}")
    for n in a.sizes:
        e, i = (
            next(r for r in rows if r["n"] == n and r["method"] == m) for m in ("exact", "indexed")
        )
        want, got = {tuple(p) for p in e["pair_keys"]}, {tuple(p) for p in i["pair_keys"]}
        print(
            f"n={n}: indexed finds {len(want & got)} of the exact search's {len(want)} pairs "
            f"({len(want & got) / max(len(want), 1):.4f}), {len(got - want)} others"
        )
    if a.copies:
        with_copies(root)
        t = time.perf_counter()
        fingerprints_of(root, a.cache, copies=True)
        print(f"fingerprints of 240,000: {time.perf_counter() - t:.0f} s", flush=True)
        at = {}
        for method in a.copy_methods:
            r = run_phase(__file__, "one", *passed, "--n", "240000", "--method", method)
            at[method] = r
            print(json.dumps({k: v for k, v in r.items() if k != "pair_keys"}), flush=True)
            print(
                f"{method}: recall of the generated copies (share a group with their original):",
                recall_on_copies(root, r["pair_keys"]),
            )
            mine = [x for x in rows if x["method"] == method] + [r]
            for key in ("near_duplicates_s", "neighbours_s"):
                print(f"{method} with 240k {key}: time ~ n^{exponent(mine, key):.2f}")
        if {"exact", "indexed"} <= set(at):
            want = {tuple(p) for p in at["exact"]["pair_keys"]}
            got = {tuple(p) for p in at["indexed"]["pair_keys"]}
            print(
                f"n=240000: indexed finds {len(want & got)} of the exact search's {len(want)} "
                f"pairs ({len(want & got) / max(len(want), 1):.4f}), {len(got - want)} others"
            )
    print(machine())


if __name__ == "__main__":
    sys.exit(main())
