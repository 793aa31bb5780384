"""`imgclf evaluate`: score a run (either backend) on a split and write metrics, plots, report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from imgclf.backends.common import run_data
from imgclf.data.cache import DecodedCache, open_cache
from imgclf.data.folder import ImageIndex, display_path, find_splits, scan_class_folder
from imgclf.data.labels import LabelSource, read_splits
from imgclf.data.sources import resolve_data
from imgclf.data.splits import load_splits
from imgclf.evaluation.audit_notes import audit_notes, run_label_issues
from imgclf.evaluation.calibration import calibrated
from imgclf.evaluation.metrics import compute_metrics, top_losses
from imgclf.evaluation.report import write_report
from imgclf.explain import top_loss_maps
from imgclf.files import write_json
from imgclf.messages import UsageError, warn
from imgclf.predictor import FlipTTA, Predictor, load_predictor
from imgclf.runs import RunDir
from imgclf.viz import blend, plot_confusion, plot_curves, plot_image_grid, plot_reliability


def _align(index: ImageIndex, class_names: list[str], where: str) -> ImageIndex:
    """Map another folder's labels onto the run's classes by name."""
    unknown = [c for c in index.class_names if c not in class_names]
    if unknown:
        raise ValueError(f"{where}: classes unknown to the model: {', '.join(unknown)}")
    remap = [class_names.index(c) for c in index.class_names]
    return ImageIndex(index.paths, [remap[y] for y in index.labels], class_names)


def predict_index(
    predictor: Predictor,
    index: ImageIndex,
    cache_dir: str = "",
    workers: int = 2,
    batch_size: int = 100,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, str], DecodedCache]:
    cache, stats = open_cache(index, predictor.pre.size, cache_dir or None, workers, progress)
    rows = cache.ok_rows
    probs = [
        predictor.predict_proba(cache.read_rows(rows[i : i + batch_size]))
        for i in tqdm(
            range(0, len(rows), batch_size),
            desc="evaluate",
            leave=False,
            disable=None if progress else True,
        )
    ]
    out = np.concatenate(probs) if probs else np.zeros((0, len(predictor.class_names)))
    skipped = {display_path(index.paths[r]): why for r, why in stats.failed.items()}
    return out, rows, skipped, cache


def eval_folder(run: RunDir, own_data: bool, root: Path, split: str) -> Path:
    """The run's own metrics and report are its test split's; any other data or split writes
    into its own subfolder, so it never overwrites them."""
    if own_data and split == "test":
        return run.path
    return run / f"eval-{root.resolve().name}-{split}"


def split_index(
    run: RunDir, root: Path, own: bool, split: str, source: LabelSource | None = None
) -> tuple[ImageIndex, str]:
    """The images to score. The run's own val and train are exactly those training used (its
    split.json: exclusions, caps and the carved part included), its labels as it recorded them;
    other data is split anew, labelled by `source` (default: its class folders)."""
    cfg = run.read_config()
    if own and split in ("val", "train") and (run / RunDir.SPLIT).is_file():
        stored = json.loads((run / RunDir.SPLIT).read_text())["splits"][split]
        names = run.read_meta()["class_names"]
        return ImageIndex(
            [os.path.join(root, p) for p, _ in stored], [y for _, y in stored], names
        ), split
    if not own:
        return _other_data(root, split, source or LabelSource()), split
    splits = load_splits(
        root,
        cfg.val_fraction,
        cfg.seed,
        validate_on=cfg.validate_on,
        source=LabelSource.from_config(cfg),
    )
    if split in splits and len(splits[split]):
        return splits[split], split
    if split != "test":
        raise UsageError(f"{root}: no {split} images")
    warn(
        f"{root}: no test split; scoring the validation split instead, which chose the model "
        "(its accuracy is optimistic)"
    )
    return splits["val"], "val"


def _other_data(root: Path, split: str, source: LabelSource) -> ImageIndex:
    """Other data: its split (folder or CSV column), or all of it when it has no splits."""
    labelled = read_splits(root, source)
    if labelled:
        if split in labelled:
            return labelled[split]
        if set(labelled) == {"train"}:  # one pool: all of it
            return labelled["train"]
        raise UsageError(f"{root}: no {split} images")
    dirs = find_splits(root)
    if not dirs:
        return scan_class_folder(root)
    if split not in dirs:
        raise UsageError(f"{root}: no {split}/ folder")
    return scan_class_folder(dirs[split])


def baseline(run: RunDir, y: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Always answering train's most common class, and chance: what a model must beat."""
    train = (
        [y_ for _, y_ in json.loads((run / RunDir.SPLIT).read_text())["splits"]["train"]]
        if (run / RunDir.SPLIT).is_file()
        else y.tolist()
    )
    major = int(np.bincount(np.asarray(train, dtype=np.int64), minlength=len(names)).argmax())
    return {
        "majority_class": names[major],
        "majority_accuracy": float((y == major).mean()) if len(y) else float("nan"),
        "chance": 1 / len(names),
    }


