"""The `imgclf` command: parse (parser.py), then run one handler (commands.py)."""

from __future__ import annotations

import os
import sys

# glibc's malloc hands freed image buffers back to the OS and faults them in again each batch
# (~40 % of CPU time measured here); keeping them must be set before the process starts.
TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"
HEAVY = {"train", "evaluate", "predict", "bench", "demo", "preview", "audit"}


def _reexec_with_tunables(argv: list[str]) -> None:
    if (
        sys.platform != "linux"
        or os.environ.get("GLIBC_TUNABLES")
        or os.environ.get("IMGCLF_NO_REEXEC")
        or not argv
        or argv[0] not in HEAVY
    ):
        return
    env = {**os.environ, "GLIBC_TUNABLES": TUNABLES, "IMGCLF_NO_REEXEC": "1"}
    os.execve(sys.executable, [sys.executable, "-m", "imgclf", *argv], env)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # once, before anything imports keras
    if argv is None:  # a real process start (console script / python -m), not a library call
        argv = sys.argv[1:]
        _reexec_with_tunables(argv)
    from imgclf.cli.commands import dispatch
    from imgclf.cli.parser import parse_args

    return dispatch(parse_args(argv))
