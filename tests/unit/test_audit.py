"""`imgclf audit` on a corpus of every kind of bad file; it must report each and change none."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CATS_DOGS, make_folder, needs_cats_dogs, run_cli, snapshot
from imgclf.audit.scan import run_audit
from imgclf.data.folder import read_exclude_list
from imgclf.data.splits import load_splits


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: PIL's decompression-bomb check fires on open."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def bad_corpus(tmp_path: Path) -> Path:
    root = make_folder(tmp_path / "corpus", {"train": 3, "test": 2})
    cat = root / "train" / "red"
    (cat / "zero.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        buf, "JPEG"
    )
    (cat / "truncated.jpg").write_bytes(buf.getvalue()[:400])
    (cat / "text.jpg").write_text("not an image at all")
    Image.new("CMYK", (30, 30), (0, 50, 100, 0)).save(cat / "cmyk.jpg")
    Image.fromarray(np.full((16, 16), 50000, np.uint16)).save(cat / "sixteen.png")
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(cat / "palette.png", transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), "red").save(cat / "rotated.jpg", exif=exif)
    frames = [Image.new("RGB", (10, 10), c) for c in ("red", "green", "blue")]
    frames[0].save(cat / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (1, 1), "red").save(cat / "one.png")
    (cat / "bomb.png").write_bytes(_png_header_only(30000, 30000))
    Image.new("RGB", (12, 12), (1, 2, 3)).save(os.path.join(os.fsencode(cat), b"caf\xe9.png"))
    with open(os.path.join(os.fsencode(cat), b"bad\xff.jpg"), "wb") as f:
        f.write(b"GIF89a-but-cut")  # unreadable and not UTF-8: the exclude list must match it
    os.symlink(cat, cat / "loop")
    (root / "train" / "empty_class").mkdir()
    shutil.copy(root / "train" / "blue" / "blue_000.png", root / "test" / "blue" / "leak.png")
    (cat / "notes.txt").write_text("a README among the images")
    return root


def test_audit_reports_every_problem_and_changes_nothing(bad_corpus: Path) -> None:
    before = snapshot(bad_corpus)
    report, sizes = run_audit(bad_corpus, workers=2, progress=False)
    assert snapshot(bad_corpus) == before
    reasons = {Path(u["path"]).name: u["reason"] for u in report.unreadable}
    assert reasons.keys() == {"zero.jpg", "truncated.jpg", "text.jpg", "bomb.png", "bad\ufffd.jpg"}
    assert "zero bytes" in reasons["zero.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    for mode in ("CMYK", "I;16", "P", "RGB"):
        assert mode in report.modes
    assert [Path(p).name for p in report.animated] == ["anim.gif"]
    assert [Path(p).name for p in report.tiny] == ["one.png"]
    assert [sorted(Path(p).name for p in g) for g in report.duplicates_across] == [
        ["blue_000.png", "leak.png"]
    ]
    assert report.empty_class_folders and report.empty_class_folders[0].endswith("empty_class")
    assert report.missing_classes == {"test": ["empty_class"]}
    assert report.non_image_files == 1
    # red: 3 drawn + cmyk, 16-bit, palette, rotated, gif, 1x1 and the non-UTF-8 name
    assert report.counts["train"]["red"] == 3 + 7 and report.counts["test"]["blue"] == 3
    assert len(sizes["width"]) == report.images
    # sizes are as displayed: the EXIF-rotated 40x20 counts as 20 wide, 40 high
    assert report.size_stats["height"]["max"] == 40 and report.size_stats["width"]["min"] == 1


def test_audit_cli_exit_codes_json_and_exclude_list(bad_corpus: Path, tmp_path: Path) -> None:
    before = snapshot(bad_corpus)
    out = tmp_path / "out"
    proc = run_cli(
        "audit",
        str(bad_corpus),
        "--json",
        str(tmp_path / "r.json"),
        "--exclude-list",
        str(tmp_path / "bad.txt"),
        "--out",
        str(out),
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "unreadable" in proc.stdout and "train/test leak" in proc.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["unreadable"]) == 5 and data["problems"]
    excluded = read_exclude_list(tmp_path / "bad.txt")
    assert len(excluded) == 5
    # training honours the list, non-UTF-8 names included: every bad file is left out
    kept = load_splits(bad_corpus, exclude=excluded, validate_on="test")["train"].paths
    assert not excluded & set(kept) and len(kept) == 3 * 3 + 7
    assert (out / "size_histogram.png").stat().st_size > 1000
    assert snapshot(bad_corpus) == before
    zero = run_cli("audit", str(bad_corpus), "--exit-zero", "--out", str(tmp_path / "z"))
    assert zero.returncode == 0 and "unreadable" in zero.stdout  # said, but not a failure
    assert run_cli("audit", str(tmp_path / "missing"), check=False).returncode == 2
    assert run_cli("audit", "--bogus-flag", str(bad_corpus), check=False).returncode == 2


def test_clean_folder_exits_zero(tiny_folder: Path, tmp_path: Path) -> None:
    proc = run_cli("audit", str(tiny_folder), "--out", str(tmp_path / "a"), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "problems: none" in proc.stdout


@needs_cats_dogs
def test_audit_cats_dogs_real_data(tmp_path: Path) -> None:
    proc = run_cli(
        "audit",
        str(CATS_DOGS),
        "--json",
        str(tmp_path / "r.json"),
        "--out",
        str(tmp_path / "a"),
        check=False,
    )
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["images"] == 4000 and data["unreadable"] == []
    assert {s: sum(c.values()) for s, c in data["counts"].items()} == {"test": 1000, "train": 3000}
    assert data["counts"]["train"] == {"CAT": 1500, "DOG": 1500}
    assert proc.returncode == 0, proc.stdout


def test_audit_names_links_archives_and_formats_and_touches_nothing(
    tiny_folder: Path, tmp_path: Path
) -> None:
    import tarfile
    import zipfile

    os.symlink("..", tiny_folder / "train" / "red" / "up")
    before = snapshot(tiny_folder)
    proc = run_cli(
        "audit",
        str(tiny_folder),
        "--out",
        str(tmp_path / "a"),
        "--json",
        str(tmp_path / "r.json"),
        check=False,
    )
    assert proc.returncode == 1
    assert "folders not followed: 1" in proc.stdout and "a loop" in proc.stdout
    assert "formats: PNG 36" in proc.stdout  # not "? 36"
    counts = json.loads((tmp_path / "r.json").read_text())["counts"]["train"]
    assert counts == {"blue": 8, "green": 8, "red": 8}
    assert snapshot(tiny_folder) == before
    # a Finder zip: no __MACOSX class, no ._ files counted
    z = tmp_path / "finder.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted((tiny_folder / "train").rglob("*.png")):
            rel = p.relative_to(tiny_folder)
            zf.write(p, f"tiny/{rel}")
            zf.writestr(f"__MACOSX/tiny/{rel.parent}/._{p.name}", b"\x00\x05\x16\x07")
    proc = run_cli(
        "audit",
        str(z),
        "--out",
        str(tmp_path / "b"),
        "--cache-dir",
        str(tmp_path / "c"),
        check=False,
    )
    assert proc.returncode == 0 and "__MACOSX" not in proc.stdout, proc.stdout + proc.stderr
    # a tar with a link member: named, skipped, nothing outside the cache written
    tar = tmp_path / "cifar.tar.gz"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    with tarfile.open(tar, "w:gz") as tf:
        link = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        link.type, link.linkname = tarfile.SYMTYPE, str(victim)
        tf.addfile(link)
    proc = run_cli("audit", str(tar), "--cache-dir", str(tmp_path / "c"), check=False)
    assert "skipped link or device member 'cifar-10-batches-py/batches.meta'" in proc.stderr
    assert "holds no CIFAR-10 batches.meta" in proc.stderr and proc.returncode == 1
    assert victim.read_text() == "precious"


def test_an_oversized_file_is_refused_before_it_is_read_whole(
    tiny_folder: Path, tmp_path: Path
) -> None:
    big = tiny_folder / "train" / "red" / "huge.jpg"
    with open(big, "wb") as f:
        f.truncate(3 * 2**20)  # sparse: 3 MB that never needs reading to be refused
    proc = run_cli(
        "audit",
        str(tiny_folder),
        "--out",
        str(tmp_path / "a"),
        check=False,
        env={"IMGCLF_MAX_IMAGE_MB": "2"},
    )
    assert proc.returncode == 1
    assert "huge.jpg: file is 3 MB, over the 2 MB limit (IMGCLF_MAX_IMAGE_MB)" in proc.stdout
