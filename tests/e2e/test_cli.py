"""The installed `imgclf` command end to end on tiny generated folders (ultralytics style)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import torch
from PIL import Image

from conftest import make_folder, run_cli, snapshot, train_killed_at_step

TRAIN = ("--image-size", "32", "--batch-size", "8", "--workers", "1")


def test_train_evaluate_predict_compare(tiny_folder: Path, tmp_path: Path) -> None:
    before = snapshot(tiny_folder)
    run = tmp_path / "run"
    out = run_cli(
        "train",
        str(tiny_folder),
        "--model",
        "cnn",
        "--epochs",
        "2",
        *TRAIN,
        "--out",
        str(run),
        "--schedule",
        "cosine",
        "--label-smoothing",
        "0.1",
    ).stdout
    assert "epoch 2/2" in out and "img/s" in out
    for f in ("config.json", "history.json", "history.csv", "last.pt", "best.pt"):
        assert (run / f).exists(), f
    assert any((run / "tensorboard").iterdir())
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"] == "cnn" and cfg["classes"] == ["blue", "green", "red"]
    assert len(json.loads((run / "history.json").read_text())) == 2
    meta = json.loads((run / "meta.json").read_text())
    assert meta["class_names"] == cfg["classes"] and meta["backend"] == "torch"

    ev = run_cli("evaluate", str(run)).stdout
    assert "Accuracy of green" in ev
    m = json.loads((run / "metrics.json").read_text())
    assert m["images"] == 12 and 0 <= m["accuracy"] <= 1 and len(m["per_class"]) == 3
    html = (run / "report.html").read_text()
    assert "data:image/png;base64" in html and "Confusion matrix" in html
    for f in ("confusion_matrix.png", "curves.png"):
        assert (run / f).stat().st_size > 1000

    # predict: a folder, a glob, an odd format, a rotated JPEG and an unreadable file
    odd = tmp_path / "mine"
    odd.mkdir()
    Image.open(tiny_folder / "test" / "red" / "red_000.png").convert("RGBA").save(odd / "r.webp")
    (odd / "broken.jpg").write_bytes(b"nope")
    pr = run_cli(
        "predict",
        str(run),
        str(tiny_folder / "test" / "green"),
        str(tiny_folder / "test" / "blue" / "*.png"),
        str(odd),
        "--csv",
        str(tmp_path / "p.csv"),
        "--json",
        str(tmp_path / "p.json"),
        "--grid",
        str(tmp_path / "grid.png"),
    )
    rows = json.loads((tmp_path / "p.json").read_text())
    assert len(rows) == 10
    bad = [r for r in rows if "error" in r]
    assert len(bad) == 1 and bad[0]["path"].endswith("broken.jpg") and "ERROR" in pr.stdout
    assert all(r["class"] in cfg["classes"] for r in rows if "error" not in r)
    assert (tmp_path / "grid.png").stat().st_size > 1000
    assert (tmp_path / "p.csv").read_text().count("\n") == 11

    run2 = tmp_path / "run2"
    run_cli(
        "train",
        str(tiny_folder),
        "--model",
        "alexnet_tv",
        "--epochs",
        "1",
        *TRAIN,
        "--out",
        str(run2),
        "--optimizer",
        "sgd",
        "--image-size",
        "64",
    )
    cmp_ = run_cli("compare", str(run), str(run2), "--plot", str(tmp_path / "cmp.png")).stdout
    assert "cnn" in cmp_ and "alexnet_tv" in cmp_ and "trainable" in cmp_
    assert (tmp_path / "cmp.png").exists()
    assert snapshot(tiny_folder) == before
    # a second run into the same folder is refused, not overwritten
    again = run_cli(
        "train", str(tiny_folder), "--epochs", "1", *TRAIN, "--out", str(run), check=False
    )
    assert again.returncode == 1 and "--resume" in again.stderr


def test_killed_run_resumes_to_identical_weights(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 12, "test": 3})
    args = ("train", str(data), "--model", "cnn", "--epochs", "3", *TRAIN, "--seed", "7")
    run_cli(*args, "--out", str(tmp_path / "full"))
    # 36 images / batch 8 = 5 steps per epoch: step 7 is in the middle of epoch 2
    killed = train_killed_at_step(
        7,
        data_dir=str(data),
        model="cnn",
        epochs=3,
        image_size=32,
        batch_size=8,
        workers=1,
        seed=7,
        out_dir=str(tmp_path / "cut"),
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert cut["epoch"] == 1
    run_cli("train", "--resume", str(tmp_path / "cut"))
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert b["epoch"] == 3 and len(b["history"]) == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_seeded_runs_are_bit_identical_and_frozen_transfer_caches_features(
    tiny_folder: Path, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        run_cli(
            "train",
            str(tiny_folder),
            "--model",
            "mobilenetv3_small_050",
            "--freeze",
            "--augment",
            "none",
            "--epochs",
            "2",
            *TRAIN,
            "--image-size",
            "64",
            "--out",
            str(tmp_path / name),
        )
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_preview_and_models(tiny_folder: Path, tmp_path: Path) -> None:
    run_cli("preview", str(tiny_folder), "--out", str(tmp_path / "pv"), "--image-size", "32")
    assert (tmp_path / "pv" / "batch_grid.png").stat().st_size > 1000
    assert (tmp_path / "pv" / "augmentations.png").stat().st_size > 1000
    out = run_cli("models").stdout
    assert "5,610,222" in out and "efficientnet_lite0" in out


def test_python_module_entry_point_and_help() -> None:
    import sys

    for cmd in ("audit", "preview", "train", "evaluate", "predict", "compare", "models"):
        p = subprocess.run(
            [sys.executable, "-m", "imgclf", cmd, "--help"], capture_output=True, text=True
        )
        assert p.returncode == 0 and "usage: imgclf" in p.stdout


def test_plain_torchvision_pipeline_trains_too(tiny_folder: Path, tmp_path: Path) -> None:
    (tiny_folder / "train" / "red" / "broken.png").write_bytes(b"\x89PNG broken")
    out = run_cli(
        "train",
        str(tiny_folder),
        "--pipeline",
        "plain",
        "--epochs",
        "1",
        *TRAIN,
        "--out",
        str(tmp_path / "plain"),
    ).stdout
    assert "epoch 1/1" in out and "skipped 1 unreadable file" in out
    skipped = json.loads((tmp_path / "plain" / "skipped.json").read_text())
    assert [Path(p).name for p in skipped] == ["broken.png"]


def test_demo_command_runs_the_whole_job_offline(tmp_path: Path) -> None:
    out = run_cli("demo", "--out", str(tmp_path / "demo"), "--epochs", "1", cwd=tmp_path).stdout
    for step in (
        "imgclf audit",
        "imgclf preview",
        "imgclf train",
        "imgclf evaluate",
        "imgclf predict",
    ):
        assert f"$ {step}" in out
    assert (tmp_path / "demo" / "run-cnn" / "report.html").exists()
    digits = tmp_path / "demo" / "digits"
    # all 1,797 of scikit-learn's digits, a stratified 80/20 split
    assert len(list((digits / "train").rglob("*.png"))) == 1438
    assert len(list((digits / "test").rglob("*.png"))) == 359


def test_early_stopping_with_patience(tiny_folder: Path, tmp_path: Path) -> None:
    # lr 1e-12 cannot move the weights: validation accuracy stalls from the first epoch on
    out = run_cli(
        "train",
        str(tiny_folder),
        "--epochs",
        "6",
        "--patience",
        "2",
        "--lr",
        "1e-12",
        *TRAIN,
        "--out",
        str(tmp_path / "es"),
    ).stdout
    assert "early stop" in out
    assert len(json.loads((tmp_path / "es" / "history.json").read_text())) == 3


def test_commands_on_a_folder_that_is_not_a_run_say_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    for cmd in (
        ["evaluate", str(tmp_path / "photos")],
        ["predict", str(tmp_path / "photos"), "x.jpg"],
        ["export", str(tmp_path / "photos"), "--format", "onnx"],
        ["evaluate", str(tmp_path / "missing")],
    ):
        out = run_cli(*cmd, check=False)
        assert out.returncode == 1, cmd
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "not an imgclf run folder" in lines[0], out.stderr


def test_help_names_a_metavar_per_type() -> None:
    text = run_cli("train", "--help").stdout
    for piece in ("--batch-size N", "--lr FLOAT", "--weights PATH", "--model NAME", "--out PATH"):
        assert piece in text, piece
    assert "VALUE" not in text


def test_resume_applies_or_refuses_every_option(tiny_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_cli("train", str(tiny_folder), "--epochs", "1", *TRAIN, "--out", str(run))
    refused = run_cli("train", "--resume", str(run), "--lr", "0.5", check=False)
    assert refused.returncode == 2 and "--lr would change the run" in refused.stderr
    out = run_cli("train", "--resume", str(run), "--epochs", "2").stdout
    assert "epoch 2/2" in out and "epoch 1/2" not in out
    assert json.loads((run / "config.json").read_text())["epochs"] == 2
    # a class renamed mid-run would silently change what output 0 means: refused
    (tiny_folder / "train" / "blue").rename(tiny_folder / "train" / "zebra")
    (tiny_folder / "test" / "blue").rename(tiny_folder / "test" / "zebra")
    moved = run_cli("train", "--resume", str(run), "--epochs", "3", check=False)
    assert moved.returncode == 1 and "classes changed" in moved.stderr


def test_preprocess_json_is_the_whole_rule_for_a_plain_client(tmp_path: Path) -> None:
    """A client with only PIL, NumPy, onnxruntime and preprocess.json gets imgclf's answer."""
    import numpy as np
    import onnxruntime as ort

    data = make_folder(tmp_path / "d", {"train": 6, "test": 2})
    run = tmp_path / "run"
    run_cli("train", str(data), "--epochs", "1", *TRAIN, "--out", str(run))
    run_cli("export", str(run), "--format", "onnx")
    rule = json.loads((run / "export" / "preprocess.json").read_text())
    photo = tmp_path / "wide.png"
    Image.open(data / "test" / "red" / "red_000.png").resize((80, 50)).save(photo)

    img = Image.open(photo).convert("RGB")
    w, h = img.size
    side = rule["resize_shorter_side"]
    size = (side, int(side * h / w)) if w <= h else (int(side * w / h), side)
    img = img.resize(size, Image.BILINEAR)
    crop = rule["center_crop"]
    left, top = round((size[0] - crop) / 2), round((size[1] - crop) / 2)
    x = np.asarray(img.crop((left, top, left + crop, top + crop)), np.float32) * rule["scale"]
    x = ((x - rule["mean"]) / rule["std"]).astype(np.float32)
    x = x.transpose(2, 0, 1)[None] if rule["layout"] == "NCHW" else x[None]
    sess = ort.InferenceSession(str(run / "export" / "model.onnx"))
    probs = sess.run(None, {"input": x})[0][0]
    z = np.log(np.clip(probs.astype(np.float64), 1e-12, 1)) / rule["temperature"]  # calibration
    probs = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert rule["temperature"] == json.loads((run / "calibration.json").read_text())["temperature"]

    run_cli("predict", str(run), str(photo), "--json", str(tmp_path / "p.json"))
    row = json.loads((tmp_path / "p.json").read_text())[0]
    assert rule["class_names"][int(probs.argmax())] == row["class"]
    assert abs(float(probs.max()) - row["probability"]) < 1e-4


