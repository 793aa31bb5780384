"""Keras exports: the .keras archive and a TensorFlow SavedModel, each reloaded and compared."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np

from imgclf.backends.keras.models import inference_model
from imgclf.files import atomic_write


def export_model(predictor: Any, fmt: str, path: Path, imgs: np.ndarray) -> tuple[Path, float]:
    """Write `fmt` to path (the facade names it), load it back, return the largest difference."""
    import tensorflow as tf

    x = predictor.pre.normalize(imgs)
    ref = predictor.predict_proba(imgs)
    if fmt == "keras":
        atomic_write(path, lambda t: shutil.copyfile(predictor.path, t))
        loaded = keras.models.load_model(path, compile=False)
        outs = [np.asarray(loaded.predict_on_batch(b)) for b in (x[:1], x)]
    else:
        if path.exists() and not (path / "saved_model.pb").exists():
            raise FileExistsError(f"{path}: exists and is not a SavedModel; not replacing it")
        tmp = path.with_name(".saved_model.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inference_model(predictor.model).export(
                str(tmp), format="tf_saved_model", verbose=False
            )
        old = path.with_name(".saved_model.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)  # swap in the new one, then drop the old: never a moment with neither
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
        loaded = tf.saved_model.load(str(path))  # keep a reference: it owns the variables
        outs = [loaded.serve(tf.constant(b)).numpy() for b in (x[:1], x)]
    return path, max(float(np.abs(outs[0] - ref[:1]).max()), float(np.abs(outs[1] - ref).max()))
