"""Phase 2 of bench_transfer_levers.py: heads on saved features, every variant side by side.

A variant: the feature configs averaged as probabilities (each a '+'-joined concatenation), the
views the head trains on, the views averaged at test time, and the head. The weight decay (C) is
chosen by 5-fold CV on train, with an image's views kept in one fold (so a mirror never scores
its own original); the test sets never choose anything.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

SETS = ("test", "shifted", "offcrop", "cifar")
CS = (0.1, 0.3, 1.0, 3.0)

# name: (members, train views, test views)
VARIANTS: dict[str, tuple[list[str], tuple[str, ...], tuple[str, ...]]] = {
    "recipe: Lite2@260 c+cm / TTA c,cm": (["lite2@260"], ("c", "cm"), ("c", "cm")),
    "Lite2@260 c+cm / no TTA": (["lite2@260"], ("c", "cm"), ("c",)),
    "Lite2@260 c+cm / TTA c,cm,f,fm": (["lite2@260"], ("c", "cm"), ("c", "cm", "f", "fm")),
    "Lite2@260 all views / TTA c,cm,f,fm": (
        ["lite2@260"],
        ("c", "cm", "f", "fm"),
        ("c", "cm", "f", "fm"),
    ),
    "Lite2@260 all views / TTA c,cm": (["lite2@260"], ("c", "cm", "f", "fm"), ("c", "cm")),
    "Lite2@300 c+cm / TTA c,cm": (["lite2@300"], ("c", "cm"), ("c", "cm")),
    "Lite2@260 and @300 averaged / TTA c,cm": (
        ["lite2@260", "lite2@300"],
        ("c", "cm"),
        ("c", "cm"),
    ),
    "Lite2@260+@300 concatenated / TTA c,cm": (["lite2@260+lite2@300"], ("c", "cm"), ("c", "cm")),
    "Lite0, Lite1, Lite2 averaged / TTA c,cm": (
        ["lite0@224", "lite1@240", "lite2@260"],
        ("c", "cm"),
        ("c", "cm"),
    ),
    "Lite1 and Lite2 averaged / TTA c,cm": (["lite1@240", "lite2@260"], ("c", "cm"), ("c", "cm")),
    "Lite1 and Lite2@300 averaged / TTA c,cm": (
        ["lite1@240", "lite2@300"],
        ("c", "cm"),
        ("c", "cm"),
    ),
    "Lite2@300 ImageNet logits only / TTA c,cm": (["lite2@300:logits"], ("c", "cm"), ("c", "cm")),
    "Lite2@300 ImageNet log-probs only / TTA c,cm": (["lite2@300:logp"], ("c", "cm"), ("c", "cm")),
    "Lite2@300 features + ImageNet logits / TTA c,cm": (
        ["lite2@300+lite2@300:logits"],
        ("c", "cm"),
        ("c", "cm"),
    ),
    "Lite2@300 features + ImageNet log-probs / TTA c,cm": (
        ["lite2@300+lite2@300:logp"],
        ("c", "cm"),
        ("c", "cm"),
    ),
    "Lite2 head fitted @260, scored @300 / TTA c,cm": (
        ["lite2@260>lite2@300"],
        ("c", "cm"),
        ("c", "cm"),
    ),
}


def derived(work: Path, cfg: str, view: str, split: str) -> np.ndarray | None:
    """cfg, or cfg:logits / cfg:logp: the ImageNet classifier's logits / log-probabilities."""
    base, _, kind = cfg.partition(":")
    f = work / f"{base}-{view}-{split}.npy"
    if not f.exists():
        return None
    x = np.load(f)
    if kind:
        fc = np.load(work / f"{base.split('@')[0]}-fc.npz")
        x = x @ fc["w"].T + fc["b"]
        if kind == "logp":
            x = x - logsumexp(x, 1, keepdims=True)
    return x


@functools.cache  # once per part, not once per view and set
def train_length(work: Path, cfg: str) -> float:
    return float(np.linalg.norm(derived(work, cfg, "c", "train"), axis=1).mean())


