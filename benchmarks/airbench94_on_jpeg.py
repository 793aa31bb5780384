"""What the CIFAR-10 JPEG zip allows: airbench94's published recipe, outside imgclf's trainer.

airbench94 (Keller Jordan; 94.01 % mean test accuracy on lossless CIFAR-10 in 9.9 epochs) is
re-implemented here, for the CPU, with its hyperparameters and every trick of its final version:
the 2x2 whitening layer set from 5,000 train images, identity-initialised convs, BatchNorm shifts
at 64x lr, Nesterov SGD with its decoupled lr/decay, the linear one-cycle, label smoothing 0.2,
2 px shifts, alternating flips (each image seen mirrored every other epoch), lookahead, the
whitening bias frozen after 3 epochs and multi-crop TTA. All 50,000 train images, no val split.
The test accuracy it reaches on the JPEG zip, next to 94.01 % on the lossless images, is what the
JPEG compression costs; `--recipe cifar-fast` is then compared against it.

    python benchmarks/airbench94_on_jpeg.py [--epochs 9.9]

Prints the test accuracy after each epoch (no TTA) and at the end without TTA, with flip TTA and
with airbench's flip + 1 px shift TTA. ~31 minutes on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import io
import math
import time
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from common import CIFAR_ZIP, machine

MEAN = torch.tensor((0.4914, 0.4822, 0.4465)).view(1, 3, 1, 1)
STD = torch.tensor((0.2470, 0.2435, 0.2616)).view(1, 3, 1, 1)
BATCH, MOMENTUM, SHIFT = 1024, 0.85, 2
# airbench's "per 1024 examples" lr and decay, as PyTorch SGD takes them for a summed loss
KILOSTEP = 1024 * (1 + 1 / (1 - MOMENTUM))
LR, DECAY = 11.5 / KILOSTEP, 0.0153 * BATCH / KILOSTEP
BIAS_SCALE, WHITEN_BIAS_EPOCHS = 64.0, 3


def load(z: zipfile.ZipFile, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    names = sorted(n for n in z.namelist() if n.startswith(split + "/") and n.endswith(".jpg"))
    classes = sorted({n.split("/")[1] for n in names})
    x = np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n in names])
    y = torch.tensor([classes.index(n.split("/")[1]) for n in names])
    return (torch.tensor(x).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD, y


class Conv(nn.Conv2d):
    def __init__(self, cin: int, cout: int, k: int = 3, padding: str | int = "same", bias=False):
        super().__init__(cin, cout, k, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        nn.init.dirac_(self.weight.data[: self.weight.size(1)])


def bn(c: int) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(c, eps=1e-12, momentum=0.4)
    norm.weight.requires_grad = False
    return norm


class Group(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.pool, self.norm1 = Conv(cin, cout), nn.MaxPool2d(2), bn(cout)
        self.conv2, self.norm2, self.act = Conv(cout, cout), bn(cout), nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


def make_net(train: torch.Tensor) -> nn.Sequential:
    net = nn.Sequential(
        Conv(3, 24, 2, padding=0, bias=True), nn.GELU(),
        Group(24, 64), Group(64, 256), Group(256, 256),
        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(256, 10, bias=False),
    )  # fmt: skip
    net[0].weight.requires_grad = False
    # whitening: eigenvectors of the (uncentred) 2x2 patch covariance, each scaled and negated
    patches = train[:5000].unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 12)
    values, vectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    values, vectors = values.flip(0).view(-1, 1, 1, 1), vectors.T.reshape(12, 3, 2, 2).flip(0)
    scaled = vectors / torch.sqrt(values + 5e-4)
    net[0].weight.data[:] = torch.cat((scaled, -scaled))
    return net.to(memory_format=torch.channels_last)


def forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net(x) / 9


def crop(padded: torch.Tensor) -> torch.Tensor:
    """A whole-pixel shift of up to SHIFT px per image, from the reflect-padded images."""
    shifts = torch.randint(-SHIFT, SHIFT + 1, (len(padded), 2))
    out = torch.empty(len(padded), 3, 32, 32)
    for sy in range(-SHIFT, SHIFT + 1):
        for sx in range(-SHIFT, SHIFT + 1):
            m = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
            out[m] = padded[m, :, SHIFT + sy : SHIFT + sy + 32, SHIFT + sx : SHIFT + sx + 32]
    return out


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, tta: int) -> float:
    """tta 0: none; 1: flip; 2: flip, and flip of the image shifted 1 px up-left and down-right."""
    net.eval()

    def mirror(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * forward(net, v) + 0.5 * forward(net, v.flip(-1))

    outs = []
    for v in x.split(1000):
        v = v.contiguous(memory_format=torch.channels_last)
        out = forward(net, v) if tta == 0 else mirror(v)
        if tta == 2:
            p = F.pad(v, (1,) * 4, "reflect")
            out = 0.5 * out + 0.25 * mirror(p[:, :, :32, :32]) + 0.25 * mirror(p[:, :, 2:, 2:])
        outs.append(out)
    return (torch.cat(outs).argmax(1) == y).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=float, default=9.9)
    epochs = ap.parse_args().epochs
    torch.manual_seed(0)
    print(machine(), flush=True)
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        (xtr, ytr), (xte, yte) = load(z, "train"), load(z, "test")
    net = make_net(xtr)
    norms = [p for k, p in net.named_parameters() if "norm" in k and p.requires_grad]
    rest = [p for k, p in net.named_parameters() if "norm" not in k and p.requires_grad]
    bias_lr = LR * BIAS_SCALE
    groups = [
        {"params": norms, "lr": bias_lr, "weight_decay": DECAY / bias_lr},
        {"params": rest, "lr": LR, "weight_decay": DECAY / LR},
    ]
    opt = torch.optim.SGD(groups, momentum=MOMENTUM, nesterov=True)
    per_epoch = len(xtr) // BATCH
    total = math.ceil(per_epoch * epochs)
    warm = int(total * 0.23)

    def factor(step: int) -> float:
        return 0.2 + 0.8 * step / warm if step < warm else 1 - 0.93 * (step - warm) / (total - warm)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    alpha = 0.95**5 * (torch.arange(total + 1) / total) ** 3
    slow = {k: v.clone() for k, v in net.state_dict().items()}

    def lookahead(decay: float) -> None:
        for s, v in zip(slow.values(), net.state_dict().values(), strict=True):
            if v.dtype == torch.float:
                s.lerp_(v, 1 - decay)
                v.copy_(s)

    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2, reduction="none")
    flipped = torch.where((torch.rand(len(xtr)) < 0.5).view(-1, 1, 1, 1), xtr.flip(-1), xtr)
    padded = F.pad(flipped, (SHIFT,) * 4, "reflect")
    step, t0 = 0, time.time()
    for epoch in range(math.ceil(epochs)):
        net[0].bias.requires_grad = epoch < WHITEN_BIAS_EPOCHS
        net.train()
        images = crop(padded)
        images = images.flip(-1) if epoch % 2 else images  # alternating flip
        order = torch.randperm(len(images))
        for i in range(per_epoch):
            idx = order[i * BATCH : (i + 1) * BATCH]
            x = images[idx].contiguous(memory_format=torch.channels_last)
            loss = loss_fn(forward(net, x), ytr[idx]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 5 == 0:
                lookahead(alpha[step].item())
            if step >= total:
                lookahead(1.0)
                break
        acc = accuracy(net, xte, yte, 0)
        print(f"epoch {epoch + 1} test {acc:.4f} (no TTA) {time.time() - t0:.0f} s", flush=True)
    accs = [accuracy(net, xte, yte, level) for level in (0, 1, 2)]
    none, flip, shifts = accs
    print(f"test: no TTA {none:.4f}, flip {flip:.4f}, flip + shifts {shifts:.4f}", flush=True)


if __name__ == "__main__":
    main()
