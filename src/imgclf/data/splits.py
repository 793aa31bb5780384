"""The train/val/test split of a data folder, whatever its labels come from: exclusions, a
per-class cap and the validation part carved from train, seeded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imgclf.data.corrections import apply_corrections, read_corrections
from imgclf.data.folder import (
    DEFAULT_VAL_FRACTION,
    ImageIndex,
    cap_per_class,
    find_splits,
    list_class_dirs,
    scan_class_folder,
    stratified_split,
)
from imgclf.data.label_sources import LabelSource, read_splits
from imgclf.messages import UsageError


def load_splits(
    root: str | Path,
    val_fraction: float = -1.0,
    seed: int = 42,
    exclude: set[str] | None = None,
    max_per_class: int = 0,
    validate_on: str = "auto",
    source: LabelSource | None = None,
) -> dict[str, ImageIndex]:
    """train/val/test indices over one class list.

    Layouts: root/{train,val,test}/<class>/ or root/<class>/. Validation is val/ when present;
    otherwise a stratified, seeded `val_fraction` of train (auto, -1: 20 %, fastai's valid_pct
    and the usual Keras validation_split). validate_on="test" validates on test/ as the
    tutorials do (the test accuracy then measures the split that chose the model). source:
    labels from file names or a CSV instead of class folders (data/label_sources.py).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    splits = read_splits(root, source or LabelSource())
    split_dirs = find_splits(root)
    if splits:
        names = next(iter(splits.values())).class_names
    elif split_dirs:
        names = sorted({c for p in split_dirs.values() for c in list_class_dirs(p)})
        splits = {k: scan_class_folder(p, names, fence=root) for k, p in split_dirs.items()}
    else:
        splits = {"train": scan_class_folder(root)}
        names = splits["train"].class_names
    if not names:
        raise ValueError(f"{root}: no class folders found (expected <class>/ or train/<class>/)")
    if source and source.corrections and any(v.multi_label for v in splits.values()):
        raise UsageError("--corrections (a review's decisions) apply to single-label data only")
    if source and source.corrections:  # a person's decisions (imgclf review) over the labels
        splits = apply_corrections(splits, read_corrections(source.corrections, root))
    if exclude:
        for k, idx in splits.items():
            splits[k] = idx.subset([i for i, p in enumerate(idx.paths) if p not in exclude])
    if max_per_class:
        splits = {k: cap_per_class(v, max_per_class, seed) for k, v in splits.items()}
    if "train" not in splits:
        raise ValueError(f"{root}: no train/ folder")
    _validation(splits, root, val_fraction, seed, validate_on)
    if len(splits["train"]) == 0:
        raise ValueError(f"{root}: the train split has no images")
    return splits


def _validation(
    splits: dict[str, ImageIndex], root: Path, val_fraction: float, seed: int, validate_on: str
) -> None:
    """Set splits["val"]: test (asked for), the val/ folder or rows, or carved from train."""
    if validate_on == "test":
        if "test" not in splits:
            raise UsageError(f"{root}: --validate-on test, but there is no test/ folder")
        splits["val"] = splits["test"]
    elif "val" not in splits:
        frac = val_fraction if val_fraction >= 0 else DEFAULT_VAL_FRACTION
        if frac > 0:
            splits["train"], splits["val"] = stratified_split(splits["train"], frac, seed)
            splits["val"].origin = "carved"
        else:  # start_run refuses it by name
            splits["val"] = ImageIndex(class_names=splits["train"].class_names)


def stored_index(rows: list[list[Any]], root: Path, names: list[str]) -> ImageIndex:
    """An ImageIndex from split.json's rows (multi-label rows hold lists of class indices)."""
    paths = [os.path.join(root, p) for p, _ in rows]
    if rows and isinstance(rows[0][1], list):
        return ImageIndex.from_sets(paths, [tuple(y) for _, y in rows], names)
    return ImageIndex(paths, [y for _, y in rows], names)
