"""`imgclf demo`: audit -> preview -> train -> evaluate -> predict on scikit-learn's digits, as a
user would type them, each step printed before it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from imgclf.cli.options import positive_int


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    d = sub.add_parser("demo", help="audit, preview, train, evaluate, predict on sklearn digits")
    d.add_argument("--out", metavar="PATH", default="runs/demo", help="folder for it all")
    d.add_argument("--epochs", type=positive_int, metavar="N", default=8, help="of training")
    return d


def run(args: argparse.Namespace) -> int:
    """Each step goes through args.run_step (the parser's `run`, handed over by parser.py so
    that this module need not import the parser that imports it)."""
    from imgclf.data.digits import demo_steps
    from imgclf.runs import RunDir

    out = Path(args.out)
    for argv in demo_steps(out, args.epochs):
        print(f"\n$ imgclf {' '.join(argv)}", flush=True)
        status = args.run_step(argv)
        if status != 0:
            print(f"demo step failed with status {status}")
            return status
    print(f"\nDemo done. Open the report: {out / 'run-cnn' / RunDir.REPORT}")
    return 0
