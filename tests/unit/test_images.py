"""Decoding: every mode becomes RGB, EXIF orientation applies, bad bytes give a reason."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.images import ImageDecodeError, decode_square, load_rgb


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    ext = "jpg" if mode == "CMYK" else "png"
    p = tmp_path / f"x.{ext}"
    img = (
        Image.new("RGB", (20, 10), (200, 100, 50)).convert(mode)
        if mode != "I;16"
        else Image.fromarray(np.full((10, 20), 40000, dtype=np.uint16))
    )
    img.save(p)
    out = load_rgb(str(p))
    assert out.mode == "RGB" and out.size == (20, 10)
    if mode == "I;16":  # 16-bit scaled into 8 bits, not clipped to white
        assert 150 < np.asarray(out)[0, 0, 0] < 160


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif)
    assert load_rgb(str(p)).size == (20, 40)


def test_decode_square_is_resize_then_center_crop(tmp_path: Path) -> None:
    a = np.zeros((50, 100, 3), dtype=np.uint8)
    a[:, 25:75] = 255  # white centre band: after crop the whole square is white
    p = tmp_path / "wide.png"
    Image.fromarray(a).save(p)
    sq = decode_square(str(p), 20)
    assert sq.shape == (20, 20, 3) and sq[:, 2:-2].min() > 200


@pytest.mark.parametrize(
    "data,reason", [(b"", "zero bytes"), (b"hello, I am text", "not an image")]
)
def test_bad_bytes_have_reasons(tmp_path: Path, data: bytes, reason: str) -> None:
    p = tmp_path / "bad.jpg"
    p.write_bytes(data)
    with pytest.raises(ImageDecodeError, match=reason):
        load_rgb(str(p))


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buf, format="JPEG"
    )
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_rgb(str(p))
