"""Numbers a user can trust (issue 23): validation carved from train, a baseline beside the
accuracy, evaluations that never overwrite the run's own, runs that work from another folder,
and a CLI that says what it expects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import make_folder, run_cli

TINY = ["--model", "cnn", "--image-size", "32", "--epochs", "1", "--batch-size", "8"]
TINY += ["--workers", "0"]


def test_validation_is_carved_from_train_not_test(tiny_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli("train", str(tiny_folder), *TINY, "--out", str(run))
    # 3 classes x 8 train images: 20 % of each class (2 of 8) validates; test/ stays for evaluate
    assert "split: 18 train, 6 val (20% of train, stratified, seed 42), 12 test" in proc.stdout
    meta = json.loads((run / "meta.json").read_text())
    assert meta["split_sizes"] == {"train": 18, "val": 6, "test": 12}
    split = json.loads((run / "split.json").read_text())["splits"]
    val, test = {p for p, _ in split["val"]}, {p for p, _ in split["test"]}
    assert all(p.startswith("train/") for p in val) and not val & test


def test_validate_on_test_is_explicit_and_warned(tiny_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli("train", str(tiny_folder), *TINY, "--validate-on", "test", "--out", str(run))
    assert "split: 24 train, 12 val (the test split (--validate-on test)), 12 test" in proc.stdout
    assert "optimistic" in proc.stderr
    ev = run_cli("evaluate", str(run))
    assert "warning: This test split chose the model" in ev.stdout


def test_one_class_is_a_usage_error(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "one", {"train": 6, "test": 2})
    for extra in sorted((data / "train").iterdir())[1:]:
        shutil.rmtree(extra)
    proc = run_cli("train", str(data), *TINY, "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "1 class(es) with training images (" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_evaluate_prints_baseline_and_other_splits_get_their_own_folder(
    tiny_folder: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run_cli("train", str(tiny_folder), *TINY, "--out", str(run))
    ev = run_cli("evaluate", str(run))
    assert "baseline: always" in ev.stdout and "chance 33.33%" in ev.stdout
    own = json.loads((run / "metrics.json").read_text())
    assert own["split"] == "test" and own["images"] == 12
    assert set(own["baseline"]) == {"majority_class", "majority_accuracy", "chance", "beaten"}
    before = (run / "metrics.json").read_bytes()
    val = run_cli("evaluate", str(run), "--split", "val")
    sub = run / "eval-tiny-val"
    assert f"report: {sub / 'report.html'}" in val.stdout
    assert "This val split chose the model" in val.stdout
    # exactly training's validation images (split.json), not a new split of the folder
    assert json.loads((sub / "metrics.json").read_text())["images"] == 6
    other = make_folder(tmp_path / "other", {"test": 3})
    run_cli("evaluate", str(run), "--data", str(other))
    assert json.loads((run / "eval-other-test" / "metrics.json").read_text())["images"] == 9
    assert (run / "metrics.json").read_bytes() == before  # the run's own numbers are kept


def test_runs_work_from_another_folder_and_say_when_data_moved(tmp_path: Path) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    make_folder(work / "d", {"train": 8, "test": 4})
    elsewhere.mkdir()
    run_cli("train", "d", *TINY, "--out", "r", cwd=work)  # relative paths, as typed
    run = str(work / "r")
    assert json.loads((work / "r" / "config.json").read_text())["data_dir"] == str(work / "d")
    run_cli("evaluate", run, cwd=elsewhere)
    run_cli("train", "--resume", run, "--epochs", "2", cwd=elsewhere)
    shutil.move(work / "d", tmp_path / "moved")
    proc = run_cli("evaluate", run, cwd=elsewhere, check=False)
    assert proc.returncode == 2
    assert "is not there (moved" in proc.stderr and "--data PATH" in proc.stderr
    run_cli("evaluate", run, "--data", str(tmp_path / "moved"), cwd=elsewhere)
    run_cli("train", str(tmp_path / "moved"), "--resume", run, "--epochs", "3", cwd=elsewhere)


def test_compare_says_which_split(tiny_folder: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for r in (a, b):
        run_cli("train", str(tiny_folder), *TINY, "--out", str(r))
    run_cli("evaluate", str(a))
    proc = run_cli("compare", str(a), str(b), "--plot", str(tmp_path / "c.png"))
    assert "val (training)" in proc.stdout and "test" in proc.stdout
    assert "different splits" in proc.stdout
    assert " - " in proc.stdout  # b has no per-class numbers: a dash, not "0.0 %"


def test_cli_usage_errors_exit_2_with_suggestions(tiny_folder: Path, tmp_path: Path) -> None:
    proc = run_cli("train", str(tiny_folder), "--img-size", "32", check=False)
    assert proc.returncode == 2
    assert "did you mean --image-size?" in proc.stderr and "usage: imgclf train" in proc.stderr
    proc = run_cli("train", str(tiny_folder), "--model", "alexnt", "--out", "x", check=False)
    assert proc.returncode == 2 and "did you mean 'alexnet'?" in proc.stderr
    proc = run_cli("train", str(tiny_folder), "--epochs", "abc", check=False)
    assert proc.returncode == 2 and "--epochs expects int" in proc.stderr
    proc = run_cli("train", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr
    proc = run_cli("predict", "run", "x.jpg", "--top-k", "0", check=False)
    assert proc.returncode == 2 and "--top-k: must be at least 1" in proc.stderr


def test_models_lists_torch_without_tensorflow() -> None:
    proc = run_cli("models")
    assert "efficientnet_lite0" in proc.stdout and "keras " not in proc.stdout
    assert "imgclf models --backend keras" in proc.stdout
    assert "oneDNN" not in proc.stderr and "absl" not in proc.stderr


def test_confidences_are_calibrated_on_val_and_applied_everywhere(
    tiny_folder: Path, tmp_path: Path
) -> None:
    import numpy as np

    from imgclf.calibration import with_temperature

    run = tmp_path / "run"
    proc = run_cli("train", str(tiny_folder), *TINY, "--out", str(run))
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["fitted_on"] == "val" and cal["fitted_images"] == 6 and cal["bins"] == 15
    assert 0.05 <= cal["temperature"] <= 20
    assert "calibration: temperature" in proc.stdout and "few: noisy" in proc.stdout
    ev = run_cli("evaluate", str(run))
    assert "ECE on test" in ev.stdout
    m = json.loads((run / "metrics.json").read_text())["calibration"]
    assert m["applied"] and m["temperature"] == cal["temperature"]
    assert {"ece_before", "ece_after", "reliability_before", "reliability_after"} <= set(m)
    assert (run / "reliability.png").stat().st_size > 0
    assert "Expected calibration error" in (run / "report.html").read_text()
    # predict: the calibrated probability is the model's own one put through the temperature
    photo = str(tiny_folder / "test" / "red" / "red_000.png")
    rows = {}
    for flag in ("--calibration", "--no-calibration"):
        out = tmp_path / f"{flag}.json"
        run_cli("predict", str(run), photo, "--json", str(out), flag)
        rows[flag] = json.loads(out.read_text())[0]
    raw = np.array([[t["probability"] for t in rows["--no-calibration"]["top"]]])
    want = with_temperature(raw, cal["temperature"])[0, 0]
    assert abs(rows["--calibration"]["probability"] - want) < 1e-5
    assert rows["--calibration"]["class"] == rows["--no-calibration"]["class"]
    # resume fits it again, on the same val images
    (run / "calibration.json").unlink()
    run_cli("train", "--resume", str(run), "--epochs", "2")
    assert json.loads((run / "calibration.json").read_text())["fitted_images"] == 6


def test_progress_bars_on_a_terminal_and_plain_lines_otherwise(
    tiny_folder: Path, tmp_path: Path
) -> None:
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    run = tmp_path / "run"
    proc = run_cli("train", str(tiny_folder), *TINY, "--out", str(run))
    assert "\r" not in proc.stdout + proc.stderr  # a log file gets lines, never bar redraws
    master, slave = pty.openpty()
    # a terminal 100 columns wide (a bare pty has 0, where tqdm draws an empty bar)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    exe = Path(sys.executable).parent / "imgclf"
    cmd = [str(exe), "evaluate", str(run), "--data", str(tiny_folder), "--split", "train"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=slave, timeout=300)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the pty's other end is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    bar = b"".join(chunks).decode(errors="replace")
    assert p.returncode == 0 and "\r" in bar and "evaluate" in bar, bar


def test_predict_abstains_below_p_and_evaluate_says_what_each_p_buys(
    tiny_folder: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run_cli("train", str(tiny_folder), *TINY, "--out", str(run))
    ev = run_cli("evaluate", str(run)).stdout
    assert "answering only above P (predict --abstain P):" in ev
    cov = json.loads((run / "metrics.json").read_text())["coverage"]
    assert cov["points"][0]["coverage"] == 1.0 and len(cov["curve"]) == 12
    assert (run / "coverage.png").stat().st_size > 0
    assert "Not answering the least sure" in (run / "report.html").read_text()
    photos = sorted(str(p) for p in (tiny_folder / "test").rglob("*.png"))
    out, table = tmp_path / "rows.json", tmp_path / "rows.csv"
    plain = run_cli("predict", str(run), *photos, "--json", str(out)).stdout
    probs = [r["probability"] for r in json.loads(out.read_text())]
    p = sorted(probs)[len(probs) // 2]  # about half are under it
    res = run_cli("predict", str(run), *photos, "--abstain", str(p), "--json", str(out))
    res2 = run_cli("predict", str(run), *photos, "--abstain", str(p), "--csv", str(table))
    rows = json.loads(out.read_text())
    unsure = [r for r in rows if r["abstained"]]
    assert unsure and all(r["probability"] < p for r in unsure)
    assert all(r["probability"] >= p for r in rows if not r["abstained"])
    assert res.stdout.count("NOT SURE") == len(unsure) and "NOT SURE" not in plain
    assert f"not sure: {len(unsure)} of {len(rows)} images" in res.stdout
    assert table.read_text().splitlines()[0] == "path,class,probability,error,abstained"
    assert res2.stdout.count("NOT SURE") == table.read_text().count(",true")
    bad = run_cli("predict", str(run), *photos, "--abstain", "1.5", check=False)
    assert bad.returncode == 2 and "not a probability between 0 and 1" in bad.stderr
