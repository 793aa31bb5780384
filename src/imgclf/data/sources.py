"""Turn a data argument into an image folder: a folder as is, a .zip unpacked once into the cache,
CIFAR-10's python batches written out as PNG class folders, or 'cifar10' downloaded when online."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from PIL import Image

from imgclf.data.archives import unpack_cifar_tar_into, unpack_zip_into
from imgclf.data.cache_files import default_cache_dir, file_stamp
from imgclf.data.folder import find_splits
from imgclf.data.names import check_class_names
from imgclf.files import private_dir
from imgclf.messages import UsageError

CIFAR_BATCH_DIR = "cifar-10-batches-py"


SAMPLE_BYTES = 2**20  # hashed from each end of an archive: a zip's central directory (with
# every member's CRC) is at its end, a batch file's labels near its start


def files_key(paths: list[Path]) -> str:
    """The cache key of what was unpacked from these files: each one's real path, its stamp
    (size, mtime, inode, ctime: a file replaced with `touch -r` still gets a new ctime) and a
    hash of its first and last MiB. Any change to any of them unpacks afresh."""
    h = hashlib.sha1()
    for p in paths:
        h.update(f"{os.path.realpath(p)}|{file_stamp(str(p))}|".encode(errors="surrogateescape"))
        if not p.is_file():
            continue
        with open(p, "rb") as f:
            h.update(f.read(SAMPLE_BYTES))
            f.seek(max(0, os.fstat(f.fileno()).st_size - SAMPLE_BYTES))
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()[:16]


def _materialise(target: Path, fill) -> Path:  # noqa: ANN001
    """Build `target` once: fill(tmp_dir) then rename, under a lock (concurrent runs wait).
    Temp folders a killed build left are swept under the same lock."""
    private_dir(target.parent)
    with FileLock(str(target) + ".lock"):
        for stale in target.parent.glob(f".tmp-{target.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if not target.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
            try:
                fill(tmp)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def unpack_zip(zip_path: Path, cache_dir: Path) -> Path:
    out = _materialise(
        cache_dir / "unzipped" / files_key([zip_path]), lambda tmp: unpack_zip_into(zip_path, tmp)
    )
    # A zip holding one top folder (e.g. CATS_DOGS/) means that folder.
    entries = [e for e in out.iterdir() if not e.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() and not find_splits(out) else out


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR batches hold dicts, lists, bytes and NumPy arrays; nothing else may be built."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a CIFAR batch")


def _unpickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a CIFAR-10 batch ({e})") from None


def read_cifar_batch(path: Path, classes: int) -> tuple[np.ndarray, list[int]]:
    """One python batch -> (N, 32, 32, 3) uint8 images and labels, each in 0..classes-1."""
    d = _unpickle(path)
    raw = d.get(b"data") if isinstance(d, dict) else None
    labels = d.get(b"labels", d.get(b"fine_labels")) if isinstance(d, dict) else None
    if not isinstance(raw, np.ndarray | bytes) or not isinstance(labels, list | np.ndarray):
        raise ValueError(f"{path}: a CIFAR-10 batch holds 'data' (an array) and 'labels' (a list)")
    data = np.frombuffer(raw, np.uint8) if isinstance(raw, bytes) else raw
    if data.dtype != np.uint8 or data.size != len(labels) * 3072:
        raise ValueError(
            f"{path}: 'data' must be {len(labels)} rows of 3072 bytes (uint8) for its "
            f"{len(labels)} labels, not {data.size} values of {data.dtype}"
        )
    bad = [y for y in labels if isinstance(y, bool) or not isinstance(y, int | np.integer)]
    bad = bad or [y for y in labels if not 0 <= y < classes]
    if bad:
        raise ValueError(
            f"{path}: label {bad[0]!r} is not a class index 0..{classes - 1} "
            f"({len(bad)} such label(s))"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), [int(y) for y in labels]


def cifar_class_names(meta_path: Path) -> list[str]:
    meta = _unpickle(meta_path)
    raw = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{meta_path}: no list of label_names")
    try:
        names = [n.decode() if isinstance(n, bytes) else n for n in raw]
    except UnicodeDecodeError:
        raise ValueError(f"{meta_path}: a label name is not UTF-8") from None
    return check_class_names(names, str(meta_path))


def cifar_batches_to_folder(batch_dir: Path, cache_dir: Path) -> Path:
    names = cifar_class_names(batch_dir / "batches.meta")  # checked before anything is written
    files = {"train": sorted(batch_dir.glob("data_batch_*")), "test": [batch_dir / "test_batch"]}

    def fill(tmp: Path) -> None:
        for split, paths in files.items():
            counts = [0] * len(names)
            for p in paths:
                if not p.exists():
                    continue
                data, labels = read_cifar_batch(p, len(names))
                for img, y in zip(data, labels, strict=True):
                    d = tmp / split / names[y]
                    d.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(img).save(d / f"{counts[y]:04d}.png")
                    counts[y] += 1

    every = [batch_dir / "batches.meta", *files["train"], *files["test"]]
    return _materialise(cache_dir / "cifar10" / files_key(every), fill)


def download_cifar10(cache_dir: Path) -> Path:
    """torchvision's downloader (needs internet), then the same conversion as local batches."""
    from imgclf import backends

    root = cache_dir / "cifar10-download"
    backends.get("torch").fetch_cifar10(root)
    return cifar_batches_to_folder(root / CIFAR_BATCH_DIR, cache_dir)


def resolve_data(spec: str, cache_dir: str | Path = "") -> Path:
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if spec.lower() == "cifar10" and not Path(spec).exists():
        return download_cifar10(cache)
    p = Path(spec)
    if not p.exists():  # a usage error (exit 2), as for every command
        raise UsageError(f"{spec}: no such file or folder")
    if p.is_file() and zipfile.is_zipfile(p):
        return unpack_zip(p, cache)
    if p.is_file() and tarfile.is_tarfile(p):  # cifar-10-python.tar.gz
        unpacked = _materialise(
            cache / "untarred" / files_key([p]), lambda tmp: unpack_cifar_tar_into(p, tmp)
        )
        return cifar_batches_to_folder(unpacked, cache)
    if p.is_dir() and (p / CIFAR_BATCH_DIR / "batches.meta").exists():
        p = p / CIFAR_BATCH_DIR
    if p.is_dir() and (p / "batches.meta").exists():
        return cifar_batches_to_folder(p, cache)
    if p.is_file():
        raise ValueError(f"{spec}: expected a folder, a .zip of one, or CIFAR-10 batches")
    return p
