"""`imgclf audit`: decode every image of a folder in parallel and report what is wrong with it.
Only reads files. Holds one record per file (path, hash, size), never the pixels."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.audit.inspect import inspect_all
from imgclf.audit.leaks import near_leaks
from imgclf.audit.shards import SOLO, Group, gathered, share
from imgclf.data.balance import imbalance_warning
from imgclf.data.folder import display_path, find_splits, is_image_name, list_class_dirs, walk_files
from imgclf.data.label_sources import LabelSource, read_splits
from imgclf.messages import UsageError

TINY_SIDE = 8  # pixels; smaller images survive decoding but carry almost nothing to learn from
# Longer side / shorter side: past this the centre crop keeps a sliver of the picture (panoramas
# reach ~6:1; a 1 x 1,000,000 px strip is an attack, not a photo).
MAX_ASPECT = 10


SET_SEP = "\n"  # joins a multi-label image's classes (no class name holds it: names are printable)
HIDDEN = ("bad_raw", "readable_raw", "leaks_raw", "classes_raw", "issues_raw", "outliers_raw")


@dataclass
class AuditReport:
    root: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> readable
    images: int = 0
    unreadable: list[dict[str, str]] = field(default_factory=list)
    modes: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    size_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    duplicates_within: list[list[str]] = field(default_factory=list)
    duplicates_across: list[list[str]] = field(default_factory=list)  # same bytes in 2+ splits
    missing_classes: dict[str, list[str]] = field(default_factory=dict)
    empty_class_folders: list[str] = field(default_factory=list)
    non_image_files: int = 0
    non_image_examples: list[str] = field(default_factory=list)
    animated: list[str] = field(default_factory=list)
    tiny: list[str] = field(default_factory=list)
    extreme_aspect: list[str] = field(default_factory=list)  # "path (W x H)"
    # folders not followed: symlinks that loop or lead into another class/split, or too deep
    refused_links: list[dict[str, str]] = field(default_factory=list)
    # near-duplicates (audit --near-duplicates): {"members": [{path, split}], score, method}
    near_duplicates_across: list[dict[str, Any]] = field(default_factory=list)
    near_duplicates_within: list[dict[str, Any]] = field(default_factory=list)
    # audit --label-issues: suspects ({path, split, given, suggested, score, confident}), outliers
    # ({path, split, score}) and their summary (features, counts by split and class pair)
    label_issues: list[dict[str, Any]] = field(default_factory=list)
    outliers: list[dict[str, Any]] = field(default_factory=list)
    label_issue_summary: dict[str, Any] = field(default_factory=dict)
    # the unreadable paths as the OS spells them (not display-safe), for the exclude list
    bad_raw: list[str] = field(default_factory=list, repr=False)
    # readable files as (raw path, split), and leak members to exclude (--exclude-leaks)
    readable_raw: list[tuple[str, str]] = field(default_factory=list, repr=False)
    leaks_raw: list[str] = field(default_factory=list, repr=False)
    classes_raw: dict[str, str] = field(default_factory=dict, repr=False)  # raw path -> class
    multi_label: bool = False  # classes_raw then holds each image's classes joined by SET_SEP
    issues_raw: list[str] = field(default_factory=list, repr=False)  # --exclude-issues
    outliers_raw: list[str] = field(default_factory=list, repr=False)

    def warnings(self) -> list[str]:
        """What a user should know but need not fix (the exit status stays 0): imbalance is
        often the data's truth, and the trainer has remedies for it."""
        return [
            told
            for split, per_class in self.counts.items()
            if (told := imbalance_warning(list(per_class), list(per_class.values()), split))
        ]

    def problems(self) -> list[str]:
        out = []
        if self.unreadable:
            out.append(f"{len(self.unreadable)} unreadable image file(s)")
        if self.duplicates_across:
            out.append(f"{len(self.duplicates_across)} image(s) duplicated across splits (leak)")
        if self.near_duplicates_across:
            held = near_leaks(self.near_duplicates_across, {"test", "val"})
            out.append(
                f"{len(self.near_duplicates_across)} near-duplicate group(s) across splits (leak:"
                f" {len(held)} held-out image(s) with a near-duplicate in train)"
            )
        if self.near_duplicates_within:
            out.append(f"{len(self.near_duplicates_within)} near-duplicate group(s) within a split")
        if self.duplicates_within:
            out.append(f"{len(self.duplicates_within)} group(s) of duplicate images within a split")
        for split, names in self.missing_classes.items():
            out.append(f"split {split!r} lacks class(es): {', '.join(names)}")

        if self.refused_links:
            out.append(
                f"{len(self.refused_links)} folder(s) not followed (a symlink loop, a link "
                "into another class or split, or nested too deep)"
            )
        if self.extreme_aspect:
            out.append(
                f"{len(self.extreme_aspect)} image(s) with an aspect ratio over {MAX_ASPECT}:1"
            )
        if self.empty_class_folders:
            out.append(f"{len(self.empty_class_folders)} empty class folder(s)")
        if self.images == 0:
            out.append("no images found")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for hidden in HIDDEN:
            del d[hidden]
        d["problems"] = self.problems()
        d["warnings"] = self.warnings()
        return d