def test_outputs_never_land_in_the_data_and_awkward_names_do_not_crash(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 6, "test": 3})
    before = snapshot(data)
    for out in (data, data / "runs" / "r1", data / "train" / "red" / "x"):
        r = run_cli("train", str(data), "--epochs", "1", *TRAIN, "--out", str(out), check=False)
        why = "not an empty folder" if out == data else "inside the data folder"
        assert r.returncode == 1 and why in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "run folder:" not in r.stdout
    assert snapshot(data) == before and not (data / "runs").exists()
    # "$" in a file name (mathtext) and a class whose every image is unreadable
    Image.new("RGB", (32, 32), (220, 50, 40)).save(data / "test" / "red" / "price_$5.png")
    (data / "train" / "gold").mkdir()
    (data / "train" / "gold" / "a.png").write_bytes(b"not a png")
    run = tmp_path / "run"
    r = run_cli("train", str(data), "--epochs", "1", *TRAIN, "--out", str(run))
    assert "class 'gold' has no readable training image" in r.stderr
    run_cli("evaluate", str(run))
    assert (run / "top_losses.png").stat().st_size > 1000
    # outputs keep the user's umask; a symlink the user named is written through
    target = tmp_path / "real.json"
    target.write_text("{}")
    (tmp_path / "link.json").symlink_to(target)
    grid = tmp_path / "grid.png"
    run_cli(
        "predict",
        str(run),
        str(data / "test" / "red"),
        "--grid",
        str(grid),
        "--json",
        str(tmp_path / "link.json"),
        "--csv",
        str(tmp_path / "p.csv"),
    )
    assert (tmp_path / "link.json").is_symlink() and "price_$5.png" in target.read_text()
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    for f in (grid, tmp_path / "p.csv", target, run / "metrics.json", run / "config.json"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f
    # an output path under a file: one line naming it, no traceback
    r = run_cli("predict", str(run), str(data / "test"), "--csv", str(grid / "p.csv"), check=False)
    assert r.returncode == 1 and str(grid) in r.stderr and "Traceback" not in r.stderr
