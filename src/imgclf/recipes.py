"""Recipes: tuned defaults for the other RunConfig options, measured in benchmarks/RESULTS.md.

A recipe sits between the defaults and the user: defaults -> recipe -> YAML -> CLI, so every
choice it makes is still overridable by its own option. Backend-neutral: a recipe names models
and options, and the backend refuses what it cannot do, by name.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    # Frozen ImageNet features of the photo and its mirror, computed once; a logistic-regression
    # head fitted on them by full-batch L-BFGS (the linear-probe practice: better conditioned and
    # steadier than mini-batch Adam on the same features); flip TTA at test time. Lite2 measured
    # best of Lite0/1/2 and their concatenations; at 300 px rather than its native 260 it made
    # fewer cross-validated errors on train over 4 seeds (9-11 against 12-13 of 3,000) for 1.33x
    # the feature time (RESULTS.md, issue 40).
    "transfer": {
        "model": "efficientnet_lite2",
        "image_size": 300,
        "pretrained": True,
        "freeze": True,
        "augment": "flip",
        "optimizer": "lbfgs",
        "lr": 1.0,
        "weight_decay": 1e-3,
        "schedule": "constant",
        "epochs": 5,
        "val_fraction": 0.1,
        "tta": True,
    },
    # airbench94's recipe on our trainer: its small VGG-like net (patch-whitening first layer,
    # identity-initialised convs, BN shifts at 64x lr), Nesterov SGD at its rates (lr 11.5 and
    # decay 0.0153 "per 1024 examples" are 1.5 and 1.33e-3 for a mean loss), its linear one-cycle,
    # label smoothing 0.2, flip + 2 px shifts, its lookahead, flip TTA.
    "cifar-fast": {
        "model": "airbench",
        "augment": "flip-crop",
        "optimizer": "nesterov",
        "lr": 1.5,
        "momentum": 0.85,
        "weight_decay": 1.33e-3,
        "label_smoothing": 0.2,
        "schedule": "onecycle",
        "lookahead": True,
        "batch_size": 1024,
        "epochs": 10,
        "val_fraction": 0.04,
        "tta": True,
    },
    # The second tutorial's AlexNet (same 227 px architecture) with a modern schedule.
    "alexnet-cifar": {
        "model": "alexnet",
        "augment": "flip-crop",
        "optimizer": "sgd",
        "lr": 0.02,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "schedule": "cosine",
        "batch_size": 128,
        "epochs": 30,
        "val_fraction": 0.04,
        "tta": True,
    },
}


def recipe_settings(name: str) -> dict[str, Any]:
    if name in ("", "none"):
        return {}
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; recipes: {', '.join(sorted(RECIPES))}")
    return dict(RECIPES[name])


def recipe_choices(cfg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the recipe set and the run kept, what the user overrode: key -> the run's value)."""
    kept, overridden = {}, {}
    for k, v in recipe_settings(cfg.recipe).items():
        (kept if getattr(cfg, k) == v else overridden)[k] = getattr(cfg, k)
    return kept, overridden


def describe_recipe(cfg: Any) -> str:
    """One line for the console: the recipe's choices, then the user's overrides."""
    kept, overridden = recipe_choices(cfg)
    if not kept and not overridden:
        return ""
    line = f"recipe {cfg.recipe}: " + " ".join(_option(k, v) for k, v in kept.items())
    if overridden:
        line += "; overridden: " + " ".join(_option(k, v) for k, v in overridden.items())
    return line


def _option(key: str, value: Any) -> str:
    flag = key.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"
