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
from imgclf.files import write_json, write_text
from imgclf.runs import RunDir
from imgclf.viz import plot_curves, plot_pr_curves


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
    write_text(out / RunDir.REPORT, report_html(m, out))


def report_html(m: dict[str, Any], out: Path) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(c['class'])}</td><td>{_num(c['average_precision'])}</td>"
        f"<td>{c['precision']:.3f}</td><td>{c['recall']:.3f}</td><td>{c['f1']:.3f}</td>"
        f"<td>{c['threshold']:.3f}</td><td>{c['support']}</td></tr>"
        for c in m["per_class"]
    )
    figs = "".join(
        f'<p><img src="{f}" alt="{f}"></p>'
        for f in (RunDir.PR_CURVES, RunDir.CURVES)
        if (out / f).exists()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>imgclf report: {e(str(m.get("model")))}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:
collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}img{{max-width:100%}}
</style></head><body>
<h1>{e(str(m.get("model")))} ({e(str(m.get("backend")))}), multi-label</h1>
<p>Run <code>{e(str(m.get("run")))}</code> on <code>{e(str(m.get("data")))}</code> split
<b>{e(str(m.get("split")))}</b>: {m["images"]} images,
{m["images_with_no_class"]} with no class.</p>
<h2>mAP {m["mAP"]:.3f}</h2><p>micro F1 {m["micro_f1"]:.3f}, macro F1 {m["macro_f1"]:.3f},
exact match {m["exact_match"]:.2%}, micro precision {m["micro_precision"]:.3f}, micro recall
{m["micro_recall"]:.3f} at the per-class thresholds fitted on val. Baseline (every class scored
with its train prevalence): mAP {m["baseline"]["prevalence_mAP"]:.3f}.</p>
<table><tr><th>class</th><th>AP</th><th>precision</th><th>recall</th><th>F1</th>
<th>threshold</th><th>images</th></tr>{rows}</table>{figs}</body></html>
"""


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
