"""PyTorch training: fit() reads top to bottom; set-up is here, the two loops in steps.py, the
end-of-epoch duties in callbacks.py, the torchrun group in distributed.py."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch import nn

from imgclf import runs
from imgclf.backends.common import (
    RunSetup,
    finish_run,
    start_run,
    warn_unreadable_classes,
    write_run_info,
)
from imgclf.backends.torch.callbacks import Checkpoints, EarlyStopping, HistoryLog, TensorBoardLog
from imgclf.backends.torch.checkpoint import load_checkpoint
from imgclf.backends.torch.device import autocast, seed_everything
from imgclf.backends.torch.distributed import (
    Dist,
    announce,
    barrier,
    broadcast,
    convert_sync_bn,
    gather_objects,
    merge,
    process_group,
    restarted,
)
from imgclf.backends.torch.features import cached_features
from imgclf.backends.torch.hooks import Average, Lookahead, Schedule, StepHook
from imgclf.backends.torch.loaders import (
    BatchPlan,
    SplitData,
    batches,
    place_on_device,
    prepare_split,
)
from imgclf.backends.torch.models.transfer import TransferNet, count_params
from imgclf.backends.torch.optim import build_optimizer
from imgclf.backends.torch.trainer import Features, Trainer, batches_per_epoch
from imgclf.config import RunConfig
from imgclf.data.balance import class_weights
from imgclf.models import create_model
from imgclf.rules import CACHED_AUGMENT, frozen_at, lr_factor
from imgclf.runs import RunResult

DATA_INIT_IMAGES = 5000  # train images a data-initialised layer sees (airbench's whitening)


def fit(
    cfg: RunConfig,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    """Train cfg.model on cfg.data_dir; with resume, continue the run in cfg.out_dir. Under
    torchrun, every rank runs this and only rank 0 writes. on_step(global_step) runs after every
    optimizer step (tests use it to inject faults)."""
    with process_group(cfg.device) as (d, device):
        # rank 0's folder for every rank (a default name holds the time: under a user's own
        # torchrun each rank named one, and they may differ)
        cfg = cfg.replace(out_dir=broadcast(d, cfg.out_dir))
        resume = resume or restarted(cfg)
        s = start_run(cfg, "torch", resume or not d.main)  # rank 0 checks the folder is new
        seed_everything(cfg.seed)
        last = s.run.checkpoint("last", ".pt")
        from_last = broadcast(d, resume and last.exists())
        ckpt = load_checkpoint(last) if from_last else None
        if ckpt is not None:
            runs.check_fingerprint(ckpt.get("fingerprint"), s.meta(), last)
        t = build_trainer(s, ckpt, progress, d, device)
        if d.main and from_last:
            print(f"resuming {s.run} after epoch {t.epoch} (last.pt)", flush=True)
        if d.main:
            params = (count_params(t.model), count_params(t.model, True))
            labels = t.train_data.labels
            write_run_info(s, "torch", ".pt", params, str(device), labels, d.world)
        announce(d, cfg.batch_size)
        tensorboard = TensorBoardLog(s.run) if d.main else None
        duties = [HistoryLog(s.run, cfg.epochs, d.main), Checkpoints(s.run, d.main)]
        duties += [tensorboard] if tensorboard else []
        duties.append(EarlyStopping(cfg.patience, d.main))
        try:
            for epoch in range(t.epoch, cfg.epochs):
                row = t.run_epoch(epoch, progress and d.main, on_step)
                runs.check_finite(row, t.history)  # before any duty saves a diverged model
                if any([x.on_epoch_end(row, t) for x in duties]):  # a list: every duty runs
                    break
        finally:
            if tensorboard:
                tensorboard.close()
        skipped = merge(gather_objects(d, {**t.train_data.skipped, **t.val_data.skipped}))
        return finish_run(s, t.history, skipped, ".pt", write=d.main)


def build_trainer(
    s: RunSetup, ckpt: dict[str, Any] | None, progress: bool, d: Dist, device: torch.device
) -> Trainer:
    """The whole Trainer in one constructor call, then the checkpoint's state on a resume.
    device: process_group's choice (the one place a run's device is picked)."""
    cfg = s.cfg
    # the decoded cache is built in the background while the model and its optimizer are set
    # up: that is one thread's work (the optimizer's first import of torch._dynamo alone takes
    # 0.9 s here), the decode's worker processes keep the other cores busy meanwhile
    splits = _start_splits(s, progress, d)
    model = _model(s, ckpt, d, device)
    optimizer = build_optimizer(model, cfg, s.pretrained)
    train_data, val_data = (place_on_device(x, device) for x in splits.result())
    warn_unreadable_classes(s.names, train_data.labels)
    if ckpt is None and hasattr(model, "init_from_data"):  # e.g. airbench's whitening layer
        # a seeded shuffle (the same rows on every rank): the split is stored class by class
        plan = BatchPlan(DATA_INIT_IMAGES, device, shuffle=True, seed=cfg.seed, workers=cfg.workers)
        model.init_from_data(next(iter(batches(train_data, plan)))[0])
    features = _features(model, (train_data, val_data), cfg, device, progress, d)
    t = Trainer(
        cfg=cfg,
        model=model,
        optimizer=optimizer,
        loss_fn=_loss(cfg, train_data, s.names, device),
        device=device,
        train_data=train_data,
        val_data=val_data,
        pretrained=s.pretrained,
        dist=d,
        features=features,
        fingerprint=runs.fingerprint(s.meta()),
        hooks=_hooks(cfg, model, batches_per_epoch(cfg, features, train_data)),
    )
    if ckpt is not None:
        t.restore(ckpt)
    return t


def _model(s: RunSetup, ckpt: dict[str, Any] | None, d: Dist, device: torch.device) -> nn.Module:
    cfg = s.cfg
    model = create_model(
        cfg.model,
        len(s.names),
        # a resumed run takes every weight from its checkpoint: no ImageNet file needed again
        pretrained=s.pretrained and ckpt is None,
        freeze_backbone=frozen_at(cfg, 0),
        image_size=s.pre.size,
        weights=cfg.weights if ckpt is None else "",
    )
    if isinstance(model, TransferNet) and ckpt and not frozen_at(cfg, ckpt["epoch"]):
        model.set_frozen(False)  # resumed in the phase that trains the backbone too
    if ckpt is not None:
        model.load_state_dict(ckpt.get("live", ckpt["model"]))
    if cfg.sync_bn:
        model = convert_sync_bn(d, model, device)
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # batch shapes repeat: pick conv algorithms once
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


class MultiLabelLoss(nn.BCEWithLogitsLoss):
    """Binary cross-entropy summed over images and classes (one sigmoid per class), targets
    smoothed toward 1/2 by --label-smoothing; --class-weights are its pos_weight."""

    def __init__(self, pos_weight: torch.Tensor | None, smoothing: float):
        super().__init__(reduction="sum", pos_weight=pos_weight)
        self.smoothing = smoothing

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return super().forward(out, y * (1 - self.smoothing) + self.smoothing / 2)


def _loss(cfg: RunConfig, train: SplitData, names: list[str], device: torch.device) -> nn.Module:
    """Sums, divided by the global batch's weight in steps.py (the mean, at any world size)."""
    w = class_weights(cfg, train.labels, names)
    weight = None if w is None else torch.tensor(w, dtype=torch.float32, device=device)
    if train.index.multi_label:
        return MultiLabelLoss(weight, cfg.label_smoothing)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing, reduction="sum")


