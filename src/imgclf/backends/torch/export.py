"""PyTorch exports: ONNX (checked with onnxruntime), TorchScript (checked with torch.jit.load)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imgclf.backends.torch.transforms import normalize_batch
from imgclf.files import atomic_write


class WithSoftmax(nn.Module):
    """The model with its probabilities: softmax, or one sigmoid per class (multi-label)."""

    def __init__(self, model: nn.Module, multi_label: bool = False):
        super().__init__()
        self.model, self.multi_label = model, multi_label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)


def export_model(predictor: Any, fmt: str, path: Path, imgs: np.ndarray) -> tuple[Path, float]:
    """Write `fmt` to path (the facade names it), load it back, return the largest difference."""
    multi = bool(predictor.meta.get("multi_label"))
    model = WithSoftmax(predictor.model.cpu().eval(), multi).eval()
    x = normalize_batch(torch.from_numpy(imgs), predictor.pre).contiguous()
    with torch.no_grad():
        ref = model(x).numpy()
    if fmt == "onnx":
        import onnxruntime as ort

        batch = torch.export.Dim("batch", min=1, max=4096)

        def write(tmp: str) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    (x[:2],),
                    tmp,
                    input_names=["input"],
                    output_names=["probabilities"],
                    dynamic_shapes=({0: batch},),
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                )

        atomic_write(path, write)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outs = [sess.run(None, {"input": b.numpy()})[0] for b in (x[:1], x)]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, x[:2])
            atomic_write(path, lambda tmp: torch.jit.save(traced, tmp))
            loaded = torch.jit.load(str(path))
        with torch.no_grad():
            outs = [loaded(b).numpy() for b in (x[:1], x)]
    # batch 1 and the whole sample: the exported batch dimension really is dynamic
    return path, max(float(np.abs(outs[0] - ref[:1]).max()), float(np.abs(outs[1] - ref).max()))
