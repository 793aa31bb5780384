"""PyTorch training: fit() owns the epochs, checkpoints and history; the two loops are short."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from imgclf import runs
from imgclf.checkpoint import load_checkpoint, save_checkpoint
from imgclf.config import RunConfig
from imgclf.data.folder import load_splits, read_exclude_list
from imgclf.data.loaders import batches, prepare_split
from imgclf.data.sources import resolve_data
from imgclf.device import pick_device, seed_everything
from imgclf.features import compute_features, feature_batches
from imgclf.models.transfer import TransferNet, count_params
from imgclf.optim import build_optimizer, class_weights, lr_factor
from imgclf.registry import create_model, get_spec

_KILL_AT_STEP = int(os.environ.get("IMGCLF_TEST_KILL_AT_STEP", "0") or 0)


def autocast_for(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)  # bf16 needs no loss scaling
    return contextlib.nullcontext()


def train_one_epoch(
    module: nn.Module,
    data: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    lr_at: Any,
    step: int,
    amp: Any,
    desc: str,
    n_batches: int,
    progress: bool,
) -> tuple[dict[str, float], int]:
    module.train()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(data, total=n_batches, desc=desc, leave=False, disable=None if progress else True)
    for x, y in bar:
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * lr_at(step)
        with amp:
            out = module(x)
            loss = loss_fn(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step == _KILL_AT_STEP:  # fault injection for the resume test: die like `kill -9`
            os.kill(os.getpid(), signal.SIGKILL)
        loss_sum += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        seen += len(y)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.2%}")
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "images": seen}, step


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


def fit(
    cfg: RunConfig, resume: bool = False, progress: bool = True, rank: int = 0, world: int = 1
) -> runs.RunResult:
    """Train cfg.model on cfg.data_dir; with resume, continue the run in cfg.out_dir."""
    run_dir = runs.new_run_dir(cfg)
    if not resume and (run_dir / runs.CONFIG).exists():
        raise FileExistsError(
            f"{run_dir}: already holds a run; pass --resume {run_dir} to "
            "continue it or choose another --out"
        )
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    spec = get_spec(cfg.model)
    pre = spec.preprocess(cfg.image_size)
    root = resolve_data(cfg.data_dir, cfg.cache_dir)
    splits = load_splits(
        root, cfg.val_fraction, cfg.seed, read_exclude_list(cfg.exclude_list), cfg.max_per_class
    )
    names = splits["train"].class_names
    pretrained = cfg.pretrained or spec.pretrained_default
    ckpt = (
        load_checkpoint(run_dir / runs.LAST) if resume and (run_dir / runs.LAST).exists() else None
    )
    model = create_model(
        cfg.model,
        len(names),
        # a resumed run takes every weight from its checkpoint: no ImageNet file needed again
        pretrained=pretrained and ckpt is None,
        freeze_backbone=cfg.freeze or cfg.fine_tune_after > 0,
        image_size=pre.size,
        weights=cfg.weights if ckpt is None else "",
    )
    prep = dict(cache_dir=cfg.cache_dir, workers=cfg.workers, progress=progress and rank == 0)
    train_data = prepare_split(splits["train"], pre, cfg.pipeline, **prep)
    val_data = prepare_split(splits["val"], pre, cfg.pipeline, **prep)
    history: list[dict[str, Any]] = []
    start, best = 0, -1.0
    if ckpt is not None:
        start, best, history = ckpt["epoch"], ckpt["best_acc"], ckpt["history"]
    if isinstance(model, TransferNet) and 0 < cfg.fine_tune_after <= start:
        model.set_frozen(False)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg, pretrained)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    meta = {
        "model": cfg.model,
        "backend": "torch",
        "class_names": names,
        "num_classes": len(names),
        "preprocess": pre.to_dict(),
        "pretrained": pretrained,
        "params": count_params(model),
        "config": cfg.to_dict(),
    }
    if rank == 0:
        runs.write_config(
            run_dir,
            cfg,
            {
                "resolved_image_size": pre.size,
                "data_root": str(root),
                "device": str(device),
                "classes": names,
                "params": count_params(model),
                "trainable_params": count_params(model, True),
            },
        )
    weights = (
        class_weights(splits["train"].counts(), device) if cfg.class_weights == "auto" else None
    )
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing)
    amp = autocast_for(device, cfg.amp)
    n_batches = math.ceil(len(train_data) / world / cfg.batch_size)
    lr_at = lambda s: lr_factor(s, n_batches * cfg.epochs, s // max(1, n_batches), cfg)  # noqa: E731
    # A frozen backbone without augmentation sees the same images every epoch: run it once.
    features = None
    if (
        isinstance(model, TransferNet)
        and model.frozen
        and cfg.augment == "none"
        and cfg.fine_tune_after == 0
    ):
        features = [
            compute_features(model.backbone, d, cfg.batch_size, device, amp, progress)
            for d in (train_data, val_data)
        ]
    writer = _tensorboard(run_dir) if rank == 0 else None
    step = start * n_batches
    for epoch in range(start, cfg.epochs):
        if isinstance(model, TransferNet) and cfg.fine_tune_after and epoch == cfg.fine_tune_after:
            model.set_frozen(False)
            optimizer = build_optimizer(model, cfg, pretrained)
        seed_everything(cfg.seed * 1000 + epoch)  # dropout etc.: an epoch replays exactly
        t0 = time.perf_counter()
        if features is not None:
            module = model.head
            train_b = feature_batches(*features[0], cfg.batch_size, True, cfg.seed + epoch)
            val_b = feature_batches(*features[1], cfg.batch_size, False, 0)
        else:
            module = model
            train_b = batches(
                train_data,
                cfg.batch_size,
                device,
                True,
                cfg.augment != "none",
                cfg.seed + epoch,
                cfg.workers,
                cfg.channels_last,
                rank,
                world,
            )
            val_b = batches(
                val_data, cfg.batch_size, device, False, False, 0, cfg.workers, cfg.channels_last
            )
        tr, step = train_one_epoch(
            module,
            train_b,
            optimizer,
            loss_fn,
            lr_at,
            step,
            amp,
            f"epoch {epoch + 1}/{cfg.epochs}",
            n_batches,
            progress,
        )
        train_s = time.perf_counter() - t0
        va = evaluate_epoch(module, val_b, loss_fn, amp)
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": tr["loss"],
            "train_acc": tr["acc"],
            "val_loss": va["loss"],
            "val_acc": va["acc"],
            "images_per_s": tr["images"] / max(train_s, 1e-9),
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        improved = not math.isnan(va["acc"]) and va["acc"] > best
        best = va["acc"] if improved else best
        if rank == 0:
            print(runs.format_epoch(row, cfg.epochs), flush=True)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "best_acc": best,
                "history": history,
                "meta": meta,
            }
            if improved or not (run_dir / runs.BEST).exists():
                save_checkpoint(run_dir / runs.BEST, state)
            save_checkpoint(run_dir / runs.LAST, state)
            runs.write_history(run_dir, history)
            for k, v in row.items():
                if k != "epoch" and writer is not None:
                    writer.add_scalar(k, v, epoch + 1)
        if cfg.patience and _stalled(history, cfg.patience):
            print(f"early stop: no val-accuracy gain in {cfg.patience} epochs", flush=True)
            break
    if writer is not None:
        writer.close()
    skipped = {**train_data.skipped, **val_data.skipped}
    if skipped and rank == 0:
        print(f"skipped {len(skipped)} unreadable file(s), listed in {run_dir / 'skipped.json'}")
        from imgclf.files import write_json

        write_json(run_dir / "skipped.json", skipped)
    return runs.RunResult(run_dir, run_dir / runs.BEST, history, names, skipped)


def _stalled(history: list[dict[str, Any]], patience: int) -> bool:
    accs = [h["val_acc"] for h in history]
    if len(accs) <= patience:
        return False
    return max(accs[-patience:]) <= max(accs[:-patience])


def _tensorboard(run_dir: Any) -> Any:
    import sys

    # TensorBoard imports all of TensorFlow when it is installed (the [keras] extra): ~7 s per
    # run here. Its own protobuf stubs write the same event files, so hide TensorFlow meanwhile.
    hide = "tensorflow" not in sys.modules
    if hide:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; a broken install should not stop training
        return None
    finally:
        if hide:
            del sys.modules["tensorflow"]
    return SummaryWriter(str(run_dir / "tensorboard"))
