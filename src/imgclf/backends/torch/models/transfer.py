"""TransferNet: backbone + head, so a frozen backbone can be skipped or its features cached."""

from __future__ import annotations

import torch
from torch import nn


class TransferNet(nn.Module):
    """forward(x) = head(backbone(x)); backbone returns flat features."""

    def __init__(self, backbone: nn.Module, head: nn.Module, frozen: bool = False):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.set_frozen(frozen)

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.backbone.parameters())

    def set_frozen(self, frozen: bool) -> None:
        self.backbone.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps its BatchNorm statistics and skips dropout
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
