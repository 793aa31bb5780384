"""argparse types shared by the command parsers."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type for counts of at least one: a bad value is a usage error naming the
    option."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
