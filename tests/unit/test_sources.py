"""Data arguments: a zip of a folder, CIFAR-10's python batches (format as published)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import CIFAR_ZIP
from imgclf.data.folder import load_splits
from imgclf.data.sources import resolve_data


def test_zip_is_unpacked_once_into_the_cache(tiny_folder: Path, tmp_path: Path) -> None:
    z = tmp_path / "tiny.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(tiny_folder.rglob("*.png")):
            zf.write(p, Path("tiny") / p.relative_to(tiny_folder))
    root = resolve_data(str(z), tmp_path / "cache")
    assert root.name == "tiny" and resolve_data(str(z), tmp_path / "cache") == root
    s = load_splits(root)
    assert len(s["train"]) == 24 and s["train"].class_names == ["blue", "green", "red"]


def test_zip_slip_is_refused(tmp_path: Path) -> None:
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../outside.png", b"x")
    with pytest.raises(ValueError, match="unsafe member path"):
        resolve_data(str(z), tmp_path / "cache")
    assert not (tmp_path / "outside.png").exists()


def _write_cifar_batches(d: Path) -> np.ndarray:
    """CIFAR-10's python format: pickled dicts of bytes keys, data as N x 3072 uint8 rows."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (6, 3072), dtype=np.uint8)
    names = [n.encode() for n in ("airplane", "automobile", "bird")]
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names}, f)
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({b"data": data[:4], b"labels": [0, 1, 2, 0]}, f)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": data[4:], b"labels": [1, 2]}, f)
    return data


def test_cifar_python_batches_become_an_image_folder(tmp_path: Path) -> None:
    data = _write_cifar_batches(tmp_path / "cifar-10-batches-py")
    root = resolve_data(str(tmp_path), tmp_path / "cache")
    s = load_splits(root)
    assert s["train"].class_names == ["airplane", "automobile", "bird"]
    assert s["train"].counts() == [2, 1, 1] and s["test"].counts() == [0, 1, 1]
    from PIL import Image

    first = np.asarray(Image.open(root / "train" / "airplane" / "0000.png"))
    assert np.array_equal(first, data[0].reshape(3, 32, 32).transpose(1, 2, 0))  # lossless


def test_cifar_batch_with_code_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "b"
    _write_cifar_batches(d)

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("owned",))

    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing builtins.print"):
        resolve_data(str(d), tmp_path / "cache")


@pytest.mark.skipif(not CIFAR_ZIP.exists(), reason="../shared/data absent")
def test_shared_cifar10_zip_indexes_60000_images(tmp_path: Path) -> None:
    s = load_splits(resolve_data(str(CIFAR_ZIP), tmp_path / "cache"))
    assert len(s["train"]) == 50_000 and len(s["test"]) == 10_000
    assert s["train"].class_names[:3] == ["airplane", "automobile", "bird"]
