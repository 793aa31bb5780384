"""The label pass's cross-fitted linear head, one fold at a time, fitted in memory or streamed.

Both fit the same objective on the frozen features: multinomial logistic regression (one binary
one per class for multi-label data) with an L2 penalty of C = 1, scikit-learn's convention.
- In memory (the features of a fold fit under HEAD_IN_MEMORY): scikit-learn's L-BFGS, which
  solves it to convergence; what the audit has always run, so its findings stay the same.
- Streamed (above that): minibatch Adam on rows read from the features' memory map a batch at
  a time (backends/torch/streamed_head.py), so memory is one batch and the weights, whatever n.
  It stops after a fixed number of epochs, near the optimum rather than at it:
  benchmarks/RESULTS.md measures how near (the suspects it finds against L-BFGS's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imgclf.audit.shards import Group, shared_out

HEAD_IN_MEMORY = 2 << 30  # bytes of float32 features scikit-learn may hold (~420k at 1280-d)


def streams(feats: Any, rows: int) -> bool:
    """Whether a fit over `rows` of these features streams them rather than loading them."""
    return rows * int(np.prod(feats.shape[1:])) * 4 > HEAD_IN_MEMORY


def fit_fold(
    feats: Any,
    fit_rows: np.ndarray,
    held: np.ndarray,
    target: np.ndarray,
    seed: int = 0,
    stream: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(classes, probabilities of the held rows for those classes) from a head fitted on
    fit_rows. target: class indices (n,) for single-label, or 0/1 (n, classes) for multi-label,
    whose classes that are all 0 or all 1 in fit_rows are left out (nothing to fit).
    stream: force either fit (None: by size, streams())."""
    multi = target.ndim == 2
    fitted = target[fit_rows]
    if multi:
        classes = np.nonzero(fitted.min(0) != fitted.max(0))[0]
    else:
        classes = np.unique(fitted)
    if stream is None:
        stream = streams(feats, len(fit_rows))
    if stream:
        from imgclf import backends

        p = backends.get("torch").fit_streamed_head(feats, fit_rows, held, target, seed)
        return classes, p[:, classes]
    from sklearn.linear_model import LogisticRegression

    x, x_held = feats[fit_rows], feats[held]  # read into memory: this fit holds them
    if not multi:
        head = LogisticRegression(C=1.0, max_iter=1000).fit(x, fitted)
        return head.classes_, head.predict_proba(x_held)
    out = np.empty((len(held), len(classes)))
    for n, c in enumerate(classes):
        head = LogisticRegression(C=1.0, max_iter=1000).fit(x, fitted[:, c])
        out[:, n] = head.predict_proba(x_held)[:, 1]
    return classes, out


def fill_out_of_sample(
    probs: np.ndarray,
    feats: Any,
    splits: list[tuple[np.ndarray, np.ndarray]],
    target: np.ndarray,
    seed: int,
    stream: bool | None,
    group: Group,
) -> np.ndarray:
    """probs with each split's held rows scored by a head fitted on its other rows; the splits
    are fitted across a torchrun group's ranks (shards.shared_out), the same findings as one."""

    def fold(f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fit_rows, held = splits[f]
        return held, *fit_fold(feats, fit_rows, held, target, seed, stream)

    for held, classes, p in shared_out(len(splits), fold, group):
        probs[np.ix_(held, classes)] = p
    return probs
