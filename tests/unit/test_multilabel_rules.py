"""The multi-label rules on their own: reading a cell, the thresholds, the label-issue finder."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.audit.multi_label_issues import describe, find_multi_label_issues
from imgclf.data.multi_labels import split_cell
from imgclf.evaluation.multilabel import fit_thresholds, multilabel_metrics
from imgclf.messages import UsageError


@pytest.mark.parametrize(
    ("cell", "delim", "classes"),
    [
        ("cat dog", "", ["cat", "dog"]),
        ("golden retriever;cat", "", ["golden retriever", "cat"]),  # ';' first: names keep spaces
        ("['cat', 'dog']", "", ["cat", "dog"]),
        ("[]", "", []),
        ("", "", []),
        ("cat,dog", ",", ["cat", "dog"]),
        ("golden retriever", "none", ["golden retriever"]),
    ],
)
def test_cells(cell: str, delim: str, classes: list[str]) -> None:
    assert split_cell(cell, delim, "f line 2") == classes


def test_bad_cells_name_the_line() -> None:
    with pytest.raises(UsageError, match=r"f line 2: label cell 'cat\|dog' holds '\|'"):
        split_cell("cat|dog", "", "f line 2")
    with pytest.raises(UsageError, match="names 'cat' twice"):
        split_cell("cat;dog;cat", "", "f line 2")


def test_thresholds_maximise_f1_per_class_and_default_where_val_cannot_tell() -> None:
    y = np.array([[1, 0], [1, 0], [0, 0], [0, 0]], np.float32)
    p = np.array([[0.3, 0.1], [0.25, 0.2], [0.2, 0.3], [0.1, 0.4]])
    t = fit_thresholds(y, p)
    assert 0.2 < t[0] <= 0.25  # the cut between the positives (0.25, 0.3) and the rest
    assert t[1] == 0.5  # no positive of class 1 in val
    m = multilabel_metrics(y, p, t, ["a", "b"], np.array([0.5, 0.0]))
    assert m["per_class"][0]["f1"] == 1.0 and m["per_class"][1]["average_precision"] is None
    assert m["exact_match"] == 1.0 and m["images_with_no_class"] == 2


def test_a_label_left_out_and_one_added_are_found() -> None:
    rng = np.random.default_rng(0)
    shown = (rng.random((200, 3)) < 0.4).astype(np.float32)
    shown[7, 1], shown[9, 2] = 1, 0  # what the images show
    probs = np.clip(shown * 0.9 + 0.05 + rng.normal(0, 0.03, shown.shape), 0, 1)
    y = shown.copy()
    y[7, 1], y[9, 2] = 0, 1  # how they are labelled: 7 lacks class 1, 9 has class 2 too
    found = {x["index"]: x for x in find_multi_label_issues(probs, y)}
    assert 1 in found[7]["missing"] and (9 in found and 2 in found[9]["extra"])
    assert describe(["cat"], ["dog"], []) == "labelled {cat}, likely also dog"
