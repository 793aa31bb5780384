"""What the environment says, read in one place: the limits a user raises for unusual data
(IMGCLF_* variables, read once, on first use rather than at import) and the torchrun rank."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    # A photo is a few MB; a larger "image" is refused before it is read whole (audit,
    # training, predict). Raise it for scans and TIFF mosaics.
    max_image_bytes: int
    # Unpacking a zip or tar stops past these (a user with a 100 GB zip raises them).
    max_unpack_bytes: int
    max_unpack_entries: int
    # How long a torchrun process waits for the others (rank 0 building the cache, say).
    dist_timeout_min: float


@functools.cache
def settings() -> Settings:
    return Settings(
        max_image_bytes=int(_number("IMGCLF_MAX_IMAGE_MB", 50) * 2**20),
        max_unpack_bytes=int(_number("IMGCLF_MAX_UNPACK_BYTES", 64 * 2**30)),
        max_unpack_entries=int(_number("IMGCLF_MAX_UNPACK_ENTRIES", 5_000_000)),
        dist_timeout_min=_number("IMGCLF_DIST_TIMEOUT_MIN", 60),
    )


def _number(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"environment variable {name}={text!r} must be more than 0")
    return value


def rank() -> int:
    """This process's rank in a torchrun group (0 outside one): rank 0 writes the run's files
    and prints."""
    return int(os.environ.get("RANK", "0") or 0)


def launched_by_torchrun() -> bool:
    """This process is one of a group torchrun started (it set the rank and the rendezvous)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))
