"""Grad-CAM (Selvaraju et al., ICCV 2017) with two hooks: one forward and one backward pass per
batch give every image's class-activation map for the class asked.

Our own few lines rather than grad-cam/captum/torchcam: those need OpenCV (grad-cam) or add a
library for one formula, and none knows our models' target layers; the hooks below also reach
the activations of a frozen backbone (its weights need no gradient: the activations get one).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def target_layer(model: nn.Module, name: str = "") -> nn.Module:
    """The named module (a registry entry's `cam_layer`), else the last Conv2d: the last
    convolutional block, whose maps still say where."""
    if name:
        return model.get_submodule(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("no convolutional layer to explain (Grad-CAM needs a spatial map)")
    return convs[-1]


class GradCAM:
    """cams, logits = GradCAM(model, layer)(x, classes): x normalised (N, 3, H, W); classes one
    index per image or None (the predicted class); cams (N, H, W) in [0, 1]."""

    def __init__(self, model: nn.Module, layer: nn.Module):
        self.model, self.layer = model, layer
        self.activation: torch.Tensor | None = None

    def _keep(self, _m: nn.Module, _inp: object, out: torch.Tensor) -> torch.Tensor:
        # a frozen backbone's output needs no gradient: make it a leaf that wants one; the clone
        # goes on, so in-place layers after it (ReLU(inplace=True)) leave the kept map intact.
        # A module called twice per forward keeps its last call (name a module called once:
        # an earlier call made a leaf would pull the whole network into the backward pass).
        act = out if out.requires_grad else out.detach().requires_grad_(True)
        self.activation = act
        return act.clone()

    def __call__(
        self, x: torch.Tensor, classes: list[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        handle = self.layer.register_forward_hook(self._keep)
        try:
            with torch.enable_grad():
                logits = self.model(x).float()
                act = self.activation
                if act is None or act.dim() != 4:
                    raise ValueError("the target layer gave no (N, C, H, W) map")
                pick = logits.argmax(1) if classes is None else torch.as_tensor(classes)
                score = logits.gather(1, pick.view(-1, 1).to(logits.device)).sum()
                (grads,) = torch.autograd.grad(score, act)
        finally:
            handle.remove()
            self.activation = None
        weights = grads.float().mean((2, 3), keepdim=True)  # one weight per channel and image
        cam = F.relu((weights * act.detach().float()).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        top = cam.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1)
        return (cam / top).cpu().numpy(), logits.detach().cpu().numpy()
