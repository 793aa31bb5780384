"""RunDir: every file name of a run folder, meta.json and history I/O, in one place."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.config import RunConfig, config_from_dict
from imgclf.files import write_json, write_text
from imgclf.messages import warn
from imgclf.rules import backbone_rate


@dataclass
class RunResult:
    """What train() returns, for either backend."""

    run_dir: Path
    model_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)  # calibration.json's content


class NotARunError(FileNotFoundError):
    """A folder given as a run that holds no imgclf run."""


class RunDir:
    """A run folder. Both backends write the same files; only the checkpoint suffix differs."""

    CONFIG = "config.json"  # the resolved RunConfig plus what was derived from it
    META = "meta.json"  # model, backend, class names, preprocessing, parameter counts
    HISTORY_JSON, HISTORY_CSV = "history.json", "history.csv"
    SKIPPED = "skipped.json"  # unreadable files the run left out, with reasons
    SPLIT = "split.json"  # every image of every split, so a resumed run keeps its split
    METRICS, REPORT = "metrics.json", "report.html"
    CURVES, CONFUSION, TOP_LOSSES = "curves.png", "confusion_matrix.png", "top_losses.png"
    CALIBRATION = "calibration.json"  # the temperature fitted on val, ECE before and after
    RELIABILITY = "reliability.png"
    COVERAGE = "coverage.png"
    PR_CURVES = "pr_curves.png"  # multi-label runs: precision-recall per class
    TENSORBOARD = "tensorboard"
    BACKUP = "backup"  # Keras' BackupAndRestore state
    EXPORT = "export"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    def checkpoint(self, which: str, suffix: str) -> Path:
        """best or last, e.g. best.pt (PyTorch) or best.keras (Keras)."""
        return self.path / f"{which}{suffix}"

    def is_run(self) -> bool:
        return (self.path / self.CONFIG).is_file()

    def check_new(self) -> None:
        """Refuse to write a new run over an old one or into a folder of other files."""
        if self.is_run():
            raise FileExistsError(
                f"{self.path}: already holds a run; pass --resume {self.path} to continue it "
                "or choose another --out"
            )
        if self.path.exists() and (not self.path.is_dir() or any(os.scandir(self.path))):
            raise FileExistsError(
                f"{self.path}: exists and is not an empty folder or an imgclf run; "
                "choose another --out"
            )

    def require(self) -> RunDir:
        if not (self.path / self.META).is_file():
            what = "no such folder" if not self.path.exists() else "no meta.json"
            raise NotARunError(f"{self.path}: not an imgclf run folder ({what})")
        return self

    def read_meta(self) -> dict[str, Any]:
        return json.loads(self.require().path.joinpath(self.META).read_text())

    def write_meta(self, meta: dict[str, Any]) -> None:
        write_json(self.path / self.META, meta)

    def read_config(self) -> RunConfig:
        if not self.is_run():
            raise NotARunError(f"{self.path}: not an imgclf run folder (no {self.CONFIG})")
        return config_from_dict(json.loads((self.path / self.CONFIG).read_text()))

    def write_config(self, cfg: RunConfig, derived: dict[str, Any]) -> None:
        write_json(self.path / self.CONFIG, {**cfg.to_dict(), **derived})

    def read_history(self) -> list[dict[str, Any]]:
        p = self.path / self.HISTORY_JSON
        return json.loads(p.read_text()) if p.exists() else []

    def write_history(self, history: list[dict[str, Any]]) -> None:
        write_json(self.path / self.HISTORY_JSON, history)
        if history:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(history[0]))
            w.writeheader()
            w.writerows(history)
            write_text(self.path / self.HISTORY_CSV, buf.getvalue())


class CheckpointMismatch(ValueError):
    """A checkpoint that belongs to another run than the meta.json beside it."""


FINGERPRINT_KEYS = ("model", "class_names", "preprocess")


def fingerprint(meta: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must agree on with meta.json: the names its outputs mean, the model
    that reads it and the input it expects. Saved inside every checkpoint."""
    return json.loads(json.dumps({k: meta[k] for k in FINGERPRINT_KEYS}))  # as meta.json reads


def check_fingerprint(found: dict[str, Any] | None, meta: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose fingerprint disagrees with meta.json (another run's best.pt
    dropped in, or class names edited), naming what differs."""
    if found is None:
        warn(f"{path}: saved without a fingerprint (imgclf < 0.3): trusting meta.json")
        return
    meta = fingerprint(meta)
    for k in FINGERPRINT_KEYS:
        if found.get(k) != meta.get(k):
            raise CheckpointMismatch(
                f"{path}: the checkpoint's {k} is {found.get(k)!r} but meta.json says "
                f"{meta.get(k)!r}: it belongs to another run, or meta.json was edited"[:400]
            )


def with_run_dir(cfg: RunConfig) -> RunConfig:
    """cfg with its run folder named: --out, or runs/<model>-<time> (the one place the default
    is made; the command and the Python API call it before anything else sees cfg)."""
    if cfg.out_dir:
        return cfg
    return cfg.replace(out_dir=str(Path("runs") / f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"))


def history_row(
    epoch: int,
    lr: float,
    train: dict[str, float],
    val: dict[str, float],
    images: int,
    train_seconds: float,
    seconds: float,
) -> dict[str, Any]:
    """One epoch's line of history.json, the same keys for both backends."""
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": train["loss"],
        "train_acc": train["acc"],
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "images_per_s": images / max(train_seconds, 1e-9),
        "seconds": seconds,
    }


def format_epoch(row: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.2%}  val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}"
        f"  {row['images_per_s']:.0f} img/s  {row['seconds']:.1f}s"
    )


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the run stops before that epoch is saved."""


def check_finite(row: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Both trainers call this before an epoch's checkpoints: a NaN model must not become
    best.pt (and predict 'nan'). history: the epochs before this one."""
    bad = [k for k in ("train_loss", "val_loss") if not math.isfinite(row[k])]
    if "val_loss" in bad and math.isnan(row["val_acc"]):
        bad.remove("val_loss")  # no readable validation image: nothing was measured
    if not bad:
        return
    kept = (
        f"the run's checkpoints keep epoch {history[-1]['epoch']}"
        if history
        else "no checkpoint was written"
    )
    what = bad[0].replace("_", " ")
    raise TrainingDiverged(
        f"epoch {row['epoch']}: the {what} is {row[bad[0]]}: training diverged (a lower --lr, "
        f"or --weight-decay, may help); stopped, and {kept}"
    )


def fine_tune_message(cfg: RunConfig, epoch: int, pretrained: bool) -> str:
    scale = backbone_rate(cfg, pretrained, frozen=False)
    rate = f"lr x {scale}" if scale is not None else "full lr (not pretrained)"
    return f"epoch {epoch + 1}: backbone unfrozen, it now trains at {rate}"
