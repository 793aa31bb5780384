"""Which images a run is scored on, and the predictor's probabilities for them: shared by
evaluate and by the calibration that ends every training run (kept apart from evaluate's
reports and plots, whose imports a training run need not pay for)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from imgclf.data.cache import DecodedCache, open_cache
from imgclf.data.folder import ImageIndex, display_path, find_splits, scan_class_folder
from imgclf.data.label_sources import LabelSource, read_splits
from imgclf.data.splits import load_splits, stored_index
from imgclf.messages import UsageError, warn
from imgclf.predictor import Predictor
from imgclf.runs import RunDir


def align_classes(index: ImageIndex, class_names: list[str], where: str) -> ImageIndex:
    """Map another folder's labels onto the run's classes by name."""
    unknown = [c for c in index.class_names if c not in class_names]
    if unknown:
        raise ValueError(f"{where}: classes unknown to the model: {', '.join(unknown)}")
    remap = [class_names.index(c) for c in index.class_names]
    if index.sets is not None:
        sets = [tuple(sorted(remap[y] for y in s)) for s in index.sets]
        return ImageIndex.from_sets(index.paths, sets, class_names)
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


def split_index(
    run: RunDir, root: Path, own: bool, split: str, source: LabelSource | None = None
) -> tuple[ImageIndex, str]:
    """The images to score. The run's own val and train are exactly those training used (its
    split.json: exclusions, caps and the carved part included), its labels as it recorded them;
    other data is split anew, labelled by `source` (default: its class folders)."""
    cfg = run.read_config()
    if own and split in ("val", "train") and (run / RunDir.SPLIT).is_file():
        stored = json.loads((run / RunDir.SPLIT).read_text())["splits"][split]
        return stored_index(stored, root, run.read_meta()["class_names"]), split
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
