"""The PyTorch predictor: rebuild the model from meta.json and a checkpoint; uint8 images in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.backends.torch.checkpoint import load_checkpoint
from imgclf.backends.torch.device import pick_device
from imgclf.backends.torch.transforms import normalize_batch
from imgclf.data.presets import Preprocess
from imgclf.models import create_model, get_spec
from imgclf.runs import check_fingerprint


class TorchPredictor:
    def __init__(self, meta: dict[str, Any], weights: Path, device: str = "auto"):
        self.meta = meta
        self.class_names: list[str] = list(meta["class_names"])
        self.pre = Preprocess.from_dict(meta["preprocess"])
        self.device = pick_device(device)
        model = create_model(
            meta["model"], len(self.class_names), pretrained=False, image_size=self.pre.size
        )
        self.cam_layer = get_spec(meta["model"]).cam_layer
        ckpt = load_checkpoint(weights)
        check_fingerprint(ckpt.get("fingerprint"), meta, weights)
        model.load_state_dict(ckpt["model"])
        # inference only: no weight needs a gradient, so Grad-CAM's backward starts at its
        # layer's activations (made a leaf there) and the forward keeps no graph below them
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.path = weights

    def _input(self, images: np.ndarray) -> torch.Tensor:
        # np.require copies read-only arrays (PIL gives those), which torch cannot wrap safely;
        # float pixels (0-255, a protocol client's tensor) stay float: no rounding to bytes
        dtype = np.float32 if images.dtype.kind == "f" else np.uint8
        arr = np.require(images, dtype, ["C", "W"])
        return normalize_batch(torch.from_numpy(arr).to(self.device), self.pre)

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        """softmax over the classes, or one sigmoid per class for a multi-label run."""
        return logits.sigmoid() if self.meta.get("multi_label") else torch.softmax(logits, 1)

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self._probs(self.model(self._input(images)).float()).cpu().numpy()

    def explain(
        self, images: np.ndarray, classes: list[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM maps (N, size, size) for `classes` (default: the predicted ones) and the
        class probabilities of the same forward pass."""
        from imgclf.backends.torch.explain import GradCAM, target_layer

        cam = GradCAM(self.model, target_layer(self.model, self.cam_layer))
        cams, logits = cam(self._input(images), classes)
        return cams, self._probs(torch.from_numpy(logits)).numpy()
