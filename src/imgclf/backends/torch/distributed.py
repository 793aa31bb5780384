"""Data-parallel training on PyTorch's own engine: torchrun starts the processes and sets RANK,
WORLD_SIZE, LOCAL_RANK and the rendezvous; we join the group (NCCL on CUDA, gloo on CPU), wrap the
model in DistributedDataParallel and reduce the numbers we print. Without torchrun everything
here is a no-op for a world of one, so the single-process trainer runs the same code."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from imgclf.backends.torch.device import pick_device
from imgclf.config import RunConfig
from imgclf.messages import warn
from imgclf.rules import data_parallel_message
from imgclf.runs import RunDir
from imgclf.settings import launched_by_torchrun, settings
from imgclf.settings import rank as env_rank


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""  # "nccl" or "gloo" when a process group is up, "" alone

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.backend != ""


def launch_local(nproc: int, argv: list[str], device: str = "auto") -> int:
    """`imgclf train --replicas N`: torchrun on this machine (standalone rendezvous, a free port),
    running this same command line in N processes; its exit status is ours."""
    import subprocess
    import sys

    if device != "cpu" and torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise ValueError(
            f"--replicas {nproc}: {torch.cuda.device_count()} GPU(s) visible; one process per GPU"
        )
    threads = str(max(1, (os.cpu_count() or 1) // nproc))  # torchrun would say 1 and warn
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return subprocess.call([*run, f"--nproc-per-node={nproc}", "-m", "imgclf", *argv], env=env)


def restart_count() -> int:
    """How often torchrun has restarted this group after a worker died (--max-restarts)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def restarted(cfg: RunConfig) -> bool:
    """A group torchrun started again after a worker died (--max-restarts) continues the run it
    was training: the one in cfg.out_dir whose config.json is this very config."""
    if restart_count() == 0 or not cfg.out_dir:
        return False
    try:
        return RunDir(cfg.out_dir).read_config() == cfg
    except (OSError, ValueError):
        return False


def announce(d: Dist, batch_size: int) -> None:
    """World size, backend and per-rank batch, once, before the first epoch."""
    if d.on and d.main:
        how = f"{d.world} processes ({d.backend})"
        print(data_parallel_message(how, batch_size, d.world, "rank"), flush=True)


def merge(dicts: list[dict]) -> dict:
    return {k: v for x in dicts for k, v in x.items()}


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[tuple[Dist, torch.device]]:
    """Join torchrun's group for the block and always leave it (also on errors), or yield a world
    of one. CUDA: one device per local rank and NCCL; CPU: gloo."""
    if not launched_by_torchrun():
        yield Dist(), pick_device(device_name)
        return
    rank, world = env_rank(), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"rank {rank}: local rank {local} but only {torch.cuda.device_count()} GPU(s) "
                "visible; --nproc-per-node must not exceed the GPUs of a node"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"--device {device_name}: data-parallel training runs on cuda or cpu")
    backend = "nccl" if device.type == "cuda" else "gloo"
    # a cache build on rank 0 keeps the others waiting here
    timeout = datetime.timedelta(minutes=settings().dist_timeout_min)
    store = _attempt_store(world, timeout)
    dist.init_process_group(
        backend,
        store=store,
        rank=rank if store else -1,
        world_size=world if store else -1,
        timeout=timeout,
        device_id=device if backend == "nccl" else None,
    )
    try:
        yield Dist(rank, world, local, backend), device
    finally:
        dist.destroy_process_group()


def _attempt_store(world: int, timeout: datetime.timedelta) -> dist.Store | None:
    """The torchrun agent's store, with keys kept apart per restart. The agent keeps one store
    across --max-restarts, and a restarted group read the dead group's gloo addresses from it
    (measured with torch 2.14: "connection refused", the restart fails). None: env:// as usual."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, False, timeout=timeout
    )
    return dist.PrefixStore(f"imgclf/attempt_{restart_count()}", store)


def wrap(d: Dist, module: nn.Module, device: torch.device) -> nn.Module:
    """DDP around the module that trains (the whole net, or the head on cached features).
    Every rank starts from rank 0's weights: DDP broadcasts them here."""
    if not d.on:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def convert_sync_bn(d: Dist, model: nn.Module, device: torch.device) -> nn.Module:
    """--sync-bn: BatchNorm statistics over the whole global batch, not each rank's share."""
    if device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm has no CPU (gloo) kernel")
    if not d.on:
        warn("--sync-bn: one process, so there is nothing to synchronise (start it with torchrun)")
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def all_sum(d: Dist, values: list[float], device: torch.device) -> list[float]:
    """Sums over ranks (float64, on the device NCCL needs)."""
    if not d.on:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def sum_tensor(d: Dist, t: torch.Tensor) -> torch.Tensor:
    if d.on:
        dist.all_reduce(t)
    return t


def broadcast(d: Dist, obj: Any) -> Any:
    """Rank 0's value of a small picklable object on every rank."""
    if not d.on:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.on:
        dist.barrier()


def gather_objects(d: Dist, obj: Any) -> list[Any]:
    if not d.on:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def block(d: Dist, n: int) -> np.ndarray:
    """This rank's contiguous share of positions 0..n-1 (np.array_split's blocks, in rank order)."""
    return np.array_split(np.arange(n), d.world)[d.rank]


def gather_blocks(d: Dist, t: torch.Tensor, n: int) -> torch.Tensor:
    """Every rank's `block` of rows, concatenated in the original order of the n positions."""
    if not d.on:
        return t
    sizes = [len(b) for b in np.array_split(np.arange(n), d.world)]
    pad = torch.zeros((max(sizes), *t.shape[1:]), dtype=t.dtype, device=t.device)
    pad[: len(t)] = t
    parts = [torch.empty_like(pad) for _ in range(d.world)]
    dist.all_gather(parts, pad)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


@dataclass(frozen=True)
class ObjectGroup:
    """A gloo group for work that moves Python objects, not tensors (the sharded audit)."""

    rank: int
    world: int

    def barrier(self) -> None:
        dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


@contextlib.contextmanager
def object_group() -> Iterator[ObjectGroup | None]:
    """Join torchrun's group on gloo (CPU) for the block and always leave it; None outside
    torchrun. The timeout is training's (IMGCLF_DIST_TIMEOUT_MIN): rank 0 builds the indexes while
    the others wait."""
    if not launched_by_torchrun():
        yield None
        return
    rank, world = env_rank(), int(os.environ["WORLD_SIZE"])
    timeout = datetime.timedelta(minutes=settings().dist_timeout_min)
    store = _attempt_store(world, timeout)
    dist.init_process_group(
        "gloo",
        store=store,
        rank=rank if store else -1,
        world_size=world if store else -1,
        timeout=timeout,
    )
    try:
        yield ObjectGroup(rank, world)
    finally:
        dist.destroy_process_group()
