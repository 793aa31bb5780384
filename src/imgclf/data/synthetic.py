"""`imgclf bench`: the hardware benchmark as a command. Without DATA it writes its own folder of
photo-sized JPEGs, so it runs anywhere; the stages themselves are the PyTorch backend's
(`backends/torch/bench.py`), the same code `imgclf train` and `imgclf predict` run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgclf.config import RunConfig
from imgclf.files import write_json
from imgclf.tables import table

# Kaggle Dogs-vs-Cats photos are mostly about 500 x 375, portrait and landscape
PHOTO_SIZES = ((500, 375), (375, 500), (500, 333), (400, 300), (320, 240))


def synthetic_folder(root: Path, images: int, seed: int = 0) -> Path:
    """train/ and test/ (4:1) of two classes of smooth, photo-sized JPEGs: random colour fields
    with grain, which encode and decode at a photo's cost (pure noise would be far slower)."""
    rng = np.random.default_rng(seed)
    for i in range(images):
        w, h = PHOTO_SIZES[i % len(PHOTO_SIZES)]
        field = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(field).resize((w, h), Image.BICUBIC)
        grain = rng.normal(0, 6, (h, w, 3))
        arr = np.clip(np.asarray(img, np.float32) + grain, 0, 255).astype(np.uint8)
        split = "test" if i % 5 == 4 else "train"
        folder = root / split / ("a", "b")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def run_bench(
    cfg: RunConfig, images: int, decode_images: int = 200, steps: int = 20
) -> tuple[list, dict]:
    """cfg.data_dir, or `images` synthetic JPEGs when it is empty."""
    from imgclf import backends

    with tempfile.TemporaryDirectory(prefix="imgclf-bench-data-") as tmp:
        source = cfg.data_dir or f"synthetic: {images} JPEGs"
        if not cfg.data_dir:
            cfg = cfg.replace(data_dir=str(synthetic_folder(Path(tmp), images, cfg.seed)))
        rows, info = backends.get("torch").bench_stages(cfg, decode_images, steps)
        return rows, {"data": source, **info}


def format_table(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """info as `key: value` lines, then the stages as a Markdown table (for RESULTS.md)."""
    head = [f"{k}: {v}" for k, v in info.items()]
    stages = table([_cells(r) for r in rows], ["stage", "images/s", "ms/batch"], (1, 2), True)
    return "\n".join([*head, "", stages])


def _cells(r: dict[str, Any]) -> list[str]:
    if r["images_per_s"] is None:
        return [r["stage"], f"skipped: {r['note']}", ""]
    ms = f"{r['ms_per_batch']:.1f}" if "ms_per_batch" in r else ""
    return [r["stage"], f"{r['images_per_s']:.1f}", ms]


def write_bench_json(path: str, rows: list, info: dict) -> None:
    write_json(Path(path), {"info": info, "stages": rows})
