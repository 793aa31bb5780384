"""A run's ONNX exports in onnxruntime: the float32 model (`imgclf export --format onnx`) and its
int8 quantization (`--int8`, quantize.py), each made when missing or older than what it is made
from, so serve and predict can ask for either by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imgclf.data.presets import Preprocess
from imgclf.runs import RunDir

FLOAT, INT8 = "model.onnx", "model.int8.onnx"
INT8_REPORT = "int8.json"  # the quantization's check: agreement and accuracy, float vs int8


class OnnxPredictor:
    """uint8 images -> class probabilities through onnxruntime (no Grad-CAM: no gradients)."""

    runtime = "onnx"

    def __init__(self, path: Path, meta: dict[str, Any], threads: int = 0):
        """threads: onnxruntime's threads per call (0: its default, one per core)."""
        import onnxruntime as ort

        self.meta, self.path = meta, path
        self.class_names: list[str] = list(meta["class_names"])
        self.pre = Preprocess.from_dict(meta["preprocess"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        x = self.pre.normalize(images, channels_first=True)
        return self.session.run(None, {"input": x})[0]


def stale(path: Path, source: Path) -> bool:
    return not path.exists() or (source.exists() and path.stat().st_mtime < source.stat().st_mtime)


def onnx_model(run: RunDir) -> Path:
    """The run's export/model.onnx, exported (and checked against PyTorch) when it is missing or
    older than the best checkpoint."""
    from imgclf import backends
    from imgclf.exporter import export_run

    path = run / RunDir.EXPORT / FLOAT
    best = run.checkpoint("best", backends.get(run.read_meta()["backend"]).CHECKPOINT_SUFFIX)
    if stale(path, best):
        result = export_run(run.path, "onnx")
        print(f"exported {result.path} (max difference {result.max_abs_diff:.1e})", flush=True)
    return path
