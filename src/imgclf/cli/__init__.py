"""The `imgclf` command: parser.py builds argparse from one module per command (each has
`add`, its parser, and `run`, its handler); dispatch.py turns failures into exit statuses."""

from __future__ import annotations

import os
import sys

from imgclf.malloc import keep_freed_memory


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # once, before anything imports keras
    if argv is None:  # a real process start (console script / python -m), not a library call
        argv = sys.argv[1:]
        keep_freed_memory()  # before the first image batch is allocated
    from imgclf.cli.parser import run

    return run(argv)
