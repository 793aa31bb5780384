"""PyTorch training: fit() reads top to bottom; set-up, the two loops and the duties are small."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from imgclf.backends.common import (
    RunSetup,
    balanced_class_weights,
    finish_run,
    start_run,
    warn_unreadable_classes,
    write_run_info,
)
from imgclf.backends.torch.callbacks import Checkpoints, EarlyStopping, HistoryLog, TensorBoardLog
from imgclf.backends.torch.checkpoint import load_checkpoint
from imgclf.backends.torch.device import pick_device, seed_everything
from imgclf.backends.torch.features import compute_features, feature_batches
from imgclf.backends.torch.loaders import SplitData, batches, prepare_split
from imgclf.backends.torch.models.transfer import TransferNet, count_params
from imgclf.backends.torch.optim import build_optimizer, lr_factor
from imgclf.config import RunConfig
from imgclf.registry import create_model
from imgclf.runs import RunResult, fine_tune_message, history_row

StepHook = Callable[[int], None]


def fit(
    cfg: RunConfig, resume: bool = False, progress: bool = True, on_step: StepHook | None = None
) -> RunResult:
    """Train cfg.model on cfg.data_dir; with resume, continue the run in cfg.out_dir.
    on_step(global_step) runs after every optimizer step (tests use it to inject faults)."""
    s = start_run(cfg, "torch", resume)
    seed_everything(cfg.seed)
    last = s.run.checkpoint("last", ".pt")
    t = build_trainer(s, load_checkpoint(last) if resume and last.exists() else None, progress)
    write_run_info(
        s, "torch", ".pt", (count_params(t.model), count_params(t.model, True)), str(t.device)
    )
    tensorboard = TensorBoardLog(s.run)
    duties = [HistoryLog(s.run, cfg.epochs), Checkpoints(s.run), tensorboard]
    duties.append(EarlyStopping(cfg.patience))
    try:
        for epoch in range(t.epoch, cfg.epochs):
            row = t.run_epoch(epoch, progress, on_step)
            if any([d.on_epoch_end(row, t) for d in duties]):  # a list: every duty runs
                break
    finally:
        tensorboard.close()
    return finish_run(s, t.history, {**t.train_data.skipped, **t.val_data.skipped}, ".pt")


@dataclass
class Trainer:
    """The model, its optimizer and data, and what the epochs change (saved in checkpoints)."""

    cfg: RunConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    device: torch.device
    train_data: SplitData
    val_data: SplitData
    pretrained: bool
    features: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    epoch: int = 0
    step: int = 0
    best: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "best_acc": self.best,
            "history": self.history,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch, self.best, self.history = ckpt["epoch"], ckpt["best_acc"], ckpt["history"]
        self.step = self.epoch * self.n_batches

    @property
    def n_batches(self) -> int:
        return math.ceil(len(self.train_data) / self.cfg.batch_size)

    @property
    def amp(self) -> contextlib.AbstractContextManager:
        if self.cfg.amp and self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)  # bf16 needs no loss scaling
        return contextlib.nullcontext()

    def lr_at(self, step: int) -> float:
        n = self.n_batches
        return lr_factor(step, n * self.cfg.epochs, step // max(1, n), self.cfg)

    def epoch_batches(self, epoch: int) -> tuple[nn.Module, Iterable, Iterable]:
        """(module to train, train batches, val batches): the head on cached features when the
        backbone is frozen and sees unaugmented images, else the whole model on images."""
        cfg = self.cfg
        if self.features is not None:
            assert isinstance(self.model, TransferNet)
            train = feature_batches(*self.features[0], cfg.batch_size, True, cfg.seed + epoch)
            return self.model.head, train, feature_batches(*self.features[1], cfg.batch_size)
        aug, w, cl = cfg.augment != "none", cfg.workers, cfg.channels_last
        train = batches(
            self.train_data, cfg.batch_size, self.device, True, aug, cfg.seed + epoch, w, cl
        )
        val = batches(self.val_data, cfg.batch_size, self.device, False, False, 0, w, cl)
        return self.model, train, val

    def run_epoch(self, epoch: int, progress: bool, on_step: StepHook | None) -> dict[str, Any]:
        cfg = self.cfg
        if isinstance(self.model, TransferNet) and cfg.fine_tune_after == epoch > 0:
            self.model.set_frozen(False)  # fastai's fine_tune: now the backbone learns too
            self.optimizer = build_optimizer(self.model, cfg, self.pretrained)
            print(fine_tune_message(cfg, epoch, self.pretrained), flush=True)
        seed_everything(cfg.seed * 1000 + epoch)  # dropout etc.: an epoch replays exactly
        t0 = time.perf_counter()
        module, train_b, val_b = self.epoch_batches(epoch)
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        bar = tqdm(
            train_b, total=self.n_batches, desc=desc, leave=False, disable=not progress or None
        )
        tr = train_one_epoch(module, bar, self, on_step)
        train_s = time.perf_counter() - t0
        va = evaluate_epoch(module, val_b, self.loss_fn, self.amp)
        self.epoch = epoch + 1
        lr = self.optimizer.param_groups[0]["lr"]
        return history_row(self.epoch, lr, tr, va, tr["images"], train_s, time.perf_counter() - t0)


def build_trainer(s: RunSetup, ckpt: dict[str, Any] | None, progress: bool) -> Trainer:
    cfg = s.cfg
    device = pick_device(cfg.device)
    model = create_model(
        cfg.model,
        len(s.names),
        # a resumed run takes every weight from its checkpoint: no ImageNet file needed again
        pretrained=s.pretrained and ckpt is None,
        freeze_backbone=cfg.freeze or cfg.fine_tune_after > 0,
        image_size=s.pre.size,
        weights=cfg.weights if ckpt is None else "",
    )
    if isinstance(model, TransferNet) and ckpt and 0 < cfg.fine_tune_after <= ckpt["epoch"]:
        model.set_frozen(False)
    if (cfg.freeze or cfg.fine_tune_after) and not isinstance(model, TransferNet):
        raise ValueError(f"--freeze/--fine-tune-after: {cfg.model} has no backbone")
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    prep = dict(cache_dir=cfg.cache_dir, workers=cfg.workers, progress=progress)
    train_data = prepare_split(s.splits["train"], s.pre, cfg.pipeline, **prep)
    val_data = prepare_split(s.splits["val"], s.pre, cfg.pipeline, **prep)
    warn_unreadable_classes(s.names, train_data.labels)
    weight = None
    if cfg.class_weights == "auto":
        w = balanced_class_weights(train_data.labels, len(s.names))
        weight = torch.tensor(w, dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    optimizer = build_optimizer(model, cfg, s.pretrained)
    t = Trainer(cfg, model, optimizer, loss_fn, device, train_data, val_data, s.pretrained)
    if ckpt is not None:
        t.restore(ckpt)
    frozen = isinstance(model, TransferNet) and model.frozen
    if frozen and cfg.augment == "none" and cfg.fine_tune_after == 0:
        # a frozen backbone without augmentation sees the same images every epoch: run it once
        backbone = model.backbone  # type: ignore[union-attr]
        t.features = [
            compute_features(backbone, d, cfg.batch_size, device, t.amp, progress)
            for d in (train_data, val_data)
        ]
    return t


def train_one_epoch(
    module: nn.Module, data: Iterable, t: Trainer, on_step: StepHook | None
) -> dict[str, float]:
    module.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in data:
        for g in t.optimizer.param_groups:
            g["lr"] = g["base_lr"] * t.lr_at(t.step)
        with t.amp:
            out = module(x)
            loss = t.loss_fn(out.float(), y)
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t.optimizer.step()
        t.step += 1
        if on_step is not None:
            on_step(t.step)
        loss_sum += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        seen += len(y)
        if hasattr(data, "set_postfix"):
            data.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.2%}")
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "images": seen}


@torch.no_grad()
def evaluate_epoch(
    module: nn.Module, data: Iterable, loss_fn: nn.Module, amp: Any
) -> dict[str, float]:
    module.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in data:
        with amp:
            out = module(x).float()
        loss_sum += loss_fn(out, y).item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        seen += len(y)
    if seen == 0:
        return {"loss": float("nan"), "acc": float("nan")}
    return {"loss": loss_sum / seen, "acc": correct / seen}
