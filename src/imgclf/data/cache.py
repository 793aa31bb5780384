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
- rows are only appended, a builder reserves its rows and a run takes its snapshot (manifest +
  an open data file) under the lock, and rows are published only once written, so no reader sees
  a row another run is writing; builders decode side by side (data/cache_manifest.py);
  `imgclf cache prune` compacts into a new file, which leaves open snapshots on the old intact;
- every row has a CRC32 checked when a run opens the store: damaged rows are named in one line
  and decoded again; an unreadable manifest starts the store afresh;
- data is fsynced before the manifest that points at it is renamed into place;
- subsets of one folder (train/val, seeds, --max-per-class) share one store and its rows.
Torch-free: both backends read it.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import secrets
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

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
from imgclf.data.cache_manifest import (
    FORMAT,
    LOCK,
    MANIFEST,
    UNREADABLE,
    Manifest,
    merge_published,
    read_manifest,
    write_manifest,
)
from imgclf.data.folder import ImageIndex, display_path
from imgclf.data.images import ImageDecodeError, decode_square
from imgclf.files import private_dir
from imgclf.messages import warn


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
class _Job:
    """One build's work: the positions to decode, every position's stamp, the first row reserved
    for them, what failed, how many positions it looked at."""

    todo: list[int]
    stamps: list[tuple[int, int, int, int]]
    first: int
    failed: dict[int, str]
    looked: int


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
        Safe from several processes at once, which decode side by side: each holds the store's
        lock only to look its images up and reserve their rows, and to publish each batch
        decoded (data/cache_manifest.py). only: the positions to look at (a torchrun rank's
        share); the others stay unread (-1)."""
        try:
            private_dir(self.dir)
            with FileLock(str(self.dir / LOCK)):
                os.utime(self.dir / LOCK)  # "last used", for `imgclf cache prune`
                job = self._plan(only)
            self._decode(job, workers, progress)
            return CacheStats(decoded=len(job.todo), reused=job.looked - len(job.todo),
                              failed=job.failed)  # fmt: skip
        except (ImageDecodeError, CacheUnavailable):
            raise
        except OSError as e:
            where = e.filename or self.dir
            raise CacheUnavailable(
                f"{display_path(where)}: cannot write the decoded cache ({e.strerror or e})"
            ) from None

    def _plan(self, only: np.ndarray | None) -> _Job:
        """Under the lock: the rows to reuse, the positions to decode, rows reserved for them."""
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
        job = _Job([], stamps, m.rows, {}, len(looked))
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
                job.failed[pos] = bad[4]
                continue
            job.todo.append(pos)
        if damaged:
            warn(
                f"{display_path(data_path)}: {damaged} cached rows failed their checksum; "
                "decoding them again"
            )
        if job.todo:  # reserved before the lock is released: the next builder appends after
            m.rows += len(job.todo)
            write_manifest(self.dir, self.size, self.root, m)
        return job

    def _load_manifest(self) -> Manifest:
        fresh = Manifest(data=f"rows-{secrets.token_hex(4)}.u8")
        if not (self.dir / MANIFEST).exists():
            remove_orphan_rows(self.dir, keep="")  # a first build killed before its manifest
            return fresh
        try:
            return read_manifest(self.dir, self.size)
        except UNREADABLE as e:
            warn(f"{display_path(self.dir / MANIFEST)}: damaged cache ({e}); starting it again")
            for old in self.dir.glob("rows-*.u8"):
                old.unlink()  # open snapshots keep reading their own (unlinked) file
            return fresh

    def _row_crc(self, row: int) -> int:
        buf = os.pread(self._fd, self.row_bytes, row * self.row_bytes)
        return zlib.crc32(buf) if len(buf) == self.row_bytes else -1

    def _decode(self, job: _Job, workers: int, progress: bool) -> None:
        """Decode job.todo into its reserved rows, without the lock, publishing every 16 chunks
        (so a killed build resumes) and at the end."""
        if not job.todo:
            return
        items = [(pos, self.index.paths[pos], job.first + i) for i, pos in enumerate(job.todo)]
        data = str(self.dir / self.data_name)
        jobs = [(data, self.size, items[i : i + 64]) for i in range(0, len(items), 64)]
        bar = tqdm(total=len(items), desc="decode", unit="img", disable=None if progress else True)
        pool = None
        if workers > 1 and len(jobs) > 1:
            # the workers are forked, maybe while another thread imports: they must find every
            # image plugin loaded already (a module lock held at the fork is never released)
            Image.init()
            pool = get_context("fork").Pool(workers)
        results = pool.imap_unordered(_decode_rows, jobs) if pool else map(_decode_rows, jobs)
        done = Manifest(self.data_name)
        try:
            for n, res in enumerate(results):
                for pos, row, out in res:
                    key, st = self.keys[pos], job.stamps[pos]
                    if isinstance(out, str):
                        job.failed[pos] = out
                        done.failed[key] = [*st, out]
                    else:
                        done.ok[key] = [row, *st, out]
                        self.rows[pos] = row
                bar.update(len(res))
                if n % 16 == 15:
                    self._publish(done, job.first + len(items))
                    done = Manifest(self.data_name)
        finally:
            if pool:
                pool.terminate()
            bar.close()
            self._publish(done, job.first + len(items))

    def _publish(self, done: Manifest, rows_end: int) -> None:
        os.fsync(self._fd)  # the rows reach the disk before the manifest that points at them
        if done.ok or done.failed:
            merge_published(self.dir, self.size, self.root, self.data_name, done, rows_end)

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
