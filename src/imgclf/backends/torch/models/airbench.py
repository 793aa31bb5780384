"""`airbench`: the shape of Keller Jordan's airbench94 CIFAR-10 network, written for our trainer.

A fixed 2x2 patch-whitening convolution (initialised from the training images' patch statistics,
see `init_from_data`), then three conv groups (conv, max-pool, BN, GELU, conv, BN, GELU) of
64/256/256 channels with identity-initialised convs, a global max-pool and a linear layer scaled
by 1/9; its BatchNorm shifts learn 64x faster (`lr_scales`). Made for 32 px images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imgclf.data.presets import IMAGENET_MEAN, IMAGENET_STD
from imgclf.registry import register_model

WIDTHS = (64, 256, 256)
BN_BIAS_LR_SCALE = 64.0  # airbench: with the BN scale frozen at 1, the shifts need large steps
PATCH = 2  # whitening patch side: 3 * 2 * 2 = 12 directions, each kept with its negative


def _bn(width: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(width, momentum=0.4, eps=1e-12)
    bn.weight.requires_grad_(False)  # airbench trains the shift only: the scale is redundant
    return bn


def _conv(cin: int, cout: int) -> nn.Conv2d:
    """3x3 conv whose first cin filters start as the identity (airbench's dirac init: each
    group starts close to passing its input through, so the deep net trains like a shallow one)."""
    conv = nn.Conv2d(cin, cout, 3, padding="same", bias=False)
    nn.init.dirac_(conv.weight.data[:cin])
    return conv


class ConvGroup(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            _conv(cin, cout),
            nn.MaxPool2d(2),
            _bn(cout),
            nn.GELU(),
            _conv(cout, cout),
            _bn(cout),
            nn.GELU(),
        )


class AirbenchNet(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        dims = 3 * PATCH * PATCH
        self.whiten = nn.Conv2d(3, 2 * dims, PATCH, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from the data, then fixed
        widths = (2 * dims, *WIDTHS)
        pairs = zip(widths, widths[1:], strict=False)
        self.groups = nn.Sequential(*(ConvGroup(a, b) for a, b in pairs))
        self.head = nn.Linear(WIDTHS[-1], num_classes, bias=False)

    def lr_scales(self) -> list[tuple[list[nn.Parameter], float]]:
        """For optim.build_optimizer: the BatchNorm shifts learn BN_BIAS_LR_SCALE times faster."""
        biases = [m.bias for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        return [(biases, BN_BIAS_LR_SCALE)]

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Whitening filters from normalised train images (N, 3, H, W): the eigenvectors of the
        2x2 patches' covariance scaled by 1/sqrt(eigenvalue), each also negated (a ReLU-like
        GELU after it then passes both signs)."""
        patches = images.float().unfold(2, PATCH, 1).unfold(3, PATCH, 1)  # N,3,H',W',2,2
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * PATCH * PATCH)
        patches = patches - patches.mean(0)
        cov = patches.T @ patches / len(patches)
        values, vectors = torch.linalg.eigh(cov)
        filters = (vectors.T / torch.sqrt(values.clamp_min(0) + 5e-4)[:, None]).flip(0)
        filters = filters.reshape(-1, 3, PATCH, PATCH)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.whiten(x))
        x = self.groups(x)
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) / 9  # airbench's output scale: softer logits early in training


@register_model(
    "airbench",
    image_size=32,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    description="airbench94-shaped CIFAR-10 net (32 px, patch whitening); --recipe cifar-fast",
    cam_layer="groups",  # the last conv group (3 x 3 at 32 px)
)
def build_airbench(
    num_classes: int, pretrained: bool = False, freeze_backbone: bool = False
) -> nn.Module:
    if pretrained:
        raise ValueError("airbench has no pretrained weights")
    return AirbenchNet(num_classes)
