"""The decoded cache's manifest (data/cache.py): read, written, and merged by builders that
decode side by side.

Several processes may build one store at once (torchrun ranks, two runs over one folder). Each
holds the store's lock only briefly: to look its images up and reserve rows at the end of the
data file (the manifest's `rows` grows at once, so the next builder appends after them), and to
publish what it decoded, merged into the manifest as it is then, so no builder's rows are lost.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.files import write_json_synced

FORMAT = 2  # bump when the stored preprocessing or the manifest changes
MANIFEST = "manifest.json"
LOCK = "lock"
# what reading a damaged or foreign manifest raises (a missing key, a list where a dict was, ...)
UNREADABLE = (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError)


@dataclass
class Manifest:
    data: str = ""
    rows: int = 0  # rows allocated (written, or reserved by a builder still decoding)
    ok: dict[str, list[int]] = field(default_factory=dict)
    failed: dict[str, list[Any]] = field(default_factory=dict)


def read_manifest(store: Path, size: int) -> Manifest:
    """The store's manifest, checked against its data file; one of UNREADABLE when it is
    missing, another version's, or damaged."""
    raw = json.loads((store / MANIFEST).read_text(errors="surrogateescape"))
    if raw.get("format") != FORMAT or raw.get("size") != size:
        raise ValueError("written by another version")
    m = Manifest(str(raw["data"]), int(raw["rows"]), raw["ok"], raw["failed"])
    if "/" in m.data or not m.data.startswith("rows-"):
        raise ValueError(f"bad data file name {m.data!r}")
    have = os.stat(store / m.data, follow_symlinks=False).st_size
    if have < max((r[0] + 1 for r in m.ok.values()), default=0) * size * size * 3:
        raise ValueError("data file shorter than its manifest says")
    return m


def write_manifest(store: Path, size: int, root: str, m: Manifest) -> None:
    doc = {"format": FORMAT, "size": size, "root": root, "data": m.data}
    doc.update({"rows": m.rows, "ok": m.ok, "failed": m.failed})
    write_json_synced(store / MANIFEST, doc)


@contextmanager
def existing_lock(store: Path) -> Iterator[bool]:
    """The store's lock (the same flock filelock takes), without creating anything: False when
    the store is gone (`imgclf cache clear` ran), so a builder never recreates it."""
    try:
        fd = os.open(store / LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # releases the flock


def merge_published(
    store: Path, size: int, root: str, data: str, done: Manifest, rows_end: int
) -> bool:
    """Add one builder's decoded rows (done.ok, done.failed) to the manifest as it is now, under
    the lock. Nothing is written, and False returned, when the store was cleared, or compacted
    or started afresh into another data file meanwhile: the builder's rows then live only in
    its own open file, which its run goes on reading."""
    with existing_lock(store) as held:
        if not held:
            return False
        try:
            m = read_manifest(store, size)
        except UNREADABLE:
            return False
        if m.data != data:
            return False
        for key, entry in done.ok.items():
            m.failed.pop(key, None)
            m.ok[key] = entry
        for key, entry in done.failed.items():
            m.ok.pop(key, None)
            m.failed[key] = entry
        m.rows = max(m.rows, rows_end)
        write_manifest(store, size, root, m)
        return True
