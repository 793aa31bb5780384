"""PyTorch training: fit() reads top to bottom; set-up is here, the two loops in steps.py, the
end-of-epoch duties in callbacks.py, the torchrun group in distributed.py."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from imgclf import runs
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
from imgclf.backends.torch.device import autocast, autocast_dtype, pick_device, seed_everything
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
    wrap,
)
from imgclf.backends.torch.features import CACHED_AUGMENT, cached_features, feature_batches
from imgclf.backends.torch.loaders import SplitData, batches, prepare_split
from imgclf.backends.torch.models.transfer import TransferNet, count_params
from imgclf.backends.torch.optim import Lookahead, add_averages, build_optimizer, lr_factor
from imgclf.backends.torch.steps import StepHook, evaluate_epoch, lbfgs_epoch, train_one_epoch
from imgclf.config import RunConfig
from imgclf.registry import create_model
from imgclf.runs import RunResult, default_run_dir, fine_tune_message, history_row

DATA_INIT_IMAGES = 5000  # train images a data-initialised layer sees (airbench's whitening)


def fit(
    cfg: RunConfig, resume: bool = False, progress: bool = True, on_step: StepHook | None = None
) -> RunResult:
    """Train cfg.model on cfg.data_dir; with resume, continue the run in cfg.out_dir. Under
    torchrun, every rank runs this and only rank 0 writes. on_step(global_step) runs after every
    optimizer step (tests use it to inject faults)."""
    with process_group(cfg.device) as (d, device):
        # rank 0's folder for every rank (a default name holds the time: ranks may differ)
        cfg = cfg.replace(out_dir=broadcast(d, cfg.out_dir or str(default_run_dir(cfg))))
        resume = resume or restarted(cfg)
        autocast_dtype(cfg, device)  # refuses --cpu-bf16 on a CPU without it, before any work
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
            write_run_info(s, "torch", ".pt", params, str(device), d.world)
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
    dist: Dist = Dist()
    features: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    ema: AveragedModel | None = None  # --ema: the averaged weights validate and are saved
    lookahead: Lookahead | None = None
    epoch: int = 0
    step: int = 0
    best: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)  # runs.fingerprint of meta.json
    _ddp: tuple[Any, nn.Module] | None = None  # (what it wraps, the DDP module)

    def checkpoint(self) -> dict[str, Any]:
        """'model' is what predict loads: the averaged weights under --ema, whose training
        weights and count then travel as 'live' and 'ema_n' for a resume."""
        ema = self.ema
        live = {"live": self.model.state_dict(), "ema_n": int(ema.n_averaged)} if ema else {}
        if self.lookahead is not None:
            live["lookahead"] = self.lookahead.slow
        return {
            "model": (self.ema.module if self.ema else self.model).state_dict(),
            **live,
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "best_acc": self.best,
            "history": self.history,
            "fingerprint": self.fingerprint,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        if self.ema is not None:
            self.ema.module.load_state_dict(ckpt["model"])
            self.ema.n_averaged.fill_(ckpt.get("ema_n", 1))
        if self.lookahead is not None and "lookahead" in ckpt:
            self.lookahead.slow = {k: v.to(self.device) for k, v in ckpt["lookahead"].items()}
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch, self.best, self.history = ckpt["epoch"], ckpt["best_acc"], ckpt["history"]
        self.step = self.epoch * self.n_batches

    @property
    def n_batches(self) -> int:
        if self.cfg.optimizer == "lbfgs":
            return 1  # one full-batch step per epoch
        rows = len(self.features[0][1]) if self.features else len(self.train_data)
        return math.ceil(rows / self.cfg.batch_size)

    @property
    def amp(self) -> contextlib.AbstractContextManager:
        return autocast(self.cfg, self.device)

    @property
    def total_steps(self) -> int:
        return self.n_batches * self.cfg.epochs

    def lr_at(self, step: int) -> float:
        return lr_factor(step, self.total_steps, step // max(1, self.n_batches), self.cfg)

    def epoch_batches(self, epoch: int) -> tuple[nn.Module, Iterable, Iterable]:
        """(module to train, train batches, val batches): the head on cached features when the
        backbone is frozen and sees unaugmented images, else the whole model on images. Each
        rank gets its share of every global batch of --batch-size."""
        cfg, share = self.cfg, (self.dist.rank, self.dist.world)
        if self.features is not None:
            assert isinstance(self.model, TransferNet)
            (tx, ty), (vx, vy) = self.features
            train = feature_batches(tx, ty, cfg.batch_size, True, cfg.seed + epoch, share)
            return self.model.head, train, feature_batches(vx, vy, cfg.batch_size, share=share)
        aug, w, cl, dev = cfg.augment, cfg.workers, cfg.channels_last, self.device
        seed = cfg.seed + epoch
        train = batches(self.train_data, cfg.batch_size, dev, True, aug, seed, w, cl, share)
        val = batches(self.val_data, cfg.batch_size, dev, False, "none", 0, w, cl, share)
        return self.model, train, val

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

    def run_epoch(self, epoch: int, progress: bool, on_step: StepHook | None) -> dict[str, Any]:
        cfg = self.cfg
        if isinstance(self.model, TransferNet) and cfg.fine_tune_after == epoch > 0:
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
        if cfg.optimizer == "lbfgs":
            assert self.features is not None  # check_config: lbfgs fits a head on features
            tr = lbfgs_epoch(module, *self.features[0], self)
            if on_step is not None:
                on_step(self.step)
        else:
            tr = train_one_epoch(self.trainable(module), bar, self, on_step)
        train_s = time.perf_counter() - t0
        va = evaluate_epoch(self.averaged(module), val_b, self)
        self.epoch = epoch + 1
        lr = self.optimizer.param_groups[0]["lr"]
        return history_row(self.epoch, lr, tr, va, tr["images"], train_s, time.perf_counter() - t0)


def build_trainer(
    s: RunSetup,
    ckpt: dict[str, Any] | None,
    progress: bool,
    d: Dist = Dist(),
    device: torch.device | None = None,
) -> Trainer:
    cfg = s.cfg
    device = device or pick_device(cfg.device)
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
        model.load_state_dict(ckpt.get("live", ckpt["model"]))
    if cfg.sync_bn:
        model = convert_sync_bn(d, model, device)
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # batch shapes repeat: pick conv algorithms once
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    train_data, val_data = prepare_splits(s, progress, d)
    warn_unreadable_classes(s.names, train_data.labels)
    if ckpt is None and hasattr(model, "init_from_data"):  # e.g. airbench's whitening layer
        # a seeded shuffle (the same rows on every rank): the split is stored class by class
        sample = batches(train_data, DATA_INIT_IMAGES, device, True, "none", cfg.seed, cfg.workers)
        model.init_from_data(next(iter(sample))[0])
    weight = None
    if cfg.class_weights == "auto":
        w = balanced_class_weights(train_data.labels, len(s.names))
        weight = torch.tensor(w, dtype=torch.float32, device=device)
    # sums, divided by the global batch's weight in steps.py (the mean, across any world size)
    loss_fn = nn.CrossEntropyLoss(
        weight=weight, label_smoothing=cfg.label_smoothing, reduction="sum"
    )
    optimizer = build_optimizer(model, cfg, s.pretrained)
    t = Trainer(cfg, model, optimizer, loss_fn, device, train_data, val_data, s.pretrained, d)
    t.fingerprint = runs.fingerprint(s.meta())
    add_averages(t)
    if ckpt is not None:
        t.restore(ckpt)
    frozen = isinstance(model, TransferNet) and model.frozen
    if frozen and cfg.augment in CACHED_AUGMENT and cfg.fine_tune_after == 0:
        # a frozen backbone sees the same images (or their mirrors) every epoch: run it once
        backbone = model.backbone  # type: ignore[union-attr]
        t.features = cached_features(backbone, train_data, val_data, t, progress, d)
    elif cfg.optimizer == "lbfgs":
        raise ValueError(f"--optimizer lbfgs: {cfg.model} gave no frozen backbone to cache")
    return t


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
