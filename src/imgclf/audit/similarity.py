"""Near-duplicate search, backend-neutral: perceptual hashes of decoded rows, a blocked
all-pairs similarity search for hashes or embeddings, and grouping.

Why this method: a DCT hash (pHash) of a 32x32 grey thumbnail survives re-encoding, resizing
and mild colour changes at almost no cost, and its mirror image is a sign change of the odd
horizontal frequencies, so flips come free. Crops and shifts move the thumbnail's content;
CNN embeddings (computed elsewhere, compared here with the same search) catch those. The search
is a matrix product of +-1 codes or unit vectors in blocks: O(N^2) multiply-adds, but vectorised
and in bounded memory (one block of similarities at a time): 60,000 codes take seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

THUMB = 32
LOW = 8  # the 8x8 lowest frequencies make the 64-bit hash


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    d[0] /= np.sqrt(2)
    return d.astype(np.float32)


DCT = _dct_matrix(THUMB)
# x[:, ::-1] multiplies DCT coefficient (u, v) by (-1)^v
FLIP_SIGN = np.where(np.arange(LOW) % 2, -1.0, 1.0).astype(np.float32)[None, None, :]


def grey_thumbnails(images: np.ndarray) -> np.ndarray:
    """uint8 (n, S, S, 3) -> float32 (n, 32, 32) luminance, block-averaged (S a multiple of 32)."""
    n, s = images.shape[:2]
    if s % THUMB:
        raise ValueError(f"thumbnails need a size that is a multiple of {THUMB}, got {s}")
    y = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    f = s // THUMB
    return y.reshape(n, THUMB, f, THUMB, f).mean(axis=(2, 4))


def phash_codes(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, codes of the mirrored images): float32 (n, 64) of +-1, the median-thresholded
    8x8 low-frequency DCT (the DC term replaced by 0 so brightness shifts do not matter)."""
    c = (DCT @ thumbs @ DCT.T)[:, :LOW, :LOW]
    c[:, 0, 0] = 0.0
    out = []
    for coeffs in (c, c * FLIP_SIGN):
        flat = coeffs.reshape(len(coeffs), -1)
        med = np.median(flat, axis=1, keepdims=True)
        out.append(np.where(flat > med, 1.0, -1.0).astype(np.float32))
    return out[0], out[1]


def similar_pairs(
    a: np.ndarray, threshold: float, b: np.ndarray | None = None, block: int = 2048
) -> Iterator[tuple[int, int, float]]:
    """(i, j, similarity) with similarity = a[i].b[j] / dim >= threshold for +-1 codes, or the
    cosine for unit vectors (pass dim-normalised inputs). Without b, pairs within a, i < j."""
    other = a if b is None else b
    for s in range(0, len(a), block):
        sims = a[s : s + block] @ other.T
        if b is None:
            # only j > i: the upper triangle of this block
            sims[np.arange(sims.shape[0])[:, None] + s >= np.arange(len(other))[None, :]] = -2
        i, j = np.nonzero(sims >= threshold)
        yield from zip((i + s).tolist(), j.tolist(), sims[i, j].tolist(), strict=True)


@dataclass
class Pair:
    i: int
    j: int
    score: float
    method: str


def group_pairs(n: int, pairs: list[Pair]) -> list[tuple[list[int], float, str]]:
    """Connected components of the pairs (scipy's), best first: (members, best score, method of
    the best pair). Images in no pair form no group."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not pairs:
        return []
    i, j = np.array([p.i for p in pairs]), np.array([p.j for p in pairs])
    graph = coo_matrix((np.ones(len(pairs), np.int8), (i, j)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    best: dict[int, Pair] = {}
    for p in pairs:
        r = int(label[p.i])
        if r not in best or p.score > best[r].score:
            best[r] = p
    members: dict[int, list[int]] = {}
    for x in sorted({q for p in pairs for q in (p.i, p.j)}):
        members.setdefault(int(label[x]), []).append(x)
    groups = [(m, best[r].score, best[r].method) for r, m in members.items()]
    return sorted(groups, key=lambda g: (-g[1], g[0]))
