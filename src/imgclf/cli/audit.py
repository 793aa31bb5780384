"""`imgclf audit DATA`: decode every image and report problems (exit 1 when there are any)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from imgclf.cli.options import add_label_options, default_out
from imgclf.messages import UsageError, printable

if TYPE_CHECKING:
    from imgclf.audit.scan import AuditReport
    from imgclf.audit.shards import Group


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    a = sub.add_parser(
        "audit",
        help="decode every image and report problems",
        description="Exit status: 0 clean, 1 problems found, 2 usage error. Label issues and "
        "outliers (--label-issues) are suspects for a person to look at, not problems: they "
        "never change the exit status.",
    )
    a.add_argument("path", help="image folder (train/ test/ val/ of <class>/, or <class>/), or zip")
    a.add_argument("--json", metavar="PATH", default="", help="write the whole report as JSON here")
    a.add_argument(
        "--exclude-list", metavar="PATH", default="", help="write unreadable paths here (for train)"
    )
    a.add_argument(
        "--out",
        metavar="PATH",
        default="",
        help="folder for report, exclude list and histogram (default runs/audit-<folder name>)",
    )
    a.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=os.cpu_count() or 2,
        help="decoding processes (default: the CPU count)",
    )
    a.add_argument("--cache-dir", metavar="PATH", default="", help="where a zip is unpacked")
    a.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 when problems are found (the report still lists them): for torchrun, "
        "which reports a rank's exit 1 as a failed worker, and for pipelines reading --json",
    )
    _add_finders(a)
    add_label_options(a)
    return a


def _add_finders(a: argparse.ArgumentParser) -> None:
    """The optional passes over features (near-duplicates, label issues) and their exclusions."""
    a.add_argument(
        "--near-duplicates",
        action="store_true",
        help="also find re-encoded, resized, cropped, shifted or recoloured copies (hash + "
        "EfficientNet-Lite0 features); writes near_duplicate_leaks.png",
    )
    a.add_argument(
        "--exclude-leaks",
        action="store_true",
        help="add the test side of every cross-split duplicate group to the exclude list",
    )
    a.add_argument(
        "--label-issues",
        action="store_true",
        help="also find suspect labels (confident learning on 5-fold out-of-sample probabilities "
        "of a linear head on EfficientNet-Lite features) and outliers; writes label_issues.png "
        "and outliers.png. Suspects are listed but do not change the exit status",
    )
    a.add_argument(
        "--exclude-issues",
        action="store_true",
        help="add every suspect label and outlier to the exclude list (needs --label-issues)",
    )


def run(args: argparse.Namespace) -> int:
    """One process, or every rank of `torchrun ... -m imgclf audit` (rank 0 writes the report)."""
    from imgclf.settings import launched_by_torchrun

    if not launched_by_torchrun():
        from imgclf.audit.shards import SOLO

        return _run(args, SOLO)
    from imgclf import backends

    with backends.get("torch").object_group() as group:
        return _run(args, group)


def _run(args: argparse.Namespace, group: Group) -> int:
    from imgclf.audit.leaks import leak_members
    from imgclf.audit.report import format_audit, write_audit_outputs
    from imgclf.audit.scan import run_audit
    from imgclf.data.label_sources import LabelSource
    from imgclf.data.sources import resolve_data

    if not Path(args.path).exists():
        print(f"imgclf audit: error: {args.path}: no such file or folder", file=sys.stderr)
        return 2
    if args.exclude_issues and not args.label_issues:
        raise UsageError("--exclude-issues needs --label-issues")
    if args.label_issues:
        from imgclf.audit.label_issues import require_weights

        require_weights()
    root = resolve_data(args.path, args.cache_dir)
    progress = sys.stderr.isatty() and group.rank == 0
    report, sizes = run_audit(root, args.workers, progress, LabelSource.from_config(args), group)
    out = Path(args.out) if args.out else default_out("audit", args.path)
    sheet = _near_duplicates(report, args, out, group) if args.near_duplicates else []
    if args.label_issues:
        sheet += _label_issues(report, args, out, group)
    if group.rank != 0:
        return 0  # this rank's share is in the cache; rank 0 reports
    if args.exclude_leaks:
        report.leaks_raw = leak_members(report)
    written = write_audit_outputs(report, out, args.json, args.exclude_list) + sheet
    if sizes["width"]:
        from imgclf.viz import plot_size_histogram

        written.append(
            plot_size_histogram(sizes["width"], sizes["height"], out / "size_histogram.png")
        )
    print(printable(format_audit(report), lines=True))
    print(printable("\nwrote " + ", ".join(str(p) for p in written), lines=True))
    return 1 if report.problems() and not args.exit_zero else 0


def _near_duplicates(
    report: AuditReport, args: argparse.Namespace, out: Path, group: Group
) -> list[Path]:
    from imgclf.audit.leaks import exact_pairs
    from imgclf.audit.near_duplicates import contact_sheet, find_near_duplicates, small_sources

    found = find_near_duplicates(
        report.readable_raw,
        exact_pairs(report),
        args.cache_dir,
        args.workers,
        sys.stderr.isatty() and group.rank == 0,
        small_sources(report.size_stats),
        group,
    )
    if found is None:
        return []
    report.near_duplicates_across, report.near_duplicates_within = found.across(), found.within()
    if not found.across():
        return []
    return [contact_sheet(found.across(), out / "near_duplicate_leaks.png")]


def _label_issues(
    report: AuditReport, args: argparse.Namespace, out: Path, group: Group
) -> list[Path]:
    from imgclf.audit.label_issues import issue_sheet, label_audit

    label_audit(
        report, args.cache_dir, args.workers, sys.stderr.isatty() and group.rank == 0, group
    )
    if group.rank != 0:
        return []
    if not args.exclude_issues:
        report.issues_raw, report.outliers_raw = [], []
    sheets = []
    if report.label_issues:
        title = "Suspect labels (given -> suggested, score), most suspect first"
        sheets.append(issue_sheet(report.label_issues, out / "label_issues.png", title))
    if report.outliers:
        title = "Outliers (k-NN distance in feature space), farthest first"
        sheets.append(issue_sheet(report.outliers, out / "outliers.png", title))
    return sheets
