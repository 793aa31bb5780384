"""Keras training with compile()/fit(), writing the same run folder as the PyTorch trainer."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from imgclf import runs
from imgclf.backends.keras.data import CachedImages
from imgclf.config import RunConfig
from imgclf.data.cache import DecodedCache
from imgclf.data.folder import display_path, load_splits, read_exclude_list
from imgclf.data.sources import resolve_data
from imgclf.files import write_json
from imgclf.registry import create_model, get_spec

BEST, LAST, META = "best.keras", "last.keras", "meta.json"
_KILL_AT_STEP = int(os.environ.get("IMGCLF_TEST_KILL_AT_STEP", "0") or 0)


class RunLogger(keras.callbacks.Callback):
    """Appends one history row per epoch in the PyTorch trainer's format and saves last.keras."""

    def __init__(self, run_dir: Path, cfg: RunConfig, n_train: int, history: list[dict]):
        super().__init__()
        self.run_dir, self.cfg, self.n_train, self.history = run_dir, cfg, n_train, history
        self.t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps == _KILL_AT_STEP:  # fault injection for the resume test, like `kill -9`
            os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs = logs or {}
        secs = time.perf_counter() - self.t0
        lr = self.model.optimizer.learning_rate
        row = {
            "epoch": epoch + 1,
            "lr": float(np.asarray(lr)),
            "train_loss": float(logs.get("loss", math.nan)),
            "train_acc": float(logs.get("accuracy", math.nan)),
            "val_loss": float(logs.get("val_loss", math.nan)),
            "val_acc": float(logs.get("val_accuracy", math.nan)),
            "images_per_s": self.n_train / max(secs, 1e-9),
            "seconds": secs,
        }
        self.history[:] = [h for h in self.history if h["epoch"] < row["epoch"]] + [row]
        print(runs.format_epoch(row, self.cfg.epochs), flush=True)
        runs.write_history(self.run_dir, self.history)
        # Keras insists on the .keras suffix, so save beside the target and rename (atomic)
        tmp = self.run_dir / f".{LAST}.tmp.keras"
        self.model.save(tmp)
        os.replace(tmp, self.run_dir / LAST)


def _data(cfg: RunConfig, idx: Any, pre: Any, shuffle: bool, seed: int) -> tuple:
    cache = DecodedCache(idx, pre.size, cfg.cache_dir or None)
    stats = cache.build(workers=cfg.workers, progress=True)
    rows = cache.ok_rows
    labels = np.asarray(idx.labels, np.int64)[rows]
    skipped = {display_path(idx.paths[r]): why for r, why in stats.failed.items()}
    return CachedImages(cache, rows, labels, pre, cfg.batch_size, shuffle, seed), skipped


def fit(cfg: RunConfig, resume: bool = False, progress: bool = True) -> runs.RunResult:
    run_dir = runs.new_run_dir(cfg)
    if not resume and (run_dir / runs.CONFIG).exists():
        raise FileExistsError(
            f"{run_dir}: already holds a run; pass --resume {run_dir} to "
            "continue it or choose another --out"
        )
    keras.utils.set_random_seed(cfg.seed)
    spec = get_spec(cfg.model, "keras")
    pre = spec.preprocess(cfg.image_size)
    root = resolve_data(cfg.data_dir, cfg.cache_dir)
    splits = load_splits(
        root, cfg.val_fraction, cfg.seed, read_exclude_list(cfg.exclude_list), cfg.max_per_class
    )
    names = splits["train"].class_names
    train, skipped = _data(cfg, splits["train"], pre, True, cfg.seed)
    val, skipped_val = _data(cfg, splits["val"], pre, False, 0)
    model = create_model(
        cfg.model,
        len(names),
        backend="keras",
        pretrained=cfg.pretrained or spec.pretrained_default,
        freeze_backbone=cfg.freeze,
        image_size=pre.size,
        augment=cfg.augment != "none",
    )
    steps = len(train) * cfg.epochs
    lr = (
        keras.optimizers.schedules.CosineDecay(cfg.lr, steps)
        if cfg.schedule == "cosine"
        else cfg.lr
    )
    opt = (
        keras.optimizers.SGD(lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay or None)
        if cfg.optimizer == "sgd"
        else keras.optimizers.Adam(lr, weight_decay=cfg.weight_decay or None)
    )
    # label smoothing needs one-hot targets in Keras; integer labels otherwise (less memory)
    if cfg.label_smoothing:
        train.num_classes = val.num_classes = len(names)
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss, metric = keras.losses.SparseCategoricalCrossentropy(), "accuracy"
    model.compile(optimizer=opt, loss=loss, metrics=[metric])
    meta = {
        "model": cfg.model,
        "backend": "keras",
        "class_names": names,
        "num_classes": len(names),
        "preprocess": pre.to_dict(),
        "params": model.count_params(),
    }
    write_json(run_dir / META, meta)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    runs.write_config(
        run_dir,
        cfg,
        {
            "resolved_image_size": pre.size,
            "data_root": str(root),
            "device": "keras/" + keras.backend.backend(),
            "classes": names,
            "params": model.count_params(),
            "trainable_params": trainable,
        },
    )
    hist_path = run_dir / runs.HISTORY_JSON
    history = json.loads(hist_path.read_text()) if resume and hist_path.exists() else []
    callbacks = [
        # BackupAndRestore resumes a killed fit() at the last finished epoch
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / BEST), monitor="val_accuracy", save_best_only=True
        ),
        RunLogger(run_dir, cfg, len(train.rows), history),
    ]
    if cfg.patience:
        callbacks.append(keras.callbacks.EarlyStopping("val_accuracy", patience=cfg.patience))
    counts = np.bincount(train.labels, minlength=len(names)).astype(np.float64)
    class_weight = (
        {i: float(counts.sum() / (len(names) * max(c, 1))) for i, c in enumerate(counts)}
        if cfg.class_weights == "auto"
        else None
    )
    model.fit(
        train,
        validation_data=val if len(val.rows) else None,
        epochs=cfg.epochs,
        callbacks=callbacks,
        class_weight=class_weight,
        verbose=1 if progress and sys.stdout.isatty() else 0,
    )
    all_skipped = {**skipped, **skipped_val}
    if all_skipped:
        write_json(run_dir / "skipped.json", all_skipped)
    return runs.RunResult(run_dir, run_dir / BEST, history, names, all_skipped)
