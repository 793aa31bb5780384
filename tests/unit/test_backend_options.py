"""Every RunConfig option is honoured by each backend or refused by name: none is ignored."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import run_cli
from imgclf import backends
from imgclf.config import RunConfig

# What the Keras backend honours, each covered by a run in this file, in e2e/test_keras_cli.py or
# in e2e/test_distributed.py (replicas).
KERAS_HONOURED = {
    "data_dir", "model", "backend", "pretrained", "weights", "freeze", "fine_tune_after",
    "backbone_lr_scale", "image_size", "batch_size", "epochs", "optimizer", "lr", "momentum",
    "weight_decay", "label_smoothing", "class_weights", "schedule", "step_epochs", "patience",
    "augment", "val_fraction", "validate_on", "max_per_class", "exclude_list", "workers",
    "cache_dir", "seed",
    "amp", "out_dir", "device", "replicas", "recipe", "tta", "sampler",
    "label_from_name", "labels", "path_column", "label_column", "corrections",
    "label_delim", "multi_label",
}  # fmt: skip

# A value of each refused option that the backend cannot honour.
KERAS_REFUSED_VALUES = {
    "pipeline": "plain", "channels_last": False, "device": "mps", "sync_bn": True,
    "compile": True, "optimizer": "lbfgs", "ema": 0.99, "lookahead": True, "cpu_bf16": True,
}  # fmt: skip


def test_every_field_is_honoured_or_refused_by_keras() -> None:
    pytest.importorskip("keras")
    keras_backend = backends.get("keras")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    # whole options; the other entries refuse combinations or what the machine lacks
    refused = {k for k, (_, why) in keras_backend.REFUSED.items() if isinstance(why, str)}
    assert fields == KERAS_HONOURED | refused, "classify the new RunConfig field"
    for name in refused:
        cfg = RunConfig(**{name: KERAS_REFUSED_VALUES[name]})
        with pytest.raises(backends.UnsupportedOption) as e:
            keras_backend.check_config(cfg)
        flag = (
            "--" + ("no-" if KERAS_REFUSED_VALUES[name] is False else "") + name.replace("_", "-")
        )
        assert flag in str(e.value) and "keras backend" in str(e.value)
        assert "\n" not in str(e.value)


def test_torch_honours_every_field() -> None:
    backends.get("torch").check_config(RunConfig(pipeline="plain", channels_last=False))


@pytest.mark.slow
def test_refused_option_fails_before_anything_is_written(tiny_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("keras")
    run = tmp_path / "run"
    out = run_cli(
        "train", str(tiny_folder), "--backend", "keras", "--pipeline", "plain", "--out", str(run),
        check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "imgclf train: error: --pipeline plain is not supported by the keras backend: it feeds "
        "Keras from the decoded cache only (--pipeline cache)"
    ]
    assert not run.exists() and "run folder" not in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_freezing_a_model_without_backbone_is_refused_before_the_run_starts(
    tiny_folder: Path, tmp_path: Path, backend: str
) -> None:
    """From each backend's table (the registry says which models have a backbone): it was raised
    once the model was built, after the run folder and its config were written."""
    if backend == "keras":
        pytest.importorskip("keras")
    out = run_cli(
        "train", str(tiny_folder), "--model", "cnn", "--freeze", "--backend", backend,
        "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), check=False,
    )  # fmt: skip
    assert out.returncode == 2 and not (tmp_path / "r").exists()
    assert out.stderr.strip().splitlines() == [
        "imgclf train: error: --freeze/--fine-tune-after: cnn has no backbone"
    ]


def _first_sgd_step(scale: float) -> tuple[float, float]:
    """(largest backbone change, largest head change) after one SGD step from a seeded init."""
    import keras
    import numpy as np

    from imgclf.backends.keras.models import backbone_of
    from imgclf.backends.keras.optim import build_optimizer
    from imgclf.models import create_model

    keras.utils.set_random_seed(0)
    cfg = RunConfig(optimizer="sgd", momentum=0.0, lr=0.1, backbone_lr_scale=scale)
    m = create_model("mobilenet_v3_small", 3, backend="keras", pretrained=False, image_size=32)
    backbone = backbone_of(m)
    opt = build_optimizer(cfg, 1, m.trainable_variables, backbone.trainable_variables, 0)
    m.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    before = [v.numpy().copy() for v in m.trainable_variables]
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    m.train_on_batch(x, np.array([0, 1, 2, 0]))
    ids = {id(v) for v in backbone.trainable_variables}
    moved = [
        (id(v) in ids, float(np.abs(v.numpy() - b).max()))
        for v, b in zip(m.trainable_variables, before, strict=True)
    ]
    return max(d for b, d in moved if b), max(d for b, d in moved if not b)


@pytest.mark.slow
def test_keras_discriminative_rates_scale_the_backbone_step() -> None:
    """backbone_lr_scale scales the backbone's step exactly (SGD's first step is lr x gradient)
    and leaves the head's alone."""
    pytest.importorskip("keras")
    full_b, full_h = _first_sgd_step(1.0)
    small_b, small_h = _first_sgd_step(0.001)
    assert full_b > 0 and small_h == pytest.approx(full_h, rel=1e-4)
    assert small_b == pytest.approx(full_b * 0.001, rel=0.05)


