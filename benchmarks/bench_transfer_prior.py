"""The ImageNet classifier's logits beside the pooled features (issue 40's eighth-session lever),
against the features alone, with the recipe's own L-BFGS head fit (imgclf's lbfgs_epoch and
optimizer, not scikit-learn's), over a wide weight-decay grid, on the features
bench_transfer_levers.py saved.

The lever: a head on [f, g a (W f + b)], a = |f| / |W f + b| (means over train), W, b the
classifier the Lite wheel ships, g the logits' weight; it is one linear map of f, so it would
fold into the recipe's Linear(1280, classes). For each variant and weight decay: 5-fold CV on
train (an image's views in one fold; the head fits on --train-views, c+cm, and averages
--test-views, c,cm: flip TTA, as the recipe), then the head fitted on all of train and scored on
every set built there; the test sets choose nothing.

    python bench_transfer_levers.py --phase features --configs 2@300 --views c cm \
        --sets train test shifted offcrop
    python bench_transfer_prior.py            # --work /tmp/levers --config lite2@300
    python bench_transfer_prior.py --config lite2@320 --features-only --decays 1e-3 --seeds 4
    python bench_transfer_prior.py --features-only --test-views c cm f fm   # whole-photo TTA
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
from imgclf.backends.torch.steps import Loop, lbfgs_epoch
from imgclf.config import RunConfig
from imgclf.recipes import RECIPES

SETS = ("test", "shifted", "offcrop")
DECAYS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)
# variant: (keep the features, the logits' weight g; 0 = none)
VARIANTS = {
    "features (the recipe)": (True, 0.0),
    "features + logits g=0.3": (True, 0.3),
    "features + logits g=1": (True, 1.0),
    "features + logits g=3": (True, 3.0),
    "logits only": (False, 1.0),
}


def fit(cfg: RunConfig, x: torch.Tensor, y: torch.Tensor) -> tuple[nn.Module, float]:
    """The recipe's fit: its epochs of lbfgs_epoch, the weights at the last (seconds taken)."""
    torch.manual_seed(cfg.seed)
    head = nn.Linear(x.shape[1], int(y.max()) + 1)
    t0 = time.perf_counter()
    opt = build_optimizer(head, cfg, True)
    loop = Loop(opt, nn.CrossEntropyLoss(reduction="sum"), contextlib.nullcontext, Dist(), x.device)
    step = 0
    for _ in range(cfg.epochs):
        _, step = lbfgs_epoch(head, (x, y), loop, cfg.weight_decay, step)
    return head, time.perf_counter() - t0


def columns(f: np.ndarray, fc: dict, a: float, variant: tuple[bool, float]) -> np.ndarray:
    keep, g = variant
    parts = [f] if keep else []
    if g:
        parts.append(g * a * (f @ fc["w"].T + fc["b"]))
    return np.concatenate(parts, -1).astype(np.float32)


def rows(views: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(views, n, d) and n labels -> the head's training rows, every view of a photo a row."""
    return torch.from_numpy(views.reshape(-1, views.shape[-1])), torch.from_numpy(
        np.tile(y, len(views))
    )


def probs(head: nn.Module, views: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.mean([head(torch.from_numpy(v)).softmax(1).numpy() for v in views], 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/levers"))
    ap.add_argument("--config", default="lite2@300", help="the saved features' variant@size")
    ap.add_argument("--decays", type=float, nargs="+", default=list(DECAYS))
    ap.add_argument("--seeds", type=int, default=1, help="CV fold seeds (errors summed)")
    ap.add_argument("--features-only", action="store_true", help="only the recipe's variant")
    ap.add_argument("--train-views", nargs="+", default=["c", "cm"], help="the head fits on")
    ap.add_argument("--test-views", nargs="+", default=["c", "cm"], help="TTA averages")
    args = ap.parse_args()
    torch.set_num_threads(2)
    w = args.work
    fc = dict(np.load(w / f"{args.config.split('@')[0]}-fc.npz"))
    views = list(dict.fromkeys(args.train_views + args.test_views))
    args.fit_rows = [views.index(v) for v in args.train_views]
    args.tta_rows = [views.index(v) for v in args.test_views]
    feats = {s: np.stack([np.load(w / f"{args.config}-{v}-{s}.npy") for v in views])
             for s in ("train", *SETS)}  # fmt: skip
    f0 = feats["train"][0]
    a = float(np.linalg.norm(f0, axis=1).mean())
    a /= float(np.linalg.norm(f0 @ fc["w"].T + fc["b"], axis=1).mean())
    variants = list(VARIANTS.items())[: 1 if args.features_only else None]
    out = {}
    for name, variant in variants:
        xs = {k: columns(v, fc, a, variant) for k, v in feats.items()}
        for decay in args.decays:
            row = scored(RunConfig(**RECIPES["transfer"]).replace(weight_decay=decay), xs, w, args)
            tag = f"{args.config} {'+'.join(args.train_views)}/{','.join(args.test_views)}"
            out[f"{tag} {name} wd={decay:g}"] = row
            print(tag, name, decay, row, flush=True)
    print(json.dumps(out))


def scored(cfg: RunConfig, xs: dict, w: Path, args: argparse.Namespace) -> dict:
    """CV errors (per fold seed) and log-loss on train, then the errors of the head fitted on
    all of train on every set."""
    y = np.load(w / "train-labels.npy")
    fits, tta = args.fit_rows, args.tta_rows
    wrong, nll = [], 0.0
    for seed in range(args.seeds):
        wrong.append(0)
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(y, y):
            head, _ = fit(cfg, *rows(xs["train"][fits][:, tr], y[tr]))
            p = probs(head, xs["train"][tta][:, te])
            wrong[-1] += int((p.argmax(1) != y[te]).sum())
            nll -= float(np.log(np.clip(p[np.arange(len(te)), y[te]], 1e-12, 1)).sum())
    head, secs = fit(cfg, *rows(xs["train"][fits], y))
    row = {"cv_errors": wrong, "cv_nll": round(nll / len(y) / args.seeds, 4)}
    row["fit_s"] = round(secs, 1)
    for s in SETS:
        row[s] = int((probs(head, xs[s][tta]).argmax(1) != np.load(w / f"{s}-labels.npy")).sum())
    return row


if __name__ == "__main__":
    main()
