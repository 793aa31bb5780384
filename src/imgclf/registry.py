"""Model registry keyed by (name, backend), in the manner of timm's @register_model.

A leaf: a backend's builders live in `imgclf.backends.<name>.models`, which import this module
and register themselves; this module imports none of them, not even at run time. Loading a
backend's builders and building models by name is `imgclf.models`'s job, one level up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imgclf.data.presets import IMAGENET_MEAN, IMAGENET_STD, Preprocess


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str
    builder: Callable[..., Any]
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pretrained_default: bool = False  # the model only makes sense with its ImageNet weights
    description: str = ""
    cam_layer: str = ""  # Grad-CAM's layer (a submodule name); "": the last Conv2d
    backbone: bool = False  # a pretrained feature extractor --freeze/--fine-tune-after can freeze
    extra: dict = field(default_factory=dict)

    def preprocess(self, image_size: int = 0) -> Preprocess:
        return Preprocess(image_size or self.image_size, self.mean, self.std)


_REGISTRY: dict[tuple[str, str], ModelSpec] = {}


def register_model(name: str, backend: str = "torch", **spec: Any) -> Callable:
    """Decorator: register `builder(num_classes, pretrained=False, freeze_backbone=False, **kw)`."""

    def wrap(builder: Callable) -> Callable:
        key = (name, backend)
        if key in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered for backend {backend!r}")
        _REGISTRY[key] = ModelSpec(name=name, backend=backend, builder=builder, **spec)
        return builder

    return wrap


def registered(backend: str) -> list[str]:
    """The names registered for a backend so far (its builders loaded: imgclf.models)."""
    return sorted(n for n, b in _REGISTRY if b == backend and not n.startswith("__"))


def find(name: str, backend: str) -> ModelSpec | None:
    return _REGISTRY.get((name, backend))
