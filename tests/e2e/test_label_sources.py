"""Labels where users keep them (issue 25), through the real CLI: Kaggle's flat folder of
cat.N.jpg, a CSV with a split column, and bad label files refused before a run folder exists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import CATS_DOGS, make_folder, needs_cats_dogs, run_cli

TINY = ["--model", "cnn", "--image-size", "32", "--epochs", "1", "--batch-size", "8"]
TINY += ["--workers", "0"]


@needs_cats_dogs
def test_kaggle_flat_folder_trains_with_label_from_name(tmp_path: Path) -> None:
    flat = tmp_path / "kaggle_train"
    flat.mkdir()
    for cls in ("CAT", "DOG"):
        for p in sorted((CATS_DOGS / "train" / cls).iterdir())[:10]:
            shutil.copy(p, flat / p.name)  # cat.1.jpg ... as Kaggle ships them
    run = tmp_path / "run"
    proc = run_cli("train", str(flat), "--label-from-name", *TINY, "--out", str(run))
    assert "labels: from file names" in proc.stdout and "2 classes: cat, dog" in proc.stdout
    assert "split: 16 train, 4 val (20% of train" in proc.stdout
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["label_from_name"]  # recorded: evaluate and resume need not be told again
    ev = run_cli("evaluate", str(run), "--split", "val")
    assert "on val of" in ev.stdout and "4 images" in ev.stdout
    run_cli("train", "--resume", str(run), "--epochs", "2")
    assert len(json.loads((run / "history.json").read_text())) == 2


def test_csv_labels_train_evaluate_predict_and_audit(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", {"train": 8, "test": 3})
    images = tmp_path / "d" / "images"
    images.mkdir(parents=True)
    rows = ["file_name,label,split"]
    for split in ("train", "test"):
        for p in sorted((src / split).rglob("*.png")):
            name = f"{split}_{p.name}"
            shutil.copy(p, images / name)
            rows.append(f"images/{name},{p.parent.name},{split}")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    proc = run_cli("train", str(tmp_path / "d"), "--labels", str(labels), *TINY, "--out", str(run))
    assert "split: 18 train, 6 val (20% of train, stratified, seed 42), 9 test" in proc.stdout
    ev = run_cli("evaluate", str(run))
    assert json.loads((run / "metrics.json").read_text())["images"] == 9, ev.stdout
    pr = run_cli("predict", str(run), str(images / "test_red_000.png"))
    assert any(c in pr.stdout for c in ("blue", "green", "red"))
    audit = run_cli("audit", str(tmp_path / "d"), "--labels", str(labels), "--workers", "1")
    assert "test" in audit.stdout and "red" in audit.stdout
    # evaluate other data with its own labels file
    other = run_cli("evaluate", str(run), str(tmp_path / "d"), "--labels", str(labels))
    assert "9 images" in other.stdout


def test_bad_label_files_exit_2_with_one_line_and_no_run_folder(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 4})
    cases = {
        "missing.csv": "path,label\ntrain/red/red_000.png,red\ntrain/red/none.png,red\n",
        "twice.csv": "path,label\ntrain/red/red_000.png,red\ntrain/red/red_000.png,blue\n",
        "escape.csv": "path,label\n../x.png,red\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        out = tmp_path / f"run-{name}"
        proc = run_cli(
            "train",
            str(data),
            "--labels",
            str(tmp_path / name),
            *TINY,
            "--out",
            str(out),
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and name in proc.stderr
        assert "Traceback" not in proc.stderr and not out.exists()
    proc = run_cli("train", str(data), "--label-from-name", r"(?P<x>\d+)", *TINY, check=False)
    assert proc.returncode == 2 and "needs a group named label" in proc.stderr
