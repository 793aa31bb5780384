"""imgclf: image classification from a folder of labelled photos.

The CLI is a thin layer over these functions, which notebooks can call directly.
"""

from imgclf.config import RunConfig, build_config
from imgclf.data.audit import run_audit
from imgclf.data.folder import ImageIndex, load_splits
from imgclf.registry import create_model, list_models

__version__ = "0.1.0"


def train(cfg: RunConfig, resume: bool = False, progress: bool = True):  # noqa: ANN201
    """Train with the config's backend; returns a RunResult."""
    if cfg.backend == "keras":
        from imgclf.backends.keras.train import fit as keras_fit

        return keras_fit(cfg, resume=resume, progress=progress)
    from imgclf.train import fit

    return fit(cfg, resume=resume, progress=progress)


def evaluate(run_dir: str, data: str = "", split: str = "test", progress: bool = True):  # noqa: ANN201
    from imgclf.evaluate.run_eval import evaluate_run

    return evaluate_run(run_dir, data, split, progress)


def predict(run: str, paths: list[str]):  # noqa: ANN201
    from imgclf.predictor import expand_inputs, load_predictor, predict_paths

    return predict_paths(load_predictor(run), expand_inputs(paths))


__all__ = [
    "ImageIndex",
    "RunConfig",
    "build_config",
    "create_model",
    "evaluate",
    "list_models",
    "load_splits",
    "predict",
    "run_audit",
    "train",
]
