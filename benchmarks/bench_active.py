"""Active learning: does `imgclf suggest`'s choice of what to label beat labelling at random?
(issue 43)

On CATS_DOGS (train pool 3,000, scored on its 1,000 test photos) and on CIFAR-10 (a seeded pool
of --cifar-pool train images from the JPEG zip, scored on --cifar-test test images): start from a
small labelled seed drawn at random (the same for both ways), then each round add N labels
chosen by suggest's rule (review/suggest.py: most uncertain first by margin, no two near-copies
in EfficientNet-Lite0 features) or at random, and refit. The model is what a frozen run
trains: a logistic-regression head on the cached features, so a round takes seconds. Accuracy
per round, mean over --seeds seeds, and the labels suggest needed to reach random's final
accuracy (the goal: at most half).

    python benchmarks/bench_active.py [--seeds 6] [--rounds 10] [--cifar-rounds 20] [--no-cifar]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np

from common import CATS_DOGS, CIFAR_ZIP, machine


def feats_of(paths: list[str], size: int, cache: str) -> np.ndarray:
    from imgclf.audit.fingerprints import features

    rows, f = features(paths, 0, size, cache, 2, False)
    if f is None or len(rows) != len(paths):
        raise RuntimeError("EfficientNet-Lite0 weights missing, or unreadable images")
    return np.asarray(f)


def dataset(name: str, a: argparse.Namespace) -> tuple[np.ndarray, ...]:
    """(pool features, pool labels, test features, test labels)."""
    from imgclf.data.sources import resolve_data
    from imgclf.data.splits import load_splits

    root = CATS_DOGS if name == "cats_dogs" else resolve_data(str(CIFAR_ZIP), a.cache)
    splits = load_splits(root, 0.0)
    train, test = splits["train"], splits["test"]
    if name == "cifar10":  # a seeded subset: the pool a user might have, not all 50,000
        rng = random.Random(0)
        train = train.subset(sorted(rng.sample(range(len(train)), a.cifar_pool)))
        test = test.subset(sorted(rng.sample(range(len(test)), a.cifar_test)))
    size = 224 if name == "cats_dogs" else 128  # the audit's own sizes for photos / small images
    t0 = time.perf_counter()
    xf, tf = feats_of(train.paths, size, a.cache), feats_of(test.paths, size, a.cache)
    print(json.dumps({"data": name, "pool": len(train), "test": len(test),
                      "features_s": round(time.perf_counter() - t0, 1)}), flush=True)  # fmt: skip
    return xf, np.array(train.labels), tf, np.array(test.labels)


def fit(x: np.ndarray, y: np.ndarray):  # noqa: ANN201 (a fitted LogisticRegression)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=500).fit(x, y)


def curve(
    data: tuple[np.ndarray, ...], seed_n: int, step: int, rounds: int, seed: int, how: str
) -> list[tuple[int, float]]:
    from imgclf.review.suggest import select

    xf, y, tf, ty = data
    rng = np.random.default_rng(seed)
    labelled = list(rng.choice(len(y), seed_n, replace=False))
    out = []
    for r in range(rounds + 1):
        model = fit(xf[labelled], y[labelled])
        out.append((len(labelled), float((model.predict(tf) == ty).mean())))
        if r == rounds:
            break
        rest = np.setdiff1d(np.arange(len(y)), labelled)
        if how == "random":
            pick = list(rng.choice(rest, step, replace=False))
        else:
            probs = model.predict_proba(xf[rest])
            pick = [int(rest[i]) for i in select(probs, xf[rest], step)]
        labelled += pick
    return out


def labels_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    return next((n for n, acc in points if acc >= target), None)


def run(name: str, a: argparse.Namespace, seed_n: int, step: int, rounds: int) -> None:
    data = dataset(name, a)
    if len(np.unique(data[1])) < 2:
        raise RuntimeError(f"{name}: the pool has one class")
    t0 = time.perf_counter()
    ways = {how: [curve(data, seed_n, step, rounds, s, how) for s in range(a.seeds)]
            for how in ("random", "suggest")}  # fmt: skip
    mean = {
        how: [(c[0][r][0], round(100 * float(np.mean([x[r][1] for x in c])), 2))
              for r in range(rounds + 1)]
        for how, c in ways.items()
    }  # fmt: skip
    final_n, final_acc = mean["random"][-1]
    need = labels_to_reach(mean["suggest"], final_acc)
    print(json.dumps({"data": name, "seed_labels": seed_n, "per_round": step,
                      "accuracy_by_labels": mean, "random_final": [final_n, final_acc],
                      "suggest_labels_to_match": need,
                      "fraction_of_random": need and round(need / final_n, 3),
                      "seconds": round(time.perf_counter() - t0, 1)}), flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=10, help="CATS_DOGS: rounds of 10 labels")
    ap.add_argument("--cifar-rounds", type=int, default=20, help="CIFAR-10: rounds of 100")
    ap.add_argument("--no-cifar", action="store_true")
    ap.add_argument("--cifar-pool", type=int, default=10000)
    ap.add_argument("--cifar-test", type=int, default=2000)
    ap.add_argument("--cache", default="", help="decoded-image cache (default ~/.cache/imgclf)")
    a = ap.parse_args()
    print(machine(), flush=True)
    run("cats_dogs", a, seed_n=10, step=10, rounds=a.rounds)
    if not a.no_cifar:
        run("cifar10", a, seed_n=100, step=100, rounds=a.cifar_rounds)


if __name__ == "__main__":
    main()
