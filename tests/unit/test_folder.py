"""The dataset index: ImageFolder parity, splits, awkward folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from torchvision.datasets import ImageFolder

from conftest import CATS_DOGS, make_folder, needs_cats_dogs
from imgclf.data.folder import cap_per_class, scan_class_folder, stratified_split
from imgclf.data.splits import load_splits


def _assert_matches_imagefolder(root: Path) -> None:
    ours = scan_class_folder(root)
    theirs = ImageFolder(str(root))
    assert ours.class_names == theirs.classes
    assert list(zip(ours.paths, ours.labels, strict=True)) == theirs.samples


def test_index_matches_imagefolder_on_generated_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"train": 5})
    (root / "train" / "red" / "nested").mkdir()
    (root / "train" / "red" / "nested" / "deep.png").write_bytes(
        (root / "train" / "red" / "red_000.png").read_bytes()
    )
    _assert_matches_imagefolder(root / "train")


@needs_cats_dogs
def test_index_matches_imagefolder_on_cats_dogs() -> None:
    for split in ("train", "test"):
        _assert_matches_imagefolder(CATS_DOGS / split)


def test_splits_use_test_as_val_like_the_tutorial(tiny_folder: Path) -> None:
    s = load_splits(tiny_folder, validate_on="test")
    assert s["train"].class_names == ["blue", "green", "red"]
    assert len(s["train"]) == 24 and s["val"].paths == s["test"].paths


def test_single_folder_gets_stratified_seeded_val(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"all": 10}) / "all"
    a = load_splits(root, val_fraction=0.3, seed=1)
    b = load_splits(root, val_fraction=0.3, seed=1)
    c = load_splits(root, val_fraction=0.3, seed=2)
    assert a["val"].paths == b["val"].paths != c["val"].paths
    assert a["val"].counts() == [3, 3, 3] and a["train"].counts() == [7, 7, 7]
    assert not set(a["val"].paths) & set(a["train"].paths)


def test_stratified_split_keeps_one_per_small_class(tiny_folder: Path) -> None:
    idx = scan_class_folder(tiny_folder / "train")
    train, val = stratified_split(idx.subset([0, 1, 8, 9, 16, 17]), 0.1, 0)
    assert val.counts() == [1, 1, 1] and train.counts() == [1, 1, 1]
    assert cap_per_class(idx, 2, 0).counts() == [2, 2, 2]


def test_symlink_loop_hidden_files_and_upper_case_extensions(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"train": 2}) / "train"
    os.symlink(root / "red", root / "red" / "loop")  # a directory that contains itself
    (root / "red" / ".hidden.png").write_bytes(b"x")
    os.rename(root / "blue" / "blue_000.png", root / "blue" / "BLUE_000.PNG")
    idx = scan_class_folder(root)
    names = [Path(p).name for p in idx.paths]
    assert "BLUE_000.PNG" in names and ".hidden.png" not in names
    assert idx.counts() == [2, 2, 2]


def test_exclude_list_removes_paths(tiny_folder: Path) -> None:
    bad = str(tiny_folder / "train" / "red" / "red_000.png")
    s = load_splits(tiny_folder, exclude={bad}, validate_on="test")
    assert bad not in s["train"].paths and len(s["train"]) == 23


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_splits(tmp_path / "nope")


def test_symlinked_folders_that_would_mislabel_are_not_followed(tmp_path: Path) -> None:
    """The attack: train/red/up -> .. indexed every other class's images as red too."""
    root = make_folder(tmp_path / "data", {"train": 2})
    extra = make_folder(tmp_path / "elsewhere", {"train": 1}) / "train" / "red"
    os.symlink("..", root / "train" / "red" / "up")
    os.symlink(root / "train" / "blue", root / "train" / "red" / "blues")
    os.symlink(extra, root / "train" / "red" / "more")  # outside the data: still followed
    refused: list = []
    from imgclf.data.folder import walk_files

    list(walk_files(str(root / "train" / "red"), str(root), refused))
    assert sorted(os.path.basename(p) for p, _ in refused) == ["blues", "up"]
    for idx in (load_splits(root, val_fraction=0)["train"], scan_class_folder(root / "train")):
        assert idx.counts() == [2, 2, 3]  # blue, green, red (+1 through "more")


def test_exclude_list_holds_names_with_newlines(tmp_path: Path) -> None:
    from imgclf.data.folder import exclude_text, read_exclude_list

    names = [str(tmp_path / "a\nb.png"), str(tmp_path / "#c.png"), str(tmp_path / "d.png ")]
    (tmp_path / "x.txt").write_text(exclude_text([*names, str(tmp_path / "plain.png")]))
    assert read_exclude_list(tmp_path / "x.txt") == {*names, str(tmp_path / "plain.png")}
