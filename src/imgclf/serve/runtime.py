"""What `imgclf serve` runs the model with: the run's own framework, or the run's ONNX export in
onnxruntime, float32 or int8 (exported, and verified as `imgclf export` does, when missing or
older than the checkpoint). `auto` takes float32 onnxruntime for a PyTorch run served on the
CPU: measured faster here at every batch size (benchmarks/RESULTS.md)."""

from __future__ import annotations

import os
from pathlib import Path

from imgclf.messages import UsageError
from imgclf.onnx_runtime import OnnxPredictor, onnx_model
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


def resolve_runtime(runtime: str, backend: str, device: str) -> str:
    """auto: onnxruntime for a run whose backend exports ONNX (PyTorch) served on the CPU, the
    run's framework otherwise."""
    from imgclf import backends

    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime {runtime!r}: choose from {', '.join(RUNTIMES)}")
    exports_onnx = "onnx" in backends.get(backend).EXPORT_FORMATS
    if runtime.startswith("onnx") and not exports_onnx:
        raise UsageError(
            f"--runtime {runtime} needs a run that exports ONNX; this is a {backend} run"
        )
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
    if runs_on.startswith("onnx"):
        return MAX_BATCH["onnx"]
    gpu = device.startswith("cuda") or (device == "auto" and _cuda())
    return MAX_BATCH["gpu" if gpu else "cpu"]


def _cuda() -> bool:
    from imgclf import backends

    return backends.get("torch").cuda_available()


def serving_predictor(
    run: str | Path, runtime: str, device: str, tta: bool | None, calibrated: bool, workers: int = 1
) -> tuple[Predictor, str]:
    """(the predictor, the runtime it runs on: torch, keras, onnx or onnx-int8); workers: model
    calls at once, each given an equal share of the cores by onnxruntime."""
    from imgclf.quantize import int8_model

    run_dir = RunDir(run)
    meta = run_dir.read_meta()
    chosen = resolve_runtime(runtime, meta["backend"], device)
    if not chosen.startswith("onnx"):
        return load_predictor(run, device, tta, calibrated), meta["backend"]
    if tta is None:
        tta = run_dir.read_config().tta
    threads = max(1, (os.cpu_count() or 1) // workers)
    model = int8_model(run_dir) if chosen == "onnx-int8" else onnx_model(run_dir)
    return wrap(OnnxPredictor(model, meta, threads), run_dir, tta, calibrated), chosen


def precision(runs_on: str) -> str:
    return "int8" if runs_on == "onnx-int8" else "float32"