def test_keras_names_the_recipe_behind_a_refused_choice() -> None:
    pytest.importorskip("keras")
    from imgclf.config import build_config

    with pytest.raises(backends.UnsupportedOption) as e:
        backends.get("keras").check_config(build_config(None, recipe="transfer", backend="keras"))
    assert "--optimizer lbfgs" in str(e.value) and "--recipe transfer chose it" in str(e.value)


def test_torch_refuses_compile_with_lbfgs_instead_of_skipping_it(
    tiny_folder: Path, tmp_path: Path
) -> None:
    """The L-BFGS head fit ran uncompiled under --compile, without a word. A refusal is a usage
    error: exit 2, as argparse's own (it exited 1, as if the run had failed)."""
    run = tmp_path / "run"
    out = run_cli(
        "train", str(tiny_folder), "--model", "efficientnet_lite0", "--no-pretrained", "--freeze",
        "--augment", "none", "--optimizer", "lbfgs", "--schedule", "constant", "--compile",
        "--out", str(run), check=False,
    )  # fmt: skip
    assert out.returncode == 2 and not run.exists()
    assert out.stderr.strip().splitlines() == [
        "imgclf train: error: --compile with --optimizer lbfgs: the full-batch L-BFGS fit of the "
        "head is not compiled (torch.compile serves the first-order loops); drop --compile"
    ]


def test_each_backend_checks_its_refusals_once_per_command(
    tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One table per backend, checked at the entry: not again by fit (Keras checked it three
    times in one command, PyTorch twice)."""
    from imgclf.backends.torch import refusals
    from imgclf.cli import main

    calls = []
    probe = (lambda c: calls.append(1) and False, "never")  # counts the checks, refuses nothing
    monkeypatch.setitem(refusals.REFUSED, "probe", probe)
    status = main(
        ["train", str(tiny_folder), "--model", "cnn", "--epochs", "1", "--image-size", "32",
         "--workers", "1", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")]
    )  # fmt: skip
    assert status == 0 and calls == [1]


def test_plain_pipeline_batches_honour_channels_last(tiny_folder: Path, tmp_path: Path) -> None:
    """--pipeline plain handed the model NCHW-contiguous batches whatever --channels-last said."""
    import torch

    from imgclf.backends.torch.loaders import BatchPlan, batches, prepare_split
    from imgclf.data.folder import scan_class_folder
    from imgclf.data.presets import Preprocess

    data = prepare_split(
        scan_class_folder(tiny_folder / "train"), Preprocess(size=32), "plain", workers=0
    )
    for layout in (True, False):
        plan = BatchPlan(4, torch.device("cpu"), "flip", True, workers=0, channels_last=layout)
        x, _ = next(iter(batches(data, plan)))
        assert x.is_contiguous(memory_format=torch.channels_last) == layout


@pytest.mark.slow
def test_keras_refuses_a_gpu_it_cannot_see_before_writing_the_run(
    tiny_folder: Path, tmp_path: Path
) -> None:
    """From the table at the command's entry (it was raised inside fit): one line, nothing kept."""
    pytest.importorskip("keras")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run = tmp_path / "run"
    out = run_cli(
        "train", str(tiny_folder), "--backend", "keras", "--device", "cuda", "--out", str(run),
        check=False,
    )  # fmt: skip
    assert out.returncode == 2 and not run.exists()
    assert out.stderr.strip().splitlines() == [
        "imgclf train: error: --device cuda: TensorFlow sees 0 GPU(s)"
    ]
