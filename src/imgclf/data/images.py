"""Decode any image file to an RGB PIL image, or fail with a one-line reason."""

from __future__ import annotations

import io
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from imgclf.settings import settings

# Truncated files must fail, not be silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageDecodeError(Exception):
    """A file that cannot become an RGB image; str() is the reason, without the path."""


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def read_bytes(path: str, max_bytes: int = 0) -> bytes:
    """A regular file's bytes, at most max_bytes (0: IMGCLF_MAX_IMAGE_MB, imgclf.settings).
    Anything else (a FIFO that would block forever, a link to /dev/zero whose st_size of 0 hides
    an endless stream) is refused, unopened."""
    max_bytes = max_bytes or settings().max_image_bytes
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then says what it is
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except IsADirectoryError:
        raise ImageDecodeError("is a directory") from None
    except OSError as e:
        raise ImageDecodeError(f"cannot read: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a file")
            raise ImageDecodeError(f"not a regular file ({kind})")
        if st.st_size > max_bytes:
            raise ImageDecodeError(
                f"file is {st.st_size / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB limit "
                "(IMGCLF_MAX_IMAGE_MB)"
            )
        try:
            data = f.read(max_bytes + 1)  # bounded, whatever the size said
        except OSError as e:
            raise ImageDecodeError(f"cannot read: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise ImageDecodeError(f"file grew past the {max_bytes / 2**20:.0f} MB limit while read")
    return data


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and float scans: scale the used range to 8 bits instead of clipping at 255.
        # Integer division for 16-bit (no float copy: a 9400 px square took 2.2 GB as float64).
        a = np.asarray(img)
        if img.mode.startswith("I;16"):
            out = (a.astype(np.uint16) // 257).astype(np.uint8)
        else:
            a = a.astype(np.float32, copy=False)
            out = np.clip(a * (255.0 / max(float(a.max()), 1.0)), 0, 255).astype(np.uint8)
        img = Image.fromarray(out, "L")
    if img.mode == "RGB":
        return img
    try:
        with warnings.catch_warnings():
            # Palette images with transparency warn on convert; the result is what we want.
            warnings.simplefilter("ignore", UserWarning)
            return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageDecodeError(f"unsupported mode {img.mode}: {e}") from None


def open_image(data: bytes, draft: int = 0, max_pixels: int = 0) -> Image.Image:
    """Fully decode bytes into a PIL image (still in its own mode), EXIF orientation applied.

    draft > 0 lets the JPEG decoder scale down by 1/2..1/8 while keeping both sides >= draft,
    which is several times faster than decoding full size and resizing. max_pixels > 0 refuses
    a larger image from its header, before any pixel is decoded (a server's memory cap).
    """
    if not data:
        raise ImageDecodeError("zero bytes")
    try:
        with warnings.catch_warnings():
            # Between 1x and 2x PIL's pixel limit is only a warning; treat it like the error above.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if draft and img.format == "JPEG":
                img.draft("RGB", (draft, draft))
            if max_pixels and img.size[0] * img.size[1] > max_pixels:
                w, h = img.size
                raise ImageDecodeError(
                    f"too many pixels: {w}x{h} = {w * h / 1e6:.0f} Mpx, over the limit of "
                    f"{max_pixels / 1e6:g} Mpx"
                )
            img.load()
            img.info["frames"] = getattr(img, "n_frames", 1)
            # in place: the usual photo needs no turn, and a copy of every decoded image cost
            # the cache build ~6 % of its time
            ImageOps.exif_transpose(img, in_place=True)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageDecodeError(f"decompression bomb: {e}".split(" could be")[0]) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e)
        low = msg.lower()
        if "truncated" in low or "broken data stream" in low or isinstance(e, EOFError):
            raise ImageDecodeError(f"truncated image data ({msg or 'unexpected end'})") from None
        raise ImageDecodeError(f"corrupt image: {msg}") from None
    except Exception as e:  # a decoder bug must not stop a whole run
        raise ImageDecodeError(f"decoder error: {type(e).__name__}: {e}") from None
    return img


def load_rgb(path: str, draft: int = 0) -> Image.Image:
    return to_rgb(open_image(read_bytes(path), draft))


# Beyond this many pixels of the resized image (a 4:1 aspect ratio), only the part of the source
# that lands in the crop is resampled.
MAX_RESIZED_SQUARES = 4


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision's Resize(size) then CenterCrop(size), on a PIL image.

    A thin image (1 x 1,000,000 px) would resize to 32 x 32,000,000 (5.9 GB) before the crop, so
    past MAX_RESIZED_SQUARES only the source box that lands in the crop is resampled: the same
    sampling grid (PIL's two passes round a few pixels by 1 differently, so ordinary photos keep
    the whole-image path and the cached rows they always had). Memory is then bounded by the
    output, whatever the aspect ratio."""
    w, h = img.size
    if w <= h:
        nw, nh = size, max(1, int(size * h / w))
    else:
        nw, nh = max(1, int(size * w / h)), size
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    if nw * nh > MAX_RESIZED_SQUARES * size * size:
        sx, sy = w / nw, h / nh  # source pixels per resized pixel
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        return img.resize((size, size), Image.BILINEAR, box=box)
    img = img.resize((nw, nh), Image.BILINEAR)
    return img.crop((left, top, left + size, top + size))


def decode_square(path: str, size: int) -> np.ndarray:
    """path -> uint8 array (size, size, 3): the cache's and the predictor's preprocessing."""
    img = load_rgb(path, draft=size)
    return np.asarray(resize_center_crop(img, size), dtype=np.uint8)
