"""Labels from file names and CSV files (issue 25): the splits they give, and every bad input
refused with one line naming the file and the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import draw_shape
from imgclf.data.label_sources import DEFAULT_NAME_PATTERN, LabelSource
from imgclf.data.splits import load_splits
from imgclf.messages import UsageError


def flat(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        draw_shape((40 + i % 200, 60, 220), i).save(root / n)
    return root


def csv_file(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def test_default_name_pattern_reads_kaggle_and_pets_names() -> None:
    import re

    rx = re.compile(DEFAULT_NAME_PATTERN)
    for name, label in [
        ("cat.12.jpg", "cat"),
        ("dog_3.png", "dog"),
        ("Abyssinian_100.jpg", "Abyssinian"),
        ("american_bulldog_7.jpg", "american_bulldog"),
        ("bird-0042.JPEG", "bird"),
    ]:
        m = rx.search(name)
        assert m and m.group("label") == label, name
    assert rx.search("holiday.jpg") is None


def test_labels_from_names_carve_validation_and_report_unmatched(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    names = [f"cat.{i}.jpg" for i in range(10)] + [f"dog_{i}.png" for i in range(10)]
    root = flat(tmp_path / "flat", [*names, "holiday.png"])
    s = load_splits(root, source=LabelSource(name_pattern=DEFAULT_NAME_PATTERN))
    assert s["train"].class_names == ["cat", "dog"]
    assert (len(s["train"]), len(s["val"])) == (16, 4) and s["val"].counts() == [2, 2]
    assert "1 image file(s) whose name --label-from-name does not match" in capsys.readouterr().err
    # the same split every time for the same inputs
    again = load_splits(root, source=LabelSource(name_pattern=DEFAULT_NAME_PATTERN))
    assert again["val"].paths == s["val"].paths


def test_csv_with_split_column_bom_ids_and_exclusions(tmp_path: Path) -> None:
    root = flat(tmp_path / "d", [f"img{i}.png" for i in range(12)])
    rows = "".join(
        f"img{i}{'' if i % 2 else '.png'},{'red' if i < 6 else 'blue'},"
        f"{'test' if i in (0, 6) else 'train'}\n"
        for i in range(12)
    )
    labels = csv_file(tmp_path / "labels.csv", "id,Class,split\n" + rows, bom=True)
    src = LabelSource(csv=str(labels))
    s = load_splits(root, source=src)
    assert s["train"].class_names == ["blue", "red"]
    assert len(s["test"]) == 2 and len(s["train"]) + len(s["val"]) == 10
    kept = load_splits(root, source=src, exclude={os.path.join(root, "img3.png")})
    assert len(kept["train"]) + len(kept["val"]) == 9  # an exclude list names the file itself


def test_hugging_face_metadata_is_found_on_its_own(tmp_path: Path) -> None:
    for split, n in (("train", 8), ("test", 4)):
        d = flat(tmp_path / "hf" / split, [f"{i}.png" for i in range(n)])
        rows = "".join(f"{i}.png,{'a' if i % 2 else 'b'}\n" for i in range(n))
        csv_file(d / "metadata.csv", "file_name,label\n" + rows)
    s = load_splits(tmp_path / "hf")
    assert s["train"].class_names == ["a", "b"] and len(s["test"]) == 4
    # a metadata.csv without a label column holds other features: labels stay with folders
    (tmp_path / "hf" / "train" / "metadata.csv").write_text("file_name,caption\n0.png,x\n")
    (tmp_path / "hf" / "test" / "metadata.csv").write_text("file_name,caption\n0.png,x\n")
    with pytest.raises(ValueError, match="no class folders"):
        load_splits(tmp_path / "hf")


@pytest.mark.parametrize(
    "text,words",
    [
        ("path,label\nimg0.png,red\nnope.png,red\ngone.png,blue\n", "'nope.png' is not in"),
        ("path,label\nimg0.png,red\nimg0.png,blue\n", "lines 2 and 3"),
        ("path,label\n../outside.png,red\n", "leaves the data folder"),
        ("path,label\n/etc/passwd,red\n", "is an absolute path"),
        ("path,tag\nimg0.png,red\n", "no label column (looked for label, class, category"),
        ("path,label\nimg0.png,\n", "line 2: empty label for 'img0.png'"),
        ("path,label,split\nimg0.png,red,holdout\n", "split 'holdout' is not train"),
        ("", "empty"),
    ],
)
def test_bad_csv_rows_are_one_line_usage_errors(tmp_path: Path, text: str, words: str) -> None:
    root = flat(tmp_path / "d", ["img0.png", "img1.png"])
    (tmp_path / "outside.png").write_bytes((root / "img0.png").read_bytes())
    labels = csv_file(tmp_path / "labels.csv", text)
    with pytest.raises(UsageError, match=None) as e:
        load_splits(root, source=LabelSource(csv=str(labels)))
    msg = str(e.value)
    assert words in msg and "\n" not in msg and str(labels) in msg, msg
    if "nope" in words:
        assert "(and 1 more rows)" in msg


@pytest.mark.parametrize(
    "pattern,words",
    [
        (r"^(?P<cls>\w+)\.\d+", "needs a group named label"),
        (r"^(?P<label>[", "not a regular expression"),
        (r"^(?P<label>zebra)_\d+\.jpg$", "matched none of its 2 image files"),
    ],
)
def test_bad_name_patterns_are_usage_errors(tmp_path: Path, pattern: str, words: str) -> None:
    root = flat(tmp_path / "d", ["cat.1.jpg", "dog.1.jpg"])
    with pytest.raises(UsageError, match=None) as e:
        load_splits(root, source=LabelSource(name_pattern=pattern))
    assert words in str(e.value)


def test_two_label_sources_at_once_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="give one"):
        LabelSource(name_pattern=DEFAULT_NAME_PATTERN, csv="x.csv").check()
    with pytest.raises(UsageError, match="--path-column"):
        LabelSource(path_column="f").check()