def trust_notes(
    run: RunDir, split: str, y: np.ndarray, names: list[str], accuracy: float
) -> dict[str, Any]:
    """What the accuracy means: the baseline it must beat, and whether this split chose the
    model (then it is optimistic)."""
    base = baseline(run, y, names)
    out: dict[str, Any] = {
        "baseline": {**base, "beaten": accuracy > max(base["majority_accuracy"], base["chance"])}
    }
    if split == "val" or (split == "test" and run.read_config().validate_on == "test"):
        out["split_warning"] = (
            f"This {split} split chose the model (best checkpoint, early stopping): its accuracy "
            "is optimistic; the test split is the honest measure."
        )
    return out


def evaluate_run(
    run_dir: str | Path,
    data: str = "",
    split: str = "test",
    progress: bool = True,
    device: str = "auto",
    tta: bool | None = None,
    calibration: bool = True,
    source: LabelSource | None = None,
    explain: bool = True,
    label_issues: bool = False,
) -> dict[str, Any]:
    """calibration False: metrics on the model's own probabilities (the ECE is reported both
    ways either way)."""
    run = RunDir(run_dir).require()
    cfg = run.read_config()
    predictor = load_predictor(run.path, device, tta, calibrated=False)  # both, below
    names = predictor.class_names
    root = (
        resolve_data(data, cfg.cache_dir)
        if data
        else run_data(cfg, f"imgclf evaluate {run} PATH (or --data PATH)")
    )
    own = not data or os.path.realpath(data) == os.path.realpath(cfg.data_dir)
    index, use = split_index(run, root, own, split, source)
    index = _align(index, names, str(root))
    probs, rows, skipped, cache = predict_index(
        predictor, index, cfg.cache_dir, cfg.workers, cfg.batch_size, progress
    )
    y = np.asarray(index.labels)[rows]
    cal, calib = calibrated(run, y, probs)
    probs = cal if calibration else probs
    metrics = compute_metrics(y, probs, names)
    metrics["calibration"] = {**calib, "applied": calibration and calib["temperature"] is not None}
    metrics.update(trust_notes(run, use, y, names, metrics["accuracy"]))
    paths = [index.paths[r] for r in rows]
    metrics.update(audit_notes(root, paths, y, probs))
    out = eval_folder(run, own, root, use)
    if label_issues:
        metrics["label_issues"] = run_label_issues(probs, y, paths, names, use, out)
    metrics.update(provenance(run, root, use, out, predictor, skipped))
    maps = top_loss_maps(predictor) if explain else None
    metrics["top_losses_heatmaps"] = maps is not None
    write_outputs(out, metrics, run.read_history(), index, rows, probs, y, cache, maps)
    return metrics


def provenance(
    run: RunDir, root: Path, split: str, out: Path, predictor: Predictor, skipped: dict
) -> dict[str, Any]:
    """What was scored, by what, and where the outputs went."""
    return {
        "run": str(run),
        "data": str(root),
        "split": split,
        "out": str(out),
        "model": predictor.meta.get("model"),
        "backend": predictor.meta.get("backend"),
        "tta": "flip" if isinstance(predictor, FlipTTA) else "none",
        "skipped": skipped,
    }


def write_outputs(
    out: Path,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    index: ImageIndex,
    rows: np.ndarray,
    probs: np.ndarray,
    y: np.ndarray,
    cache: DecodedCache,
    maps: Any = None,
) -> None:
    """metrics.json, the plots and report.html into `out`; maps(images, classes): Grad-CAM
    maps laid over the top losses."""
    names = index.class_names
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RunDir.METRICS, metrics)
    plot_confusion(metrics["confusion_matrix"], names, out / RunDir.CONFUSION)
    if len(y):
        plot_reliability(metrics["calibration"], out / RunDir.RELIABILITY)
    if history:
        plot_curves(history, out / RunDir.CURVES)
    worst = top_losses(y, probs, 16)
    if len(worst):
        imgs = list(cache.read_rows(rows[worst]))
        if maps is not None:
            cams = maps(np.stack(imgs), [int(probs[i].argmax()) for i in worst])
            imgs = [blend(im, c) for im, c in zip(imgs, cams, strict=True)]
        titles = [
            f"{os.path.basename(index.paths[rows[i]])}\n{names[probs[i].argmax()]} "
            f"{probs[i].max():.2f} / true {names[y[i]]}"
            for i in worst
        ]
        plot_image_grid(
            imgs,
            titles,
            out / RunDir.TOP_LOSSES,
            suptitle="Most confidently wrong (predicted p / true)"
            + ("; heat: where the model saw the predicted class" if maps is not None else ""),
        )
    write_report(out, metrics, history)
