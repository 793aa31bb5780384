"""Atomic writes: a killed process leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


UMASK = _umask()


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> Path:
    """Call write(tmp_path) on a temp file beside `path`, then rename it over `path`.

    A symlink the user named is written through (its target is replaced, the link stays), and
    the file gets the user's umask, not mkstemp's 0600.
    """
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda t: Path(t).write_text(text, errors="surrogateescape"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_json_synced(path: str | Path, obj: Any) -> Path:
    """write_json, with the data on disk before the rename (for files that point at data)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", errors="surrogateescape") as f:
            json.dump(obj, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def private_dir(path: str | Path) -> Path:
    """Create `path` (and missing parents) as 0700 folders, and refuse one that another user
    owns or that is a symlink: a shared cache must not let anyone else plant files in ours."""
    path = Path(os.path.abspath(path))
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass  # another process made it first: checked below
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path}: not a folder (or a symlink)")
    if st.st_uid != os.geteuid():
        raise PermissionError(f"{path}: owned by another user")
    return path


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null for the block (what C++ libraries write there while
    they load), then restored; sys.stderr is flushed first so nothing of ours is lost."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
