"""Data arguments: a zip of a folder, CIFAR-10's python batches (format as published)."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import CIFAR_ZIP, snapshot
from imgclf.data.sources import resolve_data
from imgclf.data.splits import load_splits


def test_zip_is_unpacked_once_into_the_cache(tiny_folder: Path, tmp_path: Path) -> None:
    z = tmp_path / "tiny.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(tiny_folder.rglob("*.png")):
            zf.write(p, Path("tiny") / p.relative_to(tiny_folder))
    root = resolve_data(str(z), tmp_path / "cache")
    assert root.name == "tiny" and resolve_data(str(z), tmp_path / "cache") == root
    s = load_splits(root, val_fraction=0)  # count what was unpacked, not the carved split
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
    s = load_splits(root, val_fraction=0)
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
    with pytest.raises(ValueError, match="refusing builtins.print"):
        resolve_data(str(d), tmp_path / "cache")


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR_ZIP.exists(), reason="../shared/data absent")
def test_shared_cifar10_zip_indexes_60000_images(tmp_path: Path) -> None:
    s = load_splits(resolve_data(str(CIFAR_ZIP), tmp_path / "cache"), val_fraction=0)
    assert len(s["train"]) == 50_000 and len(s["test"]) == 10_000
    assert s["train"].class_names[:3] == ["airplane", "automobile", "bird"]


def test_crafted_cifar_tar_cannot_touch_a_file_outside_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The attack: a symlink inside the destination plus a hard link to it, then a member
    written "through" them, reached a file levels above the cache with the data filter."""
    _write_cifar_batches(tmp_path / "src")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.chmod(victim, 0o600)
    before = snapshot(tmp_path / "src") | {str(victim): (victim.read_text(), victim.stat().st_mode)}
    tar = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        up = tarfile.TarInfo("cifar-10-batches-py/up")
        up.type, up.linkname = tarfile.SYMTYPE, "../../../../../../victim.txt"
        tf.addfile(up)
        hard = tarfile.TarInfo("cifar-10-batches-py/hard")
        hard.type, hard.linkname, hard.mode = tarfile.LNKTYPE, "cifar-10-batches-py/up", 0o777
        tf.addfile(hard)
        dev = tarfile.TarInfo("cifar-10-batches-py/dev")
        dev.type = tarfile.CHRTYPE
        tf.addfile(dev)
        for f in sorted((tmp_path / "src").iterdir()):
            tf.add(f, f"cifar-10-batches-py/{f.name}")
        evil = tarfile.TarInfo("cifar-10-batches-py/up")  # a regular file over the link
        evil.size, evil.mode = 4, 0o777
        tf.addfile(evil, io.BytesIO(b"pwnd"))
    cache = tmp_path / "cache" / "a" / "b" / "c"
    root = resolve_data(str(tar), cache)
    assert load_splits(root, val_fraction=0)["train"].counts() == [2, 1, 1]
    err = capsys.readouterr().err
    for name in ("up", "hard", "dev"):
        assert f"skipped link or device member 'cifar-10-batches-py/{name}'" in err
    after = snapshot(tmp_path / "src") | {str(victim): (victim.read_text(), victim.stat().st_mode)}
    assert after == before
    links = [
        p for p in cache.rglob("*") if p.is_symlink() or (p.is_file() and p.stat().st_nlink > 1)
    ]
    assert links == []


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_finder_zip_skips_macosx_and_accepts_dot_slash(tiny_folder: Path, tmp_path: Path) -> None:
    png = (tiny_folder / "train" / "red" / "red_000.png").read_bytes()
    z = _zip(
        tmp_path / "finder.zip",
        {
            "./photos/cat/a.png": png,
            "./photos/dog/b.png": png,
            "__MACOSX/photos/cat/._a.png": b"\x00\x05\x16\x07 resource fork",
            "photos/dog/._b.png": b"\x00\x05\x16\x07",
        },
    )
    root = resolve_data(str(z), tmp_path / "cache")
    s = load_splits(root)
    assert s["train"].class_names == ["cat", "dog"] and len(s["train"]) + len(s["val"]) == 2


def test_zip_bombs_and_clashing_members_are_refused_in_one_line(tmp_path: Path) -> None:
    bomb = _zip(tmp_path / "bomb.zip", {"a/x.png": bytes(50 * 2**20)})
    with pytest.raises(ValueError, match=r"'a/x.png' expands \d+x \(a zip bomb\?\)"):
        resolve_data(str(bomb), tmp_path / "cache")
    clash = _zip(tmp_path / "clash.zip", {"a/cat": b"file", "a/cat/x.png": b"png"})
    with pytest.raises(ValueError, match="'a/cat/x.png' clashes with another member"):
        resolve_data(str(clash), tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache" / "unzipped").iterdir() if p.suffix != ".lock"]
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("d/cat/evil.png")
        info.external_attr = 0o120777 << 16  # a symlink member
        zf.writestr(info, "/etc/passwd")
        zf.writestr("d/cat/ok.png", b"x")
    root = resolve_data(str(link), tmp_path / "cache")
    assert not (root / "cat" / "evil.png").exists() and (root / "cat" / "ok.png").exists()


def test_zip_over_the_size_cap_is_refused_before_unpacking(tmp_path: Path) -> None:
    import subprocess
    import sys

    z = _zip(tmp_path / "big.zip", {"a/x.png": os.urandom(3 * 2**20)})
    code = (
        "from imgclf.data.sources import resolve_data; "
        f"resolve_data({str(z)!r}, {str(tmp_path / 'cache')!r})"
    )
    env = {**os.environ, "IMGCLF_MAX_UNPACK_BYTES": str(2**20)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "unpacks to 0.0 GiB, over the limit" in r.stderr
