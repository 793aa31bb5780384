"""Per-step duties of the PyTorch loop, one small hook each: the learning-rate schedule, the
--ema average, --lookahead and a caller's on_step. Each owns its part of the checkpoint (state()
is saved in last.pt, load() restores it on --resume), so the Trainer never learns their insides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

LOOKAHEAD_EVERY, LOOKAHEAD_DECAY = 5, 0.95**5  # airbench94's


class StepHook:
    """before(step, optimizer) runs ahead of optimizer step number step + 1 (step steps taken),
    after(step) once it is taken (step now counts it)."""

    def before(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        pass

    def after(self, step: int) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {}

    def load(self, ckpt: dict[str, Any]) -> None:
        pass


class Schedule(StepHook):
    """Each group's rate: its base rate (build_optimizer's `base_lr`) times factor(step), the
    schedule of imgclf.rules; a pure function of the step, so nothing to checkpoint."""

    def __init__(self, factor: Callable[[int], float]):
        self.factor = factor

    def before(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * self.factor(step)


class Average(StepHook):
    """--ema: an exponential average of the weights and buffers (BatchNorm's statistics are
    averaged with the weights); it validates, and is what best.pt and 'model' hold."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = model
        avg = get_ema_multi_avg_fn(decay)
        self.averaged = AveragedModel(model, multi_avg_fn=avg, use_buffers=True)

    def after(self, step: int) -> None:
        self.averaged.update_parameters(self.model)

    def state(self) -> dict[str, Any]:
        return {"ema_n": int(self.averaged.n_averaged)}

    def load(self, ckpt: dict[str, Any]) -> None:
        self.averaged.module.load_state_dict(ckpt["model"])
        self.averaged.n_averaged.fill_(ckpt.get("ema_n", 1))


class Lookahead(StepHook):
    """--lookahead, airbench's (from hlb-cifar10): every LOOKAHEAD_EVERY steps a slow copy of the
    weights and BatchNorm statistics moves toward the live ones, and the live ones are reset to
    it. The slow copy's memory grows as (step/total)^3 to LOOKAHEAD_DECAY: none early, when
    progress is fast, and strong at the end, where averaging out the last steps' noise pays. The
    run ends on the slow copy."""

    def __init__(self, model: nn.Module, total_steps: int):
        self.model, self.total_steps = model, total_steps
        state = model.state_dict()
        self.slow = {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()}

    @torch.no_grad()
    def after(self, step: int) -> None:
        pull, last = step % LOOKAHEAD_EVERY == 0, step >= self.total_steps
        if not (pull or last):
            return
        # after the last step, the live weights are reset to the average without moving it
        decay = LOOKAHEAD_DECAY * min(1.0, step / self.total_steps) ** 3 if pull else 1.0
        live = self.model.state_dict()
        for k, slow in self.slow.items():
            slow.lerp_(live[k], 1 - decay)
            live[k].copy_(slow)

    def state(self) -> dict[str, Any]:
        return {"lookahead": self.slow}

    def load(self, ckpt: dict[str, Any]) -> None:
        if "lookahead" in ckpt:
            device = next(iter(self.slow.values())).device
            self.slow = {k: v.to(device) for k, v in ckpt["lookahead"].items()}


class OnStep(StepHook):
    """A caller's on_step(global_step) (tests inject faults with it)."""

    def __init__(self, fn: Callable[[int], None]):
        self.fn = fn

    def after(self, step: int) -> None:
        self.fn(step)
