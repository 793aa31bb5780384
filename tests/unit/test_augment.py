"""The --augment kinds on whole batches: exact mirror images and whole-pixel shifts with the
border reflected, as torchvision's RandomCrop(padding_mode="symmetric") and Keras'
RandomTranslation(fill_mode="reflect") make them."""

from __future__ import annotations

import numpy as np
import torch

from imgclf.backends.torch.transforms import augment_batch
from imgclf.rules import shift_pixels


def _batch(n: int = 24, side: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(0))


def test_flip_gives_each_image_or_its_mirror_and_both_occur() -> None:
    x = _batch()
    out = augment_batch(x, torch.Generator().manual_seed(1), "flip")
    same = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, x, strict=True)]
    assert all(a or b for a, b in zip(same, mirrored, strict=True))
    assert any(same) and any(mirrored)


def _shifted(image: np.ndarray, dx: int, dy: int, most: int) -> np.ndarray:
    """image (3, H, W) moved by (dx, dy) pixels, the uncovered border mirrored."""
    padded = np.pad(image, ((0, 0), (most, most), (most, most)), mode="symmetric")
    h, w = image.shape[1:]
    return padded[:, most + dy : most + dy + h, most + dx : most + dx + w]


def test_flip_crop_is_a_whole_pixel_shift_of_the_image_or_its_mirror() -> None:
    x = _batch(side=32)
    out = augment_batch(x, torch.Generator().manual_seed(2), "flip-crop").numpy()
    most = shift_pixels(32)
    assert most == 2
    shifts = set()
    for o, img in zip(out, x.numpy(), strict=True):
        found = [
            (f, dx, dy)
            for f, view in ((0, img), (1, img[:, :, ::-1]))
            for dx in range(-most, most + 1)
            for dy in range(-most, most + 1)
            if np.array_equal(o, _shifted(view, dx, dy, most))
        ]
        assert found, "not a shifted copy"
        shifts.add(found[0][1:])
    assert len(shifts) > 3  # the draws vary


def test_none_leaves_the_batch_alone() -> None:
    x = _batch()
    assert augment_batch(x, torch.Generator().manual_seed(3), "none") is x