def _collect_jobs(root: Path, report: AuditReport) -> list[tuple[str, str, str]]:
    split_dirs = find_splits(root) or {"all": root}
    classes = {s: list_class_dirs(p) for s, p in split_dirs.items()}
    every = sorted({c for names in classes.values() for c in names})
    if len(split_dirs) > 1:
        for s in split_dirs:
            missing = [c for c in every if c not in classes[s]]
            if missing:
                report.missing_classes[s] = missing
    jobs = []
    refused: list[tuple[str, str]] = []
    for split, sdir in split_dirs.items():
        report.counts[split] = {c: 0 for c in classes[split]}
        for entry in sorted(os.listdir(sdir)):  # files beside the class folders are not samples
            p = os.path.join(sdir, entry)
            if not entry.startswith(".") and os.path.isfile(p):
                _note_non_image(report, p)
        for cls in classes[split]:
            n_images = 0
            for d, _, files in walk_files(os.path.join(sdir, cls), str(root), refused):
                for f in files:
                    p = os.path.join(d, f)
                    if is_image_name(f):
                        jobs.append((p, split, cls))
                        n_images += 1
                    else:
                        _note_non_image(report, p)
            if n_images == 0:
                report.empty_class_folders.append(display_path(os.path.join(sdir, cls)))
    report.refused_links = [{"path": display_path(p), "reason": why} for p, why in refused]
    return jobs


def _note_readable(report: AuditReport, rec: dict[str, Any], shown: str) -> None:
    report.images += 1
    report.readable_raw.append((rec["path"], rec["split"]))
    report.classes_raw[rec["path"]] = rec["class"]
    per_split = report.counts.setdefault(rec["split"], {})  # a correction may bring a class
    for c in rec["class"].split(SET_SEP) if report.multi_label else [rec["class"]]:
        if c:  # a multi-label image may show none of the classes
            per_split[c] = per_split.get(c, 0) + 1
    if rec["frames"] > 1:
        report.animated.append(shown)
    w, h = rec["width"], rec["height"]
    if min(w, h) < TINY_SIDE:
        report.tiny.append(shown)
    if max(w, h) > MAX_ASPECT * max(min(w, h), 1):
        report.extreme_aspect.append(f"{shown} ({w} x {h})")


def _note_non_image(report: AuditReport, path: str) -> None:
    report.non_image_files += 1
    if len(report.non_image_examples) < 20:
        report.non_image_examples.append(display_path(path))


def _describe(values: list[int]) -> dict[str, float]:
    a = np.sort(np.asarray(values, dtype=np.float64))  # the same sums whatever the order
    if a.size == 0:
        return {}
    q = np.percentile(a, [25, 50, 75])
    return {
        "count": int(a.size),
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "min": float(a.min()),
        "25%": float(q[0]),
        "50%": float(q[1]),
        "75%": float(q[2]),
        "max": float(a.max()),
    }


