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

import numpy as np
from filelock import FileLock
from PIL import Image

from imgclf.data.archives import unpack_cifar_tar_into, unpack_zip_into
from imgclf.data.cache_files import default_cache_dir
from imgclf.data.folder import find_splits
from imgclf.files import private_dir

CIFAR_BATCH_DIR = "cifar-10-batches-py"


def _key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


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
        cache_dir / "unzipped" / _key(zip_path), lambda tmp: unpack_zip_into(zip_path, tmp)
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


def read_cifar_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """One python batch -> (N, 32, 32, 3) uint8 images and labels."""
    with open(path, "rb") as f:
        d = _ArrayUnpickler(f, encoding="bytes").load()
    data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = list(d.get(b"labels", d.get(b"fine_labels", [])))
    return data, labels


def cifar_batches_to_folder(batch_dir: Path, cache_dir: Path) -> Path:
    def fill(tmp: Path) -> None:
        meta_path = batch_dir / "batches.meta"
        with open(meta_path, "rb") as f:
            meta = _ArrayUnpickler(f, encoding="bytes").load()
        names = [n.decode() for n in meta[b"label_names"]]
        files = {
            "train": sorted(batch_dir.glob("data_batch_*")),
            "test": [batch_dir / "test_batch"],
        }
        for split, paths in files.items():
            counts = [0] * len(names)
            for p in paths:
                if not p.exists():
                    continue
                data, labels = read_cifar_batch(p)
                for img, y in zip(data, labels, strict=True):
                    d = tmp / split / names[y]
                    d.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(img).save(d / f"{counts[y]:04d}.png")
                    counts[y] += 1

    return _materialise(cache_dir / "cifar10" / _key(batch_dir / "batches.meta"), fill)


def download_cifar10(cache_dir: Path) -> Path:
    """torchvision's downloader (needs internet), then the same conversion as local batches."""
    from torchvision.datasets import CIFAR10

    root = cache_dir / "cifar10-download"
    CIFAR10(str(root), train=True, download=True)
    return cifar_batches_to_folder(root / CIFAR_BATCH_DIR, cache_dir)


def resolve_data(spec: str, cache_dir: str | Path = "") -> Path:
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if spec.lower() == "cifar10" and not Path(spec).exists():
        return download_cifar10(cache)
    p = Path(spec)
    if not p.exists():
        raise FileNotFoundError(f"{spec}: no such file or folder")
    if p.is_file() and zipfile.is_zipfile(p):
        return unpack_zip(p, cache)
    if p.is_file() and tarfile.is_tarfile(p):  # cifar-10-python.tar.gz
        unpacked = _materialise(
            cache / "untarred" / _key(p), lambda tmp: unpack_cifar_tar_into(p, tmp)
        )
        return cifar_batches_to_folder(unpacked, cache)
    if p.is_dir() and (p / CIFAR_BATCH_DIR / "batches.meta").exists():
        p = p / CIFAR_BATCH_DIR
    if p.is_dir() and (p / "batches.meta").exists():
        return cifar_batches_to_folder(p, cache)
    if p.is_file():
        raise ValueError(f"{spec}: expected a folder, a .zip of one, or CIFAR-10 batches")
    return p
