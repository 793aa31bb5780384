"""The audit's first pass: hash and fully decode every file, in worker processes."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from multiprocessing import get_context
from typing import Any

from tqdm import tqdm

from imgclf.data.images import ImageDecodeError, open_image, read_bytes


def inspect_file(job: tuple[str, str, str]) -> dict[str, Any]:
    """Worker: hash and fully decode one file. Returns plain data (picklable, no pixels)."""
    path, split, cls = job
    rec: dict[str, Any] = {"path": path, "split": split, "class": cls}
    try:
        data = read_bytes(path)
        rec["hash"] = hashlib.blake2b(data, digest_size=16).hexdigest()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = open_image(data)
        rec.update(
            width=img.size[0],
            height=img.size[1],
            mode=img.mode,
            format=img.format or "?",
            frames=img.info.get("frames", 1),
        )
    except ImageDecodeError as e:
        rec["error"] = str(e)
    return rec


def inspect_all(
    jobs: list[tuple[str, str, str]], workers: int, progress: bool
) -> Iterator[dict[str, Any]]:
    """inspect_file over the jobs in worker processes, as they finish, with a progress bar."""
    ctx = get_context("spawn" if os.name != "posix" else "fork")
    with ctx.Pool(max(1, workers)) if workers > 1 else _InlinePool() as pool:
        stream = pool.imap_unordered(inspect_file, jobs, chunksize=32)
        quiet = None if progress else True
        yield from tqdm(stream, total=len(jobs), desc="audit", unit="img", disable=quiet)


class _InlinePool:
    """Pool stand-in for workers <= 1: same interface, runs in this process (easier to debug)."""

    def __enter__(self) -> _InlinePool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap_unordered(self, fn, items, chunksize: int = 1):  # noqa: ANN001, ANN201
        return map(fn, items)
