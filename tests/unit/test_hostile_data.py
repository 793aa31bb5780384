"""Hostile data (issue 22): archives whose class names or labels lie, thin images, files that are
not files, folders nested too deep, caches that must notice a replaced archive."""

from __future__ import annotations

import io
import os
import pickle
import re
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_folder, run_cli
from imgclf.data.images import ImageDecodeError, decode_square, read_bytes, resize_center_crop
from imgclf.data.sources import resolve_data


def write_cifar(folder: Path, names: object, batches: dict[str, tuple[object, object]]) -> Path:
    """A CIFAR-10 python batches folder: batches.meta and {file: (data, labels)}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    for name, (data, labels) in batches.items():
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
    return folder


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, 3072), dtype=np.uint8)


GOOD = [b"cat", b"dog"]


@pytest.mark.parametrize(
    ("names", "data", "labels", "says"),
    [
        ([b"../../../escaped", b"dog"], rows(2), [0, 1], "path separator"),
        ([b"/abs/escaped", b"dog"], rows(2), [0, 1], "path separator"),
        ([b"..", b"dog"], rows(2), [0, 1], "starts with '.'"),
        ([b"ca\x1bt", b"dog"], rows(2), [0, 1], "control character"),
        ([b"cat", b"cat"], rows(2), [0, 1], "appears twice"),
        ([b"", b"dog"], rows(2), [0, 1], "is empty"),
        (GOOD, rows(2), [0, 2], "label 2 is not a class index 0..1"),
        (GOOD, rows(2), [0, -1], "label -1 is not a class index"),
        (GOOD, "not pixels", [0, 1], "holds 'data' (an array)"),
        (GOOD, rows(3), [0, 1], "must be 2 rows of 3072 bytes"),
    ],
)
def test_cifar_batches_that_lie_are_refused_by_name_and_write_nothing(
    tmp_path: Path, names: list, data: object, labels: list, says: str
) -> None:
    batches = write_cifar(tmp_path / "b", names, {"data_batch_1": (data, labels)})
    cache = tmp_path / "cache"
    before = sorted(p for p in tmp_path.rglob("*"))
    absolute_before = Path("/abs/escaped").exists()  # an older imgclf wrote there
    with pytest.raises(ValueError, match="batches.meta|data_batch_1") as e:
        resolve_data(str(batches), cache)
    assert says in str(e.value)
    written = [p for p in tmp_path.rglob("*") if p not in before and not p.is_dir()]
    assert all(p.suffix == ".lock" for p in written), written  # no PNG anywhere
    assert not (tmp_path / "escaped").exists()
    assert Path("/abs/escaped").exists() == absolute_before
    # the CLI says it in one line, no traceback, and exits 1
    proc = run_cli("audit", str(batches), "--cache-dir", str(cache), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cifar_cache_sees_replaced_and_added_batches(tmp_path: Path) -> None:
    b = write_cifar(tmp_path / "b", GOOD, {"data_batch_1": (rows(4), [0, 0, 1, 1])})
    (b / "test_batch").write_bytes(pickle.dumps({b"data": rows(2), b"labels": [0, 1]}))
    first = resolve_data(str(b), tmp_path / "c")
    assert len(list((first / "train").rglob("*.png"))) == 4
    (b / "data_batch_2").write_bytes(pickle.dumps({b"data": rows(2), b"labels": [0, 1]}))
    second = resolve_data(str(b), tmp_path / "c")
    assert second != first and len(list((second / "train").rglob("*.png"))) == 6
    # same size and mtime, other labels: still seen (ctime and content hash)
    st = os.stat(b / "data_batch_1")
    (b / "data_batch_1").write_bytes(pickle.dumps({b"data": rows(4), b"labels": [1, 1, 1, 1]}))
    os.utime(b / "data_batch_1", ns=(st.st_atime_ns, st.st_mtime_ns))
    third = resolve_data(str(b), tmp_path / "c")
    assert third != second and len(list((third / "train" / "dog").glob("*.png"))) == 5


def _zip_of(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as z:
        for p in sorted(folder.rglob("*.png")):
            z.write(p, p.relative_to(folder))
    return out


def test_a_replaced_zip_with_the_same_size_and_mtime_is_unpacked_again(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "a", {"train": 2})
    z = _zip_of(src, tmp_path / "d.zip")
    first = resolve_data(str(z), tmp_path / "c")
    assert sorted(p.name for p in (first / "train").iterdir()) == ["blue", "green", "red"]
    (src / "train" / "red").rename(src / "train" / "pup")  # same name length: same zip size
    st = os.stat(z)
    _zip_of(src, tmp_path / "new.zip").replace(z)
    os.utime(z, ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -r
    assert os.stat(z).st_size == st.st_size
    second = resolve_data(str(z), tmp_path / "c")
    assert sorted(p.name for p in (second / "train").iterdir()) == ["blue", "green", "pup"]


def test_damaged_zips_are_one_line(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "a", {"train": 2})
    good = _zip_of(src, tmp_path / "good.zip").read_bytes()
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        first = zf.infolist()[0]
    bad_crc = bytearray(good)
    start = first.header_offset + 30 + len(first.filename.encode())  # the member's data
    bad_crc[start + 40] ^= 0xFF
    lying = bytearray(good)
    cd = good.rfind(b"PK\x01\x02")  # the last central-directory entry: point it into the data
    lying[cd + 42 : cd + 46] = (7).to_bytes(4, "little")
    deep = io.BytesIO()
    with zipfile.ZipFile(deep, "w") as z:
        z.writestr("train/red/" + "x/" * 2000 + "a.png", good[:10])
    for name, blob, says in (
        ("crc.zip", bad_crc, "damaged zip"),
        ("lying.zip", lying, "damaged zip"),
        ("deep.zip", deep.getvalue(), "levels deep"),
    ):
        (tmp_path / name).write_bytes(bytes(blob))
        proc = run_cli(
            "audit", str(tmp_path / name), "--cache-dir", str(tmp_path / "c"), check=False
        )
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _thin_png(path: Path, w: int = 1, h: int = 1_000_000) -> Path:
    Image.new("RGB", (w, h), (200, 30, 30)).save(path)
    return path


def test_a_thin_image_decodes_within_memory_bounded_by_the_output(tmp_path: Path) -> None:
    thin = _thin_png(tmp_path / "thin.png")
    assert thin.stat().st_size < 10_000  # a 2 KB-class file
    code = (
        "import re, sys\n"
        "from imgclf.data.images import decode_square\n"
        "for size in (32, 224):\n"
        "    assert decode_square(sys.argv[1], size).shape == (size, size, 3)\n"
        # this process's peak (ru_maxrss would include the forking pytest's)
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())\n"
        "print(int(hwm.group(1)) // 1024)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(thin)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) < 600, f"peak RSS {proc.stdout.strip()} MB"  # was 5.9 GB at 32 px


def test_the_bounded_resize_is_the_resize_then_crop_it_replaces(tmp_path: Path) -> None:
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    for w, h in ((500, 375), (375, 500), (40, 30), (7, 300), (300, 7)):
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        for size in (32, 224):
            ref = np.asarray(T.CenterCrop(size)(T.Resize(size)(img)), dtype=int)
            got = np.asarray(resize_center_crop(img, size), dtype=int)
            # ordinary photos: identical; extreme strips: the same grid, rounding within 1
            assert np.abs(ref - got).max() <= (0 if max(w, h) < 4 * min(w, h) else 1)


def test_audit_calls_an_extreme_aspect_ratio_a_problem(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 2})
    _thin_png(data / "train" / "red" / "thin.png", 2, 5000)
    proc = run_cli("audit", str(data), "--out", str(tmp_path / "a"), check=False)
    assert proc.returncode == 1
    assert "aspect ratio over 10:1" in proc.stdout and "thin.png (2 x 5000)" in proc.stdout


@pytest.mark.slow
def test_files_that_are_not_regular_files_are_skipped_by_name(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 4, "test": 2})
    os.mkfifo(data / "train" / "red" / "pipe.jpg")
    os.symlink("/dev/zero", data / "train" / "blue" / "zero.jpg")
    # in a daemon thread: opening a FIFO used to block forever, reading /dev/zero to fill memory
    errors: list[str] = []

    def read_both() -> None:
        for path in ("red/pipe.jpg", "blue/zero.jpg"):
            try:
                read_bytes(str(data / "train" / path))
            except ImageDecodeError as e:
                errors.append(str(e))

    reader = threading.Thread(target=read_both, daemon=True)
    reader.start()
    reader.join(20)
    assert errors == ["not a regular file (a FIFO)", "not a regular file (a character device)"]
    with pytest.raises(ImageDecodeError, match="character device"):
        decode_square(str(data / "train" / "blue" / "zero.jpg"), 32)
    audit = run_cli("audit", str(data), "--out", str(tmp_path / "a"), check=False, timeout=120)
    assert audit.returncode == 1
    assert "pipe.jpg" in audit.stdout and "not a regular file (a FIFO)" in audit.stdout
    assert "zero.jpg" in audit.stdout and "character device" in audit.stdout
    run = tmp_path / "run"
    args = ("--image-size", "32", "--epochs", "1", "--workers", "1", "--out", str(run))
    run_cli("train", str(data), *args, timeout=300)
    skipped = (run / "skipped.json").read_text()
    assert "pipe.jpg" in skipped and "zero.jpg" in skipped
    pred = run_cli("predict", str(run), str(data / "train" / "red"), timeout=120)
    assert re.search(r"pipe\.jpg +ERROR not a regular file \(a FIFO\)", pred.stdout)
    plain = run_cli(
        "train", str(data), *args[:-1], str(tmp_path / "plain"), "--pipeline", "plain", timeout=300
    )
    assert "done" in plain.stdout


def test_folders_nested_too_deep_are_named_not_walked(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 2})
    fd = os.open(data / "train" / "red", os.O_RDONLY)
    for _ in range(300):  # os.makedirs recurses; walk down with directory descriptors
        os.mkdir("x", dir_fd=fd)
        nxt = os.open("x", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)
    proc = run_cli("audit", str(data), "--out", str(tmp_path / "a"), check=False, timeout=120)
    assert proc.returncode == 1 and "nested over 64 folders deep" in proc.stdout
