"""What a backend offers, by name: the one place that maps a backend's name to its code.

Each backend is a package (`backends/torch`, `backends/keras`) whose `__init__` provides the
functions of `Backend` below, named unlike its submodules (an imported submodule would replace a
function of its name). Both use the same module names for the same jobs (train, loaders,
callbacks, optim, predict, export, models). Nothing outside `backends/` compares backend names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from imgclf.config import RunConfig
from imgclf.messages import UsageError
from imgclf.runs import RunResult

NAMES = ("torch", "keras")


class UnsupportedOption(UsageError):
    """An option this backend cannot honour: refused up front, never silently ignored. A usage
    error: the command exits 2, as for argparse's own refusals."""


# option name -> (whether cfg asks for what the backend cannot do, why): each backend's
# `refusals.REFUSED`, checked once by check_refusals at the command's entry. `why` is the end of
# "--OPTION VALUE is not supported by the BACKEND backend: it ...", or a function giving the
# whole message where a combination of options is refused.
Refusals = dict[str, tuple[Callable[[RunConfig], bool], str | Callable[[RunConfig], str]]]


def backbone_refusal(backend: str) -> tuple[Callable[[RunConfig], bool], Callable]:
    """The `freeze` entry of both tables: --freeze/--fine-tune-after on a model whose registry
    entry has no backbone (an unknown model is left to start_run, which names the known ones)."""
    from imgclf.models import get_spec
    from imgclf.rules import BACKBONE_REFUSAL, needs_backbone

    def refused(c: RunConfig) -> bool:
        try:
            return needs_backbone(c, get_spec(c.model, backend).backbone)
        except UsageError:
            return False

    return refused, lambda c: BACKBONE_REFUSAL.format(model=c.model)


def check_refusals(backend: str, table: Refusals, cfg: RunConfig) -> None:
    """The first refusal that cfg meets, as one line naming the option (and the recipe that
    chose it, where one did)."""
    from imgclf.recipes import recipe_settings

    for name, (refused, why) in table.items():
        if not refused(cfg):
            continue
        if callable(why):
            raise UnsupportedOption(why(cfg))
        value, option = getattr(cfg, name), name.replace("_", "-")
        flag = f"--{option} {value}" if not isinstance(value, bool) else f"--no-{option}"
        flag = f"--{option}" if value is True else flag
        origin = ""
        if name in recipe_settings(cfg.recipe):
            origin = f" (--recipe {cfg.recipe} chose it; the recipes are tuned on torch)"
        raise UnsupportedOption(
            f"{flag} is not supported by the {backend} backend: it {why}{origin}"
        )


class Backend(Protocol):
    NAME: str
    CHECKPOINT_SUFFIX: str  # best<suffix>, last<suffix> in the run folder
    EXPORT_FORMATS: dict[str, str]  # format -> the file (or folder) it writes
    INPUT_LAYOUT: str  # of exported models: NCHW (PyTorch) or NHWC (Keras)

    def check_config(self, cfg: RunConfig) -> None:
        """Raise UnsupportedOption naming the option and the backend."""

    def launch(self, cfg: RunConfig, argv: list[str]) -> int | None:
        """Start the processes `cfg` asks for (`--replicas`) running `argv`, and return their exit
        status; None when this process trains on its own."""

    def fit(
        self,
        cfg: RunConfig,
        resume: bool = False,
        progress: bool = True,
        on_step: Callable[[int], None] | None = None,
    ) -> RunResult: ...

    def load_predictor(self, meta: dict[str, Any], weights: Path, device: str) -> Any: ...

    def export_model(
        self, predictor: Any, fmt: str, out: Path, images: np.ndarray
    ) -> tuple[Path, float]: ...

    def count_params(self, model: Any) -> tuple[int, int]:
        """(all, trainable)"""


def get(name: str) -> Backend:
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(NAMES)}")
    try:
        return importlib.import_module(f"imgclf.backends.{name}")  # type: ignore[return-value]
    except ImportError as e:
        raise RuntimeError(
            f"the {name} backend is not installed ({e}); pip install 'imgclf[{name}]'"
        ) from None