def _features(
    model: nn.Module,
    splits: tuple[SplitData, SplitData],
    cfg: RunConfig,
    device: torch.device,
    progress: bool,
    d: Dist,
) -> Features | None:
    """A frozen backbone that sees the same images (or their mirrors) every epoch: run it once."""
    frozen = isinstance(model, TransferNet) and model.frozen
    if not (frozen and cfg.augment in CACHED_AUGMENT and cfg.fine_tune_after == 0):
        return None
    amp = lambda: autocast(cfg, device)  # noqa: E731
    return cached_features(model.backbone, splits, cfg, device, amp, progress, d)  # type: ignore[union-attr]


def _hooks(cfg: RunConfig, model: nn.Module, n_batches: int) -> list[StepHook]:
    """The per-step duties in the order they run: L-BFGS sets its own step sizes (refusals.py
    keeps its schedule constant), so it has no schedule hook."""
    hooks: list[StepHook] = []
    if cfg.optimizer != "lbfgs":
        hooks.append(Schedule(lambda step: lr_factor(step, n_batches, cfg)))
    if cfg.ema:
        hooks.append(Average(model, cfg.ema))
    if cfg.lookahead:
        hooks.append(Lookahead(model, n_batches * cfg.epochs))
    return hooks


def _start_splits(s: RunSetup, progress: bool, d: Dist) -> Future[tuple[SplitData, SplitData]]:
    """prepare_splits in a background thread; under torchrun, here (the ranks take turns at a
    barrier, and collectives stay on the main thread)."""
    if d.on:
        done: Future[tuple[SplitData, SplitData]] = Future()
        done.set_result(prepare_splits(s, progress, d))
        return done
    pool = ThreadPoolExecutor(1, thread_name_prefix="imgclf-decode")
    try:
        return pool.submit(prepare_splits, s, progress, d)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one job


def prepare_splits(s: RunSetup, progress: bool, d: Dist) -> tuple[SplitData, SplitData]:
    """Rank 0 builds the decoded cache while the others wait, then they open the same store."""
    cfg = s.cfg
    out = []
    for turn in (True, False):
        if d.main == turn:
            prep = dict(cache_dir=cfg.cache_dir, workers=cfg.workers, progress=progress and d.main)
            out = [
                prepare_split(s.splits[k], s.pre, cfg.pipeline, **prep) for k in ("train", "val")
            ]
        if turn:
            barrier(d)
    return out[0], out[1]
