"""Data-parallel training: torchrun (gloo on this CPU) and Keras' MirroredStrategy on two logical
CPU devices give the numbers of one process; a killed worker restarts or resumes to the weights
of an uninterrupted run; only rank 0 writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from conftest import make_folder, run_cli

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
SMALL = ["--image-size", "32", "--workers", "0", "--batch-size", "8"]
# 1 vs 2 processes differ only in the order floats are summed (gradients all-reduced, losses
# reduced); measured max |difference| of any weight after 2 epochs: ~1e-6
TOL = 1e-5


def torchrun(*args: str, cwd: Path, nproc: int = 2, env: dict | None = None, check: bool = True):
    cmd = [*TORCHRUN, f"--nproc-per-node={nproc}", *args]
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def weights(run: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return torch.load(run / name, weights_only=True)["model"]


def max_diff(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)


def same_history(a: Path, b: Path) -> None:
    ha = json.loads((a / "history.json").read_text())
    hb = json.loads((b / "history.json").read_text())
    assert len(ha) == len(hb)
    for ra, rb in zip(ha, hb, strict=True):
        for k in ("train_loss", "val_loss", "train_acc", "val_acc", "lr"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-6), (k, ra, rb)


def test_torchrun_two_processes_train_one_run_like_one_process(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 10, "test": 4})
    # no --out: rank 0 names the folder for both ranks, so there is exactly one
    proc = torchrun("-m", "imgclf", "train", str(data), "--epochs", "2", *SMALL, cwd=tmp_path)
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    assert sorted(p.name for p in runs[0].glob("*.pt")) == ["best.pt", "last.pt"]
    assert "2 processes (gloo)" in proc.stdout and "4 per rank" in proc.stdout
    assert proc.stdout.count("epoch 2/2") == 1 and proc.stdout.count("done:") == 1  # rank 0
    config = json.loads((runs[0] / "config.json").read_text())
    assert config["world_size"] == 2 and config["batch_size"] == 8
    run_cli("train", str(data), "--epochs", "2", *SMALL, "--out", str(tmp_path / "one"))
    assert max_diff(runs[0], tmp_path / "one") < TOL  # augmentation on: the same draws
    same_history(runs[0], tmp_path / "one")


def test_torchrun_multi_label_matches_one_process(tmp_path: Path) -> None:
    from test_multilabel import composites

    data = composites(tmp_path / "d", n=60, test=10)
    args = ["-m", "imgclf", "train", str(data), "--labels", str(data / "labels.csv")]
    args += ["--model", "cnn", "--epochs", "2", *SMALL]
    torchrun(*args, "--out", str(tmp_path / "two"), cwd=tmp_path)
    run_cli(*args[2:], "--out", str(tmp_path / "one"))
    assert max_diff(tmp_path / "two", tmp_path / "one") < TOL
    same_history(tmp_path / "two", tmp_path / "one")
    thresholds = [json.loads((tmp_path / r / "calibration.json").read_text())["thresholds"]
                  for r in ("two", "one")]  # fmt: skip
    assert thresholds[0].keys() == {"blue", "green", "red"}
    assert thresholds[0] == pytest.approx(thresholds[1], abs=1e-5)


def test_replicas_frozen_features_and_plain_pipeline_match_one_process(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 10, "test": 4})
    frozen = ["--model", "mobilenetv3_small_050", "--freeze", "--augment", "none"]
    # plain pipeline, uneven shares (7 = 3 + 4) and a weighted, smoothed loss
    plain = ["--pipeline", "plain", "--augment", "none", "--batch-size", "7"]
    plain += ["--class-weights", "auto", "--label-smoothing", "0.1"]
    for name, extra in (("frozen", frozen), ("plain", plain)):
        for n in (1, 2):
            out = run_cli(
                "train", str(data), "--epochs", "2", *SMALL, *extra, "--replicas", str(n),
                "--out", str(tmp_path / f"{name}{n}"),
            ).stdout  # fmt: skip
            assert ("2 processes (gloo)" in out) == (n == 2)
        assert max_diff(tmp_path / f"{name}1", tmp_path / f"{name}2") < TOL, name
        same_history(tmp_path / f"{name}1", tmp_path / f"{name}2")


def _kill_rank_1_after_epoch(proc: subprocess.Popen, run: Path, tag: str, epochs: int) -> None:
    """SIGKILL the rank-1 worker (found by its environment) once epoch 1 is in history.json."""
    deadline = time.monotonic() + 300
    while not (run / "history.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"IMGCLF_TEST_TAG={tag}".encode() in env and b"RANK=1" in env:
            assert len(json.loads((run / "history.json").read_text())) < epochs  # mid-run
            os.kill(int(pid), signal.SIGKILL)
            return
    raise AssertionError("rank 1 worker not found")


@pytest.mark.parametrize("restarts", [1, 0])
def test_killed_worker_continues_to_the_uninterrupted_weights(
    tmp_path: Path, restarts: int
) -> None:
    data = make_folder(tmp_path / "d", {"train": 40, "test": 8})
    args = ["-m", "imgclf", "train", str(data), "--epochs", "5", *SMALL, "--image-size", "64"]
    torchrun(*args, "--out", str(tmp_path / "whole"), cwd=tmp_path)
    run, tag = tmp_path / "killed", uuid.uuid4().hex
    cmd = [*TORCHRUN, "--nproc-per-node=2", f"--max-restarts={restarts}", *args]
    proc = subprocess.Popen(
        [*cmd, "--out", str(run)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "IMGCLF_TEST_TAG": tag},
    )
    _kill_rank_1_after_epoch(proc, run, tag, 5)
    out, err = proc.communicate(timeout=600)
    if restarts:  # torchrun restarted the group, which found its run and went on
        assert proc.returncode == 0, out + err
        assert "resuming" in out or out.count("run folder:") == 2, out
    else:  # the job failed; the user resumes it
        assert proc.returncode != 0
        torchrun("-m", "imgclf", "train", "--resume", str(run), cwd=tmp_path)
    assert len(json.loads((run / "history.json").read_text())) == 5
    assert max_diff(run, tmp_path / "whole") == 0.0  # same world size: bit for bit


def test_options_that_cannot_work_are_refused(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 4, "test": 2})
    common = ["train", str(data), *SMALL, "--epochs", "1", "--device", "cpu"]
    p = run_cli(*common, "--sync-bn", "--out", str(tmp_path / "a"), check=False)
    assert p.returncode == 1 and "--sync-bn needs CUDA" in p.stderr
    p = run_cli(
        *common, "--backend", "keras", "--sync-bn", "--out", str(tmp_path / "b"), check=False
    )
    assert p.returncode == 2 and "--sync-bn is not supported by the keras backend" in p.stderr
    p = torchrun(
        "-m", "imgclf", *common, "--replicas", "3", "--out", str(tmp_path / "c"),
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert p.returncode != 0 and "--replicas 3 but torchrun started 2 per node" in p.stderr
    p = torchrun("--max-restarts=1", "-m", "imgclf", *common, cwd=tmp_path, nproc=1, check=False)
    assert p.returncode != 0 and "give --out" in p.stderr
    assert not any(tmp_path.glob("runs/*")) and not any(tmp_path.glob("[abc]"))


def test_keras_mirrored_on_two_logical_cpus_matches_one_device(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 10, "test": 4})
    # augmentation off: Keras draws its random layers per replica, so those differ
    keras = ["--backend", "keras", "--epochs", "2", *SMALL, "--augment", "none", "--device", "cpu"]
    two = run_cli("train", str(data), *keras, "--replicas", "2", "--out", str(tmp_path / "k2"))
    assert "MirroredStrategy over 2 devices" in two.stdout and "4 per replica" in two.stdout
    run_cli("train", str(data), *keras, "--out", str(tmp_path / "k1"))
    same_history(tmp_path / "k1", tmp_path / "k2")
    assert json.loads((tmp_path / "k2" / "config.json").read_text())["world_size"] == 2
    p = run_cli(
        "train", str(data), *keras[:-2], "--replicas", "2", "--out", str(tmp_path / "k3"),
        check=False,
    )  # fmt: skip
    if not torch.cuda.is_available():  # TensorFlow sees no GPU here either
        assert p.returncode == 2 and "TensorFlow sees 0 GPU(s)" in p.stderr


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_nccl_two_gpus_match_one_gpu_with_sync_bn(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 10, "test": 4})
    args = ["--epochs", "2", *SMALL, "--model", "mobilenetv3_small_050", "--no-amp"]
    out = torchrun(
        "-m", "imgclf", "train", str(data), *args, "--sync-bn", "--out", str(tmp_path / "g2"),
        cwd=tmp_path,
    ).stdout  # fmt: skip
    assert "2 processes (nccl)" in out
    run_cli("train", str(data), *args, "--out", str(tmp_path / "g1"))
    assert max_diff(tmp_path / "g1", tmp_path / "g2") < 1e-3  # cuDNN reductions differ more


def findings(report: Path) -> dict:
    """What an audit found, scores rounded coarsely: two processes embed in other batches, so
    features may differ in the last float digits."""
    r = json.loads(report.read_text())
    groups = {
        k: sorted(
            (sorted(m["path"] for m in g["members"]), g["method"], round(g["score"], 2))
            for g in r[k]
        )
        for k in ("near_duplicates_across", "near_duplicates_within")
    }
    issues = sorted((x["path"], x["given"], x["suggested"]) for x in r["label_issues"])
    return {**groups, "issues": issues, "outliers": sorted(o["path"] for o in r["outliers"])}


def test_torchrun_audit_finds_what_one_process_finds(tmp_path: Path) -> None:
    from PIL import Image, ImageOps

    data = make_folder(tmp_path / "data", {"train": 24, "test": 8}, size=48)
    first = sorted((data / "train" / "red").iterdir())[0]
    ImageOps.mirror(Image.open(first)).save(data / "test" / "red" / "mirrored.png")
    common = ["--near-duplicates", "--label-issues", "--workers", "1"]
    one = run_cli(
        "audit",
        str(data),
        *common,
        "--cache-dir",
        str(tmp_path / "c1"),
        "--json",
        str(tmp_path / "one.json"),
        "--out",
        str(tmp_path / "o1"),
        check=False,
    )
    two = torchrun(
        "-m",
        "imgclf",
        "audit",
        str(data),
        *common,
        "--cache-dir",
        str(tmp_path / "c2"),
        "--json",
        str(tmp_path / "two.json"),
        "--out",
        str(tmp_path / "o2"),
        cwd=tmp_path,
        check=False,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert one.returncode == 1 and two.returncode != 0, two.stderr  # a leak: exit 1 (rank 0)
    a, b = findings(tmp_path / "one.json"), findings(tmp_path / "two.json")
    assert a == b
    assert any("mirrored.png" in str(g) for g in a["near_duplicates_across"])
    # each rank decoded and embedded its share into the one cache the report was built from
    assert len(list((tmp_path / "c2" / "decoded").glob("*/lite0-rows-*.ok"))) == 1
    assert (tmp_path / "o2" / "audit.json").is_file() and not (tmp_path / "o1" / "x").exists()
