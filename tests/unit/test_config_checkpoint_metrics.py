"""Config layering, checkpoint safety and metrics."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from imgclf.backends.torch.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from imgclf.config import RunConfig, build_config
from imgclf.evaluation.metrics import compute_metrics, format_per_class, top_losses


def test_config_layers_defaults_yaml_cli(tmp_path: Path) -> None:
    y = tmp_path / "run.yaml"
    y.write_text("epochs: 7\nlr: 0.01\nmodel: alexnet\n")
    cfg = build_config(str(y), lr="0.05", data_dir="x", freeze="true")
    assert (cfg.epochs, cfg.lr, cfg.model, cfg.freeze, cfg.batch_size) == (
        7,
        0.05,
        "alexnet",
        True,
        100,
    )
    with pytest.raises(ValueError, match="unknown config key 'epoch'"):
        build_config(epoch=3)
    with pytest.raises(ValueError, match="out of range: lr"):
        RunConfig(lr=-1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        RunConfig(optimizer="lion")


class _Payload:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_pickled_code_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "meta": {}, "x": payload}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not marker.exists()
    good = save_checkpoint(tmp_path / "ok.pt", {"model": {"w": torch.ones(2)}, "meta": {"a": 1}})
    assert load_checkpoint(good)["meta"] == {"a": 1}


def test_metrics_and_tutorial_table() -> None:
    y = np.array([0, 0, 1, 1, 2])
    p = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.1, 0.9, 0], [0.3, 0.7, 0], [0, 0.1, 0.9]])
    m = compute_metrics(y, p, ["cat", "dog", "frog"])
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert m["per_class"][0]["accuracy"] == 0.5 and m["per_class"][1]["precision"] == pytest.approx(
        2 / 3
    )
    assert "Accuracy of cat  : 50.00 %" in format_per_class(m)
    assert top_losses(y, p).tolist() == [1]


def test_best_checkpoint_rule_breaks_accuracy_ties_by_val_loss() -> None:
    from imgclf.rules import beats

    first = {"val_acc": 0.99, "val_loss": 0.05}
    assert beats(first, [])
    assert beats({"val_acc": 0.99, "val_loss": 0.03}, [first])  # same accuracy, surer
    assert not beats({"val_acc": 0.99, "val_loss": 0.08}, [first])
    assert not beats({"val_acc": 0.98, "val_loss": 0.01}, [first])
    assert not beats({"val_acc": float("nan"), "val_loss": 0.01}, [first])


def test_nesterov_and_lbfgs_optimizers_are_what_they_say() -> None:
    import torch

    from imgclf.backends.torch.optim import build_optimizer

    net = torch.nn.Linear(4, 2)
    sgd = build_optimizer(net, RunConfig(optimizer="nesterov", momentum=0.85), False)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]
    assert not build_optimizer(net, RunConfig(optimizer="sgd"), False).param_groups[0]["nesterov"]
    assert isinstance(build_optimizer(net, RunConfig(optimizer="lbfgs"), False), torch.optim.LBFGS)


def test_onecycle_schedule_warms_up_then_falls_linearly_in_both_backends() -> None:
    from imgclf.backends.keras.optim import lr_schedule
    from imgclf.rules import lr_factor

    cfg = RunConfig(schedule="onecycle", lr=2.0, epochs=10)
    total = 10 * 10  # 10 steps per epoch
    torch_lr = [2.0 * lr_factor(s, 10, cfg) for s in range(total + 1)]
    keras_lr = [float(lr_schedule(cfg, 10)(s)) for s in range(total + 1)]
    assert np.allclose(torch_lr, keras_lr, atol=1e-6)
    peak = int(np.argmax(torch_lr))
    assert peak == 23 and torch_lr[0] == pytest.approx(0.4) and torch_lr[peak] == 2.0
    assert torch_lr[-1] == pytest.approx(0.14)
    rise, fall = np.diff(torch_lr[: peak + 1]), np.diff(torch_lr[peak:])
    assert np.allclose(rise, rise[0]) and np.allclose(fall, fall[0]) and fall[0] < 0


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step", "onecycle"])
def test_both_backends_take_the_same_learning_rate_at_every_step(schedule: str) -> None:
    """The rate the PyTorch loop sets before each step (rules.lr_factor) against the Keras
    optimizer's schedule, past the last step too (the step schedule drops on the epoch boundary
    in both: Keras' PiecewiseConstantDecay, used before, dropped one step late)."""
    from imgclf.backends.keras.optim import lr_schedule
    from imgclf.rules import lr_factor

    cfg = RunConfig(schedule=schedule, lr=0.3, epochs=6, step_epochs=2)
    spe = 7
    keras_schedule = lr_schedule(cfg, spe)
    for step in range(spe * cfg.epochs + 3):
        want = 0.3 * lr_factor(step, spe, cfg)
        got = keras_schedule if isinstance(keras_schedule, float) else keras_schedule(step)
        assert float(got) == pytest.approx(want, rel=1e-6, abs=1e-9), (schedule, step)
    if schedule == "step":
        assert lr_factor(2 * spe - 1, spe, cfg) == 1.0
        assert lr_factor(2 * spe, spe, cfg) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "freeze,after,epochs,want",
    [
        (False, 0, 4, [(0, 4, False)]),
        (True, 0, 4, [(0, 4, True)]),
        (False, 2, 4, [(0, 2, True), (2, 4, False)]),
        (False, 4, 4, [(0, 4, True)]),  # never reached: the head alone, to the end
    ],
)
def test_fine_tuning_phases_are_one_rule_for_both_backends(
    freeze: bool, after: int, epochs: int, want: list
) -> None:
    """Keras fits once per phase; the PyTorch loop unfreezes at the phase boundary, and both read
    rules.phases."""
    from imgclf.rules import frozen_at, phases, unfreezes_at

    cfg = RunConfig(freeze=freeze, fine_tune_after=after, epochs=epochs)
    assert phases(cfg) == want
    per_epoch = [frozen_at(cfg, e) for e in range(epochs)]
    assert per_epoch == [f for start, stop, f in want for _ in range(start, stop)]
    boundaries = [e for e in range(epochs) if unfreezes_at(cfg, e)]
    assert boundaries == [start for start, _, f in want[1:] if not f]


