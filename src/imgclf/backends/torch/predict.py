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
from imgclf.registry import create_model
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
        ckpt = load_checkpoint(weights)
        check_fingerprint(ckpt.get("fingerprint"), meta, weights)
        model.load_state_dict(ckpt["model"])
        self.model = model.eval().to(self.device)
        self.path = weights

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        # np.require copies read-only arrays (PIL gives those), which torch cannot wrap safely
        arr = np.require(images, np.uint8, ["C", "W"])
        x = normalize_batch(torch.from_numpy(arr).to(self.device), self.pre)
        return torch.softmax(self.model(x).float(), 1).cpu().numpy()
