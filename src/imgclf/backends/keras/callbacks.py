"""The Keras trainer's end-of-epoch duties as Keras callbacks, mirroring the PyTorch side's
backends/torch/callbacks.py: history, checkpoints, early stopping (TensorBoard and
BackupAndRestore are Keras' own)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from imgclf.backends.keras.checkpoint import save_checkpoint
from imgclf.rules import beats, early_stop_message, stalled
from imgclf.runs import RunDir, check_finite, format_epoch, history_row

VAL_KEYS = {"val_acc": "val_accuracy", "val_loss": "val_loss"}  # our row keys, Keras log keys


class HistoryLog(keras.callbacks.Callback):
    """One history row per epoch in the PyTorch trainer's format, printed and written."""

    def __init__(self, run: RunDir, epochs: int, history: list[dict[str, Any]], images: int):
        super().__init__()
        self.run, self.epochs, self.history, self.images = run, epochs, history, images
        self.t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs, secs = logs or {}, time.perf_counter() - self.t0
        lr = last_step_rate(self.model.optimizer)
        train = {"loss": logs.get("loss", math.nan), "acc": logs.get("accuracy", math.nan)}
        val = {"loss": logs.get("val_loss", math.nan), "acc": logs.get("val_accuracy", math.nan)}
        row = history_row(epoch + 1, lr, train, val, self.images, secs, secs)
        row = {k: float(v) if k != "epoch" else v for k, v in row.items()}
        self.history[:] = [h for h in self.history if h["epoch"] < row["epoch"]] + [row]
        print(format_epoch(row, self.epochs), flush=True)
        self.run.write_history(self.history)


class StopOnNonFinite(keras.callbacks.Callback):
    """runs.check_finite, first of the callbacks: it raises before BackupAndRestore or the
    checkpoints save a diverged model."""

    def __init__(self, history: list[dict[str, Any]]):
        super().__init__()
        self.history = history

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs = logs or {}
        row = {"epoch": epoch + 1, "train_loss": float(logs.get("loss", math.nan))}
        row.update({k: float(logs.get(key, math.nan)) for k, key in VAL_KEYS.items()})
        check_finite(row, [h for h in self.history if h["epoch"] <= epoch])


class Checkpoints(keras.callbacks.Callback):
    """last.keras every epoch, best.keras when the epoch beats every earlier one (rules.beats, as
    the PyTorch side), including those before a resume (Keras' ModelCheckpoint forgets them)."""

    def __init__(self, run: RunDir, history: list[dict[str, Any]], fingerprint: dict[str, Any]):
        super().__init__()
        self.run, self.history, self.fingerprint = run, history, fingerprint

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        earlier = [h for h in self.history if h["epoch"] <= epoch]  # epochs count from 1 there
        logs = logs or {}
        row = {k: float(logs.get(key, math.nan)) for k, key in VAL_KEYS.items()}
        best = self.run.checkpoint("best", ".keras")
        if not best.exists() or beats(row, earlier):
            self._save(best)
        self._save(self.run.checkpoint("last", ".keras"))

    def _save(self, path: Any) -> None:
        save_checkpoint(self.model, path, self.fingerprint)


class EarlyStopping(keras.callbacks.Callback):
    """The PyTorch trainer's rule on the whole history, so a resumed run keeps counting."""

    def __init__(self, patience: int, history: list[dict[str, Any]]):
        super().__init__()
        self.patience, self.history = patience, history

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if stalled(self.history, self.patience):
            print(early_stop_message(self.patience), flush=True)
            self.model.stop_training = True


class StepHook(keras.callbacks.Callback):
    """Calls on_step(global step) after every optimizer step, like the PyTorch trainer."""

    def __init__(self, on_step: Callable[[int], None], first_step: int):
        super().__init__()
        self.on_step, self.step = on_step, first_step

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.step += 1
        self.on_step(self.step)


def last_step_rate(optimizer: Any) -> float:
    """The rate of the epoch's last step, what the PyTorch history records. Keras' own
    `learning_rate` is the schedule at `iterations`, the next step's rate, which differs across a
    step schedule's drop; `_learning_rate` is where Keras 3 keeps the schedule itself."""
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return float(np.asarray(schedule(max(int(optimizer.iterations) - 1, 0))))
    return float(np.asarray(optimizer.learning_rate))
