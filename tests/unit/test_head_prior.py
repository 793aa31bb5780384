"""--head-prior imagenet (backends/torch/prior.py): the L-BFGS head on the features alone, with
the prior's weight decay, is the ridge on the features beside the source classifier's logits,
folded into one linear layer; and it lends the source classifier's knowledge to a small train."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from imgclf.backends.torch.distributed import Dist
from imgclf.backends.torch.optim import build_optimizer
from imgclf.backends.torch.prior import decay_metric
from imgclf.backends.torch.steps import Loop, lbfgs_epoch
from imgclf.config import RunConfig
from imgclf.messages import UsageError

CFG = RunConfig(optimizer="lbfgs", lr=1.0, weight_decay=0.05, epochs=5, head_prior="imagenet")


class Head(nn.Module):
    def __init__(self, dim: int, classes: int, source: tuple[torch.Tensor, torch.Tensor] | None):
        super().__init__()
        self.linear, self.source_classifier = nn.Linear(dim, classes), source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def fitted(x: torch.Tensor, y: torch.Tensor, metric: torch.Tensor | None, head: Head) -> Head:
    loss = nn.CrossEntropyLoss(reduction="sum")
    loop = Loop(build_optimizer(head, CFG, True), loss, contextlib.nullcontext, Dist(), x.device)
    step = 0
    for _ in range(CFG.epochs):
        _, step = lbfgs_epoch(head, (x, y), loop, CFG.weight_decay, step, (), metric)
    return head


def world(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Features whose 2 classes a 'source' classifier (12 classes, one for every sample) already
    separates along its own rows: class = the sign of source logit 0 minus logit 1, plus noise.
    seed draws the photos; the source is the same for every seed."""
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(12, 40, generator=g), 0.1 * torch.randn(12, generator=g)
    g.manual_seed(1 + seed)
    x = 3 * torch.randn(n, 40, generator=g)
    logits = x @ w.T + b
    y = (logits[:, 0] - logits[:, 1] + 2 * torch.randn(n, generator=g) > 0).long()
    return x, y, (w, b)


def test_prior_fit_folds_the_ridge_on_features_beside_the_source_logits() -> None:
    x, y, (w, b) = world(300)
    prior = fitted(x, y, decay_metric(CFG, Head(40, 2, (w, b)), x), Head(40, 2, (w, b)))
    # the same objective written out: a plain ridge on [x, a (W x + b)], folded afterwards
    a = x.norm(dim=1).mean() / (x @ w.T + b).norm(dim=1).mean()
    z = torch.cat([x, a * (x @ w.T + b)], 1)
    wide = fitted(z, y, None, Head(z.shape[1], 2, None)).linear
    u1, u2 = wide.weight[:, :40], wide.weight[:, 40:]
    folded = nn.Linear(40, 2)
    with torch.no_grad():
        folded.weight.copy_(u1 + a * u2 @ w)
        folded.bias.copy_(wide.bias + a * u2 @ b)
        test, *_ = world(500, seed=1)
        p, q = prior(test).softmax(1), folded(test).softmax(1)
    assert (p - q).abs().max() < 2e-3
    assert (p.argmax(1) == q.argmax(1)).float().mean() >= 0.99


def test_prior_lends_the_source_classifier_to_a_small_train() -> None:
    x, y, source = world(30)
    test, ty, _ = world(2000, seed=2)
    plain = fitted(x, y, None, Head(40, 2, None))
    prior = fitted(x, y, decay_metric(CFG, Head(40, 2, source), x), Head(40, 2, source))
    with torch.no_grad():
        acc = [(h(test).argmax(1) == ty).float().mean().item() for h in (plain, prior)]
    assert acc[1] > acc[0] + 0.05, acc


def test_a_model_without_a_source_classifier_is_named() -> None:
    x, _, _ = world(10)
    with pytest.raises(UsageError, match="--head-prior imagenet: cnn keeps no classifier"):
        decay_metric(CFG.replace(model="cnn"), Head(40, 2, None), x)
