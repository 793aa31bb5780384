"""Model registry keyed by (name, backend), in the manner of timm's @register_model.

Backend-neutral and import-light: a backend's builders live in `imgclf.backends.<name>.models`,
which registers them when imported (timm style); this module never imports them by name.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imgclf.data.presets import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from imgclf.messages import UsageError


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


def _load_backend(backend: str) -> None:
    importlib.import_module(f"imgclf.backends.{backend}.models")  # registers its builders


def list_models(backend: str = "torch") -> list[str]:
    _load_backend(backend)
    return sorted(n for n, b in _REGISTRY if b == backend and not n.startswith("__"))


def get_spec(name: str, backend: str = "torch") -> ModelSpec:
    """The registered spec, or for torch a generic one that resolves torchvision/timm names."""
    _load_backend(backend)
    if (name, backend) in _REGISTRY:
        return _REGISTRY[(name, backend)]
    fallback = _REGISTRY.get(("__external__", backend))
    if fallback is not None:
        spec = fallback.extra["resolve"](name)
        if spec is not None:
            return spec
    valid = ", ".join(list_models(backend))
    more = fallback.extra.get("hint", "") if fallback is not None else ""
    close = difflib.get_close_matches(name, list_models(backend), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UsageError(
        f"unknown model {name!r} for backend {backend!r}{hint}; registered: {valid}{more}"
    )


def create_model(
    name: str,
    num_classes: int,
    backend: str = "torch",
    pretrained: bool | None = None,
    freeze_backbone: bool = False,
    **kw: Any,
) -> Any:
    """pretrained=None means the model's default; a `weights` file implies pretrained. Options
    the builder does not declare are refused by name when given a value (an empty one was not
    asked for), never swallowed; image_size is dropped for a network that takes any size (the
    images are decoded at it all the same)."""
    spec = get_spec(name, backend)
    if pretrained is None:
        pretrained = spec.pretrained_default
    pretrained = pretrained or bool(kw.get("weights"))  # a weights file is pretrained weights
    declared = inspect.signature(spec.builder).parameters
    for key in [k for k in kw if k not in declared]:
        value = kw.pop(key)
        if value and key != "image_size":
            option = "--" + key.replace("_", "-")
            raise UsageError(f"{option} {value}: the {backend} model {name} does not take it")
    return spec.builder(num_classes, pretrained=pretrained, freeze_backbone=freeze_backbone, **kw)
