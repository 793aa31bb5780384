"""`imgclf compare`: one table and one bar chart over several runs of either backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imgclf.runs import RunDir
from imgclf.tables import table
from imgclf.viz import plot_bars


def collect_runs(run_dirs: list[str]) -> list[dict[str, Any]]:
    rows = []
    for run in map(RunDir, run_dirs):
        meta = run.read_meta()
        hist = run.read_history()
        met_path = run / RunDir.METRICS
        met = json.loads(met_path.read_text()) if met_path.exists() else {}
        # evaluated runs: their test accuracy; others: the best val epoch's, and said so
        best_val = max((h["val_acc"] for h in hist), default=float("nan"))
        # a multi-label run: its exact-match ratio, and per class its recall (what a
        # single-label run's per-class accuracy is)
        acc = met.get("accuracy", met.get("exact_match", best_val))
        split = met.get("split", "val (training)" if hist else "none")
        split += " (exact match)" if met.get("multi_label") else ""
        rows.append(
            {
                "run": run.path.name,
                "model": meta["model"],
                "backend": meta["backend"],
                "params": meta.get("params"),
                "trainable_params": meta.get("trainable_params"),
                "epochs": len(hist),
                "train_s": sum(h["seconds"] for h in hist),
                "images_per_s": (sum(h["images_per_s"] for h in hist) / len(hist)) if hist else 0.0,
                "accuracy": acc,
                "split": split,
                "per_class": {
                    c["class"]: c.get("accuracy", c.get("recall")) for c in met.get("per_class", [])
                },
            }
        )
    return rows


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"  # not evaluated on that class: no number


def mixed_splits(rows: list[dict[str, Any]]) -> str:
    """A warning when the runs' accuracies come from different splits (not comparable)."""
    splits = sorted({r["split"] for r in rows})
    if len(splits) < 2:
        return ""
    return (
        f"warning: these accuracies come from different splits ({', '.join(splits)}) and do not "
        "rank the runs; `imgclf evaluate RUN` each run to compare them on test"
    )


def format_table(rows: list[dict[str, Any]]) -> str:
    classes = sorted({c for r in rows for c in r["per_class"]})[:12]
    head = [
        "run",
        "model",
        "backend",
        "params",
        "trainable",
        "epochs",
        "train s",
        "img/s",
        "accuracy",
        "split",
        *classes,
    ]
    cells = []
    for r in rows:
        cells.append(
            [
                r["run"],
                r["model"],
                r["backend"],
                f"{r['params'] or 0:,}",
                f"{r['trainable_params'] or 0:,}",
                str(r["epochs"]),
                f"{r['train_s']:.1f}",
                f"{r['images_per_s']:.0f}",
                f"{r['accuracy']:.2%}",
                r["split"],
                *[_pct(r["per_class"].get(c)) for c in classes],
            ]
        )
    return table(cells, head, right=[i for i in range(3, len(head)) if i != 9])


def compare_runs(run_dirs: list[str], plot: str | Path) -> list[dict[str, Any]]:
    rows = collect_runs(run_dirs)
    plot_bars(
        [f"{r['run']}\n({r['backend']}, {r['split']})" for r in rows],
        [r["accuracy"] for r in rows],
        plot,
        "Accuracy by run",
        "accuracy",
    )
    return rows
