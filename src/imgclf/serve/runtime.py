"""What `imgclf serve` runs the model with: the run's own framework, or the run's ONNX export in
onnxruntime (exported, and verified as `imgclf export` does, when missing or older than the
checkpoint). `auto` takes onnxruntime for a PyTorch run served on the CPU: measured faster
here at every batch size (benchmarks/RESULTS.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imgclf.data.presets import Preprocess
from imgclf.messages import UsageError
from imgclf.predictor import Predictor, load_predictor, wrap
from imgclf.runs import RunDir

RUNTIMES = ("auto", "eager", "onnx")  # eager: the run's own framework (PyTorch or Keras)


class OnnxPredictor:
    """uint8 images -> class probabilities through onnxruntime (no Grad-CAM: no gradients)."""

    runtime = "onnx"

    def __init__(self, path: Path, meta: dict[str, Any]):
        import onnxruntime as ort

        self.meta, self.path = meta, path
        self.class_names: list[str] = list(meta["class_names"])
        self.pre = Preprocess.from_dict(meta["preprocess"])
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._mean = np.asarray(self.pre.mean, np.float32).reshape(1, 3, 1, 1)
        self._scale = (1 / (255 * np.asarray(self.pre.std, np.float32))).reshape(1, 3, 1, 1)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        x = images.transpose(0, 3, 1, 2).astype(np.float32)  # NHWC uint8 -> NCHW float
        x = (x - 255 * self._mean) * self._scale  # (x / 255 - mean) / std
        return self.session.run(None, {"input": np.ascontiguousarray(x)})[0]


def onnx_model(run: RunDir) -> Path:
    """The run's export/model.onnx, exported (and checked against PyTorch) when it is missing or
    older than the best checkpoint."""
    from imgclf import backends
    from imgclf.exporter import export_run

    path = run / RunDir.EXPORT / "model.onnx"
    best = run.checkpoint("best", backends.get(run.read_meta()["backend"]).CHECKPOINT_SUFFIX)
    if not path.exists() or (best.exists() and path.stat().st_mtime < best.stat().st_mtime):
        result = export_run(run.path, "onnx")
        print(f"exported {result.path} (max difference {result.max_abs_diff:.1e})", flush=True)
    return path


def resolve_runtime(runtime: str, backend: str, device: str) -> str:
    """auto: onnxruntime for a run whose backend exports ONNX (PyTorch) served on the CPU, the
    run's framework otherwise."""
    from imgclf import backends

    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime {runtime!r}: choose from {', '.join(RUNTIMES)}")
    exports_onnx = "onnx" in backends.get(backend).EXPORT_FORMATS
    if runtime == "onnx" and not exports_onnx:
        raise UsageError(f"--runtime onnx serves runs that export ONNX; this is a {backend} run")
    if runtime != "auto":
        return runtime
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "eager"
    on_cpu = device == "cpu" or (device == "auto" and not _cuda())
    return "onnx" if exports_onnx and on_cpu else "eager"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def serving_predictor(
    run: str | Path, runtime: str, device: str, tta: bool | None, calibrated: bool
) -> tuple[Predictor, str]:
    """(the predictor, the runtime it runs on: torch, keras or onnx)."""
    run_dir = RunDir(run)
    meta = run_dir.read_meta()
    chosen = resolve_runtime(runtime, meta["backend"], device)
    if chosen != "onnx":
        return load_predictor(run, device, tta, calibrated), meta["backend"]
    if tta is None:
        tta = run_dir.read_config().tta
    return wrap(OnnxPredictor(onnx_model(run_dir), meta), run_dir, tta, calibrated), "onnx"
