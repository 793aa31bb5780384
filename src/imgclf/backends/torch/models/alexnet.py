"""AlexNet three ways: the second tutorial's from scratch, torchvision's, and the first tutorial's
frozen ImageNet AlexNet with a new head."""

from __future__ import annotations

from torch import nn

from imgclf.backends.torch.models.pretrained import load_torchvision_weights
from imgclf.backends.torch.models.transfer import TransferNet
from imgclf.registry import register_model
from imgclf.rules import alexnet_flat_side


class AlexNet(nn.Module):
    """The second tutorial's AlexNet (96-256-384-384-256, fc 9216-4096-4096-C at 227 px): its first
    dense layer follows --image-size, as the Keras one does."""

    def __init__(self, num_classes: int, image_size: int = 227, dropout: float = 0.5):
        super().__init__()
        side = alexnet_flat_side(image_size)
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        # Dense -> ReLU -> Dropout, the Keras version's order (the PyTorch one drops out before
        # the ReLU, which computes the same thing).
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(256 * side * side, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.classifier(self.features(x))


@register_model(
    "alexnet",
    image_size=227,
    description="second tutorial's AlexNet from scratch",
    cam_layer="features.11",  # the last convolution's ReLU (13 x 13 at 227 px)
)
def build_alexnet(
    num_classes: int, pretrained: bool = False, freeze_backbone: bool = False, image_size: int = 227
) -> nn.Module:
    if pretrained:
        raise ValueError("alexnet (from scratch) has no pretrained weights; use alexnet_tv")
    return AlexNet(num_classes, image_size)


class TorchvisionAlexNet(nn.Module):
    """torchvision's AlexNet layout (64-192-384-256-256, adaptive 6x6 pool, fc 9216-4096-4096),
    module for module, so its ImageNet state dict loads as is (a unit test compares every
    tensor's name and shape with torchvision's). Defined here because importing torchvision
    takes a second that `imgclf models` and start-up need not spend."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        conv = [(3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1)]
        conv += [(384, 256, 3, 1, 1), (256, 256, 3, 1, 1)]
        layers: list[nn.Module] = []
        for i, (cin, cout, k, stride, pad) in enumerate(conv):
            layers += [nn.Conv2d(cin, cout, k, stride=stride, padding=pad), nn.ReLU(inplace=True)]
            if i in (0, 1, 4):
                layers.append(nn.MaxPool2d(3, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _tv_alexnet(pretrained: bool, weights: str) -> nn.Module:
    model = TorchvisionAlexNet()
    if pretrained:
        load_torchvision_weights(model, "alexnet", weights)
    return model


@register_model(
    "alexnet_tv",
    image_size=224,
    description="torchvision AlexNet (64-192-384-256-256); --pretrained for ImageNet",
    cam_layer="backbone.0.11",
    backbone=True,
)
def build_alexnet_tv(
    num_classes: int, pretrained: bool = False, freeze_backbone: bool = False, weights: str = ""
) -> nn.Module:
    tv = _tv_alexnet(pretrained, weights)
    tv.classifier[-1] = nn.Linear(4096, num_classes)
    head = tv.classifier
    backbone = nn.Sequential(tv.features, tv.avgpool, nn.Flatten(1))
    return TransferNet(backbone, head, frozen=freeze_backbone)


@register_model(
    "alexnet_transfer",
    image_size=224,
    pretrained_default=True,
    description="first tutorial: frozen ImageNet AlexNet, head 9216-1024-C",
    cam_layer="backbone.0.11",
    backbone=True,
)
def build_alexnet_transfer(
    num_classes: int, pretrained: bool = True, freeze_backbone: bool = True, weights: str = ""
) -> nn.Module:
    tv = _tv_alexnet(pretrained, weights)
    backbone = nn.Sequential(tv.features, tv.avgpool, nn.Flatten(1))
    head = nn.Sequential(
        nn.Linear(9216, 1024), nn.ReLU(), nn.Dropout(0.4), nn.Linear(1024, num_classes)
    )
    # The tutorial freezes every feature weight; fine-tuning later unfreezes them.
    return TransferNet(backbone, head, frozen=True)
