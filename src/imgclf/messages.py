"""Warnings for the user: one line on stderr, the same prefix everywhere."""

from __future__ import annotations

import sys


def warn(msg: str) -> None:
    print(f"imgclf: warning: {msg}", file=sys.stderr, flush=True)
