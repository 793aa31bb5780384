"""Explanations for `predict --explain`, the evaluation report and `serve ?explain=1`: the
backend's Grad-CAM map of each image for one class, laid over the picture the model saw, and
where its peak is in the original photo's own pixels."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from imgclf.calibration import with_temperature
from imgclf.files import atomic_write
from imgclf.messages import UsageError
from imgclf.predictor import (
    Calibrated,
    FlipTTA,
    MultiLabel,
    Predictor,
    answer,
    decoded_batches,
    thresholds_of,
)
from imgclf.viz import blend

MIN_SIDE = 224  # overlays of small inputs (32 px CIFAR) are enlarged to this, so they can be seen


@dataclass
class Explained:
    """One batch: maps (N, size, size) in [0, 1], the class explained per image and every
    image's class probabilities (calibrated and averaged as the predictor's own would be)."""

    cams: np.ndarray
    classes: list[int]
    probs: np.ndarray


def explainer(predictor: Predictor) -> tuple[object, float | None, bool]:
    """(the backend's predictor, the run's temperature, flip TTA on) behind the wrappers; a
    backend without Grad-CAM is refused by name."""
    if isinstance(predictor, MultiLabel):  # its thresholds act on the rows, not the maps
        predictor = predictor.inner
    temperature = predictor.temperature if isinstance(predictor, Calibrated) else None
    inner = predictor.inner if isinstance(predictor, Calibrated) else predictor
    tta = isinstance(inner, FlipTTA)
    base = inner.inner if isinstance(inner, FlipTTA) else inner
    if not hasattr(base, "explain"):
        backend = predictor.meta.get("backend", "?")
        raise UsageError(
            f"explanations (Grad-CAM) are built for PyTorch runs; this is a {backend} run"
        )
    return base, temperature, tta


def explain_batch(
    predictor: Predictor, images: np.ndarray, classes: list[int] | None = None
) -> Explained:
    """One forward and one backward pass (a second forward for the mirror under flip TTA)."""
    base, temperature, tta = explainer(predictor)
    cams, probs = base.explain(images, classes)  # type: ignore[attr-defined]
    explained = list(classes) if classes is not None else probs.argmax(1).tolist()
    if tta:
        mirrored = np.ascontiguousarray(images[:, :, ::-1])
        probs = (probs + base.predict_proba(mirrored)) / 2  # type: ignore[attr-defined]
    if temperature:
        probs = with_temperature(probs, temperature)
    return Explained(cams, explained, probs)


def original_size(path: str | io.BytesIO) -> tuple[int, int]:
    """(width, height) of the photo as shown: EXIF orientation applied, as decoding does (from
    the header: nothing is decoded)."""
    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated a quarter turn
            w, h = h, w
    return w, h


def to_original(x: float, y: float, w: int, h: int, size: int) -> tuple[float, float]:
    """A pixel of the model's size x size input -> the original w x h photo's pixel: undo the
    centre crop, then the resize of the shorter side to `size` (data/images.py's rule)."""
    if w <= h:
        nw, nh = size, max(1, int(size * h / w))
    else:
        nw, nh = max(1, int(size * w / h)), size
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return (x + left + 0.5) * w / nw - 0.5, (y + top + 0.5) * h / nh - 0.5


def peak(cam: np.ndarray) -> tuple[int, int]:
    """(x, y) of the map's maximum, in the model's input pixels."""
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(x), int(y)


def overlay(image: np.ndarray, cam: np.ndarray, caption: str) -> Image.Image:
    """The picture the model saw with the map laid over it (jet, 45 %) and a caption below."""
    pic = Image.fromarray(blend(image, cam))
    if pic.width < MIN_SIDE:
        pic = pic.resize((MIN_SIDE, MIN_SIDE), Image.BILINEAR)
    out = Image.new("RGB", (pic.width, pic.height + 22), "white")
    out.paste(pic, (0, 0))
    ImageDraw.Draw(out).text((4, pic.height + 5), caption, fill="black")
    return out


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def explain_class(names: list[str], name: str) -> int:
    """--explain-class NAME -> its index, or a usage error listing the classes."""
    if name not in names:
        raise UsageError(f"--explain-class {name!r}: the model's classes are {', '.join(names)}")
    return names.index(name)


def overlay_name(path: str, index: int) -> str:
    """A file name for an image's overlay that two inputs with one name never share."""
    stem = Path(path).stem.encode("utf-8", "replace").decode()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80]
    return f"{index:05d}_{safe or 'image'}.png"


def explain_paths(
    predictor: Predictor,
    paths: list[str],
    out_dir: str | Path,
    cls: int | None = None,
    batch_size: int = 32,
    top_k: int = 3,
) -> list[dict[str, Any]]:
    """predict_paths' rows, each with "explanation": the overlay PNG written into out_dir, the
    class explained and the map's peak in the original photo's pixels."""
    explainer(predictor)  # refuse a backend without Grad-CAM before any work
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names, size = predictor.class_names, predictor.pre.size
    rows: list[dict[str, Any]] = [{"path": p} for p in paths]
    for good, batch, bad in decoded_batches(paths, size, batch_size):
        for i, why in bad.items():
            rows[i]["error"] = why
        if not good:
            continue
        e = explain_batch(predictor, batch, None if cls is None else [cls] * len(good))
        for k, j in enumerate(good):
            rows[j].update(answer(e.probs[k], names, top_k, thresholds_of(predictor)))
            c = e.classes[k]
            png = out / overlay_name(paths[j], j)
            rows[j]["explanation"] = write_overlay(
                png, batch[k], e.cams[k], e.probs[k], c, names, paths[j]
            )
            if cls is None and len(rows[j].get("labels", [])) > 1:  # multi-label: each class
                rows[j]["explanations"] = [rows[j]["explanation"]] + [
                    _one_more(predictor, batch[k], names.index(n), out, paths[j], j)
                    for n in rows[j]["labels"][1:]
                ]
    return rows


def write_overlay(
    png: Path,
    image: np.ndarray,
    cam: np.ndarray,
    probs: np.ndarray,
    c: int,
    names: list[str],
    path: str,
) -> dict[str, Any]:
    """The overlay PNG of class c's map, and its row: png, class, the peak in the photo's pixels."""
    img = overlay(image, cam, f"{names[c]} {probs[c]:.2f}")
    # zlib level 1: a fifth of the default's time (17 ms an overlay here), a bigger file
    atomic_write(png, lambda t, img=img: img.save(t, "PNG", compress_level=1))
    x, y = to_original(*peak(cam), *original_size(path), image.shape[0])
    return {"png": str(png), "class": names[c], "peak_xy": [round(x, 1), round(y, 1)]}


def _one_more(
    predictor: Predictor, image: np.ndarray, c: int, out: Path, path: str, j: int
) -> dict[str, Any]:
    """A multi-label image's map for one more of its classes (another backward pass)."""
    e = explain_batch(predictor, image[None], [c])
    png = out / f"{overlay_name(path, j)[:-4]}_{c}.png"
    return write_overlay(png, image, e.cams[0], e.probs[0], c, predictor.class_names, path)


def top_loss_maps(predictor: Predictor) -> Any:
    """Grad-CAM for the top losses: f(images, classes) -> maps, or None (said) for a backend
    without it."""
    try:
        base, _, _ = explainer(predictor)
    except UsageError as e:
        print(f"note: top losses without heatmaps: {e}")
        return None
    return lambda images, classes: base.explain(images, classes)[0]
