"""The --augment kinds on whole uint8 batches: exact mirror images and whole-pixel shifts with the
border reflected, as torchvision's RandomCrop(padding_mode="symmetric") and Keras'
RandomTranslation(fill_mode="reflect") make them; and the same augmentation, draw for draw, as
the float grid_sample warp that imgclf used before the gather (0.5), kept here as the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imgclf.backends.torch import augment
from imgclf.backends.torch.transforms import augment_batch, normalize_batch
from imgclf.data.presets import Preprocess
from imgclf.rules import ROTATION_DEGREES, ROTATION_STEP, shift_pixels


def _batch(n: int = 24, side: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, side, side, 3), dtype=torch.uint8, generator=g)


def _pre(side: int) -> Preprocess:
    return Preprocess(size=side)


def _grid_sample_warp(
    x: torch.Tensor, generator: torch.Generator, kind: str, step: float = 0.0
) -> torch.Tensor:
    """imgclf 0.4's augment_batch on the normalised float NCHW batch: one affine grid per image,
    nearest sampling, zeros (tutorial) or reflection (flip-crop) outside. step: round each
    drawn angle to this many degrees first."""
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    if kind == "flip":
        return torch.where(flip[:, None, None, None], x.flip(3), x)
    angle = dx = dy = torch.zeros(n)
    if kind == "tutorial":
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(ROTATION_DEGREES)
        if step:
            angle = torch.deg2rad(torch.round(torch.rad2deg(angle) / step) * step)
    else:
        side, most = x.shape[-1], shift_pixels(x.shape[-1])
        draws = (torch.randint(-most, most + 1, (n,), generator=generator) for _ in "xy")
        dx, dy = (d * 2.0 / side for d in draws)
    cos, sin, sign = torch.cos(angle), torch.sin(angle), torch.where(flip, -1.0, 1.0)
    theta = torch.stack(
        [torch.stack([cos * sign, -sin, dx], 1), torch.stack([sin * sign, cos, dy], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    pad = "reflection" if kind == "flip-crop" else "zeros"
    return F.grid_sample(x, grid, mode="nearest", padding_mode=pad, align_corners=False)


def _both(
    x: torch.Tensor, kind: str, seed: int, step: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    pre = _pre(x.shape[1])
    new = augment_batch(x, pre, torch.Generator().manual_seed(seed), kind)
    gen = torch.Generator().manual_seed(seed)
    return new, _grid_sample_warp(normalize_batch(x, pre), gen, kind, step)


@pytest.mark.parametrize("kind", ["flip", "flip-crop"])
def test_mirrors_and_shifts_equal_the_grid_sample_warp_bit_for_bit(kind: str) -> None:
    for side, seed in ((16, 1), (32, 2), (224, 3)):
        new, old = _both(_batch(12, side, seed), kind, seed)
        assert torch.equal(new, old)
        assert new.is_contiguous(memory_format=torch.channels_last)


def test_rotation_is_the_grid_sample_rotation_at_the_drawn_angle_on_the_grid() -> None:
    """Same draws (flips, angles), same fill: only the angle's rounding to ROTATION_STEP differs
    from the float warp (a pixel on a rounding tie may go the other way)."""
    for side in (32, 224):
        new, old = _both(_batch(64, side, side), "tutorial", 7, ROTATION_STEP)
        assert (new != old).any(1).float().mean() < 1e-3


@pytest.mark.slow
def test_rotation_views_are_distributed_as_before() -> None:
    """Against the unrounded float warp, draw for draw (400 views of one 224 px photo-sized
    image): as many mirrors, the same spread of how much of the image moved and of the blank
    corners, and no pixel further than one pixel from where the exact angle puts it."""
    x = _batch(1, 224, 5).expand(200, -1, -1, -1).contiguous()
    new, old = _both(x, "tutorial", 11)
    base = normalize_batch(x, _pre(224))
    for stat in (
        lambda v: (v != base).any(1).float().mean((1, 2)),  # how much moved
        lambda v: (v == 0).all(1).float().mean((1, 2)),  # how much is blank
    ):
        a, b = stat(new).numpy(), stat(old).numpy()
        assert abs(a.mean() - b.mean()) < 0.003
        assert np.quantile(a, [0.1, 0.5, 0.9]) == pytest.approx(
            np.quantile(b, [0.1, 0.5, 0.9]), abs=0.01
        )
    # a pixel that differs holds a value found within one pixel of it in the exact view (but
    # on the edge of the blank corners, which moves by a pixel too: 0.52 % of pixels measured)
    near = torch.stack([old.roll((dy, dx), (2, 3)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    assert (near == new).all(2).any(0).float().mean() > 0.99


def test_flip_gives_each_image_or_its_mirror_and_both_occur() -> None:
    x = _batch()
    out = augment_batch(x, _pre(16), torch.Generator().manual_seed(1), "flip")
    plain, mirror = normalize_batch(x, _pre(16)), normalize_batch(x.flip(2), _pre(16))
    same = [torch.equal(o, i) for o, i in zip(out, plain, strict=True)]
    mirrored = [torch.equal(o, i) for o, i in zip(out, mirror, strict=True)]
    assert all(a or b for a, b in zip(same, mirrored, strict=True))
    assert any(same) and any(mirrored)


def _shifted(image: np.ndarray, dx: int, dy: int, most: int) -> np.ndarray:
    """image (H, W, 3) moved by (dx, dy) pixels, the uncovered border mirrored."""
    padded = np.pad(image, ((most, most), (most, most), (0, 0)), mode="symmetric")
    h, w = image.shape[:2]
    return padded[most + dy : most + dy + h, most + dx : most + dx + w]


def test_flip_crop_is_a_whole_pixel_shift_of_the_image_or_its_mirror() -> None:
    x = _batch(side=32)
    warp = augment.draw_warp("flip-crop", len(x), 32, torch.Generator().manual_seed(2))
    assert warp is not None
    out = warp.apply(x).numpy()
    most = shift_pixels(32)
    assert most == 2
    shifts = set()
    for o, img in zip(out, x.numpy(), strict=True):
        found = [
            (f, dx, dy)
            for f, view in ((0, img), (1, img[:, ::-1]))
            for dx in range(-most, most + 1)
            for dy in range(-most, most + 1)
            if np.array_equal(o, _shifted(view, dx, dy, most))
        ]
        assert found, "not a shifted copy"
        shifts.add(found[0][1:])
    assert len(shifts) > 3  # the draws vary


def test_none_is_the_normalised_batch() -> None:
    x = _batch()
    out = augment_batch(x, _pre(16), torch.Generator().manual_seed(3), "none")
    assert torch.equal(out, normalize_batch(x, _pre(16)))


@pytest.mark.parametrize("kind", ["tutorial", "flip", "flip-crop"])
def test_the_batched_gather_the_gpu_runs_equals_the_per_image_one(kind: str) -> None:
    x = _batch(9, 40, 4)
    warp = augment.draw_warp(kind, len(x), 40, torch.Generator().manual_seed(5))
    assert warp is not None
    src = x.reshape(9, -1, 3)
    assert torch.equal(augment._gather_each(src, warp), augment._gather_batched(src, warp))
    if warp.blank_mask is not None:
        each = normalize_batch(x, _pre(40)).permute(0, 2, 3, 1).reshape(9, -1, 3)
        batched = each.clone()
        augment._clear_each(each, warp)
        augment._clear_batched(batched, warp)
        assert torch.equal(each, batched) and (each == 0).all(-1).any()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["tutorial", "flip", "flip-crop", "none"])
def test_cuda_batches_get_the_cpus_views(kind: str) -> None:
    """The CUDA path gathers the whole batch in one kernel; the views are the CPU's."""
    x, pre = _batch(16, 64, 9), _pre(64)
    cpu = augment_batch(x, pre, torch.Generator().manual_seed(5), kind)
    gpu = augment_batch(x.cuda(), pre, torch.Generator().manual_seed(5), kind)
    assert gpu.is_cuda and gpu.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-6)


def test_the_numpy_normalisation_matches_the_torch_loaders_in_both_layouts() -> None:
    """Keras and the ONNX runtime normalise with Preprocess.normalize (serve's ONNX path had its
    own copy): both layouts give what the PyTorch loaders give."""
    from imgclf.data.presets import LITE_MEAN, LITE_STD

    x = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    for pre in (Preprocess(8), Preprocess(8, LITE_MEAN, LITE_STD)):
        want = normalize_batch(torch.from_numpy(x), pre).numpy()
        nchw = pre.normalize(x, channels_first=True)
        assert nchw.dtype == np.float32 and nchw.flags["C_CONTIGUOUS"]
        np.testing.assert_allclose(nchw, want, atol=1e-5)
        np.testing.assert_allclose(pre.normalize(x), want.transpose(0, 2, 3, 1), atol=1e-5)
