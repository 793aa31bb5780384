"""evaluate's accuracy/coverage table: what `predict --abstain P` answers and how well."""

from __future__ import annotations

import numpy as np

from imgclf.evaluation.metrics import coverage


def _probs(top: list[float]) -> np.ndarray:
    p = np.asarray(top)
    return np.stack([p, 1 - p], 1)


def test_the_least_sure_go_first_and_accuracy_rises_as_coverage_falls() -> None:
    # 100 images: the 10 least sure (p 0.5-0.59) are all wrong, the rest right
    top = [0.5 + 0.01 * i for i in range(10)] + [0.9 + 0.0009 * i for i in range(90)]
    y = np.array([1] * 10 + [0] * 90)
    cov = coverage(y, _probs(top))
    full, *rest = cov["points"]
    assert full["coverage"] == 1.0 and abs(full["accuracy"] - 0.9) < 1e-9
    at90 = next(p for p in rest if abs(p["coverage"] - 0.9) < 1e-9)
    assert at90["accuracy"] == 1.0 and abs(at90["threshold"] - 0.9) < 1e-9
    accs = [p["accuracy"] for p in cov["points"]]
    assert accs == sorted(accs)
    target = next(t for t in cov["targets"] if t["target"] == 0.99)
    # answering >= 0.9 keeps exactly the 90 right answers: the largest coverage at 99 %
    assert abs(target["coverage"] - 0.9) < 1e-9 and abs(target["threshold"] - 0.9) < 1e-9


def test_ties_at_the_threshold_are_answered_and_counted() -> None:
    # the three sure images tie at 0.8 and one of them is wrong: no P answers only the right ones
    y = np.array([0, 0, 1, 0])
    cov = coverage(y, _probs([0.8, 0.8, 0.8, 0.6]))
    assert {q["coverage"] for q in cov["points"]} == {1.0}
    assert "threshold" not in next(t for t in cov["targets"] if t["target"] == 0.99)
    cov = coverage(np.array([0, 0, 0, 1]), _probs([0.8, 0.8, 0.8, 0.6]))
    t = next(t for t in cov["targets"] if t["target"] == 0.99)
    assert (t["threshold"], t["coverage"], t["accuracy"]) == (0.8, 0.75, 1.0)


def test_no_images_no_points() -> None:
    assert coverage(np.zeros(0, int), np.zeros((0, 2)))["points"] == []
