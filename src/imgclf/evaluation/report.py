"""One self-contained HTML report per run: tables plus the PNGs embedded as data URIs."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from imgclf.evaluation.metrics import threshold_text
from imgclf.files import write_text
from imgclf.runs import RunDir

IMAGES = [
    (RunDir.CURVES, "Training curves"),
    (RunDir.CONFUSION, "Confusion matrix"),
    (RunDir.TOP_LOSSES, "Most confidently wrong images"),
    (RunDir.RELIABILITY, "Reliability diagram"),
    (RunDir.COVERAGE, "Accuracy against coverage (predict --abstain P)"),
]


STYLE = (
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:"
    "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}"
)


def html_page(title: str, body: str) -> str:
    """A self-contained page: the report's style, then body (already HTML)."""
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}</body></html>"
    )


def html_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A table of already formatted cells (text cells are escaped here)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def figures(run_dir: Path, images: list[tuple[str, str]]) -> str:
    """The PNGs of `images` (file, caption) that exist, embedded."""
    return "".join(_img(run_dir / f, alt) for f, alt in images if (run_dir / f).exists())


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}'
        f"</figcaption></figure>"
    )


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.2%}"


def _baseline(m: dict[str, Any]) -> str:
    """The majority-class baseline and chance beside the accuracy, and what the split means."""
    b = m.get("baseline")
    if not b:
        return ""
    text = html.escape(
        f"Baseline: always {b['majority_class']!r} (train's most common class) "
        f"{b['majority_accuracy']:.2%}; chance {b['chance']:.2%}."
    )
    if not b["beaten"]:
        text += " <b>The model does not beat the baseline.</b>"
    if m.get("split_warning"):
        text += f" <b>{html.escape(m['split_warning'])}</b>"
    if differs := m.get("class_mix", {}).get("differs"):
        text += f" Note: {html.escape(differs)}."
    return f"<p>{text}</p>"


def _calibration(m: dict[str, Any]) -> str:
    """The temperature and the expected calibration error before and after it."""
    c = m.get("calibration")
    if not c:
        return ""
    if c.get("temperature") is None:
        return html.escape(f"ECE {c['ece_before']:.2%} ({c['bins']} bins). {c.get('note', '')}")
    return html.escape(
        f"Confidences calibrated by temperature scaling: T = {c['temperature']:.3g}, fitted on "
        f"{c.get('fitted_images', '?')} {c.get('fitted_on', 'val')} images. Expected calibration "
        f"error ({c['bins']} bins) on this split {c['ece_before']:.2%} before, "
        f"{c['ece_after']:.2%} after; NLL {c['nll_before']:.4f} -> {c['nll_after']:.4f}."
    )


def _coverage(m: dict[str, Any]) -> str:
    """The abstention table: answer only above P, what is answered and how well."""
    cov = m.get("coverage")
    if not cov or not cov["points"]:
        return ""
    rows = "".join(
        f"<tr><td>{threshold_text(p['threshold'])}</td><td>{p['coverage']:.2%}</td>"
        f"<td>{p['accuracy']:.2%}</td></tr>"
        for p in cov["points"]
    )
    return (
        "<h2>Not answering the least sure</h2><p><code>imgclf predict RUN PHOTOS --abstain P"
        "</code> answers NOT SURE below P.</p><table><tr><th>P</th><th>answered</th>"
        f"<th>accuracy of the answered</th></tr>{rows}</table>"
    )


def write_report(run_dir: Path, metrics: dict[str, Any], history: list[dict[str, Any]]) -> Path:
    e = html.escape
    per_class = html_table(
        ["class", "accuracy", "precision", "recall", "F1", "images"],
        [
            [c["class"], _pct(c["accuracy"]), f"{c['precision']:.3f}", f"{c['recall']:.3f}",
             f"{c['f1']:.3f}", c["support"]]
            for c in metrics["per_class"]
        ],
    )  # fmt: skip
    body = f"""<h1>{e(str(metrics.get("model")))} ({e(str(metrics.get("backend")))})</h1>
<p>Run <code>{e(str(metrics.get("run")))}</code> evaluated on <code>{e(str(metrics.get("data")))}
</code> split <b>{e(str(metrics.get("split")))}</b>: {metrics["images"]} images.</p>
<h2>Accuracy {metrics["accuracy"]:.2%}</h2>{_baseline(metrics)}<p>loss {metrics["loss"]:.4f},
balanced accuracy {metrics.get("balanced_accuracy", float("nan")):.2%},
macro F1 {metrics["macro_f1"]:.3f}, unreadable files skipped: {len(metrics.get("skipped", {}))}</p>
<p>{_calibration(metrics)}</p>
{per_class}
{_coverage(metrics)}
{history_table(history)}
{figures(run_dir, IMAGES)}"""
    return write_text(
        run_dir / RunDir.REPORT, html_page(f"imgclf report: {metrics.get('model')}", body)
    )


def history_table(history: list[dict[str, Any]]) -> str:
    rows = [
        [h["epoch"], f"{h['train_loss']:.4f}", f"{h['train_acc']:.2%}", f"{h['val_loss']:.4f}",
         f"{h['val_acc']:.2%}", f"{h['images_per_s']:.0f}"]
        for h in history
    ]  # fmt: skip
    heads = ["epoch", "train loss", "train acc", "val loss", "val acc", "img/s"]
    return "<h2>History</h2>" + html_table(heads, rows)
