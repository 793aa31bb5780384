"""Any torchvision or timm classification model by name, wrapped as a TransferNet."""

from __future__ import annotations

from torch import nn

from imgclf.backends.torch.models.pretrained import (
    WeightsUnavailable,
    load_state_file,
    load_torchvision_weights,
)
from imgclf.backends.torch.models.transfer import TransferNet
from imgclf.registry import ModelSpec, register_model


def _replace_last_linear(model: nn.Module) -> int:
    """Swap the model's last nn.Linear (its classifier) for Identity; return its in_features."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    if last is None:
        raise ValueError("no Linear classifier found to replace")
    parent_name, _, attr = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    in_features = getattr(parent, attr).in_features
    setattr(parent, attr, nn.Identity())
    return in_features


def _torchvision_builder(name: str):  # noqa: ANN202
    def build(
        num_classes: int, pretrained: bool = False, freeze_backbone: bool = False, weights: str = ""
    ) -> nn.Module:
        from torchvision.models import get_model

        model = get_model(name, weights=None)
        if pretrained:
            load_torchvision_weights(model, name, weights)
        features = _replace_last_linear(model)
        return TransferNet(model, nn.Linear(features, num_classes), frozen=freeze_backbone)

    return build


def _timm_builder(name: str):  # noqa: ANN202
    def build(
        num_classes: int, pretrained: bool = False, freeze_backbone: bool = False, weights: str = ""
    ) -> nn.Module:
        import timm

        try:
            model = timm.create_model(name, pretrained=pretrained and not weights, num_classes=0)
        except Exception as e:
            if pretrained:
                raise WeightsUnavailable(
                    f"timm could not load pretrained {name} ({type(e).__name__}); it downloads "
                    "from the Hugging Face hub into HF_HOME, or pass --weights FILE"
                ) from None
            raise
        if weights:
            model.load_state_dict(load_state_file(weights), strict=False)
        # with num_classes=0 timm returns pooled features of size head_hidden_size when the model
        # has a pre-logits layer (MobileNetV3), num_features otherwise
        width = getattr(model, "head_hidden_size", None) or model.num_features
        return TransferNet(model, nn.Linear(width, num_classes), frozen=freeze_backbone)

    return build


def resolve_external(name: str) -> ModelSpec | None:
    from torchvision.models import list_models as tv_list

    if name in tv_list(module=__import__("torchvision.models", fromlist=["x"])):
        return ModelSpec(
            name=name,
            backend="torch",
            builder=_torchvision_builder(name),
            description="torchvision",
            backbone=True,
        )
    import timm

    if timm.is_model(name):
        cfg = timm.get_pretrained_cfg(name)
        size = cfg.input_size[-1] if cfg else 224
        mean = tuple(cfg.mean) if cfg else None
        std = tuple(cfg.std) if cfg else None
        extra = {"mean": mean, "std": std} if mean and std else {}
        return ModelSpec(
            name=name,
            backend="torch",
            builder=_timm_builder(name),
            image_size=size,
            description="timm",
            backbone=True,
            **extra,
        )
    return None


register_model(
    "__external__",
    extra={"resolve": resolve_external, "hint": "; or any torchvision/timm model name"},
)(lambda *a, **k: None)
