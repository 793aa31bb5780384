"""corrections.csv: what a person decided about a data set's images (`imgclf review`), applied
to its labels by `train/audit/evaluate/preview --corrections FILE`. The user's files are never
moved, renamed or rewritten: a correction changes what imgclf reads, not what is on disk.

One row per decided image (the latest decision; undo removes it), columns:
path (relative to DATA, or absolute for an image added from outside it), given (its label then;
empty for an unlabelled image), decision, new_label, time (UTC, ISO 8601). Decisions:
- keep: the given label is right (nothing changes; recorded so the review resumes past it);
- relabel: the image is new_label (the suggestion taken, or another class picked);
- exclude: leave the image out of every split;
- label: an unlabelled image (from `imgclf suggest`) is new_label: added to train.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.data.folder import ImageIndex
from imgclf.files import write_text
from imgclf.messages import UsageError

COLUMNS = ("path", "given", "decision", "new_label", "time")
DECISIONS = ("keep", "relabel", "exclude", "label")


@dataclass
class Corrections:
    file: str
    relabel: dict[str, str] = field(default_factory=dict)  # real path -> class
    exclude: set[str] = field(default_factory=set)
    add: dict[str, str] = field(default_factory=dict)  # real path -> class (unlabelled before)
    kept: int = 0

    def summary(self) -> dict[str, object]:
        """What meta.json records of them."""
        return {
            "file": self.file,
            "relabelled": len(self.relabel),
            "excluded": len(self.exclude),
            "added": len(self.add),
            "kept": self.kept,
        }


def read_rows(path: Path) -> list[dict[str, str]]:
    """The file's rows (an absent file: none, as a review that has not started)."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """The whole file, atomically (a crash mid-write leaves the previous version)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows({k: r.get(k, "") for k in COLUMNS} for r in rows)
    write_text(path, buf.getvalue())


def read_corrections(file: str | Path, root: Path) -> Corrections:
    """The file's decisions resolved against DATA (root); one clear line for a file that is
    gone, a row without a decision we know, or a path outside DATA or missing."""
    path = Path(file)
    if not path.is_file():
        raise UsageError(f"--corrections {file}: no such file")
    out = Corrections(str(path.resolve()))
    real_root = os.path.realpath(root)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        have = reader.fieldnames or []
        missing = [c for c in ("path", "decision", "new_label") if c not in have]
        if missing:
            raise UsageError(f"{file}: not a corrections file (no {', '.join(missing)} column)")
        for line, row in enumerate(reader, start=2):
            _one(row, f"{file}:{line}", real_root, out)
    return out


def _one(row: dict[str, str], where: str, real_root: str, out: Corrections) -> None:
    decision, label = (row.get("decision") or "").strip(), (row.get("new_label") or "").strip()
    if decision not in DECISIONS:
        raise UsageError(f"{where}: decision {decision!r}; expected {', '.join(DECISIONS)}")
    if decision in ("relabel", "label") and not label:
        raise UsageError(f"{where}: decision {decision} needs a new_label")
    given = row.get("path") or ""
    real = os.path.realpath(os.path.join(real_root, given))
    if not os.path.isfile(real):
        raise UsageError(f"{where}: {given}: no such image")
    inside = real.startswith(real_root.rstrip(os.sep) + os.sep)
    if decision != "label" and not inside:
        raise UsageError(f"{where}: {given} is outside the data folder {real_root}")
    if decision == "keep":
        out.kept += 1
    elif decision == "exclude":
        out.exclude.add(real)
    elif decision == "relabel":
        out.relabel[real] = label
    else:
        out.add[real] = label


def apply_corrections(splits: dict[str, ImageIndex], c: Corrections) -> dict[str, ImageIndex]:
    """Relabel and exclude in every split, add the newly labelled images to train; a row about
    an image the data does not list is refused."""
    known = {os.path.realpath(p) for idx in splits.values() for p in idx.paths}
    new = _check_known(c, known)
    out = {k: correct_index(idx, c) for k, idx in splits.items()}
    train = out["train"]
    names = train.class_names
    out["train"] = ImageIndex(
        train.paths + new, train.labels + [names.index(c.add[p]) for p in new], names, train.origin
    )
    return out


def correct_index(index: ImageIndex, c: Corrections) -> ImageIndex:
    """One split scored by evaluate: its images relabelled or left out as the corrections say
    (rows about images of other splits, and added images, do not concern it)."""
    _check_classes(c, index.class_names)
    paths, labels = [], []
    for p, y in zip(index.paths, index.labels, strict=True):
        real = os.path.realpath(p)
        if real in c.exclude:
            continue
        new_label = c.relabel.get(real) or c.add.get(real)
        paths.append(p)
        labels.append(index.class_names.index(new_label) if new_label else y)
    return ImageIndex(paths, labels, index.class_names, index.origin)


def correct_jobs(jobs: list[tuple[str, str, str]], c: Corrections) -> list[tuple[str, str, str]]:
    """The audit's (path, split, class) jobs with the corrections applied."""
    _check_classes(c, sorted({cls for _, _, cls in jobs}))
    known: set[str] = set()
    out = []
    for p, split, cls in jobs:
        real = os.path.realpath(p)
        known.add(real)
        if real not in c.exclude:
            out.append((p, split, c.relabel.get(real) or c.add.get(real) or cls))
    into = "train" if any(s == "train" for _, s, _ in jobs) else (jobs[0][1] if jobs else "train")
    return out + [(p, into, c.add[p]) for p in _check_known(c, known)]


def _check_classes(c: Corrections, names: list[str]) -> None:
    """A class the data does not have is refused (a new class would change what the model's
    outputs mean)."""
    for label in sorted({*c.relabel.values(), *c.add.values()}):
        if label not in names:
            raise UsageError(
                f"{c.file}: class {label!r} is not one of the data's ({', '.join(names)})"
            )


def _check_known(c: Corrections, known: set[str]) -> list[str]:
    """Refuse a relabel or exclusion of an image the data does not list; the added images."""
    stray = sorted((set(c.relabel) | c.exclude) - known)
    if stray:
        raise UsageError(f"{c.file}: {stray[0]} is not one of the data's labelled images")
    return [p for p in c.add if p not in known]
