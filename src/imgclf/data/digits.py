"""`imgclf demo` (what `make demo` runs): the whole job, offline, on real images that ship with
scikit-learn: its 1,797 8x8 handwritten digits, written out as an image folder. The steps are
data here; the CLI runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.data.folder import ImageIndex, stratified_split  # noqa: I001
from imgclf.files import atomic_write
from imgclf.runs import RunDir


def write_digits_folder(root: str | Path, seed: int = 0) -> Path:
    """root/{train,test}/<digit>/<n>.png, a stratified 80/20 split; idempotent."""
    from sklearn.datasets import load_digits

    root = Path(root)
    if (root / ".complete").exists():
        return root
    digits = load_digits()
    # 0..16 ink levels -> 8-bit grey, dark digit on white like a scanned form
    images = (255 - digits.images * (255 / 16)).round().astype(np.uint8)
    names = [f"{d}" for d in range(10)]
    fake = ImageIndex([str(i) for i in range(len(images))], digits.target.tolist(), names)
    train, test = stratified_split(fake, 0.2, seed)
    for split, idx in (("train", train), ("test", test)):
        for key, y in zip(idx.paths, idx.labels, strict=True):
            d = root / split / names[y]
            d.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(images[int(key)], "L")
            atomic_write(d / f"{int(key):04d}.png", lambda t, im=img: im.save(t, format="PNG"))
    (root / ".complete").write_text("ok\n")
    return root


def demo_steps(out: Path, epochs: int = 8) -> list[list[str]]:
    """The demo's commands (argv lists), on the digits folder written under `out`."""
    data = write_digits_folder(out / "digits")
    run = out / "run-cnn"
    train = ["train", str(data), "--model", "cnn", "--image-size", "32", "--epochs", str(epochs)]
    train += ["--batch-size", "32", "--out", str(run)]
    if RunDir(run).is_run():  # a second `make demo` continues the first run
        train = ["train", "--resume", str(run)]
    examples = [str(next((data / "test" / d).iterdir())) for d in "0379"]
    return [
        ["audit", str(data), "--out", str(out / "audit")],
        ["preview", str(data), "--out", str(out / "preview"), "--image-size", "32"],
        train,
        ["evaluate", str(run)],
        ["predict", str(run), *examples, "--grid", str(out / "predictions.png")],
    ]
