"""The transfer recipe's levers (issue 40), each side by side on the same features.

Phase 1 (`features`): frozen EfficientNet-Lite features of CATS_DOGS train and test, and of sets
built here to be unlike the training photos, at a backbone's size or larger, for several views of
each photo: `c` (shorter side resized, centre crop: what the recipe does), `f` (the whole photo
squashed to a square: nothing cut off) and their mirrors `cm`, `fm`. Saved as .npy under --work.

Phase 2 (`heads`): logistic-regression heads fitted on train views, scored on every set with
every test-time view combination; the weight decay by 5-fold CV on train (never the test sets).

The sets built from the 1,000 test photos (seeded, so every variant sees the same images):
- shifted: the centre 70 % at 35 % of the size, JPEG quality 30 (bench_int8's copy);
- offcrop: a crop of 45-70 % of each side at a random place, JPEG quality 75 (other framing);
- cifar: CIFAR-10's first 500 cat and 500 dog test images (32 px; another source altogether).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).parent))
from common import CATS_DOGS, CIFAR_ZIP  # noqa: E402

CLASSES = ("CAT", "DOG")
VIEWS = ("c", "cm", "f", "fm")


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def shifted(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    crop = img.crop((int(w * 0.15), int(h * 0.15), int(w * 0.85), int(h * 0.85)))
    return _jpeg(crop.resize((max(1, int(w * 0.35)), max(1, int(h * 0.35)))), 30)


def offcrop(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    cw, ch = int(w * rng.uniform(0.45, 0.7)), int(h * rng.uniform(0.45, 0.7))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return _jpeg(img.crop((x, y, x + cw, y + ch)), 75)


def photos(split: str) -> tuple[list[Image.Image], np.ndarray]:
    imgs, labels = [], []
    for k, c in enumerate(CLASSES):
        for f in sorted((CATS_DOGS / split / c).iterdir()):
            imgs.append(ImageOps.exif_transpose(Image.open(f)).convert("RGB"))
            labels.append(k)
    return imgs, np.array(labels)


def cifar_cats_dogs() -> tuple[list[Image.Image], np.ndarray]:
    imgs, labels = [], []
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        for name in sorted(z.namelist()):
            parts = name.lower().split("/")
            if "test" in parts and any(p in ("cat", "dog") for p in parts[:-1]):
                label = 0 if "cat" in parts[:-1] else 1
                if labels.count(label) == 500:
                    continue
                imgs.append(Image.open(io.BytesIO(z.read(name))).convert("RGB"))
                labels.append(label)
    return imgs, np.array(labels)


def unlike(test: list[Image.Image]) -> dict[str, list[Image.Image]]:
    """The seeded sets built from the test photos (unlike_sets.py writes the same as folders)."""
    out = {}
    for name, make in (("shifted", shifted), ("offcrop", offcrop)):
        rng = random.Random(40)
        out[name] = [make(im, rng) for im in test]
    return out


def sets() -> dict[str, tuple[list[Image.Image], np.ndarray]]:
    train, test = photos("train"), photos("test")
    out = {"train": train, "test": test}
    out.update({name: (imgs, test[1]) for name, imgs in unlike(test[0]).items()})
    out["cifar"] = cifar_cats_dogs()
    return out


def view(img: Image.Image, size: int, kind: str) -> np.ndarray:
    if kind.startswith("c"):
        w, h = img.size
        s = size / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    else:
        img = img.resize((size, size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    return a[:, ::-1] if kind.endswith("m") else a


class Tap:
    """Keeps the output of one backbone block: the fine-tuning lever trains what follows it."""

    def __init__(self, net: object, block: int):
        self.last = None
        net._blocks[block].register_forward_hook(self._keep)  # type: ignore[attr-defined]

    def _keep(self, module: object, inputs: object, output: object) -> None:
        self.last = output


def features(args: argparse.Namespace) -> None:
    import torch

    from imgclf.backends.torch.models.efficientnet_lite import LiteFeatures, build_lite_imagenet

    torch.set_num_threads(2)
    data = {k: v for k, v in sets().items() if k in args.sets}
    for spec in args.configs:
        variant, size = (int(x) for x in spec.split("@"))
        net = build_lite_imagenet(variant)
        # the ImageNet classifier, kept for the prior lever (bench_transfer_heads)
        fc = args.work / f"lite{variant}-fc.npz"
        np.savez(fc, w=net._fc.weight.detach().numpy(), b=net._fc.bias.detach().numpy())
        net._fc, net._dropout = torch.nn.Identity(), torch.nn.Identity()
        # channels_last: 1.5x the images/s of NCHW for Lite2 at 260 px in batches of 32 here
        model = LiteFeatures(net).eval().to(memory_format=torch.channels_last)
        tap = Tap(net, args.tap) if args.tap is not None else None
        for name, (imgs, labels) in data.items():
            np.save(args.work / f"{name}-labels.npy", labels)
            for kind in (
                args.views if name in ("train", "test", "shifted", "offcrop") else ("c", "cm")
            ):
                out = args.work / f"lite{variant}@{size}-{kind}-{name}.npy"
                if out.exists():
                    continue
                t0, rows, maps = time.perf_counter(), [], []
                with torch.no_grad():
                    for s in range(0, len(imgs), 32):
                        x = np.stack([view(im, size, kind) for im in imgs[s : s + 32]])
                        t = torch.from_numpy(x).permute(0, 3, 1, 2).float()
                        t = ((t - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)
                        rows.append(model(t).numpy())
                        if tap is not None:
                            maps.append(tap.last.half().contiguous().numpy())
                np.save(out, np.concatenate(rows))
                if maps:
                    np.save(str(out).replace(".npy", f".block{args.tap}.npy"), np.concatenate(maps))
                dt = time.perf_counter() - t0
                print(f"{out.name}: {len(imgs)} images, {dt:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=("features", "heads"), required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/levers"))
    ap.add_argument("--configs", nargs="+", default=["2@260"], help="variant@size")
    ap.add_argument("--views", nargs="+", default=list(VIEWS))
    ap.add_argument("--sets", nargs="+", default=["train", "test", "shifted", "offcrop", "cifar"])
    ap.add_argument("--tap", type=int, help="also save this block's output (float16)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.phase == "features":
        features(args)
    else:
        from bench_transfer_heads import heads

        print(json.dumps(heads(args.work), indent=1))


if __name__ == "__main__":
    main()
