"""--head-prior imagenet against none, with the recipe's own L-BFGS head fit (imgclf's code, not
scikit-learn's), on the features bench_transfer_levers.py saved (issue 40).

For each prior and each weight decay: 5-fold CV on train (an image's views in one fold, flip
TTA), then the head fitted on all of train and scored on every set built there. The weight decay
the recipe ships is chosen here by the CV alone; the test sets choose nothing.

    python bench_transfer_levers.py --phase features --configs 2@300 --views c cm \
        --sets train test shifted offcrop
    python bench_transfer_prior.py            # --work /tmp/levers --config lite2@300
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

from imgclf.backends.torch.distributed import Dist
from imgclf.backends.torch.optim import build_optimizer
from imgclf.backends.torch.prior import decay_metric
from imgclf.backends.torch.steps import Loop, lbfgs_epoch
from imgclf.config import RunConfig
from imgclf.recipes import RECIPES

SETS = ("test", "shifted", "offcrop")
DECAYS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


class Head(nn.Module):
    """A Linear with the source classifier beside it, as efficientnet_lite's TransferNet has."""

    def __init__(self, dim: int, classes: int, fc: dict):
        super().__init__()
        self.linear = nn.Linear(dim, classes)
        self.source_classifier = (torch.from_numpy(fc["w"]), torch.from_numpy(fc["b"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def fit(cfg: RunConfig, x: torch.Tensor, y: torch.Tensor, fc: dict) -> tuple[nn.Module, float]:
    """The recipe's fit: its epochs of lbfgs_epoch, the weights at the last (seconds taken)."""
    torch.manual_seed(cfg.seed)
    head = Head(x.shape[1], int(y.max()) + 1, fc)
    t0 = time.perf_counter()
    metric = None if cfg.head_prior == "none" else decay_metric(cfg, head, x)
    opt = build_optimizer(head, cfg, True)
    loop = Loop(opt, nn.CrossEntropyLoss(reduction="sum"), contextlib.nullcontext, Dist(), x.device)
    step = 0
    for _ in range(cfg.epochs):
        _, step = lbfgs_epoch(head, (x, y), loop, cfg.weight_decay, step, (), metric)
    return head, time.perf_counter() - t0


def probs(head: nn.Module, views: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.mean([head(torch.from_numpy(v)).softmax(1).numpy() for v in views], 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/levers"))
    ap.add_argument("--config", default="lite2@300")
    args = ap.parse_args()
    torch.set_num_threads(2)
    w = args.work
    fc = dict(np.load(w / f"{args.config.split('@')[0]}-fc.npz"))
    feats = {s: np.stack([np.load(w / f"{args.config}-{v}-{s}.npy") for v in ("c", "cm")])
             for s in ("train", *SETS)}  # fmt: skip
    y = np.load(w / "train-labels.npy")
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(y, y))
    base = RunConfig(**{k: v for k, v in RECIPES["transfer"].items() if k != "head_prior"})
    out = {}
    for prior in ("none", "imagenet"):
        for decay in DECAYS:
            cfg = base.replace(head_prior=prior, weight_decay=decay)
            wrong = 0
            for tr, te in folds:
                x = torch.from_numpy(feats["train"][:, tr].reshape(-1, feats["train"].shape[2]))
                head, _ = fit(cfg, x, torch.from_numpy(np.tile(y[tr], 2)), fc)
                wrong += int((probs(head, feats["train"][:, te]).argmax(1) != y[te]).sum())
            x = torch.from_numpy(feats["train"].reshape(-1, feats["train"].shape[2]))
            head, secs = fit(cfg, x, torch.from_numpy(np.tile(y, 2)), fc)
            row = {"cv_errors": wrong, "fit_s": round(secs, 1)}
            for s in SETS:
                ys = np.load(w / f"{s}-labels.npy")
                row[s] = int((probs(head, feats[s]).argmax(1) != ys).sum())
            out[f"{prior} wd={decay:g}"] = row
            print(prior, decay, row, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
