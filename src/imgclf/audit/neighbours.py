"""Nearest neighbours of unit feature vectors for the audit (near-duplicates, k-NN outliers, a
suspect's look-alikes in train), through faiss.

Two searches, one interface:
- exact: faiss's flat inner-product index (a blocked matrix product, O(n^2) multiply-adds, BLAS
  fast). Used below EXACT_BELOW vectors, where it measured faster than building a graph, and in
  the tests as the reference;
- approximate: an HNSW graph (O(n log n) to build and search) over a PCA projection of the
  vectors to PCA_DIM dimensions (L2 there tracks the cosine of unit vectors; 1280 dimensions cost
  a graph 5x more per comparison for no better recall at these thresholds). The graph only
  proposes candidates: every score is recomputed from the full vectors, so a pair's score is the
  exact cosine whichever search found it.
Measured on CIFAR-10 and CATS_DOGS features (benchmarks/bench_audit_scale.py, RESULTS.md): the
crossover, and recall against the exact search at the audit's thresholds.

Range queries ("every neighbour above t") become k-NN queries whose k grows (x4) for the rows
whose k-th neighbour still passes, up to KMAX: the work stays n x k, never n^2, and a
group of more than KMAX look-alikes is reported through its members' nearest pairs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

EXACT_BELOW = 20_000  # vectors; measured crossover on the 2-core machine (RESULTS.md)
PCA_DIM = 128
HNSW_M = 32  # graph degree: recall >= 0.99 at the near-duplicate thresholds (RESULTS.md)
EF_CONSTRUCTION = 80
MIN_CANDIDATES = 64  # the nearest few need a wider net (top-3 recall 0.94 with 12, RESULTS.md)
OVERFETCH = 3  # graph candidates per wanted neighbour, rescored exactly (recall, RESULTS.md)
K0 = 16  # first k of a range query
KMAX = 256
RESCORE = 256  # queries rescored at a time: 256 x 48 candidates x 1280 floats = 63 MB
BLOCK = 8192  # queries (and vectors added) per call: bounded temporary memory
PCA_SAMPLE = 50_000


def _faiss():  # noqa: ANN202
    import faiss

    return faiss


class Neighbours:
    """Inner-product neighbours among `vectors` (n, d) float32 unit rows, a NumPy array or a
    read-only memory map: the approximate index holds only the PCA_DIM-dimensional projection, and
    the full rows are read back in blocks."""

    def __init__(self, vectors: np.ndarray, approx: bool | None = None, seed: int = 0):
        faiss = _faiss()
        self.vectors = vectors
        n, d = vectors.shape
        self.approx = n >= EXACT_BELOW if approx is None else approx
        self.pca = None
        if not self.approx:
            self.index = faiss.IndexFlatIP(d)
            self._add()
            return
        dim = d
        if d > PCA_DIM and n > d:  # a projection needs more samples than dimensions
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(n, min(n, PCA_SAMPLE), replace=False))
            self.pca = faiss.PCAMatrix(d, PCA_DIM)
            self.pca.train(np.ascontiguousarray(vectors[sample], np.float32))
            dim = PCA_DIM
        self.index = faiss.IndexHNSWFlat(dim, HNSW_M)
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        self._add()

    def _add(self) -> None:
        n = len(self.vectors)
        for s in range(0, n, BLOCK):
            self.index.add(self._project(self.vectors[s : s + BLOCK]))

    def __len__(self) -> int:
        return len(self.vectors)

    def _project(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        return self.pca.apply(x) if self.pca is not None else x

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(sims, ids) of each query's k nearest, best first: the exact search's own inner
        products, or the best k of OVERFETCH x k that the graph proposes on the projection, once
        rescored on the full vectors."""
        if not self.approx:
            sims, ids = self.index.search(queries, k)
            return np.where(ids >= 0, sims, -np.inf).astype(np.float32), ids
        kc = min(max(OVERFETCH * k, MIN_CANDIDATES), len(self))
        self.index.hnsw.efSearch = max(2 * kc, 64)
        sims, ids = self._rescore(queries, self.index.search(self._project(queries), kc)[1])
        return sims[:, :k], ids[:, :k]

    def knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(sims, ids), each (q, k), best first: the exact cosine of each query with its k
        nearest vectors (ids -1 and sims -inf where fewer than k exist)."""
        k = min(k, len(self))
        sims = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for s in range(0, len(queries), BLOCK):
            q = np.ascontiguousarray(queries[s : s + BLOCK], np.float32)
            sims[s : s + len(q)], ids[s : s + len(q)] = self._search(q, k)
        return sims, ids

    def _rescore(self, q: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosines of the candidates from the full vectors, sorted best first (RESCORE
        queries at a time: their candidates' rows are the only full vectors held)."""
        sims = np.full(cand.shape, -np.inf, np.float32)
        for s in range(0, len(q), RESCORE):
            c = cand[s : s + RESCORE]
            ok = c >= 0
            flat = np.unique(c[ok])
            if not len(flat):
                continue
            full = np.ascontiguousarray(self.vectors[flat], np.float32)
            where = np.searchsorted(flat, np.where(ok, c, flat[0]))
            got = np.einsum("qd,qkd->qk", q[s : s + RESCORE], full[where])
            sims[s : s + RESCORE] = np.where(ok, got, -np.inf)
        order = np.argsort(-sims, axis=1, kind="stable")
        return np.take_along_axis(sims, order, 1), np.take_along_axis(cand, order, 1)

    def neighbourhoods(
        self, queries: np.ndarray, threshold: float, k0: int = K0, kmax: int = KMAX
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(query number, ids, sims) per query, best first: its k nearest vectors (itself
        included when it is in the index), k starting at k0 and growing x4, up to kmax, while
        the k-th still has a cosine >= threshold. So every vector above threshold is in the list
        (up to kmax of them), and at least the k0 nearest."""
        k0 = min(max(k0, 1), len(self))
        for s in range(0, len(queries), BLOCK):
            q = np.ascontiguousarray(queries[s : s + BLOCK], np.float32)
            todo, k = np.arange(len(q)), k0
            while len(todo):
                sims, ids = self._search(q[todo], k)
                grow = (sims[:, -1] >= threshold) & (k < min(kmax, len(self)))
                for r in np.flatnonzero(~grow):
                    yield s + int(todo[r]), ids[r], sims[r]
                todo, k = todo[grow], min(4 * k, kmax, len(self))


def unit_pairs(
    index: Neighbours, threshold: float, kmax: int = KMAX
) -> Iterator[tuple[int, int, float]]:
    """(i, j, cosine), i < j, of the index's own vectors at or above threshold. The exact search
    is symmetric, so each pair comes once (from its smaller row); a graph's is not, so a pair may
    come from both ends: callers keep pairs in a dict."""
    for s in range(0, len(index), BLOCK):
        block = index.vectors[s : s + BLOCK]
        for qn, ids, sims in index.neighbourhoods(block, threshold, K0, kmax):
            i, keep = s + qn, sims >= threshold
            for j, sim in zip(ids[keep].tolist(), sims[keep].tolist(), strict=True):
                if j > i:
                    yield i, j, float(sim)
                elif j < i and index.approx:
                    yield j, i, float(sim)


# (tables, bits a table, bit flips probed): a pair within MAX_BITS has, by pigeonhole, one table
# whose bits differ in at most `flips` places, so every such pair is found (exact, not approximate).
# More bits a table for more codes keeps the buckets small (about n / 2^bits codes each).
HASH_PLANS = ((5, 12, 1), (4, 16, 2), (3, 21, 2))
BUCKET = 256


def hamming_pairs(
    packed: np.ndarray, max_bits: int, other: np.ndarray | None = None
) -> Iterator[tuple[int, int, int]]:
    """(i, j, differing bits) of 64-bit codes (uint8 (n, 8), np.packbits) within max_bits of one
    another: packed[i] against other[j] (default: packed itself, i < j). Multi-index hashing
    (faiss's IndexBinaryMultiHash) rather than all pairs: the work is a few hundred table probes a
    code plus the codes in the buckets it hits."""
    faiss = _faiss()
    n = len(packed)
    plan = next((p for p in HASH_PLANS if n / 2 ** p[1] <= BUCKET), HASH_PLANS[-1])
    tables, bits, flips = plan
    if tables * (flips + 1) <= max_bits:
        raise ValueError(f"hash plan {plan} cannot guarantee {max_bits} differing bits")
    index = faiss.IndexBinaryMultiHash(64, tables, bits)
    index.nflip = flips
    index.add(np.ascontiguousarray(packed))
    queries = packed if other is None else other
    for s in range(0, len(queries), BLOCK):
        lims, dist, ids = index.range_search(
            np.ascontiguousarray(queries[s : s + BLOCK]), max_bits + 1
        )
        for q in range(len(lims) - 1):
            a, b = lims[q], lims[q + 1]
            for i, d in zip(ids[a:b].tolist(), dist[a:b].tolist(), strict=True):
                if other is not None or i < s + q:
                    yield i, s + q, int(d)
