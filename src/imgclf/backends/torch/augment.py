"""The --augment kinds on whole uint8 batches (NHWC, as the decoded cache stores them), FFCV's
way: each image's flip, rotation or shift is one gather of its pixels through an integer index
map, so the batch is moved once as bytes and turned into floats once, by normalisation, after.

What each kind draws is unchanged (rules.py holds the constants; the draws come from the same
generator calls in the same order as before): tutorial, a mirror with p = 1/2 and an angle in
[-10, 10] degrees, nearest-neighbour, the uncovered corners 0 after normalising (the mean
colour); flip, the mirror alone; flip-crop, the mirror and a whole-pixel shift of up to 1/16 of
the side, the border mirrored. Rotation maps are computed once per side for each angle on a
ROTATION_STEP grid (81 angles, mirrored or not) by grid_sample's nearest rule, and the drawn
angle takes the nearest of them: at 224 px the two differ by at most 0.35 px at the corners.
Mirrors and shifts are exact (integer maps; the same pixels as the grid_sample warp they replace).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from imgclf.rules import ROTATION_DEGREES, ROTATION_STEP, shift_pixels


@dataclass(frozen=True)
class Warp:
    """Where every output pixel of every image of a batch comes from."""

    maps: torch.Tensor  # (K, H*W) int32: the flat source pixel of each output pixel
    ids: torch.Tensor  # (n,) int64: the map each image takes; -1 leaves the image as it is
    blank: tuple[torch.Tensor, ...] = ()  # per map, output pixels from outside the image (int64)
    blank_mask: torch.Tensor | None = None  # the same as a (K, H*W) bool mask (the CUDA path)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (n, H, W, 3) -> the warped batch, a new tensor of the same shape."""
        n, h, w, c = x.shape
        src = x.reshape(n, h * w, c)  # h * w, not -1: a rank's share can be empty
        out = _gather_batched(src, self) if x.is_cuda else _gather_each(src, self)
        return out.view(n, h, w, c)

    def clear_blank(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float (n, H, W, 3): the pixels the warp uncovered set to 0, in place."""
        if self.blank_mask is None:
            return x
        n, h, w, c = x.shape
        flat = x.view(n, h * w, c)
        (_clear_batched if x.is_cuda else _clear_each)(flat, self)
        return x


def _clear_each(flat: torch.Tensor, warp: Warp) -> None:
    """Only the uncovered pixels are touched: ~5 % of a 224 px image at 10 degrees."""
    for i, k in enumerate(warp.ids.tolist()):
        if k >= 0 and len(warp.blank[k]):
            flat[i].index_fill_(0, warp.blank[k], 0.0)


def _clear_batched(flat: torch.Tensor, warp: Warp) -> None:
    """One masked fill for the batch (CUDA: no launch per image)."""
    assert warp.blank_mask is not None
    ids = warp.ids.to(flat.device)
    mask = warp.blank_mask[ids.clamp_min(0)] & (ids >= 0)[:, None]
    flat.masked_fill_(mask[..., None], 0.0)


def _gather_each(src: torch.Tensor, warp: Warp) -> torch.Tensor:
    """One index_select of 3-byte pixels per image (CPU: 2.3x a batched gather, which has to
    materialise an int64 index for every byte)."""
    out = torch.empty_like(src)
    for i, k in enumerate(warp.ids.tolist()):
        if k < 0:
            out[i].copy_(src[i])
        else:
            torch.index_select(src[i], 0, warp.maps[k], out=out[i])
    return out


def _gather_batched(src: torch.Tensor, warp: Warp) -> torch.Tensor:
    """The same gather as one kernel for the batch (CUDA: no launch per image)."""
    ids = warp.ids.to(src.device)
    index = warp.maps[ids.clamp_min(0)].long()[..., None].expand(-1, -1, src.shape[-1])
    out = torch.gather(src, 1, index)
    return torch.where((ids >= 0)[:, None, None], out, src)


def draw_warp(
    kind: str,
    n: int,
    side: int,
    generator: torch.Generator,
    part: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
) -> Warp | None:
    """The random views of `kind` for n images of side x side. part=(offset, global length): the
    n images are one rank's share of a global batch; every rank draws for the whole batch and
    keeps its share, so each image gets the draws it would get in one process."""
    lo, total = part or (0, n)
    if kind == "none":
        return None
    keep = slice(lo, lo + n)
    flip = (torch.rand(total, generator=generator) < 0.5)[keep]
    device = torch.device(device)
    if kind == "flip":
        table = _mirror_table(side, str(device))
        return Warp(table, torch.where(flip, 0, -1))
    if kind == "tutorial":
        u = torch.rand(total, generator=generator)[keep]
        step = _angle_index(u)
        maps, blank, mask = _rotation_table(side, str(device))
        return Warp(maps, step * 2 + flip.long(), blank, mask)
    if kind == "flip-crop":
        most = shift_pixels(side)
        dx, dy = (torch.randint(-most, most + 1, (total,), generator=generator)[keep] for _ in "xy")
        return Warp(_shift_maps(side, flip, dx, dy).to(device), torch.arange(n))
    raise ValueError(f"unknown augmentation {kind!r}")


def _angle_index(u: torch.Tensor) -> torch.Tensor:
    """The drawn angle (2u - 1) x 10 degrees as its place on the ROTATION_STEP grid."""
    degrees = (u * 2 - 1) * ROTATION_DEGREES
    return torch.round((degrees + ROTATION_DEGREES) / ROTATION_STEP).long()


def _reflect(p: torch.Tensor, side: int) -> torch.Tensor:
    """Positions past either edge mirrored back, the edge pixel repeated (symmetric padding)."""
    p = torch.where(p < 0, -p - 1, p)
    return torch.where(p >= side, 2 * side - 1 - p, p)


def _shift_maps(side: int, flip: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """(n, side*side) maps of whole-pixel shifts of each image or of its mirror."""
    j = torch.arange(side)
    cols = torch.where(flip[:, None], side - 1 - j, j) + dx[:, None]
    rows = j + dy[:, None]
    maps = _reflect(rows, side)[:, :, None] * side + _reflect(cols, side)[:, None, :]
    return maps.reshape(len(flip), -1).int()


@functools.lru_cache(maxsize=8)
def _mirror_table(side: int, device: str) -> torch.Tensor:
    j = torch.arange(side)
    return (j[:, None] * side + (side - 1 - j)[None, :]).reshape(1, -1).int().to(device)


@functools.lru_cache(maxsize=8)
def _rotation_table(
    side: int, device: str
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
    """Maps for every angle on the grid, each unmirrored (even index) and mirrored (odd): the
    source pixel grid_sample(mode="nearest", align_corners=False) reads for the affine
    [[cos*s, -sin, 0], [sin*s, cos, 0]], s = -1 mirroring. 32 MB at 224 px, built in ~0.1 s."""
    steps = round(2 * ROTATION_DEGREES / ROTATION_STEP) + 1
    maps, blanks = [], []
    for k in range(steps):
        a = math.radians(k * ROTATION_STEP - ROTATION_DEGREES)
        for s in (1.0, -1.0):
            theta = torch.tensor([[[math.cos(a) * s, -math.sin(a), 0.0],
                                   [math.sin(a) * s, math.cos(a), 0.0]]])  # fmt: skip
            grid = F.affine_grid(theta, [1, 1, side, side], align_corners=False)[0]
            ix, iy = (torch.round(((grid[..., d] + 1) * side - 1) / 2).long() for d in (0, 1))
            inside = (ix >= 0) & (ix < side) & (iy >= 0) & (iy < side)
            maps.append(torch.where(inside, iy * side + ix, 0).reshape(-1).int())
            blanks.append(torch.nonzero(~inside.reshape(-1)).flatten())
    mask = torch.zeros(len(maps), side * side, dtype=torch.bool)
    for k, b in enumerate(blanks):
        mask[k, b] = True
    return (torch.stack(maps).to(device), tuple(b.to(device) for b in blanks), mask.to(device))
