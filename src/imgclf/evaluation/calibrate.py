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
    y = np.asarray(index.labels, dtype=np.int64)[rows]
    if not len(y):
        raise ValueError(f"{run}: no readable validation image to fit a temperature on")
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
