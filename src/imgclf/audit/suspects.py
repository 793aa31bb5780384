"""Suspect labels and junk images, backend-neutral: out-of-sample probabilities by K-fold
cross-fitting of a linear head on frozen features, confident learning on those (or on a trained
run's probabilities), and k-nearest-neighbour outliers in feature space.

The rules, so a user can check a flag by hand:
- Confident learning (Northcutt, Jiang & Chuang, JAIR 2021): class j's threshold t_j is the mean
  out-of-sample probability of j over the images labelled j (the data's own self-confidence).
  An image labelled y counts as "confidently j" when p_j >= t_j (the largest such p_j when
  several pass) and j != y: the off-diagonal of the confident joint.
- Predicted != given: the most likely class is not the given one. Confident learning alone missed
  up to 30 % of 60 labels flipped on purpose in CATS_DOGS (benchmarks/RESULTS.md): a good head's
  t_j is ~0.95, and a flipped photo's p_j was 0.9-0.95 as often as not. The union found >= 0.95.
- An image is a label issue under either rule; `confident` says which. Score: p(suggested) -
  p(given), in (-1, 1]; the list is sorted by it, highest first.
- Outliers: the mean cosine distance to the k nearest images of the same split, flagged past
  the median + OUTLIER_MADS robust deviations of that split's own distances. The neighbours come
  from audit/neighbours.py: exact below its crossover size, an approximate index above.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgclf.audit.neighbours import Neighbours
from imgclf.audit.shards import SOLO, Group

FOLDS = 5
NEIGHBOURS = 10
OUTLIER_MADS = 4.0  # calibrated on photos dropped into CATS_DOGS (benchmarks/RESULTS.md)


@dataclass
class Suspect:
    index: int
    given: int
    suggested: int
    score: float
    confident: bool


def cross_fit(
    feats: Any,
    labels: np.ndarray,
    folds: int = FOLDS,
    seed: int = 0,
    group: Group = SOLO,
    stream: bool | None = None,
) -> np.ndarray:
    """Each row's class probabilities from a logistic-regression head fitted on the other folds
    (stratified, seeded; audit/heads.py fits each, in memory or streamed from the features'
    memory map): no row is scored by a head that saw it. In a torchrun group the folds are
    fitted across the ranks."""
    from sklearn.model_selection import StratifiedKFold

    from imgclf.audit.heads import fill_out_of_sample

    classes = int(labels.max()) + 1 if len(labels) else 0
    probs = np.full((len(labels), classes), 1.0 / max(classes, 1))
    smallest = min(Counter(labels.tolist()).values(), default=0)
    k = min(folds, smallest)
    if k < 2:
        raise ValueError(f"label issues need at least 2 images of every class (one has {smallest})")
    folded = StratifiedKFold(k, shuffle=True, random_state=seed)
    splits = list(folded.split(np.zeros((len(labels), 1)), labels))
    return fill_out_of_sample(probs, feats, splits, labels, seed, stream, group)


def confident_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j: the mean probability of class j over the images labelled j (1 where none are)."""
    classes = range(probs.shape[1])
    return np.array([probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in classes])


def find_label_issues(probs: np.ndarray, labels: np.ndarray) -> list[Suspect]:
    """Images whose given label another class outweighs (see the module's rules), best first."""
    if len(labels) == 0:
        return []
    rows = np.arange(len(labels))
    above = probs >= confident_thresholds(probs, labels) - 1e-9
    confident_class = np.where(above, probs, -1.0).argmax(1)
    confident = above.any(1) & (confident_class != labels)
    predicted = probs.argmax(1)
    suggested = np.where(confident, confident_class, predicted)
    flagged = confident | (predicted != labels)
    score = probs[rows, suggested] - probs[rows, labels]
    out = [
        Suspect(int(i), int(labels[i]), int(suggested[i]), float(score[i]), bool(confident[i]))
        for i in np.nonzero(flagged)[0]
    ]
    return sorted(out, key=lambda s: -s.score)


def rows_of(feats: Any, idx: np.ndarray) -> Any:
    """A subset of the features: a view of a memory map (data/row_store.Rows), or an array."""
    return feats.subset(idx) if hasattr(feats, "subset") else feats[idx]


def without_self(sims: np.ndarray, ids: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, ...]:
    """k+1 neighbours per row -> the k that are not the row itself (the last dropped when an
    approximate search missed the row itself)."""
    keep = ids != own[:, None]
    keep[~(~keep).any(1), -1] = False
    k = sims.shape[1] - 1
    return sims[keep].reshape(-1, k), ids[keep].reshape(-1, k)


def knn_distance(feats: Any, k: int = NEIGHBOURS, index: Neighbours | None = None) -> np.ndarray:
    """Mean cosine distance of each unit vector to its k nearest others (audit/neighbours.py:
    exact or approximate by size)."""
    n = len(feats)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n)
    index = index or Neighbours(feats)
    sims, ids = index.knn(feats, k + 1)
    sims, _ = without_self(sims, ids, np.arange(n))
    return 1.0 - sims.mean(1)


def split_indexes(
    feats: Any, groups: list[str], approx: bool | None = None
) -> dict[str, tuple[np.ndarray, Neighbours]]:
    """group -> (its rows, a neighbour index over them): built once for outliers and look-alikes.
    approx: the approximate index (None: by each group's size, as Neighbours chooses)."""
    names = np.asarray(groups)
    out = {}
    for g in dict.fromkeys(groups):
        rows = np.nonzero(names == g)[0]
        out[g] = rows, Neighbours(rows_of(feats, rows), approx)
    return out


def find_outliers(
    feats: Any, groups: list[str], indexes: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(score, flagged) per row; score is the k-NN distance within the row's group (split),
    flagged past that group's median + OUTLIER_MADS x its median absolute deviation."""
    score = np.zeros(len(feats))
    flagged = np.zeros(len(feats), bool)
    for rows, index in (indexes or split_indexes(feats, groups)).values():
        d = knn_distance(index.vectors, index=index)
        med = np.median(d) if len(d) else 0.0
        mad = np.median(np.abs(d - med)) * 1.4826 if len(d) else 0.0
        score[rows] = d
        flagged[rows] = d > med + OUTLIER_MADS * max(mad, 1e-6) if len(rows) > NEIGHBOURS else False
    return score, flagged


def pair_counts(issues: list[dict]) -> dict[str, dict[str, int]]:
    """split -> "GIVEN labelled, SUGGESTED likely" -> count (the report's summary lines)."""
    out: dict[str, Counter[str]] = {}
    for x in issues:
        key = f"{x['given']} labelled, {x['suggested']} likely"
        out.setdefault(x["split"], Counter())[key] += 1
    return {s: dict(c.most_common()) for s, c in out.items()}
