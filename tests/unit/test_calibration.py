"""Temperature scaling and the expected calibration error, on numbers whose answer is known."""

from __future__ import annotations

import numpy as np

from imgclf.calibration import ece, fit_temperature, reliability, with_temperature


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_temperature_on_probabilities_is_temperature_on_logits() -> None:
    z = np.random.default_rng(0).normal(0, 3, (50, 4))
    got = with_temperature(softmax(z).astype(np.float32), 2.5)
    assert np.allclose(got, softmax(z / 2.5), atol=1e-5)
    assert (got.argmax(1) == z.argmax(1)).all()  # the predicted class never changes


def test_an_over_confident_model_gets_its_temperature_back_and_a_lower_ece() -> None:
    # labels drawn from softmax(z); the "model" says softmax(3 z): three times too sure
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, (6000, 3))
    truth = softmax(z)
    y = np.array([rng.choice(3, p=p) for p in truth])
    model = softmax(3 * z)
    t = fit_temperature(y, model)
    assert 2.7 < t < 3.3, t
    before, after = ece(y, model), ece(y, with_temperature(model, t))
    assert before > 0.1 and after < 0.03, (before, after)


def test_ece_of_known_cases() -> None:
    y = np.zeros(10, dtype=np.int64)
    # 90 % sure of class 0 and right 9 times in 10: calibrated
    p = np.tile([0.9, 0.1], (10, 1))
    p[0] = [0.1, 0.9]
    assert ece(y, p) < 1e-9
    # always certain, right half the time: off by one half
    q = np.tile([1.0, 0.0], (10, 1))
    q[:5] = [0.0, 1.0]
    assert abs(ece(y, q) - 0.5) < 1e-9
    assert sum(r["images"] for r in reliability(y, q)) == 10
