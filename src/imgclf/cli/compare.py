"""`imgclf compare RUN...`: a table and a bar chart over runs."""

from __future__ import annotations

import argparse

from imgclf.messages import printable


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    c = sub.add_parser("compare", help="table and bar chart over runs")
    c.add_argument("runs", nargs="+", help="run folders")
    c.add_argument("--plot", metavar="PATH", default="runs/compare.png", help="bar chart PNG")
    return c


def run(args: argparse.Namespace) -> int:
    from imgclf.evaluation.compare import compare_runs, format_table, mixed_splits

    rows = compare_runs(args.runs, args.plot)
    print(printable(format_table(rows), lines=True))
    if warning := mixed_splits(rows):
        print(warning)
    print(f"\nwrote {args.plot}")
    return 0
