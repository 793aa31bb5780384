"""`imgclf export RUN --format onnx --int8`: the run's ONNX model in int8, and proof that it
still answers like the float one.

onnxruntime's static quantization (QDQ: QuantizeLinear/DequantizeLinear pairs that its CPU
kernels fuse into int8 convolutions and matrix products; weights per output channel, signed;
activations unsigned, their ranges from MinMax calibration) on a seeded sample of the run's own
training images. Then checked on the run's validation split: top-1 agreement with the float
model and both accuracies. A drop of more than `max_drop` points is refused and nothing is left
behind: the model is built in a temporary folder and moved into place only once it passed.
The softmax stays in float: its probabilities are what clients read and calibrate.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.backends.common import run_data
from imgclf.calibration import read_thresholds
from imgclf.evaluation.scoring import split_index
from imgclf.files import write_json
from imgclf.onnx_runtime import INT8, INT8_REPORT, OnnxPredictor, onnx_model, stale
from imgclf.predictor import decoded_batches
from imgclf.runs import RunDir

CALIBRATION_IMAGES = 300  # ranges settle after a few hundred images (measured: RESULTS.md)
MAX_DROP = 0.5  # accuracy points on validation


class Int8Refused(RuntimeError):
    """The int8 model lost more accuracy than allowed: nothing was written."""


@dataclass(frozen=True)
class Int8Result:
    path: str
    agreement: float  # top-1 of int8 equal to float's, on validation
    float_accuracy: float
    int8_accuracy: float
    drop_points: float
    val_images: int
    calibration_images: int
    seconds: float
    method: str = "onnxruntime static QDQ, per-channel int8 weights, uint8 activations, MinMax"


def quantize_run(
    run: str | Path,
    source: Path | None = None,
    out_dir: Path | None = None,
    calibration_images: int = CALIBRATION_IMAGES,
    max_drop: float = MAX_DROP,
    seed: int = 0,
) -> Int8Result:
    """source: the float ONNX model (default: the run's export, made when missing); out_dir:
    where model.int8.onnx and int8.json go (default: beside source)."""
    t0 = time.perf_counter()
    rd = RunDir(run).require()
    source = source or onnx_model(rd)
    out = out_dir or source.parent
    meta = rd.read_meta()
    root = run_data(rd.read_config(), f"imgclf export {rd} ... (the run's data folder)")
    train, _ = split_index(rd, root, True, "train")
    val, _ = split_index(rd, root, True, "val")
    if not len(val.paths):
        raise ValueError(f"{rd}: no validation images to check the int8 model against")
    paths = list(train.paths)
    sample = random.Random(seed).sample(paths, min(calibration_images, len(paths)))
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".int8-", dir=out))
    try:
        model = tmp / INT8
        _quantize(source, model, _calibration(sample, meta), tmp)
        t = read_thresholds(rd.path, meta["class_names"]) if val.multi_label else None
        check = _check(OnnxPredictor(source, meta), OnnxPredictor(model, meta), val, t)
        if check["drop_points"] > max_drop:
            raise Int8Refused(
                f"{rd}: int8 loses {check['drop_points']:.2f} accuracy points on validation "
                f"({100 * check['float_accuracy']:.2f} % -> {100 * check['int8_accuracy']:.2f} "
                f"%), more than --max-drop {max_drop:g}; nothing written"
            )
        seconds = round(time.perf_counter() - t0, 1)
        result = Int8Result(
            str(out / INT8), **check, calibration_images=len(sample), seconds=seconds
        )
        os.replace(model, out / INT8)
        write_json(out / INT8_REPORT, asdict(result))
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _calibration(paths: list[str], meta: dict[str, Any]) -> Iterator[np.ndarray]:
    from imgclf.data.presets import Preprocess

    pre = Preprocess.from_dict(meta["preprocess"])
    for _, batch, _ in decoded_batches(paths, pre.size, 16):
        if len(batch):
            yield pre.normalize(batch, channels_first=True)


def _quantize(source: Path, target: Path, batches: Iterator[np.ndarray], tmp: Path) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(batches, None)
            return None if batch is None else {"input": batch}

    prepared = tmp / "prepared.onnx"  # shapes inferred and graph folded, as onnxruntime advises
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    softmax = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Softmax"]
    quantize_static(
        str(prepared),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=softmax,
    )


def _check(
    reference: OnnxPredictor, int8: OnnxPredictor, val: Any, thresholds: np.ndarray | None = None
) -> dict[str, Any]:
    """Top-1 agreement and accuracies on the validation images (unreadable ones left out); a
    multi-label run (thresholds, 0.5 where unfitted): the same over every yes/no per class."""
    same = right_f = right_q = n = 0
    labels = val.targets()
    for idx, batch, _ in decoded_batches(list(val.paths), reference.pre.size, 32):
        if not len(batch):
            continue
        f, q = reference.predict_proba(batch), int8.predict_proba(batch)
        y = labels[idx]
        if val.multi_label:
            t = 0.5 if thresholds is None else thresholds
            f, q, y = f >= t, q >= t, y > 0.5
            scale = y.shape[1]  # decisions per image: counted as a share of one image each
        else:
            f, q, scale = f.argmax(1), q.argmax(1), 1
        same += (f == q).sum() / scale
        right_f += (f == y).sum() / scale
        right_q += (q == y).sum() / scale
        n += len(idx)
    if not n:
        raise ValueError("no validation image could be read to check the int8 model")
    return {
        "agreement": same / n,
        "float_accuracy": right_f / n,
        "int8_accuracy": right_q / n,
        "drop_points": round(100 * (right_f - right_q) / n, 3),
        "val_images": n,
    }


def int8_model(run: RunDir) -> Path:
    """The run's export/model.int8.onnx, quantized and checked (with the default limits) when
    it is missing or older than the float model it comes from."""
    source = onnx_model(run)
    path = run / RunDir.EXPORT / INT8
    if stale(path, source):
        print(summary(quantize_run(run.path)), flush=True)
    return path


def summary(r: Int8Result) -> str:
    return (
        f"wrote {r.path} (+ {INT8_REPORT}): int8 agrees with float32 on "
        f"{100 * r.agreement:.2f} % of {r.val_images} validation images; accuracy "
        f"{100 * r.float_accuracy:.2f} % float32 -> {100 * r.int8_accuracy:.2f} % int8 "
        f"(calibrated on {r.calibration_images} training images, {r.seconds:.0f} s)"
    )


def read_report(folder: Path) -> dict[str, Any] | None:
    p = folder / INT8_REPORT
    return json.loads(p.read_text()) if p.exists() else None
