"""The tutorials' transform presets (PIL, per image) and the same ops on whole batches (tensors)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision import transforms as T

from imgclf.data.presets import Preprocess

ROTATION_DEGREES = 10.0  # the first tutorial's RandomRotation(10)


def train_preset(pre: Preprocess) -> T.Compose:
    """The first tutorial's train_transform, with size and normalisation from the model."""
    return T.Compose(
        [
            T.RandomRotation(ROTATION_DEGREES),
            T.RandomHorizontalFlip(),
            T.Resize(pre.size),
            T.CenterCrop(pre.size),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )


def eval_preset(pre: Preprocess) -> T.Compose:
    return T.Compose(
        [T.Resize(pre.size), T.CenterCrop(pre.size), T.ToTensor(), T.Normalize(pre.mean, pre.std)]
    )


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
    degrees: float = ROTATION_DEGREES,
    part: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random horizontal flip and rotation in [-degrees, degrees] per image, on float NCHW.

    Runs on normalised images, so the corners a rotation uncovers fill with 0, the mean colour
    (RandomRotation fills black), and after the crop rather than before it as the tutorial does.
    The random draws come from `generator` (CPU) for repeatability. part=(offset, global length):
    x is one rank's share of a global batch; every rank draws for the whole batch and keeps its
    share, so the images get the draws they would get in one process.
    """
    n = x.shape[0]
    lo, total = part or (0, n)
    flip = (torch.rand(total, generator=generator) < 0.5)[lo : lo + n]
    angle = ((torch.rand(total, generator=generator) * 2 - 1) * math.radians(degrees))[lo : lo + n]
    if n == 0:  # a rank's empty share of a short last batch: drawn for, nothing to warp
        return x
    cos, sin = torch.cos(angle), torch.sin(angle)
    sign = torch.where(flip, -1.0, 1.0)
    # One affine grid does both: [[cos*s, -sin, 0], [sin*s, cos, 0]] with s = -1 mirroring x.
    theta = torch.stack(
        [
            torch.stack([cos * sign, -sin, torch.zeros(n)], 1),
            torch.stack([sin * sign, cos, torch.zeros(n)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    # nearest, RandomRotation's default: also 2.6x faster than bilinear here (24 vs 62 ms/batch)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
