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

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm import tqdm

from imgclf import backends
from imgclf.audit.fingerprints import Fingerprints, fingerprints
from imgclf.audit.neighbours import Neighbours, hamming_pairs
from imgclf.audit.shards import SOLO, Group
from imgclf.audit.similarity import Pair, group_pairs, similar_pairs
from imgclf.data.folder import display_path
from imgclf.data.row_store import Rows

HASH_MIN = 0.75  # at most 16 of 64 hash bits differ (distinct photos: <= 0.56 measured)
EMBED_MIN = 0.86  # cosine of Lite0 features (distinct photos: <= 0.83 measured)
HASH_EMBED_MIN = 0.7  # a hash match must not be two unrelated flat images: features agree too
SMALL_SIDE = 128  # median shorter side (px) under which sources count as small
SMALL_GATE = 0.7  # small sources: features of 4 px crops measured down to ~0.6 (73 % pass 0.7)
ALIGNED_MIN = 0.88  # copies measured >= 0.88 in 99 %, distinct same-class pairs <= 0.89 (1 pair)
HASH_BITS = round(32 * (1 - HASH_MIN))  # 8: the differing bits HASH_MIN allows (64 - 2d >= 48)
GATE_K = 16  # small sources: an image's nearest GATE_K above the gate get the pixel check
HASH_ALL_PAIRS_BELOW = 20_000  # codes; all pairs by matrix product below (measured crossover)


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
class NearDuplicates:
    groups: list[dict] = field(default_factory=list)  # {"members": [{path, split}], score, method}
    images: int = 0
    used_embeddings: bool = True

    def across(self) -> list[dict]:
        return [g for g in self.groups if len({m["split"] for m in g["members"]}) > 1]

    def within(self) -> list[dict]:
        return [g for g in self.groups if len({m["split"] for m in g["members"]}) == 1]


def _hash_candidates(fp: Fingerprints, approx: bool | None) -> Iterator[tuple[int, int, float]]:
    """(i, j, hash similarity) of every pair within HASH_MIN, plain or one image mirrored (i may
    equal j there: an image and its own mirror image, dropped by the caller)."""
    n = len(fp.codes)
    if (n < HASH_ALL_PAIRS_BELOW) if approx is None else not approx:
        # both sides scaled by 1/8, so that a.b = (matching - differing bits) / 64 (before
        # 2026-12-07 the plain pass divided both sides by 64 and never found a pair)
        codes = fp.codes.astype(np.float32) / 8
        for b in (None, fp.mirrored.astype(np.float32) / 8):
            yield from similar_pairs(codes, HASH_MIN, b)
        return
    packed = np.packbits(fp.codes > 0, axis=1)
    for other in (None, np.packbits(fp.mirrored > 0, axis=1)):
        for i, j, d in hamming_pairs(packed, HASH_BITS, other):
            yield i, j, 1.0 - 2.0 * d / 64


def _cosines(feats: Rows, pairs: list[tuple[int, int, float]]) -> np.ndarray:
    i, j = (np.array(v, np.int64) for v in list(zip(*pairs, strict=True))[:2])
    return np.einsum("pd,pd->p", feats[i], feats[j])


def _hash_pairs(fp: Fingerprints, approx: bool | None) -> dict[tuple[int, int], Pair]:
    """Pairs the hashes join, whose features (when there are any) agree too."""
    pairs: dict[tuple[int, int], Pair] = {}
    stream = (c for c in _hash_candidates(fp, approx) if c[0] != c[1])
    while chunk := list(islice(stream, 65536)):
        agree = _cosines(fp.feats, chunk) >= HASH_EMBED_MIN if fp.feats is not None else None
        for k, (i, j, s) in enumerate(chunk):
            key = (min(i, j), max(i, j))
            if (agree is None or agree[k]) and (key not in pairs or s > pairs[key].score):
                pairs[key] = Pair(*key, s, "hash")  # plain or mirrored: the best
    return pairs


def _pairs(
    fp: Fingerprints, small: bool, approx: bool | None = None, progress: bool = False
) -> dict[tuple[int, int], Pair]:
    """Every joined pair (i < j) with its best score and the way it was found. Candidates are
    streamed from the indexes; only pairs that pass are kept."""
    pairs = _hash_pairs(fp, approx)
    if fp.feats is None:
        return pairs
    index = Neighbours(fp.feats, approx)
    gated: list[tuple[int, int]] = []
    quiet = None if progress else True
    for s in tqdm(range(0, len(index), 8192), desc="near-duplicates", unit="block", disable=quiet):
        for q, ids, sims in index.neighbourhoods(fp.feats[s : s + 8192], EMBED_MIN, GATE_K + 1):
            i = s + q
            for rank, (j, e) in enumerate(zip(ids.tolist(), sims.tolist(), strict=True)):
                key = (min(i, j), max(i, j))
                if j == i or j < 0 or key in pairs:
                    continue
                if e >= EMBED_MIN:
                    pairs[key] = Pair(*key, e, "embedding")
                elif small and e >= SMALL_GATE and rank <= GATE_K:
                    gated.append(key)
        if gated and (len(gated) > 65536 or s + 8192 >= len(index)):
            _aligned(fp, sorted(set(gated) - pairs.keys()), pairs)
            gated = []
    return pairs


def _aligned(fp: Fingerprints, gated: list[tuple[int, int]], pairs: dict) -> None:
    """Small sources only: the pixel check decides the gated pairs."""
    if not gated:
        return
    i, j = (np.array(v) for v in zip(*gated, strict=True))
    z = backends.get("torch").aligned_scores(fp.thumbs, i, j)
    for k in np.flatnonzero(z >= ALIGNED_MIN):
        pairs[(int(i[k]), int(j[k]))] = Pair(int(i[k]), int(j[k]), float(z[k]), "aligned")


def find_near_duplicates(
    files: list[tuple[str, str]],
    exact: set[frozenset[str]] | None = None,
    cache_dir: str = "",
    workers: int = 2,
    progress: bool = True,
    small: bool = False,
    group: Group = SOLO,
    approx: bool | None = None,
) -> NearDuplicates | None:
    """files: (path, split). exact: pairs already reported as byte-identical (left out here).
    small: thumbnail-sized sources (small_sources()), which adds the aligned check. approx: the
    approximate indexes (None: by the number of images). None on torchrun ranks other than 0."""
    fp = fingerprints([p for p, _ in files], cache_dir, workers, progress, group)
    if fp is None:
        return None
    rows, pairs = fp.rows, _pairs(fp, small, approx, progress)
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
