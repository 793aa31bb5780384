"""Where labels come from: class folders (ImageFolder), file names (Kaggle's `cat.12.jpg`, fastai's
`from_name_re`), or a CSV of path and label (Kaggle competitions, labelling tools, Hugging Face's
`imagefolder` metadata.csv). Every source gives the same thing: one ImageIndex per split."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.data.folder import (
    IMAGE_EXTENSIONS,
    SPLIT_NAMES,
    ImageIndex,
    display_path,
    find_splits,
    is_image_name,
    walk_files,
)
from imgclf.data.multi_labels import Row, is_multi_label, multi_indices
from imgclf.messages import UsageError, warn

# The leading word(s) before '.', '_' or '-' and a number: cat.12.jpg, dog_3.png,
# Abyssinian_100.jpg, american_bulldog_7.jpg (lazy: the label stops at the last such number).
DEFAULT_NAME_PATTERN = r"^(?P<label>.+?)[._-]\d+\.[A-Za-z0-9]+$"
PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "id")
LABEL_COLUMNS = ("label", "class", "category")
HF_METADATA = "metadata.csv"  # Hugging Face imagefolder's file beside the images


@dataclass(frozen=True)
class LabelSource:
    """How a data folder's images get their labels (recorded in config.json with the run)."""

    name_pattern: str = ""  # --label-from-name: a regex whose group `label` is the class
    csv: str = ""  # --labels FILE.csv
    path_column: str = ""
    label_column: str = ""
    corrections: str = ""  # --corrections FILE.csv (imgclf review): applied after the labels
    label_delim: str = ""  # --label-delim: what separates several classes in one cell
    multi_label: bool = False  # --multi-label: read the cells as class sets even when single

    @classmethod
    def from_config(cls, cfg: Any) -> LabelSource:
        """From a RunConfig or parsed options (label_from_name, labels, path_column,
        label_column; None: not given)."""
        csv_file = os.path.abspath(cfg.labels) if cfg.labels else ""
        fixes = getattr(cfg, "corrections", "") or ""
        return cls(
            cfg.label_from_name or "",
            csv_file,
            cfg.path_column or "",
            cfg.label_column or "",
            os.path.abspath(fixes) if fixes else "",
            getattr(cfg, "label_delim", "") or "",
            bool(getattr(cfg, "multi_label", False)),
        )

    def check(self) -> None:
        """Refuse, before anything is read, options that cannot work together."""
        if self.name_pattern and self.csv:
            raise UsageError("--label-from-name and --labels are two label sources: give one")
        if (self.path_column or self.label_column) and not self.csv:
            raise UsageError("--path-column/--label-column name columns of --labels FILE.csv")
        if self.name_pattern:
            name_regex(self.name_pattern)


def name_regex(pattern: str) -> re.Pattern[str]:
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise UsageError(f"--label-from-name {pattern!r}: not a regular expression ({e})") from None
    if "label" not in rx.groupindex:
        raise UsageError(
            f"--label-from-name {pattern!r}: the pattern needs a group named label, "
            r"e.g. '^(?P<label>[a-z]+)\.\d+\.jpg$'"
        )
    return rx


def read_splits(root: Path, source: LabelSource) -> dict[str, ImageIndex]:
    """The labelled images of each split (before exclusions, caps and the carved validation);
    a pool without splits is returned as 'train'. Class folders when no other source is given
    or found."""
    source.check()
    if source.csv:
        return from_csv(root, Path(source.csv), source)
    if source.name_pattern:
        return from_names(root, source.name_pattern)
    found = hf_metadata(root)
    if found:
        print(f"labels: from {display_path(found[0])} (Hugging Face imagefolder metadata)")
        return from_csv(root, found[0], source, split_dirs=found[1])
    return {}  # the caller scans class folders


