"""The PyTorch predictor: rebuild the model from a checkpoint alone and run it on uint8 images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.checkpoint import load_checkpoint
from imgclf.data.presets import Preprocess
from imgclf.data.transforms import normalize_batch
from imgclf.device import pick_device
from imgclf.registry import create_model


def build_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    meta = ckpt["meta"]
    model = create_model(
        meta["model"], meta["num_classes"], pretrained=False, image_size=meta["preprocess"]["size"]
    )
    model.load_state_dict(ckpt["model"])
    return model.eval()


class TorchPredictor:
    def __init__(self, run: str | Path, device: str = "auto"):
        run = Path(run)
        path = run / "best.pt" if run.is_dir() else run
        ckpt = load_checkpoint(path)
        self.meta: dict[str, Any] = ckpt["meta"]
        self.class_names: list[str] = list(self.meta["class_names"])
        self.pre = Preprocess.from_dict(self.meta["preprocess"])
        self.device = pick_device(device)
        self.model = build_from_checkpoint(ckpt).to(self.device)
        self.path = path

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        # np.require copies read-only arrays (PIL gives those), which torch cannot wrap safely
        arr = np.require(images, np.uint8, ["C", "W"])
        x = normalize_batch(torch.from_numpy(arr).to(self.device), self.pre)
        return torch.softmax(self.model(x).float(), 1).cpu().numpy()
