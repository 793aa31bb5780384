"""Scan an image folder into (path, class index) lists like ImageFolder, plus seeded splits."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf.messages import warn

# torchvision's IMG_EXTENSIONS plus GIF (decoded as its first frame).
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
)
# Folder levels below a data set's root that are read. Real data sets nest a few levels; 2,000
# levels made every lookup slow (realpath is linear in the depth) and Python's recursion fail.
MAX_DEPTH = 64
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def display_path(path: str | os.PathLike) -> str:
    """A printable form of a path whose bytes may not be UTF-8."""
    return os.fsencode(path).decode("utf-8", errors="replace")


@dataclass
class ImageIndex:
    """One split: image paths, their class indices and the class names they index. A
    multi-label split also has `sets` (each image's classes, possibly none); its `labels` are
    then strata for the seeded splits (each image's rarest class; len(class_names): none)."""

    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    # where a split came from when it was not its own folder or CSV rows ("carved": part of
    # train held out); for the log line, not compared
    origin: str = field(default="", compare=False)
    sets: list[tuple[int, ...]] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def from_sets(
        cls, paths: list[str], sets: list[tuple[int, ...]], names: list[str]
    ) -> ImageIndex:
        """A multi-label split whose strata need no class frequencies (each image's lowest
        class index; len(names): none), for indices read back rather than split anew."""
        return cls(paths, [min(s) if s else len(names) for s in sets], names, sets=sets)

    @property
    def multi_label(self) -> bool:
        return self.sets is not None

    def counts(self) -> list[int]:
        """Images per class (multi-label: images in which the class is present)."""
        out = [0] * len(self.class_names)
        for ys in self.sets if self.sets is not None else ([y] for y in self.labels):
            for y in ys:
                out[y] += 1
        return out

    def targets(self) -> np.ndarray:
        """What a model learns: class indices (int64), or multi-label 0/1 rows (float32)."""
        if self.sets is None:
            return np.asarray(self.labels, dtype=np.int64)
        out = np.zeros((len(self.sets), len(self.class_names)), np.float32)
        for i, ys in enumerate(self.sets):
            out[i, list(ys)] = 1
        return out

    def subset(self, keep: list[int]) -> ImageIndex:
        sets = None if self.sets is None else [self.sets[i] for i in keep]
        return ImageIndex(
            [self.paths[i] for i in keep],
            [self.labels[i] for i in keep],
            self.class_names,
            sets=sets,
        )


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def link_problem(link: str, here: str, top: str, fence: str | None) -> str:
    """Why a symlinked folder must not be followed, or '' (all real paths)."""
    if _inside(here, link):
        return "points to a folder that contains it (a loop)"
    if fence and _inside(link, fence) and not _inside(link, top):
        return "points into another class or split folder (its images would get this label)"
    return ""


def walk_files(
    top: str, fence: str | None = None, refused: list[tuple[str, str]] | None = None
) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(followlinks=True) that visits each real directory once, so symlink loops end.

    Yields (dirpath, subdirs, files) with hidden entries (leading '.') dropped. A symlinked
    folder that leads back up, or (with `fence`, the data set's root) into another class or
    split, is not followed: it would index the same images under a wrong label. Those links
    are appended to `refused` as (path, reason).
    """
    top_real = os.path.realpath(top)
    fence = os.path.realpath(fence) if fence else None
    refused = [] if refused is None else refused
    seen: set[tuple[int, int]] = set()
    stack = [(top, 0)]
    while stack:
        d, depth = stack.pop()
        try:
            st = os.stat(d)
        except OSError:
            continue  # dangling link or a loop the OS refuses (ELOOP)
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        dirs, files = _sort_entries(entries, os.path.realpath(d), top_real, fence, refused)
        if depth >= MAX_DEPTH and dirs:
            refused += [(os.path.join(d, s), f"nested over {MAX_DEPTH} folders deep") for s in dirs]
            dirs = []
        yield d, sorted(dirs), sorted(files)
        stack.extend((os.path.join(d, s), depth + 1) for s in sorted(dirs, reverse=True))


def _sort_entries(
    entries: list[os.DirEntry], here: str, top: str, fence: str | None, refused: list
) -> tuple[list[str], list[str]]:
    """(folder names, file names) of one folder's visible entries; refused links go to refused."""
    dirs, files = [], []
    for e in entries:
        if e.name.startswith("."):
            continue
        try:
            is_dir = e.is_dir()
            link = is_dir and e.is_symlink()
            why = link_problem(os.path.realpath(e.path), here, top, fence) if link else ""
        except OSError:
            is_dir, why = False, ""
        if why:
            refused.append((e.path, why))
            continue
        (dirs if is_dir else files).append(e.name)
    return dirs, files


def list_class_dirs(root: str | Path) -> list[str]:
    root = str(root)
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def scan_class_folder(
    root: str | Path, class_names: list[str] | None = None, fence: str | Path | None = None
) -> ImageIndex:
    """Index root/<class>/**/<image> in torchvision.datasets.ImageFolder's order.

    Symlinked folders are followed unless they lead into another class or split under
    `fence` (the data set's root; default `root`), or back up: see walk_files."""
    fence = str(fence or root)
    names = list_class_dirs(root) if class_names is None else class_names
    index = ImageIndex(class_names=names)
    refused: list[tuple[str, str]] = []
    for y, name in enumerate(names):
        target = os.path.join(str(root), name)
        if not os.path.isdir(target):
            continue
        # ImageFolder sorts os.walk's (root, dirs, files) tuples, i.e. by directory path.
        for d, _, files in sorted(walk_files(target, fence, refused)):
            for f in files:
                if is_image_name(f):
                    index.paths.append(os.path.join(d, f))
                    index.labels.append(y)
    for path, why in refused[:5]:
        warn(f"{display_path(path)}: folder not read: {why}")
    if len(refused) > 5:
        warn(f"... and {len(refused) - 5} more folders not read (imgclf audit lists them)")
    return index


def find_splits(root: str | Path) -> dict[str, Path]:
    """Split folders under root ({'train': root/train, ...}); empty when root holds classes."""
    root = Path(root)
    found = {}
    for d in list_class_dirs(root):
        if d.lower() in SPLIT_NAMES:
            found[SPLIT_NAMES[d.lower()]] = root / d
    return found if "train" in found or "test" in found else {}


def stratified_split(
    index: ImageIndex, fraction: float, seed: int
) -> tuple[ImageIndex, ImageIndex]:
    """Hold out `fraction` of every class (at least one image when a class has two or more)."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(index.labels):
        by_class.setdefault(y, []).append(i)
    train, val = [], []
    for y in sorted(by_class):
        members = by_class[y][:]
        rng.shuffle(members)
        n_val = round(len(members) * fraction)
        if fraction > 0 and len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)
        val += members[:n_val]
        train += members[n_val:]
    return index.subset(sorted(train)), index.subset(sorted(val))


def cap_per_class(index: ImageIndex, n: int, seed: int) -> ImageIndex:
    """A seeded subset with at most n images per class (for quick runs and benchmarks)."""
    if n <= 0:
        return index
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(index.labels):
        by_class.setdefault(y, []).append(i)
    keep = [
        i
        for y in sorted(by_class)
        for i in sorted(rng.sample(by_class[y], min(n, len(by_class[y]))))
    ]
    return index.subset(sorted(keep))


# Validation carved from train when there is no val/: the test split never chooses the model.
# 20 % is fastai's valid_pct default: on 3,000 images, 600 measure accuracy to about +-2 points.
DEFAULT_VAL_FRACTION = 0.2


def exclude_text(paths: list[str]) -> str:
    """One path per line; a path a line cannot hold as is (a newline, a leading '#' or '"',
    trailing blanks) is written as a JSON string, which read_exclude_list decodes."""

    def line(p: str) -> str:
        plain = not any(c in p for c in "\n\r") and p[:1] not in ('"', "#") and p == p.rstrip()
        return p if plain else json.dumps(p)

    return "".join(line(p) + "\n" for p in paths)


def read_exclude_list(path: str | Path | None) -> set[str]:
    if not path:
        return set()
    lines = Path(path).read_text(errors="surrogateescape").split("\n")
    out = set()
    for ln in lines:
        if ln.startswith('"'):
            try:
                out.add(json.loads(ln))
                continue
            except ValueError:
                raise ValueError(f"{path}: bad quoted line {ln[:60]!r}") from None
        if ln and not ln.startswith("#"):
            out.add(ln)
    return out
