"""The audit's neighbour searches (audit/neighbours.py) against brute force, and the per-image
stores they read (data/row_store.py): what a million-image audit relies on, at test size."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.audit import neighbours
from imgclf.audit.neighbours import Neighbours, hamming_pairs, unit_pairs


def clustered(n: int = 3000, d: int = 256, seed: int = 0) -> np.ndarray:
    """Unit vectors in loose clusters, a tenth of them with a near-copy (cosine ~0.9-0.99)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((60, d))
    x = centres[rng.integers(0, 60, n)] + 1.2 * rng.standard_normal((n, d))
    copies = rng.choice(n, n // 10, replace=False)
    x[copies[: len(copies) // 2]] = x[copies[len(copies) // 2 :]] + 0.2 * rng.standard_normal(
        (len(copies) // 2, d)
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def brute_pairs(x: np.ndarray, t: float) -> set[tuple[int, int]]:
    s = x @ x.T
    i, j = np.nonzero(np.triu(s >= t, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def test_exact_search_equals_brute_force_and_the_graph_recalls_it() -> None:
    x = clustered()
    want = brute_pairs(x, 0.86)
    assert len(want) > 100
    exact = {(i, j) for i, j, _ in unit_pairs(Neighbours(x, approx=False), 0.86)}
    assert exact == want
    graph = Neighbours(x, approx=True)
    assert graph.approx and graph.pca is not None  # the graph is built on the projection
    found = {(i, j) for i, j, _ in unit_pairs(graph, 0.86)}
    assert found <= want  # scores are exact: nothing below the threshold gets in
    assert len(found) / len(want) >= 0.99


def test_knn_scores_are_exact_cosines_best_first() -> None:
    x = clustered(800, 64)
    sims, ids = Neighbours(x, approx=True).knn(x[:50], 5)
    np.testing.assert_allclose(sims, np.einsum("qd,qkd->qk", x[:50], x[ids]), atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()
    brute = np.sort(x[:50] @ x.T, axis=1)[:, ::-1][:, :5]
    assert np.abs(sims - brute).max() < 1e-5  # on this small set the graph finds the true 5


def test_range_queries_grow_k_for_big_groups() -> None:
    """A group of 100 look-alikes: every member sees the other 99, past the first k of 16."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal(32)
    x = np.concatenate(
        [base + 0.05 * rng.standard_normal((100, 32)), rng.standard_normal((200, 32))]
    )
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    got = {(i, j) for i, j, _ in unit_pairs(Neighbours(x, approx=False), 0.9)}
    assert got == brute_pairs(x, 0.9) and len(got) >= 100 * 99 // 2


def packed_codes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (n, 64), dtype=np.uint8)
    near = rng.choice(n, n // 5, replace=False)
    for a, b in zip(near[::2], near[1::2], strict=True):  # pairs 0-10 bits apart
        bits[b] = bits[a]
        bits[b, rng.choice(64, int(rng.integers(0, 11)), replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def brute_hamming(a: np.ndarray, b: np.ndarray, same: bool) -> set[tuple[int, int]]:
    ua, ub = np.unpackbits(a, axis=1).astype(np.int16), np.unpackbits(b, axis=1).astype(np.int16)
    d = (ua[:, None, :] != ub[None, :, :]).sum(-1)
    i, j = np.nonzero(d <= 8)
    return {(x, y) for x, y in zip(i.tolist(), j.tolist(), strict=True) if not same or x < y}


@pytest.mark.parametrize("bucket", [256, 1])  # 1: the plan for millions of codes (21-bit tables)
def test_multi_index_hashing_finds_every_pair_within_8_bits(
    bucket: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(neighbours, "BUCKET", bucket)
    a, b = packed_codes(1500, 0), packed_codes(1500, 1)
    got = {(i, j) for i, j, _ in hamming_pairs(a, 8)}
    assert got == brute_hamming(a, a, same=True) and len(got) > 50
    got = {(i, j) for i, j, _ in hamming_pairs(a, 8, other=b)}
    assert got == brute_hamming(a, b, same=False)
