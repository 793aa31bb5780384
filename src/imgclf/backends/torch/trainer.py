"""The PyTorch Trainer: a run's model, optimizer, data and per-step hooks, built whole by
build_trainer; what the epochs change (epoch, step, best, history) is saved in its checkpoints.
fit() in train.py drives it an epoch at a time."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from imgclf.backends.torch.device import autocast, seed_everything
from imgclf.backends.torch.distributed import Dist, wrap
from imgclf.backends.torch.features import feature_batches
from imgclf.backends.torch.hooks import Average, OnStep, StepHook
from imgclf.backends.torch.loaders import BatchPlan, SplitData, batches
from imgclf.backends.torch.models.transfer import TransferNet
from imgclf.backends.torch.optim import build_optimizer
from imgclf.backends.torch.steps import Loop, evaluate_epoch, lbfgs_epoch, train_one_epoch
from imgclf.config import RunConfig
from imgclf.data.balance import sampling
from imgclf.rules import unfreezes_at
from imgclf.runs import fine_tune_message, history_row

Features = list[tuple[torch.Tensor, torch.Tensor]]  # [train, val] (features, labels)


def batches_per_epoch(cfg: RunConfig, features: Features | None, train: SplitData) -> int:
    if cfg.optimizer == "lbfgs":
        return 1  # one full-batch step per epoch
    rows = len(features[0][1]) if features else len(train)
    return math.ceil(rows / cfg.batch_size)


@dataclass(kw_only=True)  # twelve fields: by name, so that two of one type cannot swap
class Trainer:
    """Every field is set by build_trainer's one constructor call; restore() then loads a
    checkpoint's epoch-by-epoch state into it."""

    cfg: RunConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: nn.CrossEntropyLoss
    device: torch.device
    train_data: SplitData
    val_data: SplitData
    pretrained: bool
    dist: Dist
    features: Features | None  # a frozen backbone's, computed once: only the head trains
    fingerprint: dict[str, Any]  # runs.fingerprint of meta.json
    hooks: list[StepHook]  # hooks.py: schedule, --ema, --lookahead
    epoch: int = 0
    step: int = 0
    best: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)
    _ddp: tuple[Any, nn.Module] | None = None  # (what it wraps, the DDP module)

    @property
    def ema(self) -> AveragedModel | None:
        """--ema's averaged copy: it validates, and is what best.pt and 'model' hold."""
        return next((h.averaged for h in self.hooks if isinstance(h, Average)), None)

    def checkpoint(self) -> dict[str, Any]:
        """'model' is what predict loads: the averaged weights under --ema, whose training
        weights then travel as 'live'; each hook adds its own state."""
        ema = self.ema
        out = {"model": (ema.module if ema else self.model).state_dict()}
        if ema is not None:
            out["live"] = self.model.state_dict()
        for h in self.hooks:
            out.update(h.state())
        return {
            **out,
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "best_acc": self.best,
            "history": self.history,
            "fingerprint": self.fingerprint,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        for h in self.hooks:
            h.load(ckpt)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch, self.best, self.history = ckpt["epoch"], ckpt["best_acc"], ckpt["history"]
        self.step = self.epoch * self.n_batches

    @property
    def n_batches(self) -> int:
        return batches_per_epoch(self.cfg, self.features, self.train_data)

    @property
    def amp(self) -> contextlib.AbstractContextManager:
        return autocast(self.cfg, self.device)

    def loop(self) -> Loop:
        # a fresh autocast context per use: the amp property builds one each time it is read
        return Loop(self.optimizer, self.loss_fn, lambda: self.amp, self.dist, self.device)

    def epoch_batches(self, epoch: int) -> tuple[nn.Module, Iterable, Iterable]:
        """(module to train, train batches, val batches): the head on cached features when the
        backbone is frozen and sees unaugmented images, else the whole model on images. Each
        rank gets its share of every global batch of --batch-size."""
        cfg, share = self.cfg, (self.dist.rank, self.dist.world)
        if self.features is not None:
            assert isinstance(self.model, TransferNet)
            (tx, ty), (vx, vy) = self.features
            draw = sampling(cfg, ty.cpu().numpy(), self.train_data.index.class_names)
            train = feature_batches(tx, ty, cfg.batch_size, True, cfg.seed + epoch, share, draw)
            return self.model.head, train, feature_batches(vx, vy, cfg.batch_size, share=share)
        train = batches(self.train_data, self.plan(True, epoch))
        val = batches(self.val_data, self.plan(False, epoch))
        return self.model, train, val

    def plan(self, train: bool, epoch: int = 0) -> BatchPlan:
        """The batches of an epoch's training pass (seeded by the epoch, augmented) or of a
        validation pass, each rank taking its share of every global batch of --batch-size."""
        cfg, data = self.cfg, self.train_data
        return BatchPlan(
            cfg.batch_size,
            self.device,
            augment=cfg.augment if train else "none",
            shuffle=train,
            seed=cfg.seed + epoch if train else 0,
            workers=cfg.workers,
            channels_last=cfg.channels_last,
            share=(self.dist.rank, self.dist.world),
            draw=sampling(cfg, data.labels, data.index.class_names) if train else None,
        )

    def averaged(self, module: nn.Module) -> nn.Module:
        """module's counterpart in the --ema copy (the head when training on features)."""
        if self.ema is None:
            return module
        twin = self.ema.module
        return twin.head if module is not self.model else twin  # type: ignore[return-value]

    def trainable(self, module: nn.Module) -> nn.Module:
        """module in DDP under torchrun, wrapped again when what trains changes (fine-tuning
        unfreezes the backbone: DDP fixes its parameter set when it is built)."""
        key = (id(module), tuple(p.requires_grad for p in module.parameters()))
        if self._ddp is None or self._ddp[0] != key:
            net = wrap(self.dist, module, self.device)
            # torch.compile(DDP(model)), PyTorch's documented order: the graph is split at DDP's
            # bucket boundaries so the all-reduces still overlap the backward pass
            self._ddp = (key, torch.compile(net) if self.cfg.compile else net)
        return self._ddp[1]

    def run_epoch(
        self, epoch: int, progress: bool, on_step: Callable[[int], None] | None = None
    ) -> dict[str, Any]:
        cfg = self.cfg
        if isinstance(self.model, TransferNet) and unfreezes_at(cfg, epoch):
            self.model.set_frozen(False)  # fastai's fine_tune: now the backbone learns too
            self.optimizer = build_optimizer(self.model, cfg, self.pretrained)
            if self.dist.main:
                print(fine_tune_message(cfg, epoch, self.pretrained), flush=True)
        # dropout etc.: an epoch replays exactly; ranks draw different masks (rank 0 as alone)
        seed_everything(cfg.seed * 1000 + epoch + 7919 * self.dist.rank)
        t0 = time.perf_counter()
        module, train_b, val_b = self.epoch_batches(epoch)
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        bar = tqdm(
            train_b, total=self.n_batches, desc=desc, leave=False, disable=not progress or None
        )
        hooks, loop = [*self.hooks, *([OnStep(on_step)] if on_step else [])], self.loop()
        if cfg.optimizer == "lbfgs":
            assert self.features is not None  # refusals.py: lbfgs fits a head on features
            args = (self.features[0], loop, cfg.weight_decay, self.step, hooks)
            tr, self.step = lbfgs_epoch(module, *args)
        else:
            tr, self.step = train_one_epoch(self.trainable(module), bar, loop, self.step, hooks)
        train_s = time.perf_counter() - t0
        va = evaluate_epoch(self.averaged(module), val_b, loop)
        self.epoch = epoch + 1
        lr = self.optimizer.param_groups[0]["lr"]
        return history_row(self.epoch, lr, tr, va, tr["images"], train_s, time.perf_counter() - t0)
