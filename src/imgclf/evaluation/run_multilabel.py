"""`imgclf evaluate` of a multi-label run: metrics at the run's thresholds, the precision-recall
curves and a report, into the same folder a single-label evaluation writes."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.calibration import read_thresholds
from imgclf.evaluation.multilabel import DEFAULT_THRESHOLD, multilabel_metrics
from imgclf.evaluation.report import figures, history_table, html_page, html_table
from imgclf.files import write_json, write_text
from imgclf.runs import RunDir
from imgclf.viz import plot_curves, plot_pr_curves

FIGURES = [(RunDir.PR_CURVES, "Precision-recall per class"), (RunDir.CURVES, "Training curves")]


def train_prevalence(run: RunDir, names: list[str], fallback: np.ndarray) -> np.ndarray:
    """Each class's share of train images (split.json), the baseline's scores."""
    if not (run / RunDir.SPLIT).is_file():
        return fallback.mean(0) if len(fallback) else np.zeros(len(names))
    rows = json.loads((run / RunDir.SPLIT).read_text())["splits"]["train"]
    counts = np.zeros(len(names))
    for _, ys in rows:
        counts[ys if isinstance(ys, list) else [ys]] += 1
    return counts / max(len(rows), 1)


def score_multilabel(
    run: RunDir, y: np.ndarray, probs: np.ndarray, names: list[str], fitted: bool = True
) -> dict[str, Any]:
    """metrics.json's numbers for a multi-label run (thresholds from its calibration.json;
    fitted False, evaluate --no-calibration: 0.5 each)."""
    thresholds = read_thresholds(run.path, names) if fitted else None
    fitted = thresholds is not None
    if thresholds is None:
        thresholds = np.full(len(names), DEFAULT_THRESHOLD)
    m = multilabel_metrics(y, probs, thresholds, names, train_prevalence(run, names, y))
    per_class = dict(zip(names, map(float, thresholds), strict=True))
    m["thresholds"] = {"fitted_on_val": fitted, "per_class": per_class}
    return m


def write_multilabel(
    out: Path, m: dict[str, Any], history: list[dict[str, Any]], y: np.ndarray, probs: np.ndarray
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RunDir.METRICS, m)
    if len(y):
        plot_pr_curves((y > 0.5).astype(int), probs, m["class_names"], out / RunDir.PR_CURVES)
    if history:
        plot_curves(history, out / RunDir.CURVES)
    write_text(out / RunDir.REPORT, report_html(m, out, history))


def report_html(m: dict[str, Any], out: Path, history: list[dict[str, Any]]) -> str:
    e = html.escape
    per_class = html_table(
        ["class", "AP", "precision", "recall", "F1", "threshold", "images"],
        [
            [c["class"], _num(c["average_precision"]), f"{c['precision']:.3f}",
             f"{c['recall']:.3f}", f"{c['f1']:.3f}", f"{c['threshold']:.3f}", c["support"]]
            for c in m["per_class"]
        ],
    )  # fmt: skip
    body = f"""<h1>{e(str(m.get("model")))} ({e(str(m.get("backend")))}), multi-label</h1>
<p>Run <code>{e(str(m.get("run")))}</code> on <code>{e(str(m.get("data")))}</code> split
<b>{e(str(m.get("split")))}</b>: {m["images"]} images,
{m["images_with_no_class"]} with no class.</p>
<h2>mAP {m["mAP"]:.3f}</h2><p>micro F1 {m["micro_f1"]:.3f}, macro F1 {m["macro_f1"]:.3f},
exact match {m["exact_match"]:.2%}, micro precision {m["micro_precision"]:.3f}, micro recall
{m["micro_recall"]:.3f} at the per-class thresholds fitted on val. Baseline (every class scored
with its train prevalence): mAP {m["baseline"]["prevalence_mAP"]:.3f}.</p>
{per_class}
{history_table(history)}
{figures(out, FIGURES)}"""
    return html_page(f"imgclf report: {m.get('model')}", body)


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
