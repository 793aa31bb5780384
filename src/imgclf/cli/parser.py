"""The `imgclf` command line: argparse built from RunConfig, one --option per field.

Exit status: 0 success, 1 problems found or the command failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import difflib

from imgclf import __version__
from imgclf.cli import (
    audit,
    bench,
    cache,
    compare,
    demo,
    evaluate,
    export,
    models,
    predict,
    preview,
    review,
    serve,
    suggest,
    train,
)
from imgclf.cli.dispatch import dispatch

# in the order `imgclf --help` lists them: data first, then run folders, then the rest
COMMANDS = (
    audit, review, preview, train, evaluate, predict, suggest, compare, export, serve, cache, bench,
    models,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imgclf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"imgclf {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub).set_defaults(func=command.run)
    # the demo runs other commands through this parser: handed to it, not imported by it
    demo.add(sub).set_defaults(func=demo.run, run_step=run)
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser (its usage), with the nearest option
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        command = sub.choices[args.command]
        known = [o for a in command._actions for o in a.option_strings]
        close = difflib.get_close_matches(extra[0].split("=")[0], known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        command.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    args.argv = list(argv)  # `train --replicas N` hands the same command line to torchrun
    return args


def run(argv: list[str]) -> int:
    return dispatch(parse_args(argv))
