"""`imgclf export`: ONNX / TorchScript (PyTorch runs), .keras / SavedModel (Keras runs).

Every export takes normalised float32 images (NCHW for PyTorch formats, NHWC for Keras ones) with
any batch size and returns class probabilities. preprocess.json beside it gives size, mean, std
and class names. Each file is loaded back in its own runtime right after writing and compared with
the original model on sample images; the maximum absolute difference is reported.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.files import atomic_write, write_json
from imgclf.predictor import load_predictor, run_backend

FORMATS = {"torch": ("onnx", "torchscript"), "keras": ("keras", "savedmodel")}
TOLERANCE = 1e-4  # probabilities; float32 kernels differ in summation order, not more


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    batch_sizes: tuple[int, ...]


def sample_images(size: int, n: int = 4, seed: int = 0) -> np.ndarray:
    """Smooth random images (not white noise, whose activations are atypical)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (n, 8, 8, 3)).astype(np.float32)
    idx = np.arange(size) * 8 // size
    return small[:, idx][:, :, idx].astype(np.uint8)


def export_run(
    run: str | Path, fmt: str, out_dir: str | Path | None = None, images: np.ndarray | None = None
) -> ExportResult:
    run = Path(run)
    backend = run_backend(run)
    if fmt not in FORMATS[backend]:
        raise ValueError(
            f"{run}: a {backend} run exports to {', '.join(FORMATS[backend])}, not {fmt}"
        )
    out = Path(out_dir) if out_dir else run / "export"
    out.mkdir(parents=True, exist_ok=True)
    predictor = load_predictor(run, device="cpu")
    imgs = images if images is not None else sample_images(predictor.pre.size)
    write_json(
        out / "preprocess.json",
        {
            **predictor.pre.to_dict(),
            "class_names": predictor.class_names,
            "format": fmt,
            "input": "float32 " + ("NCHW" if backend == "torch" else "NHWC") + ", (x/255-mean)/std",
            "output": "class probabilities",
            "model": predictor.meta.get("model"),
        },
    )
    if backend == "torch":
        from imgclf.export_torch import export_torch

        path, diff = export_torch(predictor, fmt, out, imgs)
    else:
        path, diff = _export_keras(predictor, fmt, out, imgs)
    if diff > TOLERANCE:
        raise RuntimeError(f"{path}: exported model differs from the original by {diff:.2e}")
    return ExportResult(path, fmt, diff, (1, len(imgs)))


def _export_keras(predictor, fmt: str, out: Path, imgs: np.ndarray) -> tuple[Path, float]:  # noqa: ANN001
    import keras
    import tensorflow as tf

    from imgclf.backends.keras.data import normalize
    from imgclf.backends.keras.models import inference_model

    x = normalize(imgs, predictor.pre)
    ref = predictor.predict_proba(imgs)
    if fmt == "keras":
        path = out / "model.keras"
        atomic_write(path, lambda t: shutil.copyfile(predictor.path, t))
        loaded = keras.models.load_model(path)
        outs = [np.asarray(loaded.predict_on_batch(b)) for b in (x[:1], x)]
    else:
        path = out / "saved_model"
        tmp = out / ".saved_model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inference_model(predictor.model).export(
                str(tmp), format="tf_saved_model", verbose=False
            )
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        loaded = tf.saved_model.load(str(path))  # keep a reference: it owns the variables
        outs = [loaded.serve(tf.constant(b)).numpy() for b in (x[:1], x)]
    return path, max(float(np.abs(outs[0] - ref[:1]).max()), float(np.abs(outs[1] - ref).max()))
