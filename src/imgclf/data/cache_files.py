"""Where the caches live and how a file is recognised again: its real path and its stamp (size,
mtime, inode, ctime), which the decoded cache and `imgclf cache prune` both compare."""

from __future__ import annotations

import os
from pathlib import Path

NO_STAMP = (-1, -1, -1, -1)


def default_cache_dir() -> Path:
    base = os.environ.get("IMGCLF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "imgclf"
    )
    return Path(base)


def file_stamp(path: str) -> tuple[int, int, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return NO_STAMP
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def real_paths(paths: list[str]) -> list[str]:
    """Absolute paths with the folders' symlinks resolved (one realpath per folder, not file)."""
    dirs: dict[str, str] = {}
    out = []
    for p in paths:
        d, name = os.path.split(os.path.abspath(p))
        if d not in dirs:
            dirs[d] = os.path.realpath(d)
        out.append(os.path.join(dirs[d], name))
    return out


def sweep_temp_files(folder: Path) -> None:
    """Remove temp files a killed writer left (call with the folder's lock held)."""
    for p in folder.glob(".*.tmp"):
        p.unlink(missing_ok=True)


def remove_orphan_rows(store: Path, keep: str) -> None:
    """Data files no manifest points at (call with the store's lock held). A builder still
    decoding into one, and runs reading one, keep their open copy; the builder then publishes
    nothing (data/cache_manifest.py)."""
    for p in store.glob("rows-*.u8"):
        if p.name != keep:
            p.unlink(missing_ok=True)
    stem = Path(keep).stem if keep else ""
    for p in store.glob("*-rows-*.*"):  # arrays derived from the rows (data/row_store.py)
        if not stem or not p.name.split(".")[0].endswith(stem):
            p.unlink(missing_ok=True)
