"""argparse types shared by the command parsers."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type for counts of at least one: a bad value is a usage error naming the
    option."""
    return _at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type for counts where 0 means "choose for me"."""
    return _at_least(text, 0)


def _at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value
