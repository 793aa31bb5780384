"""The Keras predictor: a .keras archive plus the run's meta.json; uint8 images in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from imgclf.backends.keras.checkpoint import read_fingerprint
from imgclf.data.presets import Preprocess
from imgclf.runs import check_fingerprint


class KerasPredictor:
    def __init__(self, meta: dict[str, Any], weights: Path):
        self.meta = meta
        self.class_names: list[str] = list(meta["class_names"])
        self.pre = Preprocess.from_dict(meta["preprocess"])
        check_fingerprint(read_fingerprint(weights), meta, weights)
        # safe_mode (the default) runs no lambda code; compile=False: inference needs no optimizer
        self.model = keras.models.load_model(weights, compile=False)
        self.path = weights

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(self.pre.normalize(images)))
