"""Run folders: where a run's config, history, checkpoints, plots and report live."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.config import RunConfig
from imgclf.files import write_json, write_text

CONFIG, HISTORY_JSON, HISTORY_CSV = "config.json", "history.json", "history.csv"
LAST, BEST = "last.pt", "best.pt"


@dataclass
class RunResult:
    """What train() returns, for either backend."""

    run_dir: Path
    model_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def new_run_dir(cfg: RunConfig) -> Path:
    if cfg.out_dir:
        return Path(cfg.out_dir)
    return Path("runs") / f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_config(run_dir: Path, cfg: RunConfig, extra: dict[str, Any]) -> None:
    write_json(run_dir / CONFIG, {**cfg.to_dict(), **extra})


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    write_json(run_dir / HISTORY_JSON, history)
    if history:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
        write_text(run_dir / HISTORY_CSV, buf.getvalue())


def format_epoch(row: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.2%}  val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}"
        f"  {row['images_per_s']:.0f} img/s  {row['seconds']:.1f}s"
    )
