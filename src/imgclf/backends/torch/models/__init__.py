"""PyTorch model builders; importing this package registers them (timm style)."""

from imgclf.backends.torch.models import airbench, alexnet, efficientnet_lite, external, small_cnn  # noqa: F401  (registers the builders)
