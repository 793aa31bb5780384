"""The two loops of an epoch. Losses are sums over the rank's share divided by the global batch's
total weight, so DDP's gradient average over N ranks equals one process's mean over the batch,
and the numbers printed are the whole split's (sums reduced over ranks)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from imgclf.backends.torch.distributed import Dist, all_sum, sum_tensor
from imgclf.backends.torch.hooks import StepHook


@dataclass(frozen=True)
class Loop:
    """What the loops use of a run: its optimizer (a new one after fine-tuning unfreezes the
    backbone), loss, autocast context, process group and device."""

    optimizer: torch.optim.Optimizer
    loss_fn: nn.CrossEntropyLoss
    amp: Callable[[], contextlib.AbstractContextManager]
    dist: Dist
    device: torch.device


def weight_of(loss_fn: nn.CrossEntropyLoss, y: torch.Tensor) -> torch.Tensor:
    """The denominator of the mean loss over y: its count, or its class weights' sum."""
    if loss_fn.weight is None:
        return torch.tensor(float(len(y)), device=y.device)
    return loss_fn.weight[y].sum()


def train_one_epoch(
    net: nn.Module, data: Iterable, loop: Loop, step: int, hooks: Sequence[StepHook] = ()
) -> tuple[dict[str, float], int]:
    """(the epoch's numbers, the global step after it). step: steps taken before; net may be
    DDP-wrapped; hooks run before and after every optimizer step."""
    net.train()
    d, opt, loss_fn = loop.dist, loop.optimizer, loop.loss_fn
    sums = _zeros(loop.device)  # loss, weight, correct, seen: on the device, no sync per step
    bar = not getattr(data, "disable", True)
    for x, y in data:
        if len(y) == 0 and not d.on:  # alone, nothing to learn from; in a group, a zero share
            continue
        for h in hooks:
            h.before(step, opt)
        with loop.amp():
            out = net(x)
            total = loss_fn(out.float(), y)
        weight = weight_of(loss_fn, y)
        # every rank needs the global batch's weight; one tiny collective per step
        global_weight = sum_tensor(d, weight.detach().clone()).clamp_min(1e-12)
        opt.zero_grad(set_to_none=True)
        (total * d.world / global_weight).backward()  # DDP divides by world again
        opt.step()
        step += 1
        for h in hooks:
            h.after(step)
        sums += _row(total.detach(), weight, out, y, sums.dtype)
        if bar and step % 20 == 0 and sums[1] > 0:  # reading sums waits for the GPU
            data.set_postfix(loss=f"{sums[0] / sums[1]:.4f}", acc=f"{sums[2] / sums[3]:.2%}")
    loss, weight, correct, seen = all_sum(d, sums.tolist(), loop.device)
    row = {"loss": loss / max(weight, 1e-12), "acc": correct / max(seen, 1), "images": int(seen)}
    return row, step


@torch.no_grad()
def evaluate_epoch(module: nn.Module, data: Iterable, loop: Loop) -> dict[str, float]:
    """module unwrapped: evaluation needs no collectives until the final sum."""
    module.eval()
    sums = _zeros(loop.device)
    for x, y in data:
        if len(y) == 0:
            continue
        with loop.amp():
            out = module(x).float()
        sums += _row(loop.loss_fn(out, y), weight_of(loop.loss_fn, y), out, y, sums.dtype)
    loss, weight, correct, seen = all_sum(loop.dist, sums.tolist(), loop.device)
    if seen == 0:
        return {"loss": float("nan"), "acc": float("nan")}
    return {"loss": loss / weight, "acc": correct / seen}


def _zeros(device: torch.device) -> torch.Tensor:
    return torch.zeros(
        4, dtype=torch.float32 if device.type == "mps" else torch.float64, device=device
    )


def _row(
    total: torch.Tensor,
    weight: torch.Tensor,
    out: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype,
) -> torch.Tensor:
    parts = (total, weight, hits(out, y), torch.tensor(len(y), device=y.device))
    return torch.stack([p.to(dtype) for p in parts])


def hits(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Right answers in a batch: the top class, or (multi-label 0/1 targets) the share of
    classes whose logit's sign matches, per image: 'acc' is then the per-label accuracy."""
    if y.ndim == 2:
        return ((out > 0) == (y > 0.5)).float().mean(1).sum()
    return (out.argmax(1) == y).sum()


def lbfgs_epoch(
    head: nn.Module,
    features: tuple[torch.Tensor, torch.Tensor],
    loop: Loop,
    weight_decay: float,
    step: int,
    hooks: Sequence[StepHook] = (),
) -> tuple[dict[str, float], int]:
    """One full-batch L-BFGS step (optim.LBFGS_ITERATIONS iterations) of the head on the cached
    features: a logistic regression, as linear probes are fitted. Every rank holds all the
    features and computes the same deterministic steps, so no collective is needed."""
    head.eval()  # no dropout: the line search must see one objective, evaluated again and again
    x, y = features
    params = [p for p in head.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]  # weights, not biases: weight decay's usual rule
    denominator = weight_of(loop.loss_fn, y)

    def objective() -> torch.Tensor:
        loop.optimizer.zero_grad(set_to_none=True)
        loss = loop.loss_fn(head(x).float(), y) / denominator
        loss = loss + weight_decay / 2 * sum((p * p).sum() for p in decay)
        loss.backward()
        return loss

    for h in hooks:
        h.before(step, loop.optimizer)
    loop.optimizer.step(objective)
    step += 1
    for h in hooks:
        h.after(step)
    with torch.no_grad():
        out = head(x).float()
        loss = loop.loss_fn(out, y) / denominator
    correct = hits(out, y).item()
    return {"loss": loss.item(), "acc": correct / max(len(y), 1), "images": len(y)}, step
