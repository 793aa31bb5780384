"""The audit's cross-fitted head on features too many to hold (audit/heads.py chooses it): a
linear layer trained by minibatch Adam, each batch read from the memory map as it is drawn.

The objective is scikit-learn's LogisticRegression(C=1) per sample: the mean log-loss (softmax
cross-entropy; for multi-label, the sum over classes of each class's binary log-loss) plus
||W||^2 / (2 n C), the bias unpenalised. A fixed budget of epochs with a cosine-decayed rate
replaces L-BFGS's run to convergence: each epoch is one read of the fold's rows, and a small
fold takes enough epochs for MIN_STEPS steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

BATCH = 1024
EPOCHS = 8  # passes over the fold's rows, or enough of them for MIN_STEPS steps
MIN_STEPS = 500  # small folds: a few passes are too few steps to come near the optimum
LR = 0.05  # for unit-length features; measured against L-BFGS in benchmarks/RESULTS.md


def _rows(feats: Any, idx: np.ndarray) -> torch.Tensor:
    """The rows idx (read from a memory map, data/row_store.Rows, or an array's)."""
    return torch.from_numpy(np.ascontiguousarray(feats[idx], dtype=np.float32))


def streamed_head(
    feats: Any,
    fit_rows: np.ndarray,
    held: np.ndarray,
    target: np.ndarray,
    seed: int = 0,
    epochs: int = EPOCHS,
) -> np.ndarray:
    """Probabilities (len(held), classes) of a head fitted on feats[fit_rows]; target is class
    indices (single-label) or 0/1 rows (multi-label, one sigmoid per class)."""
    multi = target.ndim == 2
    classes = target.shape[1] if multi else int(target.max()) + 1
    order = np.random.default_rng(seed)  # the weights start at zero: nothing else is random
    head = torch.nn.Linear(int(np.prod(feats.shape[1:])), classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.Adam(head.parameters(), lr=LR)
    per_epoch = -(-len(fit_rows) // BATCH)
    epochs = max(epochs, -(-MIN_STEPS // per_epoch))
    steps = epochs * per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    decay = 1.0 / (2 * len(fit_rows))  # C = 1
    y_all = torch.from_numpy(np.asarray(target, np.float32 if multi else np.int64))
    for _ in range(epochs):
        perm = order.permutation(len(fit_rows))
        for b in range(0, len(perm), BATCH):
            pick = fit_rows[perm[b : b + BATCH]]
            logits, y = head(_rows(feats, pick)), y_all[pick]
            if multi:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, y, reduction="sum"
                ) / len(pick)
            else:
                loss = torch.nn.functional.cross_entropy(logits, y)
            loss = loss + decay * head.weight.square().sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    out = np.empty((len(held), classes))
    with torch.no_grad():
        for b in range(0, len(held), BATCH):
            logits = head(_rows(feats, held[b : b + BATCH]))
            p = torch.sigmoid(logits) if multi else torch.softmax(logits, 1)
            out[b : b + BATCH] = p.double().numpy()
    return out
