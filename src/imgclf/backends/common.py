"""Run set-up and wrap-up that both trainers share: guard, data, metadata, config, skipped files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.config import RunConfig
from imgclf.data.balance import describe_balance, imbalance_warning, label_counts, read_weights_file
from imgclf.data.folder import DEFAULT_VAL_FRACTION, ImageIndex, find_splits, read_exclude_list
from imgclf.data.label_sources import LabelSource
from imgclf.data.multi_labels import as_multi_label, sets_text
from imgclf.data.presets import Preprocess
from imgclf.data.sources import resolve_data
from imgclf.data.splits import load_splits, stored_index
from imgclf.files import write_json, write_json_synced
from imgclf.messages import UsageError, warn
from imgclf.models import get_spec
from imgclf.recipes import recipe_choices
from imgclf.registry import ModelSpec
from imgclf.runs import RunDir, RunResult


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

    @property
    def multi_label(self) -> bool:
        """One sigmoid per class: the labels have sets, or --multi-label asked for it."""
        return self.splits["train"].multi_label

    def meta(self) -> dict[str, Any]:
        """What meta.json says of the model (write_run_info adds parameter counts)."""
        return {
            "model": self.cfg.model,
            "class_names": self.names,
            "num_classes": len(self.names),
            "preprocess": self.pre.to_dict(),
            "pretrained": self.pretrained,
            **({"multi_label": True} if self.multi_label else {}),
        }


def start_run(cfg: RunConfig, backend: str, resume: bool) -> RunSetup:
    """Check the run folder and the options, resolve the model and the data. Writes nothing, so a
    failed start leaves no empty run folder behind."""
    run = RunDir(cfg.out_dir)  # named by runs.with_run_dir at the entry
    if not resume:
        run.check_new()
    spec = get_spec(cfg.model, backend)
    root = run_data(cfg, f"imgclf train NEW_PLACE --resume {run}" if resume else "")
    real_run, real_root = os.path.realpath(run.path), os.path.realpath(root)
    if real_run == real_root or real_run.startswith(real_root.rstrip(os.sep) + os.sep):
        raise ValueError(
            f"{run}: inside the data folder {root}; its files would be read as images or a "
            "class. Choose an --out outside it"
        )
    exclude = read_exclude_list(cfg.exclude_list)
    splits = load_splits(
        root,
        cfg.val_fraction,
        cfg.seed,
        exclude,
        cfg.max_per_class,
        cfg.validate_on,
        LabelSource.from_config(cfg),
    )
    if not splits["val"]:
        raise UsageError(
            f"{root}: no validation images (no val/ folder, --val-fraction "
            f"{cfg.val_fraction:g}); give a fraction such as 0.2"
        )
    learnable = [
        c for c, n in zip(splits["train"].class_names, splits["train"].counts(), strict=True) if n
    ]
    if len(learnable) < 2:
        raise UsageError(
            f"{root}: {len(learnable)} class(es) with training images ({', '.join(learnable)}); "
            "a classifier needs at least two (one <class>/ folder each)"
        )
    if resume and (run / RunDir.META).exists():
        check_same_run(
            run.read_meta(), cfg, splits["train"].class_names, spec.preprocess(cfg.image_size)
        )
    if resume and (run / RunDir.SPLIT).exists():
        splits = kept_split(json.loads((run / RunDir.SPLIT).read_text()), splits, root)
    splits = label_kind(cfg, splits)
    # a weights file means pretrained weights, whether or not --pretrained was typed
    pretrained = cfg.pretrained or spec.pretrained_default or bool(cfg.weights)
    return RunSetup(cfg, run, spec, spec.preprocess(cfg.image_size), root, splits, pretrained)


def label_kind(cfg: RunConfig, splits: dict[str, ImageIndex]) -> dict[str, ImageIndex]:
    """Multi-label splits when the labels or --multi-label say so; the class-balance options
    checked against them (a bad weights file stops the run before it writes)."""
    if cfg.multi_label or splits["train"].multi_label:
        splits = {k: as_multi_label(v) for k, v in splits.items()}
        if cfg.sampler == "balanced":
            raise UsageError(
                "--sampler balanced draws images by their class; a multi-label image has several "
                "or none: give --class-weights auto (each class's positives weighted)"
            )
    if cfg.class_weights.endswith(".json"):
        read_weights_file(cfg.class_weights, splits["train"].class_names)
    return splits


def run_data(cfg: RunConfig, hint: str) -> Path:
    """The run's data folder; when it is gone (moved, or an old run's relative path seen from
    elsewhere), say so and how to point at it."""
    try:
        return resolve_data(cfg.data_dir, cfg.cache_dir)
    except UsageError:
        if not hint:
            raise
        raise UsageError(
            f"the run's data {cfg.data_dir} is not there (moved, or a relative path from another "
            f"folder); give its place: {hint}"
        ) from None


def check_same_run(meta: dict[str, Any], cfg: RunConfig, names: list[str], pre: Preprocess) -> None:
    """A resumed run must still learn the same classes with the same model and input."""
    if meta["class_names"] != names:
        raise ValueError(
            f"cannot resume: the data's classes changed from {', '.join(meta['class_names'])} "
            f"to {', '.join(names)}; output indices would change meaning"
        )
    if meta["model"] != cfg.model or Preprocess.from_dict(meta["preprocess"]) != pre:
        raise ValueError("cannot resume: the model or its preprocessing differs from the run's")


def split_record(splits: dict[str, ImageIndex], root: Path) -> dict[str, Any]:
    """split.json: each split's images as (path relative to the data root, class index, or
    the list of its class indices when multi-label)."""
    rel = {
        k: [
            [os.path.relpath(p, root), list(y) if isinstance(y, tuple) else y]
            for p, y in zip(v.paths, v.sets if v.sets is not None else v.labels, strict=True)
        ]
        for k, v in splits.items()
    }
    return {"root": str(root), "splits": rel}


def kept_split(
    stored: dict[str, Any], now: dict[str, ImageIndex], root: Path
) -> dict[str, ImageIndex]:
    """A resumed run trains and validates on the images it started with: images added since
    (which a new split would deal partly into validation, after training on them) are left out
    and said so; images that are gone stop the resume."""
    names = now["train"].class_names
    key = lambda p, y: (p, tuple(y) if isinstance(y, list) else y)  # noqa: E731
    old = {k: {key(p, y) for p, y in v} for k, v in stored["splits"].items()}
    new = {k: {key(p, y) for p, y in v} for k, v in split_record(now, root)["splits"].items()}
    every_now = set().union(*new.values())
    gone = sorted(p for k in old for p, y in old[k] if (p, y) not in every_now)
    if gone:
        raise ValueError(
            f"cannot resume: {len(gone)} of the run's images are gone or relabelled (e.g. "
            f"{gone[0]}); start a new run on the data as it is now"
        )
    if old != new:
        added = len(every_now - set().union(*old.values()))
        warn(
            f"the data changed since the run started ({added} image(s) added or moved between "
            "splits); the resumed run keeps its own split and does not use them"
        )
    out = {k: stored_index(v, root, names) for k, v in stored["splits"].items()}
    for k, v in out.items():
        v.origin = now[k].origin if k in now else ""
    return out


def write_run_info(
    s: RunSetup,
    backend: str,
    suffix: str,
    params: tuple[int, int],
    device: str,
    labels: np.ndarray,
    world: int = 1,
) -> dict[str, Any]:
    """meta.json (what evaluate/predict/export/serve read) and the resolved config.json;
    labels: the training images' classes, as they train (for the class counts)."""
    meta = {
        **s.meta(),
        "backend": backend,
        "params": params[0],
        "trainable_params": params[1],
        "checkpoint_suffix": suffix,
        "split_sizes": {k: len(v) for k, v in s.splits.items()},
    }
    if s.cfg.corrections:  # how many labels a person's review changed, and from which file
        from imgclf.data.corrections import read_corrections

        meta["corrections"] = read_corrections(s.cfg.corrections, s.root).summary()
        print(f"corrections: {meta['corrections']}", flush=True)
    s.run.write_meta(meta)
    if not (s.run / RunDir.SPLIT).exists():
        write_json_synced(s.run / RunDir.SPLIT, split_record(s.splits, s.root))  # compact
    derived = {
        "resolved_image_size": s.pre.size,
        "data_root": str(s.root),
        "working_dir": os.getcwd(),  # where relative paths typed for this run were relative to
        "resolved_device": device,
        "world_size": world,  # data-parallel replicas (torchrun processes or mirrored devices)
        "classes": s.names,
        "params": params[0],
        "trainable_params": params[1],
    }
    balance, said = describe_balance(s.cfg, labels, s.names)
    derived.update(balance)
    if s.cfg.recipe != "none":  # what the recipe chose, and what the user chose instead
        derived["recipe_choices"], derived["recipe_overridden"] = recipe_choices(s.cfg)
    s.run.write_config(s.cfg, derived)
    announce_run(s, said, list(balance["class_counts"].values()))
    return meta


