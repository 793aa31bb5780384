"""What the Keras backend refuses, each option with its reason: one table, checked once at the
command's entry (backends.check_refusals) before anything is written."""

from __future__ import annotations

from imgclf.backends import Refusals

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
}
