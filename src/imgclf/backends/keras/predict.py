"""The Keras predictor: a .keras archive plus meta.json (class names and preprocessing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from imgclf.backends.keras.data import normalize
from imgclf.data.presets import Preprocess


class KerasPredictor:
    def __init__(self, run: str | Path):
        run = Path(run)
        run_dir = run if run.is_dir() else run.parent
        path = run / "best.keras" if run.is_dir() else run
        if not path.exists():
            path = run_dir / "last.keras"
        self.meta: dict[str, Any] = json.loads((run_dir / "meta.json").read_text())
        self.class_names: list[str] = list(self.meta["class_names"])
        self.pre = Preprocess.from_dict(self.meta["preprocess"])
        self.model = keras.models.load_model(path)  # safe_mode=True: no lambda code is run
        self.path = path

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(normalize(images, self.pre)))
