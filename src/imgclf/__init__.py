"""imgclf: image classification from a folder of labelled photos.

The CLI is a thin layer over these functions, which notebooks can call directly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgclf.audit.scan import run_audit
from imgclf.config import RunConfig, build_config
from imgclf.data.folder import ImageIndex
from imgclf.data.splits import load_splits
from imgclf.models import create_model, list_models
from imgclf.runs import RunResult, with_run_dir
from imgclf.settings import rank


def _version() -> str:
    """One place for the version: the installed package's metadata (pyproject.toml's)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imgclf")
    except PackageNotFoundError:  # the source tree on sys.path, never installed
        return "0+unknown"


__version__ = _version()


def train(
    cfg: RunConfig,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    checked: bool = False,
) -> RunResult:
    """Train with the config's backend, then fit the run's temperature on its validation split
    (calibration.json). on_step(global_step) runs after every optimizer step. The backend's
    refusals are checked first, before anything is written, unless the caller did (checked)."""
    from imgclf import backends
    from imgclf.evaluation.calibrate import calibrate_run

    backend = backends.get(cfg.backend)
    if not checked:
        backend.check_config(cfg)
    cfg = with_run_dir(cfg)
    result = backend.fit(cfg, resume=resume, progress=progress, on_step=on_step)
    if rank() == 0:  # one torchrun process writes the run's files
        result.calibration = calibrate_run(result.run_dir, cfg.device, progress)
    return result


def evaluate(
    run_dir: str,
    data: str = "",
    split: str = "test",
    progress: bool = True,
    tta: bool | None = None,
) -> dict:
    """Metrics of a run on a split; tta None: flip TTA if the run was trained for it."""
    from imgclf.evaluation.run_eval import evaluate_run

    return evaluate_run(run_dir, data, split, progress, tta=tta)


def predict(run: str, paths: list[str], tta: bool | None = None) -> list[dict[str, Any]]:
    from imgclf.predictor import expand_inputs, load_predictor, predict_paths

    return predict_paths(load_predictor(run, tta=tta), expand_inputs(paths))


def export(run: str, fmt: str, out_dir: str | Path | None = None) -> Any:
    from imgclf.exporter import export_run

    return export_run(run, fmt, out_dir)


__all__ = [
    "ImageIndex",
    "RunConfig",
    "RunResult",
    "build_config",
    "create_model",
    "evaluate",
    "export",
    "list_models",
    "load_splits",
    "predict",
    "rank",
    "run_audit",
    "train",
]
