"""What an `imgclf audit` report beside the data says about the evaluated images (leaks into
train, suspect labels), and evaluate's own label-issue finder on the run's probabilities."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.audit.leaks import near_leaks
from imgclf.audit.suspects import find_label_issues
from imgclf.data.folder import display_path


def find_audit_json(root: Path) -> Path | None:
    """An `imgclf audit` report beside the data: DATA/audit.json, DATA.audit.json, or the
    audit's default output runs/audit-<name>/audit.json."""
    for p in (
        root / "audit.json",
        root.with_name(root.name + ".audit.json"),
        Path("runs") / f"audit-{root.resolve().name}" / "audit.json",
    ):
        if p.is_file():
            return p
    return None


def _without(found: Path, hit: np.ndarray, y: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    keep = ~hit
    acc = float((probs[keep].argmax(1) == y[keep]).mean()) if keep.any() else float("nan")
    return {"audit": str(found), "images": int(hit.sum()), "accuracy_without": acc}


def audit_notes(root: Path, paths: list[str], y: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """metrics keys from the audit beside the data: near_duplicate_leaks (evaluated images with
    a (near-)duplicate in train: Barz & Denzler's "purged" test set) and suspect_labels (those
    `--label-issues` flagged), each with the accuracy without them."""
    found = find_audit_json(root)
    if found is None:
        return {}
    report = json.loads(found.read_text())
    shown = [display_path(p) for p in paths]
    out: dict[str, Any] = {}
    if "near_duplicates_across" in report:
        with_train = near_leaks(report["near_duplicates_across"], {"test", "val"})
        for group in report.get("duplicates_across", []):  # exact copies carry no split
            if any(f"{os.sep}train{os.sep}" in p for p in group):
                with_train.update(group)
        hit = np.array([p in with_train for p in shown], dtype=bool)
        out["near_duplicate_leaks"] = _without(found, hit, y, probs)
    if "label_issues" in report:
        suspects = {x["path"] for x in report["label_issues"]}
        hit = np.array([p in suspects for p in shown], dtype=bool)
        out["suspect_labels"] = _without(found, hit, y, probs)
    return out


def run_label_issues(
    probs: np.ndarray, y: np.ndarray, paths: list[str], names: list[str], split: str, out: Path
) -> list[dict[str, Any]]:
    """`evaluate --label-issues`: confident learning on the run's own probabilities of the
    evaluated split (out of sample for test and val: the model never trained on them), with a
    contact sheet label_issues.png in the evaluation's folder."""
    from imgclf.audit.label_issues import issue_sheet, suspect_row

    if y.ndim == 2:  # multi-label: missing and extra labels (audit/multi_label_issues.py)
        from imgclf.audit.multi_label_issues import find_multi_label_issues, multi_issue_rows

        hits = find_multi_label_issues(probs, y)
        found = multi_issue_rows(hits, paths, [split] * len(paths), names, y, probs)
    else:
        found = [
            suspect_row(s, paths[s.index], split, names, probs) for s in find_label_issues(probs, y)
        ]
    if found:
        out.mkdir(parents=True, exist_ok=True)
        title = f"Suspect {split} labels by the run's own model (given -> suggested, score)"
        issue_sheet(found, out / "label_issues.png", title)
    return found