def load(work: Path, member: str, view: str, split: str) -> np.ndarray | None:
    parts = []
    for cfg in member.split("+"):
        x = derived(work, cfg, view, split)
        if x is None:
            return None
        if "+" in member:  # each part at unit mean length (from train), so none drowns another
            x = x / train_length(work, cfg)
        parts.append(x)
    return np.concatenate(parts, 1)


def fit(x: np.ndarray, y: np.ndarray, c: float, head: str = "lr"):  # noqa: ANN201
    """head: lr (the recipe's logistic regression), svm (linear, Platt-calibrated), mlp."""
    if head == "svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import LinearSVC

        return CalibratedClassifierCV(LinearSVC(C=c / 10), cv=3).fit(x, y)
    if head == "mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(
            (256,), alpha=1 / c, max_iter=300, early_stopping=True, random_state=0
        ).fit(x, y)
    return LogisticRegression(C=c, max_iter=2000).fit(x, y)


def stack(work: Path, member: str, views: tuple[str, ...], split: str) -> np.ndarray | None:
    got = [load(work, member, v, split) for v in views]
    return None if any(g is None for g in got) else np.stack(got)  # (views, n, d)


def choose_c(xs: np.ndarray, y: np.ndarray, test_views: int, head: str) -> tuple[float, int]:
    """C with the fewest CV errors (TTA over the first test_views of the train views)."""
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(y, y))
    best = (CS[0], len(y) + 1)
    for c in CS:
        wrong = 0
        for tr, te in folds:
            v = xs.shape[0]
            m = fit(xs[:, tr].reshape(v * len(tr), -1), np.tile(y[tr], v), c, head)
            p = np.mean([m.predict_proba(xs[k, te]) for k in range(min(test_views, v))], 0)
            wrong += int((p.argmax(1) != y[te]).sum())
        if wrong < best[1]:
            best = (c, wrong)
    return best


def variant(
    work: Path, members: list[str], train_v: tuple, test_v: tuple, head: str = "lr"
) -> dict | None:
    y = np.load(work / "train-labels.npy")
    probs: dict[str, list[np.ndarray]] = {s: [] for s in SETS}
    cv, t0 = [], time.perf_counter()
    for spec in members:
        member, _, tested = spec.partition(">")  # "a>b": the head fitted on a, scored on b
        xs = stack(work, member, train_v, "train")
        if xs is None:
            return None
        # features scaled by their mean length, so one C grid suits every backbone
        scale = float(np.linalg.norm(xs[0], axis=1).mean())
        c, wrong = choose_c(xs / scale, y, len(test_v) if set(test_v) <= set(train_v) else 1, head)
        cv.append({"member": spec, "C": c, "cv_errors": wrong})
        v = xs.shape[0]
        m = fit((xs / scale).reshape(v * len(y), -1), np.tile(y, v), c, head)
        for s in SETS:
            xt = stack(work, tested or member, test_v, s)
            if xt is not None:  # a set not computed yet is left out of every member
                probs[s].append(np.mean([m.predict_proba(x / scale) for x in xt], 0))
    out: dict = {"heads": cv, "head_s": round(time.perf_counter() - t0, 1)}
    for s in SETS:
        if len(probs[s]) < len(members):
            continue
        p, ys = np.mean(probs[s], 0), np.load(work / f"{s}-labels.npy")
        wrong = p.argmax(1) != ys
        out[s] = {"accuracy": round(100 * (1 - wrong.mean()), 2), "errors": int(wrong.sum())}
    return out


HEADS = {"linear SVM (Platt) Lite2@260 / TTA c,cm": "svm", "MLP 256 Lite2@260 / TTA c,cm": "mlp"}


def heads(work: Path) -> dict:
    out = {}
    plan = [(k, v, "lr") for k, v in VARIANTS.items()]
    plan += [(k, VARIANTS["recipe: Lite2@260 c+cm / TTA c,cm"], h) for k, h in HEADS.items()]
    for name, (members, train_v, test_v), head in plan:
        r = variant(work, members, train_v, test_v, head)
        if r is not None:
            out[name] = r
            print(name, {s: r[s]["errors"] for s in SETS if s in r}, r["heads"], flush=True)
    return out
