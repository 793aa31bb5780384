"""Fit a run's temperature at the end of training (calibration.py has the rule)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.backends.common import run_data
from imgclf.calibration import describe, fit_temperature, summary
from imgclf.evaluation.scoring import predict_index, split_index
from imgclf.files import write_json
from imgclf.predictor import FlipTTA, load_predictor
from imgclf.runs import RunDir


def calibrate_run(run_dir: str | Path, device: str = "auto", progress: bool = False) -> dict:
    """Fit the run's temperature on exactly the validation images training used (split.json),
    with the predictor as the run is used (its TTA), and write calibration.json."""
    run = RunDir(run_dir)
    cfg = run.read_config()
    predictor = load_predictor(run.path, device, calibrated=False)
    root = run_data(cfg, f"imgclf train NEW_PLACE --resume {run}")
    index, _ = split_index(run, root, True, "val")
    probs, rows, _, _ = predict_index(
        predictor, index, cfg.cache_dir, cfg.workers, cfg.batch_size, progress
    )
    y = index.targets()[rows]
    if not len(y):
        raise ValueError(f"{run}: no readable validation image to fit a temperature on")
    if index.multi_label:
        return _fit_thresholds(run, y, probs, index.class_names)
    c = {
        **summary(y, probs, fit_temperature(y, probs)),
        "fitted_on": "val",
        "fitted_images": int(len(y)),
        "tta": "flip" if isinstance(predictor, FlipTTA) else "none",
        "method": "temperature scaling: softmax(log p / T), T minimising val NLL",
    }
    write_json(run / RunDir.CALIBRATION, c)
    print(describe(c, "val"), flush=True)
    return c


def _fit_thresholds(run: RunDir, y: np.ndarray, probs: np.ndarray, names: list[str]) -> dict:
    """A multi-label run's calibration.json: a threshold per class, F1-maximising on val."""
    from imgclf.evaluation.multilabel import fit_thresholds

    t = fit_thresholds(y, probs)
    c = {
        "temperature": None,
        "thresholds": dict(zip(names, map(float, t), strict=True)),
        "fitted_on": "val",
        "fitted_images": int(len(y)),
        "method": "per class, the threshold maximising F1 on val (0.5 for a class val lacks)",
    }
    write_json(run / RunDir.CALIBRATION, c)
    shown = ", ".join(f"{k} {v:.3g}" for k, v in c["thresholds"].items())
    print(f"thresholds (F1 on {len(y)} val images): {shown}", flush=True)
    return c
