"""Keras training with compile()/fit(), writing the same run folder as the PyTorch trainer."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import keras

from imgclf.backends.common import (
    RunSetup,
    finish_run,
    start_run,
    warn_unreadable_classes,
    write_run_info,
)
from imgclf.backends.keras.callbacks import (
    Checkpoints,
    EarlyStopping,
    HistoryLog,
    StepHook,
    StopOnNonFinite,
)
from imgclf.backends.keras.checkpoint import read_fingerprint
from imgclf.backends.keras.distributed import mirrored, scope
from imgclf.backends.keras.loaders import CachedImages, load_split
from imgclf.backends.keras.models import (
    backbone_of,
    count_params,
    multi_label_loss,
    sigmoid_outputs,
)
from imgclf.backends.keras.optim import build_optimizer
from imgclf.config import RunConfig
from imgclf.data.balance import class_weights
from imgclf.models import create_model
from imgclf.rules import backbone_rate, phases
from imgclf.runs import RunDir, RunResult, check_fingerprint, fine_tune_message, fingerprint


def fit(
    cfg: RunConfig,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    s = start_run(cfg, "keras", resume)
    device = select_device(cfg)
    strategy = mirrored(cfg)  # None for one device
    keras.utils.set_random_seed(cfg.seed)
    train, skipped = load_split(s, "train", True)
    val, skipped_val = load_split(s, "val", False)
    warn_unreadable_classes(s.names, train.labels)
    with scope(strategy):
        model = build_model(s, resume)
    history = s.run.read_history() if resume else []
    write_run_info(s, "keras", ".keras", count_params(model), device, train.labels, cfg.replicas)
    # fastai-style fine-tuning is two fit() calls: frozen backbone, then all of it (recompiled)
    for start, stop, frozen in phases(cfg):
        if len(history) >= stop:
            continue
        with scope(strategy):
            compile_model(model, s, len(train), frozen, len(history) * len(train))
        if start > 0:
            print(fine_tune_message(cfg, max(start, len(history)), s.pretrained), flush=True)
        callbacks = epoch_callbacks(s, history, len(train.rows), f"phase{start}")
        if on_step is not None:
            callbacks.insert(0, StepHook(on_step, len(history) * len(train)))
        model.fit(
            train,
            validation_data=val if len(val.rows) else None,
            initial_epoch=max(start, len(history)),
            epochs=stop,
            callbacks=callbacks,
            class_weight=class_weight(cfg, train, s.names),
            # CachedImages shuffles with its own seed; Keras' shuffle=True would also reorder
            # the batches with Python's `random`, differently on one device and on several
            shuffle=False,
            verbose=1 if progress and sys.stdout.isatty() else 0,
        )
        if model.stop_training:
            break
    return finish_run(s, history, {**skipped, **skipped_val}, ".keras")


def build_model(s: RunSetup, resume: bool) -> keras.Model:
    cfg = s.cfg
    last = s.run.checkpoint("last", ".keras")
    model = create_model(
        cfg.model,
        len(s.names),
        backend="keras",
        pretrained=s.pretrained and not (resume and last.exists()),
        weights=cfg.weights,
        image_size=s.pre.size,
        augment=cfg.augment,
    )
    if s.multi_label:
        sigmoid_outputs(model)
    if resume and last.exists():
        check_fingerprint(read_fingerprint(last), s.meta(), last)
        model.load_weights(last)  # then BackupAndRestore, if it holds a later state, wins
    return model


def compile_model(
    model: keras.Model, s: RunSetup, steps_per_epoch: int, frozen: bool, first_step: int
) -> None:
    backbone = backbone_of(model)
    if backbone is not None:
        backbone.trainable = not frozen
    cfg = s.cfg
    scale = backbone_rate(cfg, s.pretrained, frozen)
    scaled = backbone.trainable_variables if backbone and scale is not None else []
    opt = build_optimizer(cfg, steps_per_epoch, model.trainable_variables, scaled, first_step)
    # label smoothing needs one-hot targets in Keras; integer labels otherwise (less memory)
    if s.multi_label:  # 0/1 rows; 'accuracy' is per label, as the PyTorch side counts it
        w = class_weights(cfg, s.splits["train"].targets(), s.names)
        loss = multi_label_loss(w, cfg.label_smoothing)
        metric = keras.metrics.BinaryAccuracy(name="accuracy")
    elif cfg.label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        metric: Any = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss, metric = keras.losses.SparseCategoricalCrossentropy(), "accuracy"
    model.compile(optimizer=opt, loss=loss, metrics=[metric])


def epoch_callbacks(
    s: RunSetup, history: list, images: int, phase: str
) -> list[keras.callbacks.Callback]:
    return [
        StopOnNonFinite(history),
        # BackupAndRestore resumes a killed fit() at the last finished epoch
        keras.callbacks.BackupAndRestore(str(s.run / RunDir.BACKUP / phase)),
        HistoryLog(s.run, s.cfg.epochs, history, images),
        Checkpoints(s.run, history, fingerprint(s.meta())),
        keras.callbacks.TensorBoard(str(s.run / RunDir.TENSORBOARD), write_graph=False),
        EarlyStopping(s.cfg.patience, history),
    ]


def class_weight(cfg: RunConfig, train: CachedImages, names: list[str]) -> dict[int, float] | None:
    """Keras' class_weight (class index -> weight); multi-label weights are in the loss."""
    if train.labels.ndim == 2:
        return None
    w = class_weights(cfg, train.labels, names)
    return None if w is None else dict(enumerate(map(float, w)))


def select_device(cfg: RunConfig) -> str:
    """--device and --amp in TensorFlow's terms; returns what config.json records."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if cfg.device == "cpu":
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    elif cfg.device != "auto":  # refusals.py refused an index TensorFlow does not see
        index = int(cfg.device.split(":")[1]) if ":" in cfg.device else 0
        tf.config.set_visible_devices(gpus[index], "GPU")
        gpus = [gpus[index]]
    if cfg.amp and gpus:  # bf16 like the PyTorch side; softmax outputs stay float32
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    return f"keras/{keras.backend.backend()}/" + ("gpu" if gpus else "cpu")
