"""Hostile options, names and run folders through the real CLI (issue 22): usage errors exit 2
with one line and leave no run folder, diverged training keeps the last good checkpoint,
checkpoints are tied to their meta.json, a resumed run keeps its split, names cannot inject."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from conftest import make_folder, run_cli

TINY = ("--image-size", "32", "--batch-size", "8", "--workers", "1")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("hostile") / "d", {"train": 6, "test": 3})


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "r"
    run_cli("train", str(data), *TINY, "--epochs", "1", "--out", str(out))
    return out


@pytest.mark.parametrize(
    ("options", "yaml", "says"),
    [
        (("--lr", "inf"), "", "--lr expects a finite number"),
        (("--weight-decay", "nan"), "", "--weight-decay expects a finite number"),
        (("--epochs", "abc"), "", "--epochs expects int"),
        (("--seed", "-1"), "", "seed=-1"),
        (("--image-size", "100000"), "", "image_size=100000"),
        ((), "weight_decay: .inf\n", "--weight-decay expects a finite number"),
        ((), "batch_size: 2.9\n", "--batch-size expects int, got 2.9"),
        ((), "epochs: true\n", "--epochs expects int, got True"),
        ((), "model: !!python/object/apply:os.system ['echo pwned']\n", "not a YAML config"),
    ],
)
def test_bad_values_are_usage_errors_with_no_run_folder(
    data: Path, tmp_path: Path, options: tuple[str, ...], yaml: str, says: str
) -> None:
    extra: tuple[str, ...] = ()
    if yaml:
        (tmp_path / "run.yaml").write_text(yaml)
        extra = ("--config", str(tmp_path / "run.yaml"))
    out = tmp_path / "r"
    proc = run_cli("train", str(data), *TINY, *options, *extra, "--out", str(out), check=False)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "pwned" not in proc.stdout
    assert not out.exists()


def test_no_validation_images_is_refused_before_the_run_folder(tmp_path: Path) -> None:
    flat = make_folder(tmp_path / "flat", {"train": 4}) / "train"  # <class>/ only
    out = tmp_path / "r"
    proc = run_cli("train", str(flat), *TINY, "--val-fraction", "0", "--out", str(out), check=False)
    assert proc.returncode == 2 and "no validation images" in proc.stderr
    assert not out.exists()


def test_a_diverging_run_stops_and_writes_no_nan_checkpoint(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    proc = run_cli(
        "train", str(data), *TINY, "--epochs", "2", "--lr", "1e30", "--out", str(out), check=False
    )
    assert proc.returncode == 1 and "training diverged" in proc.stderr, proc.stderr
    assert "no checkpoint was written" in proc.stderr
    assert not (out / "best.pt").exists() and not (out / "last.pt").exists()


def test_check_finite_names_the_epoch_the_checkpoints_keep() -> None:
    from imgclf.runs import TrainingDiverged, check_finite

    ok = {"epoch": 3, "train_loss": 0.5, "val_loss": 0.6, "val_acc": 0.8}
    check_finite(ok, [])
    check_finite({**ok, "val_loss": float("nan"), "val_acc": float("nan")}, [])  # no val images
    with pytest.raises(TrainingDiverged, match="epoch 4: the train loss is inf.*keep epoch 3"):
        check_finite({**ok, "epoch": 4, "train_loss": float("inf")}, [ok])


def test_a_checkpoint_of_another_run_or_edited_names_are_refused(
    run: Path, data: Path, tmp_path: Path
) -> None:
    image = str(next((data / "test" / "red").iterdir()))
    edited = tmp_path / "edited"
    shutil.copytree(run, edited)
    meta = json.loads((edited / "meta.json").read_text())
    meta["class_names"] = ["red", "green", "blue"]
    (edited / "meta.json").write_text(json.dumps(meta))
    proc = run_cli("predict", str(edited), image, check=False)
    assert proc.returncode == 1 and "the checkpoint's class_names" in proc.stderr
    other_data = make_folder(tmp_path / "o", {"train": 4, "test": 2})
    for cls in ("red", "green", "blue"):
        for split in ("train", "test"):
            (other_data / split / cls).rename(other_data / split / cls.upper())
    other = tmp_path / "other"
    run_cli("train", str(other_data), *TINY, "--epochs", "1", "--out", str(other))
    dropped = tmp_path / "dropped"
    shutil.copytree(run, dropped)
    shutil.copy(other / "best.pt", dropped / "best.pt")  # same architecture, other classes
    proc = run_cli("predict", str(dropped), image, check=False)
    assert proc.returncode == 1 and "belongs to another run" in proc.stderr, proc.stderr
    assert run_cli("predict", str(run), image).returncode == 0


def test_resume_after_images_were_added_keeps_the_runs_split(tmp_path: Path) -> None:
    flat = make_folder(tmp_path / "p", {"train": 6}) / "train"
    out = tmp_path / "r"
    run_cli("train", str(flat), *TINY, "--epochs", "1", "--out", str(out))
    split = json.loads((out / "split.json").read_text())
    sizes = json.loads((out / "meta.json").read_text())["split_sizes"]
    assert sizes == {"train": 15, "val": 3} == {k: len(v) for k, v in split["splits"].items()}
    for cls in ("red", "green", "blue"):
        for i in range(4):
            shutil.copy(flat / cls / f"{cls}_000.png", flat / cls / f"new_{i}.png")
    proc = run_cli("train", "--resume", str(out), "--epochs", "2")
    assert "keeps its own split" in proc.stderr
    assert json.loads((out / "split.json").read_text()) == split
    assert json.loads((out / "meta.json").read_text())["split_sizes"] == sizes
    gone = [p for p, _ in split["splits"]["train"] if p.startswith("red/")][0]
    (flat / gone).unlink()
    proc = run_cli("train", "--resume", str(out), "--epochs", "3", check=False)
    assert proc.returncode == 1 and "images are gone" in proc.stderr


def test_names_cannot_inject_formulas_or_terminal_escapes(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 4, "test": 2})
    for split in ("train", "test"):
        (data / split / "red").rename(data / split / '=HYPERLINK("x","y")')
    evil = data / "test" / "blue" / "\x1b]0;pwned\x07\x1b[2J.png"
    shutil.copy(next((data / "test" / "blue").iterdir()), evil)
    out = tmp_path / "r"
    run_cli("train", str(data), *TINY, "--epochs", "1", "--out", str(out))
    proc = run_cli("predict", str(out), str(data / "test"))
    assert "\x1b" not in proc.stdout and "\\x1b]0;pwned\\x07" in proc.stdout
    audit = run_cli("audit", str(data), "--out", str(tmp_path / "a"), check=False)
    assert "\x1b" not in audit.stdout + audit.stderr and "pwned" in audit.stdout  # a duplicate
    # relative paths from inside test/: the path cells start with '=' too
    csv_path = tmp_path / "p.csv"
    run_cli("predict", str(out), '=HYPERLINK("x","y")', "--csv", str(csv_path), cwd=data / "test")
    cells = [c for row in list(csv.reader(csv_path.open()))[1:] for c in row]
    assert not any(c[:1] in ("=", "+", "-", "@") for c in cells), cells
    assert sum(c.startswith("'=HYPERLINK") for c in cells) >= 2


def test_export_does_not_silently_replace_files(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "x"
    out.mkdir()
    (out / "model.onnx").write_text("someone else's model")
    proc = run_cli("export", str(run), "--format", "onnx", "--out", str(out), check=False)
    assert proc.returncode == 1 and "already holds model.onnx" in proc.stderr
    assert (out / "model.onnx").read_text() == "someone else's model"
    run_cli("export", str(run), "--format", "onnx", "--out", str(out), "--force")
    assert (out / "model.onnx").stat().st_size > 1000
    run_cli("export", str(run), "--format", "onnx")
    again = run_cli("export", str(run), "--format", "onnx")
    assert "replaced the earlier preprocess.json, model.onnx" in again.stdout
