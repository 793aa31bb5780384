"""What `imgclf serve` runs the model with: the run's own framework, or the run's ONNX export in
onnxruntime (exported, and verified as `imgclf export` does, when missing or older than the
checkpoint). `auto` takes onnxruntime for a PyTorch run served on the CPU: measured faster
here at every batch size (benchmarks/RESULTS.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.data.presets import Preprocess
from imgclf.messages import UsageError
from imgclf.predictor import Predictor, load_predictor, wrap
from imgclf.runs import RunDir
from imgclf.serve.config import RUNTIMES  # eager: the run's own framework (PyTorch or Keras)

# --max-batch 0, chosen from benchmarks/bench_serve.py's numbers (RESULTS.md). onnxruntime on
# the CPU: its images/s fall past a batch of 2 (EfficientNet-Lite0, one single-threaded call a
# core: 404-419 at 1 and 2, 374 at 4, 330 at 8), and the workers' decode + model measured 313
# requests/s at 2 against 300 at 4. PyTorch eager on the CPU peaks at 4 (90 images/s; 66 at 2;
# the server 85 against 72 requests/s at 32 clients). A GPU wants larger batches (not measured
# here: no GPU was lent).
MAX_BATCH = {"onnx": 2, "cpu": 4, "gpu": 32}


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


def max_batch_for(runs_on: str, device: str) -> int:
    """--max-batch 0: the batch for the device the model runs on."""
    if runs_on == "onnx":
        return MAX_BATCH["onnx"]
    gpu = device.startswith("cuda") or (device == "auto" and _cuda())
    return MAX_BATCH["gpu" if gpu else "cpu"]


def _cuda() -> bool:
    from imgclf import backends

    return backends.get("torch").cuda_available()


def serving_predictor(
    run: str | Path, runtime: str, device: str, tta: bool | None, calibrated: bool, workers: int = 1
) -> tuple[Predictor, str]:
    """(the predictor, the runtime it runs on: torch, keras or onnx); workers: model calls at
    once, each given an equal share of the cores by onnxruntime."""
    run_dir = RunDir(run)
    meta = run_dir.read_meta()
    chosen = resolve_runtime(runtime, meta["backend"], device)
    if chosen != "onnx":
        return load_predictor(run, device, tta, calibrated), meta["backend"]
    if tta is None:
        tta = run_dir.read_config().tta
    threads = max(1, (os.cpu_count() or 1) // workers)
    session = OnnxPredictor(onnx_model(run_dir), meta, threads)
    return wrap(session, run_dir, tta, calibrated), "onnx"
