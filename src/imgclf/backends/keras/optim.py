"""Keras optimizer and learning-rate schedule, matching the PyTorch trainer's options."""

from __future__ import annotations

from typing import Any

import keras

from imgclf.config import RunConfig
from imgclf.rules import lr_factors


def lr_schedule(cfg: RunConfig, steps_per_epoch: int) -> Any:
    """The schedule of imgclf.rules (the PyTorch loop's, number for number), or the constant."""
    if cfg.schedule == "constant":
        return cfg.lr
    return StepTable(cfg, steps_per_epoch)


class StepTable(keras.optimizers.schedules.LearningRateSchedule):
    """rules.lr_factor at every step of the run, looked up inside the graph: the pure function
    cannot run on a symbolic step, a table of its values can (4 bytes a step)."""

    def __init__(self, cfg: RunConfig, steps_per_epoch: int):
        self.cfg, self.steps_per_epoch = cfg, steps_per_epoch
        self.table = keras.ops.convert_to_tensor(cfg.lr * lr_factors(cfg, steps_per_epoch))

    def __call__(self, step: Any) -> Any:
        last = self.table.shape[0] - 1
        return keras.ops.take(self.table, keras.ops.minimum(keras.ops.cast(step, "int32"), last))

    def get_config(self) -> dict:  # what a saved .keras records; the table is rebuilt from it
        c = self.cfg
        fields = ("schedule", "lr", "epochs", "step_epochs")
        return {"steps_per_epoch": self.steps_per_epoch, **{k: getattr(c, k) for k in fields}}


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
