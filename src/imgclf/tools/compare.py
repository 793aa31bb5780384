"""`imgclf compare`: one table and one bar chart over several runs of either backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imgclf.runs import RunDir
from imgclf.viz import plot_bars


def collect_runs(run_dirs: list[str]) -> list[dict[str, Any]]:
    rows = []
    for run in map(RunDir, run_dirs):
        meta = run.read_meta()
        hist = run.read_history()
        met_path = run / RunDir.METRICS
        met = json.loads(met_path.read_text()) if met_path.exists() else {}
        acc = met.get("accuracy", hist[-1]["val_acc"] if hist else float("nan"))
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
                "per_class": {c["class"]: c["accuracy"] for c in met.get("per_class", [])},
            }
        )
    return rows


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
        *classes,
    ]
    lines = [head]
    for r in rows:
        lines.append(
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
                *[f"{r['per_class'].get(c) or 0:.1%}" for c in classes],
            ]
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)) for line in lines
    )


def compare_runs(run_dirs: list[str], plot: str | Path) -> list[dict[str, Any]]:
    rows = collect_runs(run_dirs)
    plot_bars(
        [f"{r['run']}\n({r['backend']})" for r in rows],
        [r["accuracy"] for r in rows],
        plot,
        "Accuracy by run",
        "accuracy",
    )
    return rows
