"""--head-prior imagenet: the L-BFGS head leans on the classifier the backbone was pretrained with.

The head is fitted as if the source classifier's logits l = W f + b, scaled to the pooled
features' mean length, stood beside the features f: a ridge on [f, a l] with a = |f| / |l|
(means over train). Its decision is u1 f + a u2 (W f + b) + c, one linear map of f, so it folds
into the run's own Linear(features, classes) and nothing a run saves changes: the weight
w = u1 + a u2 W whose smallest |u1|^2 + |u2|^2 is w (I + a^2 W^T W)^-1 w^T. That is the
penalty this module builds; minimising mean loss + decay/2 * that over w is the same problem as
the ridge on the concatenation (the bias absorbs a u2 b). In the directions ImageNet's
classifier uses the decay is weaker, so 3,000 photos refine 1.28 M photos' map instead of
learning one from scratch (benchmarks/RESULTS.md, issue 40).
"""

from __future__ import annotations

import torch
from torch import nn

from imgclf.config import RunConfig
from imgclf.messages import UsageError


def decay_metric(cfg: RunConfig, model: nn.Module, train_features: torch.Tensor) -> torch.Tensor:
    """The (features x features) matrix M of the head weight's penalty, w M w^T per class."""
    source = getattr(model, "source_classifier", None)
    if source is None:  # refusals.py names the models; a resumed run rebuilds with weights
        raise UsageError(f"--head-prior {cfg.head_prior}: {cfg.model} keeps no classifier")
    f = train_features.double()
    w, b = (t.to(f) for t in source)
    scale = f.norm(dim=1).mean() / (f @ w.T + b).norm(dim=1).mean()
    gram = torch.eye(f.shape[1], dtype=f.dtype, device=f.device) + scale**2 * (w.T @ w)
    return torch.linalg.inv(gram).float()