def _labelled_jobs(
    root: Path, source: LabelSource, report: AuditReport
) -> list[tuple[str, str, str]]:
    """The images a file-name or CSV label source names, with their split and class."""
    splits = read_splits(root, source)
    jobs = []
    for split, idx in splits.items():
        report.counts[split] = {c: 0 for c in idx.class_names}
        if idx.sets is not None:  # multi-label: the image's classes in one string
            report.multi_label = True
            jobs += [
                (p, split, SET_SEP.join(idx.class_names[y] for y in ys))
                for p, ys in zip(idx.paths, idx.sets, strict=True)
            ]
            continue
        jobs += [(p, split, idx.class_names[y]) for p, y in zip(idx.paths, idx.labels, strict=True)]
    return jobs


def _jobs(root: Path, source: LabelSource, report: AuditReport) -> list[tuple[str, str, str]]:
    """(path, split, class) of every image, from its label source, with --corrections."""
    jobs = _labelled_jobs(root, source, report) or _collect_jobs(root, report)
    if source.corrections and report.multi_label:
        raise UsageError("--corrections (a review's decisions) apply to single-label data only")
    if source.corrections:
        from imgclf.data.corrections import correct_jobs, read_corrections

        jobs = correct_jobs(jobs, read_corrections(source.corrections, root))
    return jobs


def _fold(report: AuditReport, records: Iterator[dict[str, Any]]) -> tuple:
    """Each file's record into the report; returns the widths, heights, files by hash, modes and
    formats that the report summarises."""
    widths: list[int] = []
    heights: list[int] = []
    by_hash: dict[str, list[tuple[str, str]]] = defaultdict(list)
    modes: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    for rec in records:
        shown = display_path(rec["path"])
        if "hash" in rec:
            by_hash[rec["hash"]].append((rec["split"], shown))
        if "error" in rec:
            report.bad_raw.append(rec["path"])
            report.unreadable.append(
                {
                    "path": shown,
                    "split": rec["split"],
                    "class": rec["class"],
                    "reason": rec["error"],
                }
            )
            continue
        _note_readable(report, rec, shown)
        widths.append(rec["width"])
        heights.append(rec["height"])
        modes[rec["mode"]] += 1
        formats[rec["format"]] += 1
    return widths, heights, by_hash, modes, formats


def run_audit(
    root: str | Path,
    workers: int = 2,
    progress: bool = True,
    source: LabelSource | None = None,
    group: Group = SOLO,
) -> tuple[AuditReport, dict]:
    """Audit a folder (labels from its class folders, or `source`). Returns the report and the
    raw width/height lists (for the histogram). In a torchrun group the files are shared out."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    report = AuditReport(root=display_path(root))
    jobs = _jobs(root, source or LabelSource(), report)
    records = inspect_all(jobs, workers, progress)
    if group.world > 1:  # each rank inspects its share; every rank folds all of them alike
        mine = [jobs[i] for i in share(len(jobs), group)]
        records = iter(
            gathered(list(inspect_all(mine, workers, progress and group.rank == 0)), group)
        )
    widths, heights, by_hash, modes, formats = _fold(report, records)
    _group_duplicates(report, by_hash)
    report.readable_raw.sort()
    report.unreadable.sort(key=lambda u: u["path"])
    report.bad_raw.sort()
    report.extreme_aspect.sort()
    report.duplicates_within.sort()
    report.duplicates_across.sort()
    report.modes, report.formats = dict(modes.most_common()), dict(formats.most_common())
    report.size_stats = {"width": _describe(widths), "height": _describe(heights)}
    return report, {"width": widths, "height": heights}


def _group_duplicates(report: AuditReport, by_hash: dict[str, list[tuple[str, str]]]) -> None:
    """Files with the same bytes: within one split, or across splits (a leak)."""
    for group in by_hash.values():
        if len(group) > 1:
            paths = sorted(p for _, p in group)
            splits = {s for s, _ in group}
            (report.duplicates_across if len(splits) > 1 else report.duplicates_within).append(
                paths
            )
