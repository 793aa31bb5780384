"""Optimizer and learning-rate schedule for the PyTorch trainer."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from imgclf.backends.torch.models.transfer import TransferNet
from imgclf.config import ONECYCLE_END, ONECYCLE_START, ONECYCLE_WARMUP, RunConfig

LOOKAHEAD_EVERY, LOOKAHEAD_DECAY = 5, 0.95**5  # airbench94's
# --optimizer lbfgs: iterations per epoch (each a full pass over the cached features)
LBFGS_ITERATIONS = 20


def lr_factor(step: int, total_steps: int, epoch: int, cfg: RunConfig) -> float:
    """The schedule as a pure function of the step (nanoGPT's get_lr)."""
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    if cfg.schedule == "step":
        return 0.1 ** (epoch // cfg.step_epochs)
    if cfg.schedule == "onecycle":
        return onecycle(step, total_steps)
    return 1.0


def onecycle(step: int, total_steps: int) -> float:
    """Rise linearly from 0.2 to 1 over the first 23 % of the steps, then fall linearly to 0.07."""
    warm = max(1, int(total_steps * ONECYCLE_WARMUP))
    if step < warm:
        return ONECYCLE_START + (1 - ONECYCLE_START) * step / warm
    frac = min(1.0, (step - warm) / max(1, total_steps - warm))
    return 1 - (1 - ONECYCLE_END) * frac


def build_optimizer(model: nn.Module, cfg: RunConfig, pretrained: bool) -> torch.optim.Optimizer:
    """Head at cfg.lr; an unfrozen pretrained backbone at cfg.lr * backbone_lr_scale (fastai's
    discriminative rates: ImageNet features need nudging, not relearning)."""
    if isinstance(model, TransferNet) and not model.frozen and pretrained:
        groups = [
            {"params": list(model.head.parameters()), "base_lr": cfg.lr},
            {
                "params": list(model.backbone.parameters()),
                "base_lr": cfg.lr * cfg.backbone_lr_scale,
            },
        ]
    else:
        groups = _scaled_groups(model, cfg)
    for g in groups:
        g["lr"] = g["base_lr"]
        g.setdefault("weight_decay", cfg.weight_decay)
    if cfg.optimizer in ("sgd", "nesterov"):
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.optimizer == "nesterov" and cfg.momentum > 0,
        )
    if cfg.optimizer == "lbfgs":
        # full batch (steps.lbfgs_epoch); the weight decay is in its objective, as L-BFGS has none
        params = [p for g in groups for p in g["params"]]
        return torch.optim.LBFGS(
            params,
            lr=cfg.lr,
            max_iter=LBFGS_ITERATIONS,
            history_size=20,
            line_search_fn="strong_wolfe",
        )
    return torch.optim.Adam(groups, lr=cfg.lr)


def _scaled_groups(model: nn.Module, cfg: RunConfig) -> list[dict]:
    """One group, or the model's own lr multipliers (`lr_scales()`: airbench's BatchNorm biases
    learn 64x faster). A scaled group's decay is divided by its scale, so each step shrinks its
    weights by the same fraction as the rest's: the scale speeds learning, not decay."""
    scaled = model.lr_scales() if hasattr(model, "lr_scales") else []
    taken = {id(p) for params, _ in scaled for p in params}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    groups = [{"params": rest, "base_lr": cfg.lr}]
    for params, scale in scaled:
        live = [p for p in params if p.requires_grad]
        wd = cfg.weight_decay / scale
        groups.append({"params": live, "base_lr": cfg.lr * scale, "weight_decay": wd})
    return [g for g in groups if g["params"]]


class Lookahead:
    """--lookahead, airbench's (from hlb-cifar10): every LOOKAHEAD_EVERY steps a slow copy of the
    weights and BatchNorm statistics moves toward the live ones, and the live ones are reset to it.
    The slow copy's memory grows as (step/total)^3 to LOOKAHEAD_DECAY: none early, when progress
    is fast, and strong at the end, where averaging out the last steps' noise pays. The run ends
    on the slow copy."""

    def __init__(self, model: nn.Module):
        state = model.state_dict()
        self.slow = {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, total_steps: int) -> None:
        """After optimizer step number `step` (1-based) of `total_steps`."""
        pull, last = step % LOOKAHEAD_EVERY == 0, step >= total_steps
        if not (pull or last):
            return
        # after the last step, the live weights are reset to the average without moving it
        decay = LOOKAHEAD_DECAY * min(1.0, step / total_steps) ** 3 if pull else 1.0
        live = model.state_dict()
        for k, slow in self.slow.items():
            slow.lerp_(live[k], 1 - decay)
            live[k].copy_(slow)


def add_averages(t: Any) -> None:
    """The Trainer's --ema (buffers too: BatchNorm's statistics are averaged with the weights)
    and --lookahead."""
    if t.cfg.ema:
        avg = get_ema_multi_avg_fn(t.cfg.ema)
        t.ema = AveragedModel(t.model, multi_avg_fn=avg, use_buffers=True)
    if t.cfg.lookahead:
        t.lookahead = Lookahead(t.model)
