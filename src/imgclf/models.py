"""Models by name, for every backend: loads a backend's builders (which register themselves in
registry.py, timm style) and builds one, refusing options the builder does not take."""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any

from imgclf.messages import UsageError
from imgclf.registry import ModelSpec, find, registered


def _load_backend(backend: str) -> None:
    importlib.import_module(f"imgclf.backends.{backend}.models")  # registers its builders


def list_models(backend: str = "torch") -> list[str]:
    _load_backend(backend)
    return registered(backend)


def get_spec(name: str, backend: str = "torch") -> ModelSpec:
    """The registered spec, or for torch a generic one that resolves torchvision/timm names."""
    _load_backend(backend)
    if (spec := find(name, backend)) is not None:
        return spec
    fallback = find("__external__", backend)
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
