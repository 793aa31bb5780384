"""What `imgclf review` walks through, from an audit report as `imgclf audit` writes it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import make_folder
from imgclf.messages import UsageError
from imgclf.review.findings import from_audit


def _report(data: Path) -> dict:
    t = lambda split, cls, i: str(data / split / cls / f"{cls}_{i:03d}.png")  # noqa: E731
    return {
        "root": str(data),
        "label_issues": [
            {"path": t("train", "red", 1), "split": "train", "given": "red", "suggested": "blue",
             "score": 0.2, "confident": False, "given_probability": 0.3,
             "suggested_probability": 0.5,
             "neighbours": [{"path": t("train", "blue", 2), "class": "blue", "similarity": 0.9}]},
            {"path": t("train", "green", 1), "split": "train", "given": "green",
             "suggested": "red", "score": 0.7, "confident": True},
        ],
        "near_duplicates_across": [
            {"members": [{"path": t("train", "blue", 3), "split": "train"},
                         {"path": t("test", "blue", 0), "split": "test"}],
             "score": 0.97, "method": "features"},
        ],
        "outliers": [{"path": t("test", "green", 1), "split": "test", "score": 1.5}],
    }  # fmt: skip


def test_findings_come_worst_first_with_what_a_person_weighs(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 4, "test": 2})
    labels = {os.path.realpath(p): p.parent.name for p in data.rglob("*.png")}
    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps(_report(data)))
    items = from_audit(audit, data, labels)
    assert [i.kind for i in items] == ["label issue", "label issue", "near-duplicate", "outlier"]
    assert items[0].score == 0.7 and items[0].reason.startswith("confidently labelled green")
    assert items[1].related[0]["caption"] == "blue (0.90)" and items[1].given_probability == 0.3
    leak = items[2]
    assert leak.path == os.path.join("test", "blue", "blue_000.png")  # the test side is decided
    assert leak.given == "blue" and leak.related[0]["caption"] == "train blue"
    assert items[3].given == "green" and "outlier" in items[3].reason
    assert all(not os.path.isabs(i.path) for i in items)  # corrections name them inside DATA


def test_a_finding_whose_file_is_gone_is_one_clear_line(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 4, "test": 2})
    report = _report(data)
    report["outliers"][0]["path"] = str(data / "test" / "green" / "moved.png")
    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps(report))
    with pytest.raises(UsageError, match="moved.png: in the findings but not found"):
        from_audit(audit, data, {})
