"""`imgclf audit --label-issues` on multi-label data: missing and extra labels per image.

The rule, cleanlab's for multi-label data (each class its own yes/no task, confident learning on
each): out-of-sample p_c per image from a one-vs-rest logistic regression per class, 5-fold
cross-fitted on the frozen features. For class c, t1_c is the mean p_c over the images labelled
with c, t0_c the mean (1 - p_c) over those without it. A label is likely *missing* when an image
lacks c but p_c >= t1_c, likely *extra* when it has c but 1 - p_c >= t0_c. An image with either
is a suspect; its score is the largest |p_c - label| among its flagged classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imgclf.audit.shards import SOLO, Group
from imgclf.audit.suspects import FOLDS
from imgclf.data.folder import display_path


def cross_fit_multi(
    feats: Any,
    y: np.ndarray,
    folds: int = FOLDS,
    seed: int = 0,
    group: Group = SOLO,
    stream: bool | None = None,
) -> np.ndarray:
    """(n, classes) out-of-sample probabilities, one binary head per class and fold (the folds
    fitted across a torchrun group's ranks; audit/heads.py fits each)."""
    from sklearn.model_selection import KFold

    from imgclf.audit.heads import fill_out_of_sample

    probs = np.tile(y.mean(0), (len(y), 1))  # a class one fold lacks: its prevalence
    k = min(folds, len(y))
    if k < 2:
        raise ValueError("label issues need at least 2 images")
    splits = list(KFold(k, shuffle=True, random_state=seed).split(np.zeros((len(y), 1))))
    return fill_out_of_sample(probs, feats, splits, y, seed, stream, group)


def find_multi_label_issues(probs: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """Per suspect image: its row, the missing and extra classes (indices), and its score."""
    pos = y > 0.5
    classes = range(y.shape[1])
    t1 = np.array([probs[pos[:, c], c].mean() if pos[:, c].any() else 1.0 for c in classes])
    t0 = np.array(
        [(1 - probs[~pos[:, c], c]).mean() if (~pos[:, c]).any() else 1.0 for c in classes]
    )
    missing = ~pos & (probs >= t1 - 1e-9)
    extra = pos & (1 - probs >= t0 - 1e-9)
    out = []
    for i in np.nonzero((missing | extra).any(1))[0]:
        flagged = missing[i] | extra[i]
        score = float(np.abs(probs[i] - pos[i])[flagged].max())
        out.append(
            {
                "index": int(i),
                "missing": np.nonzero(missing[i])[0].tolist(),
                "extra": np.nonzero(extra[i])[0].tolist(),
                "score": score,
            }
        )
    return sorted(out, key=lambda x: -x["score"])


def describe(given: list[str], missing: list[str], extra: list[str]) -> str:
    """'labelled {cat}, likely also dog' / '..., likely not cat'."""
    said = [f"likely also {', '.join(missing)}"] if missing else []
    said += [f"likely not {', '.join(extra)}"] if extra else []
    return f"labelled {{{', '.join(given)}}}, " + "; ".join(said)


def multi_issue_rows(
    found: list[dict[str, Any]],
    paths: list[str],
    splits: list[str],
    names: list[str],
    y: np.ndarray,
    probs: np.ndarray,
) -> list[dict[str, Any]]:
    """The suspects as audit.json lists them."""
    rows = []
    for x in found:
        i = x["index"]
        given = [names[c] for c in np.nonzero(y[i] > 0.5)[0]]
        missing, extra = [names[c] for c in x["missing"]], [names[c] for c in x["extra"]]
        rows.append(
            {
                "path": display_path(paths[i]),
                "split": splits[i],
                "given": given,
                "missing": missing,
                "extra": extra,
                "text": describe(given, missing, extra),
                "score": round(x["score"], 4),
                "probabilities": {
                    n: round(float(p), 4) for n, p in zip(names, probs[i], strict=True)
                },
            }
        )
    return rows
