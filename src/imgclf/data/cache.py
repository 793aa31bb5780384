"""Decode each image once into uint8 rows, reused by every later run over the same files.

One store per (image size, folder) under <cache_dir>/decoded/<key>/, a 0700 folder:
  manifest.json  format, size, root, data file name, rows allocated, and per file (real path):
                 ok:     [row, size, mtime_ns, inode, ctime_ns, crc32 of the row]
                 failed: [size, mtime_ns, inode, ctime_ns, reason]
  rows-<id>.u8   rows of size*size*3 bytes (Resize+CenterCrop applied), read with pread so a pass
                 stays in the OS page cache instead of this process's RSS
  lock
Why this shape (each line is a way a cache has served wrong pixels before):
- keys are real absolute paths and stamps include inode and ctime, so another folder with the
  same relative paths, a replaced file, or a folder copied over keeping sizes and mtimes is
  decoded again;
- rows are only appended, and a run takes its snapshot (manifest + an open data file) under the
  lock, so no reader sees a row another run is writing; `imgclf cache prune` compacts into a new
  file, which leaves open snapshots on the old one intact;
- every row has a CRC32 checked when a run opens the store: damaged rows are named in one line
  and decoded again; an unreadable manifest starts the store afresh;
- data is fsynced before the manifest that points at it is renamed into place;
- subsets of one folder (train/val, seeds, --max-per-class) share one store and its rows.
Torch-free: both backends read it.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from PIL import Image
from tqdm import tqdm

from imgclf.data.cache_files import (
    NO_STAMP,
    default_cache_dir,
    file_stamp,
    real_paths,
    remove_orphan_rows,
    sweep_temp_files,
)
from imgclf.data.folder import ImageIndex, display_path
from imgclf.data.images import ImageDecodeError, decode_square
from imgclf.files import private_dir, write_json_synced
from imgclf.messages import warn

FORMAT = 2  # bump when the stored preprocessing or the manifest changes
MANIFEST = "manifest.json"


class CacheUnavailable(OSError):
    """The cache folder cannot be written (read-only, full, not a folder); str() names it."""


Decoded = tuple[int, int, "int | str"]  # position, row, crc32 of the row or why it failed


def _decode_rows(args: tuple[str, int, list[tuple[int, str, int]]]) -> list[Decoded]:
    """Worker: decode (position, path, row) items and pwrite each row."""
    data_path, size, chunk = args
    row_bytes = size * size * 3
    out: list[Decoded] = []
    fd = os.open(data_path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for pos, path, row in chunk:
            try:
                buf = decode_square(path, size).tobytes()
            except ImageDecodeError as e:
                out.append((pos, row, str(e)))
                continue
            os.pwrite(fd, buf, row * row_bytes)
            out.append((pos, row, zlib.crc32(buf)))
    finally:
        os.close(fd)
    return out


@dataclass
class CacheStats:
    decoded: int
    reused: int
    failed: dict[int, str]


@dataclass
class Manifest:
    data: str = ""
    rows: int = 0
    ok: dict[str, list[int]] = field(default_factory=dict)
    failed: dict[str, list[Any]] = field(default_factory=dict)


def store_key(size: int, root: str) -> str:
    return hashlib.sha1(f"v{FORMAT}|{size}|{root}".encode(errors="surrogateescape")).hexdigest()[
        :20
    ]


class DecodedCache:
    def __init__(self, index: ImageIndex, size: int, cache_dir: str | Path | None = None):
        self.index, self.size = index, size
        self.keys = real_paths(index.paths)
        dirs = {os.path.dirname(k) for k in self.keys}
        self.root = os.path.commonpath(sorted(dirs)) if dirs else "/"
        self.base = Path(cache_dir or default_cache_dir())
        self.dir = self.base / "decoded" / store_key(size, self.root)
        self.row_bytes = size * size * 3
        self.rows = np.full(len(index), -1, dtype=np.int64)  # position -> row, -1 if not ok
        self.data_name = ""  # this snapshot's data file (rows-<id>.u8), once built
        self._fd = -1

    # ---- building --------------------------------------------------------------------------

    def build(
        self, workers: int = 2, progress: bool = True, only: np.ndarray | None = None
    ) -> CacheStats:
        """Decode what is missing, changed or damaged; then snapshot the rows this index uses.
        Safe to call from several processes at once (they take turns under a file lock).
        only: the positions to look at (a torchrun rank's shard); the others stay unread (-1)."""
        try:
            private_dir(self.dir)
            with FileLock(str(self.dir / "lock")):
                os.utime(self.dir / "lock")  # "last used", for `imgclf cache prune`
                return self._build_locked(workers, progress, only)
        except (ImageDecodeError, CacheUnavailable):
            raise
        except OSError as e:
            where = e.filename or self.dir
            raise CacheUnavailable(
                f"{display_path(where)}: cannot write the decoded cache ({e.strerror or e})"
            ) from None

    def _build_locked(self, workers: int, progress: bool, only: np.ndarray | None) -> CacheStats:
        sweep_temp_files(self.dir)
        m = self._load_manifest()
        self.close()
        self.data_name = m.data
        data_path = self.dir / m.data
        self._fd = os.open(data_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        looked = range(len(self.keys)) if only is None else sorted(set(np.asarray(only).tolist()))
        stamps = [NO_STAMP] * len(self.keys)
        for pos in looked:
            stamps[pos] = file_stamp(self.keys[pos])
        failed: dict[int, str] = {}
        todo: list[int] = []
        damaged = 0
        for pos in looked:
            key, st = self.keys[pos], stamps[pos]
            ok, bad = m.ok.get(key), m.failed.get(key)
            if ok is not None and tuple(ok[1:5]) == st:
                if self._row_crc(ok[0]) == ok[5]:
                    self.rows[pos] = ok[0]
                    continue
                damaged += 1
            elif bad is not None and tuple(bad[:4]) == st and st != NO_STAMP:
                failed[pos] = bad[4]
                continue
            todo.append(pos)
        if damaged:
            warn(
                f"{display_path(data_path)}: {damaged} cached rows failed their checksum; "
                "decoding them again"
            )
        self._decode(m, todo, stamps, failed, workers, progress)
        return CacheStats(decoded=len(todo), reused=len(looked) - len(todo), failed=failed)

    def _load_manifest(self) -> Manifest:
        path = self.dir / MANIFEST
        fresh = Manifest(data=f"rows-{secrets.token_hex(4)}.u8")
        if not path.exists():
            remove_orphan_rows(self.dir, keep="")  # a first build killed before its manifest
            return fresh
        try:
            raw = json.loads(path.read_text(errors="surrogateescape"))
            if raw.get("format") != FORMAT or raw.get("size") != self.size:
                raise ValueError("written by another version")
            m = Manifest(str(raw["data"]), int(raw["rows"]), raw["ok"], raw["failed"])
            if "/" in m.data or not m.data.startswith("rows-"):
                raise ValueError(f"bad data file name {m.data!r}")
            have = os.stat(self.dir / m.data, follow_symlinks=False).st_size
            if have < max((r[0] + 1 for r in m.ok.values()), default=0) * self.row_bytes:
                raise ValueError("data file shorter than its manifest says")
            return m
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            warn(f"{display_path(path)}: damaged cache ({e}); starting it again")
            for old in self.dir.glob("rows-*.u8"):
                old.unlink()  # open snapshots keep reading their own (unlinked) file
            return fresh

    def _row_crc(self, row: int) -> int:
        buf = os.pread(self._fd, self.row_bytes, row * self.row_bytes)
        return zlib.crc32(buf) if len(buf) == self.row_bytes else -1

    def _decode(
        self,
        m: Manifest,
        todo: list[int],
        stamps: list[tuple[int, int, int, int]],
        failed: dict[int, str],
        workers: int,
        progress: bool,
    ) -> None:
        if not todo:
            return
        first, m.rows = m.rows, m.rows + len(todo)  # rows reserved before any is written
        items = [(pos, self.index.paths[pos], first + i) for i, pos in enumerate(todo)]
        jobs = [
            (str(self.dir / m.data), self.size, items[i : i + 64]) for i in range(0, len(items), 64)
        ]
        bar = tqdm(total=len(todo), desc="decode", unit="img", disable=None if progress else True)
        pool = None
        if workers > 1 and len(jobs) > 1:
            # the workers are forked, maybe while another thread imports: they must find every
            # image plugin loaded already (a module lock held at the fork is never released)
            Image.init()
            pool = get_context("fork").Pool(workers)
        results = pool.imap_unordered(_decode_rows, jobs) if pool else map(_decode_rows, jobs)
        try:
            for n, res in enumerate(results):
                for pos, row, out in res:
                    key, st = self.keys[pos], stamps[pos]
                    m.ok.pop(key, None)
                    m.failed.pop(key, None)
                    if isinstance(out, str):
                        failed[pos] = out
                        m.failed[key] = [*st, out]
                    else:
                        m.ok[key] = [row, *st, out]
                        self.rows[pos] = row
                bar.update(len(res))
                if n % 16 == 15:  # checkpoint, so a killed build resumes
                    self._publish(m)
        finally:
            if pool:
                pool.terminate()
            bar.close()
            self._publish(m)

    def _publish(self, m: Manifest) -> None:
        os.fsync(self._fd)  # the rows reach the disk before the manifest that points at them
        if not self.dir.is_dir():
            return  # `imgclf cache clear` removed the store: this run reads its own open rows

        doc = {"format": FORMAT, "size": self.size, "root": self.root, "data": m.data}
        doc.update({"rows": m.rows, "ok": m.ok, "failed": m.failed})
        write_json_synced(self.dir / MANIFEST, doc)

    # ---- reading ---------------------------------------------------------------------------

    @property
    def ok_rows(self) -> np.ndarray:
        """Positions in the index whose image decoded."""
        return np.flatnonzero(self.rows >= 0)

    def read_rows(self, positions: np.ndarray) -> np.ndarray:
        """positions -> uint8 (n, size, size, 3), from this run's snapshot (pread, low RSS)."""
        if self._fd < 0:
            raise RuntimeError("DecodedCache.build() must run before read_rows()")
        out = np.empty((len(positions), self.size, self.size, 3), dtype=np.uint8)
        flat = out.reshape(len(positions), self.row_bytes)  # -1 fails for an empty share
        for j, r in enumerate(self.rows[np.asarray(positions, dtype=np.int64)]):
            os.preadv(self._fd, [flat[j]], int(r) * self.row_bytes)
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def open_cache(
    index: ImageIndex, size: int, cache_dir: str | Path | None, workers: int, progress: bool
) -> tuple[DecodedCache, CacheStats]:
    """A built cache; when its folder cannot be written, one in a temporary folder that is
    removed when this process ends (with a one-line warning)."""
    cache = DecodedCache(index, size, cache_dir)
    try:
        return cache, cache.build(workers, progress)
    except CacheUnavailable as e:
        tmp = tempfile.mkdtemp(prefix="imgclf-cache-")
        atexit.register(shutil.rmtree, tmp, True)
        warn(f"{e}; using a temporary cache for this run")
        cache = DecodedCache(index, size, tmp)
        return cache, cache.build(workers, progress)
