"""The label pass's head on features too many to hold (audit/heads.py): streamed from the memory
map a batch at a time, it finds the suspects the in-memory L-BFGS fit finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgclf.audit import heads
from imgclf.audit.multi_label_issues import cross_fit_multi, find_multi_label_issues
from imgclf.audit.suspects import cross_fit, find_label_issues
from imgclf.backends.torch.streamed_head import BATCH
from imgclf.data.row_store import Rows


class Counted(Rows):
    """A memory-mapped view that remembers the most rows one read asked for."""

    largest = 0

    def __getitem__(self, key):  # noqa: ANN001, ANN204
        out = super().__getitem__(key)
        Counted.largest = max(Counted.largest, len(out) if out.ndim > 1 else 1)
        return out

    def subset(self, idx: np.ndarray) -> Rows:
        return Counted(self.values, self.rows[idx], self.item)


def on_disk(feats: np.ndarray, tmp_path: Path) -> Counted:
    values = np.memmap(tmp_path / "values.f32", np.float32, "w+", shape=feats.shape)
    values[:] = feats
    values.flush()
    mapped = np.memmap(tmp_path / "values.f32", np.float32, "r").reshape(feats.shape)
    Counted.largest = 0
    return Counted(mapped, np.arange(len(feats)), (feats.shape[1],))


def clusters(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around one centre per class, overlapping a little (as frozen features do)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    feats = rng.normal(size=(classes, 64))[labels] + 0.9 * rng.normal(size=(n, 64))
    return (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32), labels


def test_streamed_head_finds_lbfgs_suspects_reading_one_batch_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feats, truth = clusters(3000, 4)
    labels = truth.copy()
    flipped = np.arange(0, 3000, 100)  # 30 labels moved to the next class
    labels[flipped] = (labels[flipped] + 1) % 4
    lbfgs = cross_fit(feats, labels, stream=False)
    mapped = on_disk(feats, tmp_path)
    monkeypatch.setattr(heads, "HEAD_IN_MEMORY", 1 << 19)  # 2.4k rows x 64 floats is past it
    streamed = cross_fit(mapped, labels)
    assert 0 < Counted.largest <= BATCH  # never more than a batch of rows in memory
    want = {s.index for s in find_label_issues(lbfgs, labels)}
    got = {s.index for s in find_label_issues(streamed, labels)}
    assert set(flipped) <= want and set(flipped) <= got
    assert len(want & got) / len(want | got) >= 0.9
    assert np.abs(streamed - lbfgs).max() < 0.1


def test_streamed_multi_label_head_agrees_with_one_lbfgs_per_class(tmp_path: Path) -> None:
    feats, labels = clusters(3000, 3, seed=1)
    y = np.eye(3, dtype=np.float32)[labels]
    y[:, 2] = np.maximum(y[:, 2], (feats[:, 0] > 0.1).astype(np.float32))  # a second label
    planted = set(range(0, 3000, 97))
    y[::97, 0] = 1 - y[::97, 0]  # 31 added or dropped on purpose
    lbfgs = cross_fit_multi(feats, y, stream=False)
    streamed = cross_fit_multi(on_disk(feats, tmp_path), y, stream=True)
    assert 0 < Counted.largest <= BATCH
    assert ((streamed >= 0.5) == (lbfgs >= 0.5)).mean() >= 0.98
    want = {x["index"] for x in find_multi_label_issues(lbfgs, y)}
    got = {x["index"] for x in find_multi_label_issues(streamed, y)}
    assert len(got & planted) >= len(want & planted) - 2 >= 24  # L-BFGS: 28 of the 31
    assert len(want & got) / len(want | got) >= 0.7
