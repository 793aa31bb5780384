"""Training rules both backends must agree on, written once: the learning-rate schedule as a pure
function of the step, the fine-tuning phases, the discriminative rate of a pretrained backbone,
the augmentation constants, what --image-size means to AlexNet, the refusal for a model without
a backbone, the best-checkpoint and early-stopping policy, and the data-parallel announcement.
The PyTorch loop calls these; Keras wraps them (a LearningRateSchedule over the same numbers,
layers built from the same constants, callbacks), and tests check that both take the same
learning rate at every step and the same phases.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from imgclf.config import ONECYCLE_END, ONECYCLE_START, ONECYCLE_WARMUP, RunConfig

CACHED_AUGMENT = ("none", "flip")  # --augment kinds whose every view a frozen backbone can
# compute once (the features are cached and only the head trains)
ROTATION_DEGREES = 10.0  # --augment tutorial: the first tutorial's RandomRotation(10)
ROTATION_STEP = 0.25  # degrees: PyTorch rotates through precomputed maps on this grid of angles
# (81 maps a mirror; at 224 px the nearest grid angle moves a corner pixel by at most 0.35 px)
SHIFT_FRACTION = 1 / 16  # --augment flip-crop: 2 px on CIFAR's 32, airbench's choice; the
# common 4 px crop is more augmentation than a short schedule can use


def shift_pixels(size: int) -> int:
    """flip-crop's largest whole-pixel shift for a side of `size`."""
    return max(1, int(size * SHIFT_FRACTION))


def alexnet_flat_side(image_size: int) -> int:
    """The side of the second tutorial's AlexNet's last feature map at --image-size, in both
    backends (neither resizes inside the model: the images are decoded at --image-size)."""
    s = (image_size - 11) // 4 + 1  # conv1 11x11 stride 4, no padding: 227 -> 55
    for _ in range(
        3
    ):  # three 3x3 stride-2 max-pools (convs 2-5 keep the size): 55 -> 27 -> 13 -> 6
        s = (s - 3) // 2 + 1
    if s < 1:
        raise ValueError(f"alexnet needs images of at least 67 px, got {image_size}")
    return s


def lr_factor(step: int, steps_per_epoch: int, cfg: RunConfig) -> float:
    """The multiplier of each group's base rate before optimizer step `step` (0-based, the
    number of steps already taken), nanoGPT's get_lr: cosine over every step, onecycle, step
    (x0.1 every --step-epochs epochs) or constant."""
    total = max(1, steps_per_epoch) * cfg.epochs
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    if cfg.schedule == "step":
        return 0.1 ** ((step // max(1, steps_per_epoch)) // cfg.step_epochs)
    if cfg.schedule == "onecycle":
        return onecycle(step, total)
    return 1.0


def onecycle(step: int, total_steps: int) -> float:
    """Rise linearly from 0.2 to 1 over the first 23 % of the steps, then fall linearly to 0.07."""
    warm = max(1, int(total_steps * ONECYCLE_WARMUP))
    if step < warm:
        return ONECYCLE_START + (1 - ONECYCLE_START) * step / warm
    frac = min(1.0, (step - warm) / max(1, total_steps - warm))
    return 1 - (1 - ONECYCLE_END) * frac


def lr_factors(cfg: RunConfig, steps_per_epoch: int) -> np.ndarray:
    """lr_factor at every step of the run (one more: the value after the last step), for a
    backend whose schedule is evaluated inside a graph."""
    total = max(1, steps_per_epoch) * cfg.epochs
    return np.array([lr_factor(s, steps_per_epoch, cfg) for s in range(total + 1)], np.float32)


def phases(cfg: RunConfig) -> list[tuple[int, int, bool]]:
    """(first epoch, end epoch, backbone frozen) of each fine-tuning phase: fastai's fine_tune
    with --fine-tune-after N trains the head alone for N epochs, then everything."""
    if 0 < cfg.fine_tune_after < cfg.epochs:
        return [(0, cfg.fine_tune_after, True), (cfg.fine_tune_after, cfg.epochs, False)]
    return [(0, cfg.epochs, cfg.freeze or cfg.fine_tune_after > 0)]


def frozen_at(cfg: RunConfig, epoch: int) -> bool:
    """Whether the backbone is frozen during `epoch` (0-based; past the end: as at the end)."""
    return next((f for start, stop, f in phases(cfg) if start <= epoch < stop), phases(cfg)[-1][2])


def unfreezes_at(cfg: RunConfig, epoch: int) -> bool:
    """Whether the backbone starts learning at `epoch` (a phase boundary of phases())."""
    return epoch > 0 and frozen_at(cfg, epoch - 1) and not frozen_at(cfg, epoch)


def backbone_rate(cfg: RunConfig, pretrained: bool, frozen: bool) -> float | None:
    """fastai's discriminative rates: an unfrozen pretrained backbone learns at lr x
    --backbone-lr-scale (ImageNet features need nudging, not relearning); None: one rate for
    every weight (a frozen backbone, or one trained from scratch)."""
    return cfg.backbone_lr_scale if pretrained and not frozen else None


def needs_backbone(cfg: RunConfig, has_backbone: bool) -> bool:
    """--freeze / --fine-tune-after on a model without a backbone (each backend's refusal table
    asks its registry whether the model has one)."""
    return bool(cfg.freeze or cfg.fine_tune_after) and not has_backbone


BACKBONE_REFUSAL = "--freeze/--fine-tune-after: {model} has no backbone"


def data_parallel_message(how: str, batch_size: int, world: int, unit: str) -> str:
    """The line both backends print once before a data-parallel run's first epoch."""
    lo, hi = batch_size // world, -(-batch_size // world)
    per = str(lo) if lo == hi else f"{lo}-{hi}"
    return f"data-parallel: {how}; --batch-size {batch_size} is the global batch, {per} per {unit}"


def beats(row: dict[str, Any], earlier: list[dict[str, Any]]) -> bool:
    """best.pt's rule: a higher val accuracy than every earlier epoch, or the same accuracy at a
    lower val loss (a small val split ties often: then the surer model is the better one)."""
    if math.isnan(row["val_acc"]):
        return False
    seen = [(h["val_acc"], -h["val_loss"]) for h in earlier if not math.isnan(h["val_acc"])]
    return not seen or (row["val_acc"], -row["val_loss"]) > max(seen)


def stalled(history: list[dict[str, Any]], patience: int) -> bool:
    """Early stopping: no val-accuracy gain over the best before the last `patience` epochs."""
    accs = [h["val_acc"] for h in history]
    if not patience or len(accs) <= patience:
        return False
    return max(accs[-patience:]) <= max(accs[:-patience])


def early_stop_message(patience: int) -> str:
    return f"early stop: no val-accuracy gain in {patience} epochs"
