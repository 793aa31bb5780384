"""What the PyTorch backend refuses: combinations of options it cannot honour together, and
those that depend on the machine or on torchrun. One table, checked once at the command's entry
(backends.check_refusals) before anything is written; nothing is skipped silently at run time."""

from __future__ import annotations

import os

from imgclf.backends import Refusals, backbone_refusal
from imgclf.config import RunConfig
from imgclf.rules import CACHED_AUGMENT
from imgclf.settings import launched_by_torchrun


def _on_features(c: RunConfig) -> bool:
    """A frozen backbone that sees the same views every epoch: only its head trains."""
    return c.freeze and c.fine_tune_after == 0 and c.augment in CACHED_AUGMENT


def _cpu_without_bf16(c: RunConfig) -> bool:
    from imgclf.backends.torch.device import native_cpu_bf16, pick_device

    return c.cpu_bf16 and pick_device(c.device).type == "cpu" and not native_cpu_bf16()


def _restarts_without_out(c: RunConfig) -> bool:
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)
    return launched_by_torchrun() and restarts > 0 and not c.out_dir


def _replicas_unlike_torchrun(c: RunConfig) -> bool:
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return launched_by_torchrun() and c.replicas > 1 and c.replicas != per_node


REFUSED: Refusals = {
    "optimizer": (
        lambda c: c.optimizer == "lbfgs" and not _on_features(c),
        lambda c: (
            "--optimizer lbfgs fits the head of a frozen backbone on its cached features: "
            f"it needs --freeze, --fine-tune-after 0 and --augment {' or '.join(CACHED_AUGMENT)}"
        ),
    ),
    "lookahead": (
        lambda c: c.lookahead and (c.ema > 0 or c.optimizer == "lbfgs"),
        lambda c: (
            "--lookahead averages the weights itself: it takes neither --ema nor --optimizer lbfgs"
        ),
    ),
    "sampler": (
        lambda c: c.sampler == "balanced" and c.optimizer == "lbfgs",
        lambda c: (
            "--sampler balanced draws mini-batches; --optimizer lbfgs fits the head on all of "
            "train at once: give --class-weights auto instead"
        ),
    ),
    "schedule": (
        lambda c: c.optimizer == "lbfgs" and c.schedule != "constant",
        lambda c: (
            f"--schedule {c.schedule} with --optimizer lbfgs: L-BFGS sets its own step "
            "sizes (line search); use --schedule constant"
        ),
    ),
    "compile": (
        lambda c: c.compile and c.optimizer == "lbfgs",
        lambda c: (
            "--compile with --optimizer lbfgs: the full-batch L-BFGS fit of the head is "
            "not compiled (torch.compile serves the first-order loops); drop --compile"
        ),
    ),
    "cpu_bf16": (
        _cpu_without_bf16,
        lambda c: (
            "--cpu-bf16: this CPU has no native bf16 (AVX512-BF16 or AMX); it would train "
            "slower than float32"
        ),
    ),
    "out_dir": (
        _restarts_without_out,
        lambda c: "under torchrun --max-restarts, give --out: a restarted group must find its run",
    ),
    "replicas": (
        _replicas_unlike_torchrun,
        lambda c: (
            f"--replicas {c.replicas} but torchrun started "
            f"{os.environ.get('LOCAL_WORLD_SIZE', '1')} per node"
        ),
    ),
    "freeze": backbone_refusal("torch"),
}