def hf_metadata(root: Path) -> tuple[Path, dict[str, Path]] | None:
    """A metadata.csv with a label column at the root, or in each split folder (Hugging Face's
    layout); one without a label column holds other features and labels stay with the folders."""
    dirs = find_splits(root)
    per_split = {k: d / HF_METADATA for k, d in dirs.items() if (d / HF_METADATA).is_file()}
    if (root / HF_METADATA).is_file():
        candidates: list[tuple[Path, dict[str, Path]]] = [(root / HF_METADATA, {})]
    elif per_split:
        first = next(iter(per_split.values()))
        candidates = [(first, {k: dirs[k] for k in per_split})]
    else:
        return None
    path = candidates[0][0]
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    if not any(h.strip().lower() in LABEL_COLUMNS for h in header):
        return None
    return candidates[0]


def from_names(root: Path, pattern: str) -> dict[str, ImageIndex]:
    """Labels from file names, per split folder (train/, test/) or for the whole folder."""
    rx = name_regex(pattern)
    dirs = find_splits(root) or {"train": root}
    found: dict[str, list[tuple[str, str]]] = {}
    unmatched: list[str] = []
    for split, d in dirs.items():
        rows = found.setdefault(split, [])
        for folder, _, files in sorted(walk_files(str(d), str(root))):
            for f in files:
                if not is_image_name(f):
                    continue
                m = rx.search(f)
                label = (m.group("label") or "").strip() if m else ""
                if label:
                    rows.append((os.path.join(folder, f), label))
                else:
                    unmatched.append(os.path.join(folder, f))
    if not any(found.values()):
        some = f" (e.g. {display_path(os.path.basename(unmatched[0]))})" if unmatched else ""
        raise UsageError(
            f"{root}: --label-from-name {pattern!r} matched none of its {len(unmatched)} image "
            f"files{some}"
        )
    if unmatched:
        shown = ", ".join(display_path(os.path.relpath(p, root)) for p in unmatched[:3])
        warn(
            f"{len(unmatched)} image file(s) whose name --label-from-name does not match are "
            f"left out: {shown}{', ...' if len(unmatched) > 3 else ''}"
        )
    return _indices(found)


def _indices(found: dict[str, list[tuple[str, str]]]) -> dict[str, ImageIndex]:
    """(path, label) rows per split -> ImageIndex per split over one sorted class list."""
    names = sorted({label for rows in found.values() for _, label in rows})
    for name in names:
        if not name.isprintable():
            raise UsageError(f"label {name!r}: a class name must be printable text")
    pos = {n: i for i, n in enumerate(names)}
    out = {}
    for split, rows in found.items():
        rows = sorted(rows)
        out[split] = ImageIndex([p for p, _ in rows], [pos[y] for _, y in rows], names)
    return out


def _column(header: list[str], wanted: str, candidates: tuple[str, ...], what: str, path: Path):  # noqa: ANN202
    low = [h.strip().lower() for h in header]
    if wanted:
        if wanted.strip().lower() not in low:
            raise UsageError(
                f"{path}: no column {wanted!r} (columns: {', '.join(header) or 'none'})"
            )
        return low.index(wanted.strip().lower())
    for c in candidates:
        if c in low:
            return low.index(c)
    flag = "--path-column" if what == "path" else "--label-column"
    raise UsageError(
        f"{path}: no {what} column (looked for {', '.join(candidates)}; name it with {flag}); "
        f"columns: {', '.join(header) or 'none'}"
    )


