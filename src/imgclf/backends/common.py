"""Run set-up and wrap-up that both trainers share: guard, data, metadata, config, skipped files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.config import RunConfig
from imgclf.data.folder import ImageIndex, load_splits, read_exclude_list
from imgclf.data.presets import Preprocess
from imgclf.data.sources import resolve_data
from imgclf.files import write_json
from imgclf.messages import warn
from imgclf.recipes import recipe_choices
from imgclf.registry import ModelSpec, get_spec
from imgclf.runs import RunDir, RunResult, default_run_dir


@dataclass
class RunSetup:
    """Everything a trainer needs before it builds its model."""

    cfg: RunConfig
    run: RunDir
    spec: ModelSpec
    pre: Preprocess
    root: Path
    splits: dict[str, ImageIndex]
    pretrained: bool

    @property
    def names(self) -> list[str]:
        return self.splits["train"].class_names


def start_run(cfg: RunConfig, backend: str, resume: bool) -> RunSetup:
    """Check the run folder and the options, resolve the model and the data. Writes nothing, so a
    failed start leaves no empty run folder behind."""
    run = RunDir(cfg.out_dir or default_run_dir(cfg))
    if not resume:
        run.check_new()
    spec = get_spec(cfg.model, backend)
    root = resolve_data(cfg.data_dir, cfg.cache_dir)
    real_run, real_root = os.path.realpath(run.path), os.path.realpath(root)
    if real_run == real_root or real_run.startswith(real_root.rstrip(os.sep) + os.sep):
        raise ValueError(
            f"{run}: inside the data folder {root}; its files would be read as images or a "
            "class. Choose an --out outside it"
        )
    exclude = read_exclude_list(cfg.exclude_list)
    splits = load_splits(root, cfg.val_fraction, cfg.seed, exclude, cfg.max_per_class)
    if resume and (run / RunDir.META).exists():
        check_same_run(
            run.read_meta(), cfg, splits["train"].class_names, spec.preprocess(cfg.image_size)
        )
    # a weights file means pretrained weights, whether or not --pretrained was typed
    pretrained = cfg.pretrained or spec.pretrained_default or bool(cfg.weights)
    return RunSetup(cfg, run, spec, spec.preprocess(cfg.image_size), root, splits, pretrained)


def check_same_run(meta: dict[str, Any], cfg: RunConfig, names: list[str], pre: Preprocess) -> None:
    """A resumed run must still learn the same classes with the same model and input."""
    if meta["class_names"] != names:
        raise ValueError(
            f"cannot resume: the data's classes changed from {', '.join(meta['class_names'])} "
            f"to {', '.join(names)}; output indices would change meaning"
        )
    if meta["model"] != cfg.model or Preprocess.from_dict(meta["preprocess"]) != pre:
        raise ValueError("cannot resume: the model or its preprocessing differs from the run's")


def write_run_info(
    s: RunSetup, backend: str, suffix: str, params: tuple[int, int], device: str, world: int = 1
) -> dict[str, Any]:
    """meta.json (what evaluate/predict/export/serve read) and the resolved config.json."""
    meta = {
        "model": s.cfg.model,
        "backend": backend,
        "class_names": s.names,
        "num_classes": len(s.names),
        "preprocess": s.pre.to_dict(),
        "pretrained": s.pretrained,
        "params": params[0],
        "trainable_params": params[1],
        "checkpoint_suffix": suffix,
    }
    s.run.write_meta(meta)
    derived = {
        "resolved_image_size": s.pre.size,
        "data_root": str(s.root),
        "resolved_device": device,
        "world_size": world,  # data-parallel replicas (torchrun processes or mirrored devices)
        "classes": s.names,
        "params": params[0],
        "trainable_params": params[1],
    }
    if s.cfg.recipe != "none":  # what the recipe chose, and what the user chose instead
        derived["recipe_choices"], derived["recipe_overridden"] = recipe_choices(s.cfg)
    s.run.write_config(s.cfg, derived)
    print(f"run folder: {s.run}", flush=True)
    return meta


def warn_unreadable_classes(names: list[str], labels: np.ndarray) -> None:
    """A class with no readable training image cannot be learned: say so before training."""
    counts = np.bincount(labels, minlength=len(names))
    for name, n in zip(names, counts, strict=True):
        if n == 0:
            warn(
                f"class {name!r} has no readable training image; the model "
                "will never predict it (see skipped.json, or run imgclf audit)"
            )


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency loss weights (scikit-learn's 'balanced'): N / (classes * count), counted
    over the images that really train (unreadable files already dropped)."""
    counts = np.maximum(np.bincount(labels, minlength=num_classes).astype(np.float64), 1)
    return counts.sum() / (num_classes * counts)


def finish_run(
    s: RunSetup,
    history: list[dict[str, Any]],
    skipped: dict[str, str],
    suffix: str,
    write: bool = True,
) -> RunResult:
    if skipped and write:
        write_json(s.run / RunDir.SKIPPED, skipped)
        print(f"skipped {len(skipped)} unreadable file(s), listed in {s.run / RunDir.SKIPPED}")
    best = s.run.checkpoint("best", suffix)
    return RunResult(s.run.path, best, history, s.names, skipped)
