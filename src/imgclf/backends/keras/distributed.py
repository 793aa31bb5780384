"""Data-parallel Keras: tf.distribute.MirroredStrategy over --replicas devices of this machine (the
GPUs, or with --device cpu the CPU split into logical devices, which is how it is tested)."""

from __future__ import annotations

import contextlib
from typing import Any

from imgclf.backends import UnsupportedOption
from imgclf.config import RunConfig
from imgclf.rules import data_parallel_message


def mirrored(cfg: RunConfig) -> Any:
    """The strategy for cfg.replicas > 1, or None. Must run before TensorFlow starts its devices."""
    if cfg.replicas == 1:
        return None
    import tensorflow as tf

    n = cfg.replicas
    if cfg.device == "cpu":
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
            )
        except RuntimeError as e:  # TensorFlow already running in this process
            raise UnsupportedOption(f"--replicas {n} --device cpu: {e}") from None
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:n]
    else:
        gpus = [d.name for d in tf.config.list_logical_devices("GPU")]  # refusals.py: >= n
        devices = gpus[:n]
    strategy = tf.distribute.MirroredStrategy(devices)
    how = f"MirroredStrategy over {n} devices ({', '.join(devices)})"
    print(data_parallel_message(how, cfg.batch_size, n, "replica"), flush=True)
    return strategy


def scope(strategy: Any) -> contextlib.AbstractContextManager:
    """Model building and compile() inside the strategy's scope, so variables are mirrored."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()
