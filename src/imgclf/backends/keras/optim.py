"""Keras optimizer and learning-rate schedule, matching the PyTorch trainer's options."""

from __future__ import annotations

from typing import Any

import keras

from imgclf.config import ONECYCLE_END, ONECYCLE_START, ONECYCLE_WARMUP, RunConfig


def lr_schedule(cfg: RunConfig, steps_per_epoch: int) -> Any:
    """cosine over all steps, onecycle, step (x0.1 every step_epochs epochs), or constant."""
    if cfg.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(cfg.lr, steps_per_epoch * cfg.epochs)
    if cfg.schedule == "onecycle":
        return OneCycle(cfg.lr, steps_per_epoch * cfg.epochs)
    if cfg.schedule == "step":
        every = steps_per_epoch * cfg.step_epochs
        n = max(0, (cfg.epochs - 1) // cfg.step_epochs)
        bounds = [every * (i + 1) for i in range(n)]
        values = [cfg.lr * 0.1**i for i in range(n + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values) if n else cfg.lr
    return cfg.lr


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The PyTorch trainer's onecycle (optim.onecycle): linear warm-up, then a linear fall."""

    def __init__(self, peak: float, total_steps: int):
        self.peak, self.total_steps = peak, total_steps
        self.warm = max(1, int(total_steps * ONECYCLE_WARMUP))

    def __call__(self, step: Any) -> Any:
        ops = keras.ops
        step = ops.cast(step, "float32")
        rise = ONECYCLE_START + (1 - ONECYCLE_START) * step / self.warm
        frac = ops.minimum(1.0, (step - self.warm) / max(1, self.total_steps - self.warm))
        fall = 1 - (1 - ONECYCLE_END) * frac
        return self.peak * ops.where(step < self.warm, rise, fall)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps}


def build_optimizer(
    cfg: RunConfig, steps_per_epoch: int, trainable: list, scaled_vars: list, first_step: int
) -> keras.optimizers.Optimizer:
    """Adam or SGD (Nesterov or not); `scaled_vars` (an unfrozen pretrained backbone) learn at lr x
    backbone_lr_scale, fastai's discriminative rates, as on the PyTorch side."""
    sgd = cfg.optimizer in ("sgd", "nesterov")
    base = keras.optimizers.SGD if sgd else keras.optimizers.Adam
    kw: dict[str, Any] = {"weight_decay": cfg.weight_decay or None}
    if sgd:
        kw["momentum"] = cfg.momentum
        kw["nesterov"] = cfg.optimizer == "nesterov" and cfg.momentum > 0
    cls = _discriminative(base) if scaled_vars else base
    opt = cls(learning_rate=lr_schedule(cfg, steps_per_epoch), **kw)
    if scaled_vars:
        opt.scale, opt.scaled_paths = cfg.backbone_lr_scale, {v.path for v in scaled_vars}
    # the schedule continues where it was after a rebuild (fine-tune phase, resume)
    opt.build(trainable)
    opt.iterations.assign(first_step)
    return opt


def _discriminative(base: type) -> type:
    class Discriminative(base):  # type: ignore[misc, valid-type]
        def build(self, variables: list) -> None:
            super().build(variables)
            self.scaled_index = {
                self._get_variable_index(v) for v in variables if v.path in self.scaled_paths
            }

        def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> Any:
            if self._get_variable_index(variable) in self.scaled_index:
                learning_rate = learning_rate * self.scale
            return super().update_step(gradient, variable, learning_rate)

    Discriminative.__name__ = f"Discriminative{base.__name__}"
    return Discriminative
