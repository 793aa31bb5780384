"""Temperature scaling (Guo et al., ICML 2017): one number, fitted on validation, that makes the
confidences mean what they say, and the expected calibration error (ECE) that measures it.

Backend-neutral: the temperature acts on probabilities, softmax(log p / T), which is exactly
softmax(z / T) for p = softmax(z) (log p differs from z by a per-row constant), so it needs no
logits and applies the same way to either backend, to flip TTA's averages and to exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.runs import RunDir

BINS = 15  # Guo et al.'s equal-width confidence bins
BOUNDS = (0.05, 20.0)  # past these a temperature says the fit failed, not that the model is so
FEW = 100  # below this many validation images the fitted temperature is noisy (said so)


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), row by row; T > 1 softens, T < 1 sharpens, argmax never changes."""
    if temperature == 1.0 or not len(probs):
        return probs
    z = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def nll(y: np.ndarray, probs: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)).mean())


def reliability(y: np.ndarray, probs: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """Per confidence bin (top class): images, mean confidence, accuracy; empty bins left out."""
    conf, right = probs.max(1), probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        if m.any():
            out.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "images": int(m.sum()),
                    "confidence": float(conf[m].mean()),
                    "accuracy": float(right[m].mean()),
                }
            )
    return out


def ece(y: np.ndarray, probs: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the image-weighted mean |accuracy - confidence| over bins."""
    if not len(y):
        return float("nan")
    rows = reliability(y, probs, bins)
    return float(sum(r["images"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / len(y))


def fit_temperature(y: np.ndarray, probs: np.ndarray) -> float:
    """The T minimising the negative log-likelihood of softmax(log p / T) on (y, probs); a
    bounded 1-D search over log T (the NLL is convex in 1/T, so one minimum)."""
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0))
    rows = np.arange(len(y))

    def loss(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z -= z.max(1, keepdims=True)
        return float(-(z[rows, y] - np.log(np.exp(z).sum(1))).mean())

    lo, hi = np.log(BOUNDS[0]), np.log(BOUNDS[1])
    res = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def summary(y: np.ndarray, raw: np.ndarray, temperature: float) -> dict[str, Any]:
    """Before/after numbers for metrics.json and calibration.json."""
    cal = with_temperature(raw, temperature)
    return {
        "temperature": temperature,
        "bins": BINS,
        "ece_before": ece(y, raw),
        "ece_after": ece(y, cal),
        "nll_before": nll(y, raw) if len(y) else float("nan"),
        "nll_after": nll(y, cal) if len(y) else float("nan"),
        "reliability_before": reliability(y, raw),
        "reliability_after": reliability(y, cal),
    }


def read_temperature(run_dir: str | Path) -> float | None:
    """The run's fitted temperature (calibration.json), or None for a run without one."""
    path = RunDir(run_dir) / RunDir.CALIBRATION
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())["temperature"]
    if stored is None:  # a multi-label run: thresholds instead (read_thresholds)
        return None
    t = float(stored)
    if not BOUNDS[0] <= t <= BOUNDS[1]:
        raise ValueError(f"{path}: temperature {t} is outside {BOUNDS}")
    return t


def read_thresholds(run_dir: str | Path, names: list[str]) -> np.ndarray | None:
    """A multi-label run's per-class thresholds (calibration.json), in class order, or None."""
    path = RunDir(run_dir) / RunDir.CALIBRATION
    if not path.is_file():
        return None
    stored = json.loads(path.read_text()).get("thresholds")
    if stored is None:
        return None
    if sorted(stored) != sorted(names):
        raise ValueError(f"{path}: thresholds for {', '.join(stored)}, not the run's classes")
    return np.asarray([float(stored[c]) for c in names])


def describe(c: dict[str, Any], where: str) -> str:
    """One line: 'calibration: temperature 1.42 (fitted on 600 val images); ECE on test ...'."""
    if c.get("temperature") is None:
        return f"calibration: none ({c.get('note', '')}); ECE on {where} {c['ece_before']:.2%}"
    n = c.get("fitted_images", 0)
    return (
        f"calibration: temperature {c['temperature']:.3g} (fitted on {n} val images"
        f"{', few: noisy' if n < FEW else ''}); ECE on {where} "
        f"{c['ece_before']:.2%} -> {c['ece_after']:.2%}"
    )


def calibrated(run: RunDir, y: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The run's temperature applied to the model's own probabilities, and the ECE before and
    after on this split (for test: a temperature fitted on other images, the honest measure)."""
    temperature = read_temperature(run.path)
    if temperature is None:
        before = summary(y, raw, 1.0)
        return raw, {
            "temperature": None,
            "bins": before["bins"],
            "ece_before": before["ece_before"],
            "reliability_before": before["reliability_before"],
            "note": "the run has no calibration.json (trained before imgclf 0.4.0; `imgclf "
            "train DATA --resume RUN` fits one): confidences are the model's own",
        }
    fitted = json.loads((run / RunDir.CALIBRATION).read_text())
    out = summary(y, raw, temperature)
    out.update({k: fitted[k] for k in ("fitted_on", "fitted_images") if k in fitted})
    return with_temperature(raw, temperature), out