def test_airbench_batchnorm_shifts_learn_64x_faster_but_decay_alike() -> None:
    from imgclf.backends.torch.optim import build_optimizer
    from imgclf.models import create_model

    net = create_model("airbench", 10)
    cfg = RunConfig(optimizer="nesterov", lr=1.5, weight_decay=1e-3, momentum=0.85)
    groups = build_optimizer(net, cfg, False).param_groups
    assert len(groups) == 2
    rest, shifts = groups
    bn_biases = [m.bias for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {id(p) for p in shifts["params"]} == {id(p) for p in bn_biases}
    assert not {id(p) for p in rest["params"]} & {id(p) for p in bn_biases}
    assert shifts["lr"] == 64 * rest["lr"] == 64 * 1.5
    # the fraction by which a step shrinks the weights (lr x decay) is the same for both
    assert shifts["lr"] * shifts["weight_decay"] == pytest.approx(rest["lr"] * rest["weight_decay"])
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    assert frozen > 0 and all(p.requires_grad for g in groups for p in g["params"])


def test_lookahead_pulls_the_weights_to_a_growing_average_and_ends_on_it() -> None:
    from imgclf.backends.torch.hooks import LOOKAHEAD_DECAY, Lookahead

    net = torch.nn.Linear(3, 2)
    start = net.weight.detach().clone()
    look = Lookahead(net, total_steps=10)
    with torch.no_grad():
        net.weight.add_(1.0)
    look.after(4)  # between pulls: nothing moves
    assert torch.equal(net.weight, start + 1)
    look.after(5)  # halfway: the average keeps 0.95^5 * (1/2)^3 of itself
    keep = LOOKAHEAD_DECAY * 0.5**3
    assert torch.allclose(net.weight, start + (1 - keep))
    assert torch.equal(look.slow["weight"], net.weight)
    with torch.no_grad():
        net.weight.add_(5.0)
    look.total_steps = 11
    look.after(11)  # the last step: the run ends on the average, not the live weights
    assert torch.allclose(net.weight, start + (1 - keep))
