"""Optimizer and learning-rate schedule for the PyTorch trainer."""

from __future__ import annotations

import math

import torch
from torch import nn

from imgclf.backends.torch.models.transfer import TransferNet
from imgclf.config import RunConfig

# --optimizer lbfgs: iterations per epoch (each a full pass over the cached features)
LBFGS_ITERATIONS = 20


def lr_factor(step: int, total_steps: int, epoch: int, cfg: RunConfig) -> float:
    """The schedule as a pure function of the step (nanoGPT's get_lr)."""
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    if cfg.schedule == "step":
        return 0.1 ** (epoch // cfg.step_epochs)
    return 1.0


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
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "base_lr": cfg.lr}]
    for g in groups:
        g["lr"] = g["base_lr"]
    if cfg.optimizer in ("sgd", "nesterov"):
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
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
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
