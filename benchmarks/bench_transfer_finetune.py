"""Fine-tuning the last blocks of Lite2 on cached activations (issue 40's second lever).

bench_transfer_levers.py --tap 15 saved, for every photo and view, the output of block 15 (208 x
10 x 10 at 300 px): the frozen part of the network, computed once. Here blocks 16-20, the head
convolution and a new linear layer are trained on those maps (so an epoch costs the last blocks
only), with discriminative learning rates (each block back from the head gets a smaller one), the
linear layer started from the recipe's L-BFGS head on the pooled features, BatchNorm statistics
frozen (3,000 photos are too few to re-estimate them) and the mirror as the augmentation.

It is scored side by side with that L-BFGS head alone on the same split: 300 train photos held out
(the recipe's carved validation, stratified, seed 0), the rest trained on; then test, shifted and
offcrop (see bench_transfer_levers.py), with flip TTA.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from torch import nn

from imgclf.backends.torch.models.efficientnet_lite import build_lite_imagenet

SETS = ("test", "shifted", "offcrop")
TAP = 15  # the block whose output bench_transfer_levers.py --tap saved


class Tail(nn.Module):
    """Blocks 16.. of Lite2 (after the cached block 15), the head convolution, pooling and a
    linear layer; blocks before `first` stay frozen."""

    def __init__(self, net: nn.Module, first: int, head: nn.Linear):
        super().__init__()
        self.blocks = nn.ModuleList(net._blocks[TAP + 1 :])
        for block in self.blocks[: first - TAP - 1]:
            block.requires_grad_(False)
        self.first, self.total = TAP + 1, len(net._blocks)
        self.conv_head, self.bn1, self.act = net._conv_head, net._bn1, net._swish
        self.fc = head
        self.drop_connect = net._global_params.drop_connect_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, block in enumerate(self.blocks):
            rate = self.drop_connect * (self.first + k) / self.total
            x = block(x, drop_connect_rate=rate)
        x = self.act(self.bn1(self.conv_head(x)))
        return self.fc(x.mean((2, 3)))


def groups(tail: Tail, lr: float, decay: float) -> list[dict]:
    """Discriminative rates: lr for the linear layer, x decay for each step back from it."""
    out = [{"params": tail.fc.parameters(), "lr": lr}]
    out.append({"params": [*tail.conv_head.parameters(), *tail.bn1.parameters()], "lr": lr * decay})
    trained = [b for b in tail.blocks if any(p.requires_grad for p in b.parameters())]
    for k, block in enumerate(reversed(trained)):
        out.append({"params": block.parameters(), "lr": lr * decay ** (k + 2)})
    return out


def maps(work: Path, view: str, split: str) -> np.ndarray:
    return np.load(work / f"lite2@300-{view}-{split}.block{TAP}.npy", mmap_mode="r")


def lbfgs_head(work: Path, tr: np.ndarray, y: np.ndarray, c: float) -> tuple[nn.Linear, float]:
    xs = np.stack([np.load(work / f"lite2@300-{v}-train.npy")[tr] for v in ("c", "cm")])
    scale = float(np.linalg.norm(xs[0], axis=1).mean())
    m = LogisticRegression(C=c, max_iter=2000).fit(
        (xs / scale).reshape(-1, xs.shape[-1]), np.tile(y[tr], 2)
    )
    head = nn.Linear(xs.shape[-1], 2)
    with torch.no_grad():  # two softmax logits from the one binary logit: -z/2, +z/2
        w = torch.from_numpy(m.coef_[0] / scale).float()
        b = float(m.intercept_[0])
        head.weight.copy_(torch.stack([-w / 2, w / 2]))
        head.bias.copy_(torch.tensor([-b / 2, b / 2]))
    return head, scale


def predict(tail: Tail, work: Path, split: str, idx: np.ndarray | None = None) -> np.ndarray:
    tail.eval()
    probs = []
    with torch.no_grad():
        for view in ("c", "cm"):
            a = maps(work, view, split)
            rows = np.arange(len(a)) if idx is None else idx
            out = [
                torch.softmax(tail(torch.from_numpy(a[rows[s : s + 256]].astype(np.float32))), 1)
                for s in range(0, len(rows), 256)
            ]
            probs.append(torch.cat(out).numpy())
    return np.mean(probs, 0)


def train(tail: Tail, work: Path, tr: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> None:
    opt = torch.optim.AdamW(groups(tail, args.lr, args.decay), weight_decay=args.wd)
    steps = args.epochs * (len(tr) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, [g["lr"] for g in opt.param_groups], total_steps=steps, pct_start=0.1
    )
    views = [maps(work, v, "train") for v in ("c", "cm")]
    rng = np.random.default_rng(0)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.smooth)
    for _ in range(args.epochs):
        tail.train()
        for m in tail.modules():  # frozen BatchNorm statistics
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        order = rng.permutation(tr)
        for s in range(0, len(order) - args.batch + 1, args.batch):
            rows = np.sort(order[s : s + args.batch])
            flip = rng.random(len(rows)) < 0.5
            x = np.where(flip[:, None, None, None], views[1][rows], views[0][rows])
            out = tail(torch.from_numpy(x.astype(np.float32)))
            loss = loss_fn(out, torch.from_numpy(y[rows]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


def errors(p: np.ndarray, y: np.ndarray) -> int:
    return int((p.argmax(1) != y).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/levers"))
    ap.add_argument("--first", type=int, default=16, help="the first block trained")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--decay", type=float, default=0.5, help="rate factor per block back")
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--smooth", type=float, default=0.1)
    ap.add_argument("--c", type=float, default=1.0, help="the L-BFGS head's C")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    y = np.load(args.work / "train-labels.npy")
    tr, val = train_test_split(np.arange(len(y)), test_size=300, stratify=y, random_state=0)
    head, scale = lbfgs_head(args.work, tr, y, args.c)
    net = build_lite_imagenet(2).eval()
    tail = Tail(net, args.first, head)
    frozen = copy.deepcopy(tail)  # the L-BFGS head alone: blocks as shipped
    ys = {s: np.load(args.work / f"{s}-labels.npy") for s in SETS}
    t0 = time.perf_counter()
    train(tail, args.work, tr, y, args)
    fit_s = time.perf_counter() - t0
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "train_s": round(fit_s, 1)}
    for name, model in (("L-BFGS head", frozen), ("fine-tuned", tail)):
        row = {"val": errors(predict(model, args.work, "train", np.sort(val)), y[np.sort(val)])}
        row |= {s: errors(predict(model, args.work, s), ys[s]) for s in SETS}
        out[name] = row
    print(json.dumps(out))


if __name__ == "__main__":
    main()
