"""The audit across processes: `torchrun --nproc-per-node N -m imgclf audit DATA ...` (or across
nodes with training's c10d rendezvous). Each rank inspects, decodes and embeds its share of the
images into the shared cache; rank 0 then reads everything back from the cache, builds the indexes
and writes the report. The group itself (gloo, through torch.distributed) lives in
backends/torch/distributed.py; outside torchrun the audit runs with SOLO, a world of one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class Group(Protocol):
    rank: int
    world: int

    def barrier(self) -> None: ...

    def all_gather(self, obj: Any) -> list[Any]: ...


class Solo:
    rank, world = 0, 1

    def barrier(self) -> None:
        return None

    def all_gather(self, obj: Any) -> list[Any]:
        return [obj]


SOLO = Solo()


def share(n: int, group: Group) -> np.ndarray:
    """This rank's positions of n: a contiguous slice (neighbouring files, neighbouring rows)."""
    bounds = np.linspace(0, n, group.world + 1).astype(np.int64)
    return np.arange(bounds[group.rank], bounds[group.rank + 1])


def gathered(items: list[Any], group: Group) -> list[Any]:
    """Every rank's items, in rank order (each rank passes its share's)."""
    return [x for part in group.all_gather(items) for x in part]


def shared_out(jobs: int, run: Callable[[int], Any], group: Group) -> list[Any]:
    """run(j) for j in range(jobs), job j on rank j % world; every rank gets every result (in
    rank order, not job order: each result says what it is for). The label pass's cross-fitted
    folds: each fold's head is independent of the others, so the findings are one process's."""
    return gathered([run(j) for j in range(group.rank, jobs, group.world)], group)
