"""What the Keras backend refuses, each option with its reason, and what depends on the machine
(TensorFlow's GPUs) or on how it was started: one table, checked once at the command's entry
(backends.check_refusals) before anything is written."""

from __future__ import annotations

from imgclf.backends import Refusals, backbone_refusal
from imgclf.config import RunConfig
from imgclf.settings import launched_by_torchrun


def _gpus() -> int:
    """GPUs TensorFlow can see (listing them does not start its runtime)."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def _missing_gpu(c: RunConfig) -> bool:
    if c.device in ("auto", "cpu") or not c.device.startswith(("cuda", "gpu")):
        return False
    index = int(c.device.split(":")[1]) if ":" in c.device else 0
    return index >= _gpus()


def _too_few_gpus(c: RunConfig) -> bool:
    return c.replicas > 1 and c.device != "cpu" and _gpus() < c.replicas


REFUSED: Refusals = {
    "pipeline": (
        lambda c: c.pipeline != "cache",
        "feeds Keras from the decoded cache only (--pipeline cache)",
    ),
    "channels_last": (
        lambda c: not c.channels_last,
        "always computes in NHWC (channels_last), Keras' own layout",
    ),
    "device": (
        lambda c: not (c.device in ("auto", "cpu") or c.device.startswith(("cuda", "gpu"))),
        "runs on auto, cpu or cuda[:N] (TensorFlow's devices)",
    ),
    "compile": (
        lambda c: c.compile,
        "leaves compilation to Keras (XLA jit_compile='auto'); --compile is torch.compile",
    ),
    "optimizer": (
        lambda c: c.optimizer == "lbfgs",
        "trains with Keras' first-order optimizers; lbfgs is the PyTorch head-on-features fit",
    ),
    "ema": (
        lambda c: c.ema > 0,
        "keeps no weight average yet (Keras' use_ema swaps it in only when fit ends, after our "
        "per-epoch validation and checkpoints)",
    ),
    "lookahead": (
        lambda c: c.lookahead,
        "has no lookahead (the PyTorch trainer's airbench weight averaging)",
    ),
    "cpu_bf16": (
        lambda c: c.cpu_bf16,
        "computes in float32 on the CPU; --cpu-bf16 is PyTorch's CPU autocast",
    ),
    "sync_bn": (
        lambda c: c.sync_bn,
        "is for torchrun processes; MirroredStrategy replicas keep Keras' per-replica BatchNorm",
    ),
    # combinations and the machine: whole messages (the keys are labels, not options)
    "device/gpus": (
        _missing_gpu,
        lambda c: f"--device {c.device}: TensorFlow sees {_gpus()} GPU(s)",
    ),
    "replicas/gpus": (
        _too_few_gpus,
        lambda c: (
            f"--replicas {c.replicas}: TensorFlow sees {_gpus()} GPU(s); give at most that "
            "many (--device cpu --replicas N mirrors over N logical CPU devices, for testing)"
        ),
    ),
    "replicas/torchrun": (
        lambda c: launched_by_torchrun(),
        lambda c: (
            "torchrun starts PyTorch processes: use --backend torch, or --replicas N with keras"
        ),
    ),
    "freeze": backbone_refusal("keras"),
}