def announce_run(s: RunSetup, balance: list[str], counts: list[int]) -> None:
    """The run's first lines: its folder, split, class counts, labels and warnings."""
    print(f"run folder: {s.run}", flush=True)
    print(describe_split(s), flush=True)
    print("\n".join(balance), flush=True)
    if s.multi_label:
        said = sets_text(s.splits["train"])
        print(f"{said}; one sigmoid per class, binary cross-entropy", flush=True)
    told = imbalance_warning(s.names, counts)
    if told and s.cfg.class_weights == s.cfg.sampler == "none":
        warn(told)
    if s.cfg.labels or s.cfg.label_from_name:
        how = f"the CSV {s.cfg.labels}" if s.cfg.labels else f"file names ({s.cfg.label_from_name})"
        print(f"labels: from {how}; {len(s.names)} classes: {', '.join(s.names)}", flush=True)
    if s.cfg.validate_on == "test":
        warn(
            "--validate-on test: the test split chooses best.pt and stops early, so `imgclf "
            "evaluate` on test measures the split that chose the model (optimistic)"
        )


def describe_split(s: RunSetup) -> str:
    """The split sizes, and where validation comes from (said at the start of every run)."""
    n = {k: len(v) for k, v in s.splits.items()}
    if s.cfg.validate_on == "test":
        where = "the test split (--validate-on test)"
    elif s.splits["val"].origin != "carved":
        where = "the val/ folder" if "val" in find_splits(s.root) else "the labels' val rows"
    else:
        frac = s.cfg.val_fraction if s.cfg.val_fraction >= 0 else DEFAULT_VAL_FRACTION
        where = f"{frac:.0%} of train, stratified, seed {s.cfg.seed}"
    test = f", {n['test']} test (used only by evaluate)" if "test" in n else ""
    return f"split: {n['train']} train, {n['val']} val ({where}){test}"


def warn_unreadable_classes(names: list[str], labels: np.ndarray) -> None:
    """A class with no readable training image cannot be learned: say so before training."""
    counts = label_counts(labels, len(names))
    for name, n in zip(names, counts, strict=True):
        if n == 0:
            warn(
                f"class {name!r} has no readable training image; the model "
                "will never predict it (see skipped.json, or run imgclf audit)"
            )


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
