"""The tutorials' transform presets (PIL, per image) and the same ops on whole batches (tensors)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from imgclf.data.images import resize_center_crop
from imgclf.data.presets import Preprocess
from imgclf.rules import ROTATION_DEGREES, shift_pixels


def train_preset(pre: Preprocess, kind: str = "tutorial") -> T.Compose:
    """The first tutorial's train_transform (kind "tutorial"), or the flip / flip-crop presets,
    with size and normalisation from the model."""
    before = {"tutorial": [T.RandomRotation(ROTATION_DEGREES), T.RandomHorizontalFlip()]}
    after = {
        "flip": [T.RandomHorizontalFlip()],
        "flip-crop": [
            T.RandomHorizontalFlip(),
            T.RandomCrop(pre.size, padding=shift_pixels(pre.size), padding_mode="symmetric"),
        ],
    }
    return T.Compose(
        [
            *before.get(kind, []),
            ResizeCenterCrop(pre.size),
            *after.get(kind, []),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )


def eval_preset(pre: Preprocess) -> T.Compose:
    return T.Compose([ResizeCenterCrop(pre.size), T.ToTensor(), T.Normalize(pre.mean, pre.std)])


class ResizeCenterCrop:
    """T.Resize(size) + T.CenterCrop(size) as the cache computes them (the same PIL calls), with
    memory bounded by the output for thin images (data/images.resize_center_crop)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img: Image.Image) -> Image.Image:
        return resize_center_crop(img, self.size)


def normalize_batch(x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """uint8 NHWC (resized and cropped) -> normalised float NCHW in channels_last memory.

    Works in NHWC, where the per-channel constants broadcast over the last axis (one fused pass,
    ~3x faster on CPU than broadcasting over NCHW), then permutes as a view: NHWC memory is
    exactly channels_last.
    """
    scale = 1.0 / (torch.tensor(pre.std, device=x.device) * 255.0)
    shift = -torch.tensor(pre.mean, device=x.device) / torch.tensor(pre.std, device=x.device)
    return torch.addcmul(shift, x.float(), scale).permute(0, 3, 1, 2)


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    kind: str = "tutorial",
    part: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The train augmentation `kind` on a float NCHW batch, one affine warp per image:
    tutorial: random horizontal flip and rotation in [-10, 10] degrees (the corners it uncovers
    fill with 0, the mean colour after normalising; RandomRotation fills black);
    flip: the flip alone; flip-crop: the flip and a whole-pixel shift of up to 1/16 of the side
    in x and y, the border mirrored (RandomCrop with symmetric padding).

    The random draws come from `generator` (CPU) for repeatability. part=(offset, global length):
    x is one rank's share of a global batch; every rank draws for the whole batch and keeps its
    share, so the images get the draws they would get in one process.
    """
    n = x.shape[0]
    lo, total = part or (0, n)
    if kind == "none":
        return x
    keep = slice(lo, lo + n)
    flip = (torch.rand(total, generator=generator) < 0.5)[keep]
    if kind == "flip":  # a mirror needs no resampling: select between the two views
        return torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)
    zeros = torch.zeros(total)[keep]
    angle, dx, dy = zeros, zeros, zeros
    if kind == "tutorial":
        angle = (torch.rand(total, generator=generator) * 2 - 1) * math.radians(ROTATION_DEGREES)
        angle = angle[keep]
    elif kind == "flip-crop":
        side, most = x.shape[-1], shift_pixels(x.shape[-1])
        dx, dy = (
            torch.randint(-most, most + 1, (total,), generator=generator)[keep] * 2.0 / side
            for _ in range(2)
        )
    if n == 0:  # a rank's empty share of a short last batch: drawn for, nothing to warp
        return x
    cos, sin = torch.cos(angle), torch.sin(angle)
    sign = torch.where(flip, -1.0, 1.0)
    # One affine grid does it all: [[cos*s, -sin, dx], [sin*s, cos, dy]] with s = -1 mirroring x.
    theta = torch.stack(
        [torch.stack([cos * sign, -sin, dx], 1), torch.stack([sin * sign, cos, dy], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    # nearest, RandomRotation's default: also 2.6x faster than bilinear here (24 vs 62 ms/batch),
    # and exact for whole-pixel shifts
    pad = "reflection" if kind == "flip-crop" else "zeros"
    return F.grid_sample(x, grid, mode="nearest", padding_mode=pad, align_corners=False)
