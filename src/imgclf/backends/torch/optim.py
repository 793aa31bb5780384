"""The PyTorch trainer's optimizer (the schedule: imgclf.rules; --ema and --lookahead: hooks)."""

from __future__ import annotations

import torch
from torch import nn

from imgclf.backends.torch.models.transfer import TransferNet
from imgclf.config import RunConfig
from imgclf.rules import backbone_rate

# --optimizer lbfgs: iterations per epoch (each a full pass over the cached features)
LBFGS_ITERATIONS = 20


def build_optimizer(model: nn.Module, cfg: RunConfig, pretrained: bool) -> torch.optim.Optimizer:
    """Head at cfg.lr; an unfrozen pretrained backbone at cfg.lr * backbone_lr_scale (fastai's
    discriminative rates, rules.backbone_rate)."""
    if (
        isinstance(model, TransferNet)
        and (scale := backbone_rate(cfg, pretrained, model.frozen)) is not None
    ):
        groups = [
            {"params": list(model.head.parameters()), "base_lr": cfg.lr},
            {"params": list(model.backbone.parameters()), "base_lr": cfg.lr * scale},
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
