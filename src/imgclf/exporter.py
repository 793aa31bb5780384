"""`imgclf export`: the run's model in a portable format, verified after writing.

Every export takes normalised float32 images (NCHW for PyTorch formats, NHWC for Keras ones) with
any batch size and returns class probabilities. preprocess.json beside it states the whole rule a
plain client needs. Each file is loaded back in its own runtime right after writing and compared
with the original model on sample images; the largest absolute difference is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf import backends
from imgclf.calibration import read_temperature, read_thresholds
from imgclf.files import write_json
from imgclf.predictor import load_predictor
from imgclf.runs import RunDir

FORMATS = ("onnx", "torchscript", "keras", "savedmodel")  # the union over backends, for --help
TOLERANCE = 1e-4  # probabilities; float32 kernels differ in summation order, not more


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    batch_sizes: tuple[int, ...]
    replaced: tuple[Path, ...] = ()  # earlier exports in the run's own export folder


def sample_images(size: int, n: int = 4, seed: int = 0) -> np.ndarray:
    """Smooth random images (not white noise, whose activations are atypical)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (n, 8, 8, 3)).astype(np.float32)
    idx = np.arange(size) * 8 // size
    return small[:, idx][:, :, idx].astype(np.uint8)


def preprocess_rule(
    predictor: Any, fmt: str, layout: str, temperature: float | None = None
) -> dict[str, Any]:
    """What a client without imgclf must do to an image file before calling the model, and
    to its output to get the calibrated probabilities imgclf itself reports."""
    pre = predictor.pre
    t = temperature or 1.0
    return {
        "format": fmt,
        "model": predictor.meta.get("model"),
        "class_names": predictor.class_names,
        "steps": [
            "decode to 8-bit RGB (EXIF orientation applied; 16-bit scaled to 8-bit)",
            f"resize so the shorter side is {pre.size} px, bilinear (PIL), aspect kept",
            f"centre-crop {pre.size} x {pre.size}",
            "float32, x / 255, then (x - mean) / std per channel",
            f"layout {layout}, channels in RGB order, batch first",
        ],
        "resize_shorter_side": pre.size,
        "interpolation": "bilinear",
        "center_crop": pre.size,
        "scale": 1 / 255,
        "mean": list(pre.mean),
        "std": list(pre.std),
        "channel_order": "RGB",
        "layout": layout,
        "dtype": "float32",
        "output": "class probabilities, in class_names order (the model's own, uncalibrated)",
        # Guo et al.'s temperature scaling, fitted on the run's validation split; 1: none
        "temperature": t,
        "calibration": f"calibrated = softmax(log(p) / temperature) per image, T = {t:.6g}; "
        "the class ranking is unchanged",
        # kept for clients of the first version of this file
        "size": pre.size,
    }


def multi_label_rule(run: str | Path, names: list[str]) -> dict[str, Any]:
    """A multi-label run's output and decision rule: sigmoids, and a threshold per class."""
    t = read_thresholds(run, names)
    per_class = dict(zip(names, (0.5,) * len(names) if t is None else map(float, t), strict=True))
    return {
        "multi_label": True,
        "output": "one probability per class (a sigmoid each), in class_names order",
        "temperature": 1.0,
        "calibration": "none: a multi-label run's probabilities are used as they are",
        "thresholds": per_class,
        "decision": "a class is present when its probability >= its threshold (fitted on the "
        "run's validation split to maximise F1); an image may have several classes or none",
    }


def existing_outputs(out: Path, written: str, own: bool, force: bool) -> tuple[Path, ...]:
    """What this export would replace: refused in a folder of the user's unless forced; in
    the run's own export folder an earlier export is replaced (and the caller says so)."""
    found = tuple(p for p in (out / "preprocess.json", out / written) if p.exists())
    if found and not (own or force):
        names = ", ".join(p.name for p in found)
        raise FileExistsError(f"{out}: already holds {names}; pass --force to replace them")
    return found


def export_run(
    run: str | Path,
    fmt: str,
    out_dir: str | Path | None = None,
    images: np.ndarray | None = None,
    force: bool = False,
) -> ExportResult:
    predictor = load_predictor(run, "cpu", tta=False, calibrated=False)  # the model itself
    name = predictor.meta["backend"]
    backend = backends.get(name)
    if fmt not in backend.EXPORT_FORMATS:
        formats = ", ".join(backend.EXPORT_FORMATS)
        raise ValueError(f"{run}: a {name} run exports to {formats}, not {fmt}")
    own = RunDir(run) / RunDir.EXPORT
    out = Path(out_dir) if out_dir else own
    replaced = existing_outputs(
        out, backend.EXPORT_FORMATS[fmt], out.resolve() == own.resolve(), force
    )
    out.mkdir(parents=True, exist_ok=True)
    imgs = images if images is not None else sample_images(predictor.pre.size)
    rule = preprocess_rule(predictor, fmt, backend.INPUT_LAYOUT, read_temperature(run))
    if predictor.meta.get("multi_label"):
        rule.update(multi_label_rule(run, predictor.class_names))
    write_json(out / "preprocess.json", rule)
    path, diff = backend.export_model(predictor, fmt, out, imgs)
    if diff > TOLERANCE:
        raise RuntimeError(f"{path}: exported model differs from the original by {diff:.2e}")
    return ExportResult(path, fmt, diff, (1, len(imgs)), replaced)
