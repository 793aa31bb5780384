"""float32 vs int8 (issue 42), side by side in one run, for each run given (default: a frozen
EfficientNet-Lite0 and the transfer recipe's Lite2, both trained here on CATS_DOGS):

1. the int8 export and its own check (`imgclf export --int8`: agreement and accuracy on the
   run's validation split);
2. the forward limit: images/s of the bare model on resident images at batch 1, 2 and 8, as one
   call on every core and as one single-threaded call a core side by side (the server's way);
3. accuracy, errors and agreement on the CATS_DOGS test split (the model alone, no TTA) and on a
   shifted copy of it built here (each photo's centre 70 % re-encoded as a JPEG of quality 30 at
   half its size: other crops, sizes and encodings than training saw);
4. `imgclf serve --runtime onnx` vs `--runtime onnx-int8` at 1, 8 and 32 clients posting a real
   500 x 375 photo, beside each one's ceiling without HTTP (bench_serve.py's decode + forward in
   the server's worker threads).

    python benchmarks/bench_int8.py [--run RUN ...] [--seconds 10]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import bench_serve
from common import CATS_DOGS, machine

CLIENTS = (1, 8, 32)
BATCHES = (1, 2, 8)


def train(kind: str) -> Path:
    run = Path(tempfile.mkdtemp(prefix=f"imgclf-int8-{kind}-")) / "run"
    exe = Path(sys.executable).parent / "imgclf"
    args = {
        "lite0": [
            "--model",
            "efficientnet_lite0",
            "--freeze",
            "--augment",
            "none",
            "--epochs",
            "3",
        ],
        "transfer": ["--recipe", "transfer"],
    }[kind]
    subprocess.run([str(exe), "train", str(CATS_DOGS), *args, "--out", str(run)], check=True)
    return run


def predictors(run: Path, threads: int = 0) -> dict[str, object]:
    from imgclf.onnx_runtime import OnnxPredictor, onnx_model
    from imgclf.quantize import int8_model
    from imgclf.runs import RunDir

    rd = RunDir(run)
    meta = rd.read_meta()
    return {
        "float32": OnnxPredictor(onnx_model(rd), meta, threads),
        "int8": OnnxPredictor(int8_model(rd), meta, threads),
    }


def forward(run: Path, body: bytes) -> dict[str, dict[str, float]]:
    from imgclf.serve.uploads import decode_upload

    cores = os.cpu_count() or 1
    out: dict[str, dict[str, float]] = {}
    for threads, streams in ((0, 1), (1, cores)):
        for name, p in predictors(run, threads).items():
            img = decode_upload(body, p.pre.size)
            key = f"{name}, " + ("1 call on all cores" if streams == 1 else f"{cores} x 1 thread")
            out[key] = {
                str(b): round(
                    bench_serve.side_by_side(
                        lambda p=p, x=np.stack([img] * b), b=b: (p.predict_proba(x), b)[1], streams
                    ),
                    1,
                )
                for b in BATCHES
            }
    return out


def shifted(data: bytes) -> bytes:
    """The photo's centre 70 %, at half its size, re-encoded as a JPEG of quality 30."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    box = (int(w * 0.15), int(h * 0.15), int(w * 0.85), int(h * 0.85))
    small = img.crop(box).resize((max(1, int(w * 0.35)), max(1, int(h * 0.35))))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=30)
    return buf.getvalue()


def accuracy(run: Path) -> dict[str, dict[str, float]]:
    from imgclf.serve.uploads import decode_upload

    preds = predictors(run)
    names = json.loads((run / "meta.json").read_text())["class_names"]
    files = [(f, names.index(c)) for c in names for f in sorted((CATS_DOGS / "test" / c).iterdir())]
    out: dict[str, dict[str, float]] = {}
    for split, prepare in (("test", lambda b: b), ("shifted test", shifted)):
        size = preds["float32"].pre.size
        x = np.stack([decode_upload(prepare(f.read_bytes()), size) for f, _ in files])
        y = np.array([label for _, label in files])
        top = {
            k: np.concatenate(
                [p.predict_proba(x[i : i + 50]).argmax(1) for i in range(0, len(x), 50)]
            )
            for k, p in preds.items()
        }
        for k, t in top.items():
            out[f"{split}, {k}"] = {
                "accuracy": round(100 * float((t == y).mean()), 2),
                "errors": int((t != y).sum()),
                "images": len(y),
            }
        out[f"{split}, agreement"] = {
            "top1": round(100 * float((top["int8"] == top["float32"]).mean()), 2)
        }
    return out


def serving(run: Path, body: bytes, seconds: float) -> list[dict]:
    rows = []
    wrk = bool(shutil.which("wrk"))
    for runtime in ("onnx", "onnx-int8"):
        proc, url, health = bench_serve.start(run, ["--runtime", runtime])
        try:
            load = [
                (bench_serve.wrk_load if wrk else bench_serve.python_load)(url, body, c, seconds)
                for c in CLIENTS
            ]
        finally:
            proc.terminate()
            proc.wait(30)
        top = bench_serve.ceiling(run, body, health)
        for r in load:
            rows.append(
                {
                    "runtime": runtime,
                    "precision": health["precision"],
                    **r,
                    "ceiling_without_http": round(top, 1),
                    "of_ceiling": round(r["req_per_s"] / top, 3),
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", default=[], help="run folders (default: train)")
    ap.add_argument("--seconds", type=float, default=10.0, help="of load per client count")
    a = ap.parse_args()
    print(machine(), flush=True)
    runs = [Path(r) for r in a.run] or [train("lite0"), train("transfer")]
    body = bench_serve.photo()
    for run in runs:
        from imgclf.quantize import int8_model, read_report
        from imgclf.runs import RunDir

        int8_model(RunDir(run))
        model = json.loads((run / "meta.json").read_text())["model"]
        print(
            json.dumps(
                {"run": str(run), "model": model, "int8_check": read_report(run / "export")}
            ),
            flush=True,
        )
        print(json.dumps({"model": model, "forward_images_per_s": forward(run, body)}), flush=True)
        print(json.dumps({"model": model, "accuracy": accuracy(run)}), flush=True)
        for row in serving(run, body, a.seconds):
            print(json.dumps({"model": model, **row}), flush=True)


if __name__ == "__main__":
    main()
