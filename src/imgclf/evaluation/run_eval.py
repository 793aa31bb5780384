"""`imgclf evaluate`: score a run (either backend) on a split and write metrics, plots, report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.audit.notes import audit_notes, run_label_issues
from imgclf.backends.common import run_data
from imgclf.calibration import calibrated
from imgclf.data.cache import DecodedCache
from imgclf.data.folder import ImageIndex
from imgclf.data.label_sources import LabelSource
from imgclf.data.multi_labels import as_multi_label
from imgclf.data.sources import resolve_data
from imgclf.evaluation.metrics import compute_metrics, coverage, top_losses
from imgclf.evaluation.report import write_report
from imgclf.evaluation.run_multilabel import score_multilabel, write_multilabel
from imgclf.evaluation.scoring import align_classes, predict_index, split_index
from imgclf.explain import top_loss_maps
from imgclf.files import write_json
from imgclf.predictor import FlipTTA, Predictor, load_predictor
from imgclf.runs import RunDir
from imgclf.viz import (
    blend,
    plot_confusion,
    plot_coverage,
    plot_curves,
    plot_image_grid,
    plot_reliability,
)

MIX_DIFFERS = 0.1  # total variation between train's and the scored split's class shares


def eval_folder(run: RunDir, own_data: bool, root: Path, split: str) -> Path:
    """The run's own metrics and report are its test split's; any other data or split writes
    into its own subfolder, so it never overwrites them."""
    if own_data and split == "test":
        return run.path
    return run / f"eval-{root.resolve().name}-{split}"


def train_counts(run: RunDir, y: np.ndarray, names: list[str]) -> np.ndarray:
    """Images per class in the run's train split (split.json; the scored ones without it)."""
    train = (
        [y_ for _, y_ in json.loads((run / RunDir.SPLIT).read_text())["splits"]["train"]]
        if (run / RunDir.SPLIT).is_file()
        else y.tolist()
    )
    return np.bincount(np.asarray(train, dtype=np.int64), minlength=len(names))


def class_mix(train: np.ndarray, y: np.ndarray, names: list[str], split: str) -> dict[str, Any]:
    """The scored split's class shares beside train's; `differs` when they are apart by more
    than MIX_DIFFERS in total variation (then accuracy here weighs the classes unlike train)."""
    scored = np.bincount(y, minlength=len(names))
    a, b = train / max(train.sum(), 1), scored / max(scored.sum(), 1)
    distance = float(np.abs(a - b).sum() / 2)
    shares = {
        c: [round(float(x), 4), round(float(z), 4)] for c, x, z in zip(names, a, b, strict=True)
    }
    out: dict[str, Any] = {"train_vs_scored": shares, "distance": round(distance, 4)}
    if len(y) and distance > MIX_DIFFERS:
        said = ", ".join(f"{c} {x:.0%} vs {z:.0%}" for c, (x, z) in shares.items())
        out["differs"] = (
            f"the {split} split's class mix differs from train's ({said}): its accuracy weighs "
            "the classes unlike training did; balanced accuracy weighs each class alike"
        )
    return out


def baseline(run: RunDir, y: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Always answering train's most common class, and chance: what a model must beat."""
    major = int(train_counts(run, y, names).argmax())
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
        "baseline": {**base, "beaten": accuracy > max(base["majority_accuracy"], base["chance"])},
        "class_mix": class_mix(train_counts(run, y, names), y, names, split),
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
    index, use = scored_index(run, root, own, split, source, predictor)
    probs, rows, skipped, cache = predict_index(
        predictor, index, cfg.cache_dir, cfg.workers, cfg.batch_size, progress
    )
    if index.multi_label:
        out = eval_folder(run, own, root, use)
        where = provenance(run, root, use, out, predictor, skipped)
        return evaluate_multilabel(run, index, rows, probs, out, where, calibration, label_issues)
    y = np.asarray(index.labels)[rows]
    cal, calib = calibrated(run, y, probs)
    probs = cal if calibration else probs
    metrics = compute_metrics(y, probs, names)
    metrics["calibration"] = {**calib, "applied": calibration and calib["temperature"] is not None}
    metrics["coverage"] = coverage(y, probs)
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


def scored_index(
    run: RunDir, root: Path, own: bool, split: str, source: LabelSource | None, p: Predictor
) -> tuple[ImageIndex, str]:
    """The images evaluate scores, on the run's classes, with a review's corrections."""
    index, use = split_index(run, root, own, split, source)
    index = align_classes(index, p.class_names, str(root))
    if p.meta.get("multi_label"):  # single-label data scored by a multi-label run too
        index = as_multi_label(index)
    if source and source.corrections:  # a review's decisions about the scored images
        from imgclf.data.corrections import correct_index, read_corrections

        index = correct_index(index, read_corrections(source.corrections, root))
    return index, use


def evaluate_multilabel(
    run: RunDir,
    index: ImageIndex,
    rows: np.ndarray,
    probs: np.ndarray,
    out: Path,
    where: dict[str, Any],
    calibration: bool = True,
    label_issues: bool = False,
) -> dict[str, Any]:
    """A multi-label run's metrics at its thresholds (0.5 each with calibration False), written
    as a single-label run's are; label_issues: missing and extra labels by its own model."""
    y = index.targets()[rows]
    metrics = {**score_multilabel(run, y, probs, index.class_names, calibration), **where}
    if label_issues:
        paths = [index.paths[r] for r in rows]
        found = run_label_issues(probs, y, paths, index.class_names, where["split"], out)
        metrics["label_issues"] = found
    write_multilabel(out, metrics, run.read_history(), y, probs)
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
        plot_coverage(metrics["coverage"], out / RunDir.COVERAGE)
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