def from_csv(
    root: Path, path: Path, source: LabelSource, split_dirs: dict[str, Path] | None = None
) -> dict[str, ImageIndex]:
    """Rows of (image, label[, split]); image paths relative to the data folder (or, for a
    Hugging Face metadata.csv in each split folder, to that folder). Cells naming several
    classes, or none, make the splits multi-label (data/multi_labels.py)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such labels file")
    columns = (source.path_column, source.label_column)
    if split_dirs:  # one metadata.csv per split folder
        rows = []
        for split, d in split_dirs.items():
            rows += _read_rows(d / HF_METADATA, d, root, *columns, split)
    else:
        rows = _read_rows(path, root, root, *columns, None)
    found = _check_rows(rows)
    if is_multi_label(found, source.label_delim, source.multi_label):
        return multi_indices(found, source.label_delim)
    for where, image in ((w, p) for v in found.values() for p, c, w in v if not c):
        raise UsageError(
            f"{where}: empty label for {os.path.relpath(image, root)!r} (--multi-label: an "
            "image may show none of the classes)"
        )
    return _indices({k: [(p, c.strip()) for p, c, _ in v] for k, v in found.items()})


def _read_rows(
    path: Path, base: Path, root: Path, path_col: str, label_col: str, split: str | None
) -> list[tuple[str, int, str, str, str]]:
    """(csv file, line, image path, label, split) per row, every row checked."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            table = list(csv.reader(f))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text (save the CSV as UTF-8)") from None
    if not table:
        raise UsageError(f"{path}: empty (expected a header row: path,label)")
    header = table[0]
    pc = _column(header, path_col, PATH_COLUMNS, "path", path)
    lc = _column(header, label_col, LABEL_COLUMNS, "label", path)
    low = [h.strip().lower() for h in header]
    sc = low.index("split") if "split" in low and split is None else None
    out, missing = [], []
    for line, row in enumerate(table[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # a blank line
        cell = row[pc].strip() if pc < len(row) else ""
        label = row[lc].strip() if lc < len(row) else ""
        where = f"{path} line {line}"
        if not cell:
            raise UsageError(f"{where}: no image path")
        image = _resolve(cell, base, root, where)
        if image is None:
            missing.append((line, cell))
            continue
        out.append((str(path), line, image, label, _split(row, sc, split, where)))
    if missing:
        line, cell = missing[0]
        more = f" (and {len(missing) - 1} more rows)" if len(missing) > 1 else ""
        raise UsageError(f"{path} line {line}: {cell!r} is not in {base}{more}")
    return out


def _resolve(cell: str, base: Path, root: Path, where: str) -> str | None:
    """The image file a CSV cell names (an id may leave the extension out), inside the data."""
    rel = cell.replace("\\", "/")
    if os.path.isabs(rel) or re.match(r"^[A-Za-z]:", rel):
        raise UsageError(f"{where}: {cell!r} is an absolute path; give it relative to {root}")
    target = os.path.normpath(os.path.join(base, rel))
    real_root = os.path.realpath(root)
    real = os.path.realpath(target)
    if not (real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)):
        raise UsageError(f"{where}: {cell!r} leaves the data folder {root}")
    if os.path.isfile(target):
        return target
    for ext in IMAGE_EXTENSIONS if not is_image_name(rel) else ():
        for e in (ext, ext.upper()):
            if os.path.isfile(target + e):
                return target + e
    return None


def _split(row: list[str], sc: int | None, split: str | None, where: str) -> str:
    if split is not None:
        return split
    if sc is None:
        return "train"  # one pool: validation is carved from it
    value = row[sc].strip().lower() if sc < len(row) else ""
    if value not in SPLIT_NAMES:
        raise UsageError(f"{where}: split {value!r} is not train, val or test")
    return SPLIT_NAMES[value]


def _check_rows(rows: list[tuple[str, int, str, str, str]]) -> dict[str, list[Row]]:
    """One label cell per image: the same file twice with two cells is refused, both rows
    named. Per split: (image, cell, where)."""
    first: dict[str, tuple[str, int, str, str]] = {}
    found: dict[str, list[Row]] = {}
    repeats = 0
    for csv_path, line, image, label, split in rows:
        key = os.path.realpath(image)
        if key in first:
            f0, l0, label0, split0 = first[key]
            if (label0, split0) != (label, split):
                raise UsageError(
                    f"{csv_path} lines {l0} and {line}: {display_path(image)} is labelled "
                    f"{label0!r} ({split0}) and {label!r} ({split})"
                )
            repeats += 1
            continue
        first[key] = (csv_path, line, label, split)
        found.setdefault(split, []).append((image, label, f"{csv_path} line {line}"))
    if repeats:
        warn(f"{repeats} repeated row(s) (same image, same label) counted once")
    return found
