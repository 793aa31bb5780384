"""`imgclf serve` against the model's own limit, in one run (issue 27).

1. The limit: the model's forward pass alone on resident decoded batches, images/s at batch
   1 .. 64, for PyTorch eager and for onnxruntime (the export `--runtime onnx` serves).
2. The server (`imgclf serve RUN`, defaults unless --serve-args) at 1, 8, 32 and 64 concurrent
   clients posting a real 500 x 375 JPEG (a CATS_DOGS photo): requests/s, p50/p99, errors, and
   the ratio to the best forward-only throughput of the runtime it serves with.

    python benchmarks/bench_serve.py [--run RUN] [--requests 400] [--serve-args "..."]

Without --run it trains a frozen EfficientNet-Lite0 on CATS_DOGS (as bench_explain.py does).
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from common import CATS_DOGS, machine

BATCHES = (1, 8, 16, 32, 64)


def train_run() -> Path:
    run = Path(tempfile.mkdtemp(prefix="imgclf-serve-")) / "run"
    exe = Path(sys.executable).parent / "imgclf"
    cmd = [str(exe), "train", str(CATS_DOGS), "--model", "efficientnet_lite0", "--freeze"]
    subprocess.run([*cmd, "--augment", "none", "--epochs", "3", "--out", str(run)], check=True)
    return run


def photo() -> bytes:
    first = sorted((CATS_DOGS / "test" / "DOG").iterdir())[0]
    buf = io.BytesIO()
    Image.open(first).convert("RGB").resize((500, 375)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def forward_limit(run: Path, body: bytes) -> dict[str, dict[int, float]]:
    """images/s of the bare model per batch size, eager and onnxruntime, resident uint8 input."""
    from imgclf.predictor import load_predictor
    from imgclf.runs import RunDir
    from imgclf.serve.runtime import OnnxPredictor, onnx_model
    from imgclf.serve.uploads import decode_upload

    eager = load_predictor(run, "cpu", tta=False, calibrated=False)
    onnx = OnnxPredictor(onnx_model(RunDir(run)), eager.meta)
    img = decode_upload(body, eager.pre.size)
    out: dict[str, dict[int, float]] = {}
    for name, p in (("eager", eager), ("onnx", onnx)):
        out[name] = {}
        for b in BATCHES:
            x = np.stack([img] * b)
            p.predict_proba(x)  # warm-up
            reps = max(2, 128 // b)
            t0 = time.perf_counter()
            for _ in range(reps):
                p.predict_proba(x)
            out[name][b] = b * reps / (time.perf_counter() - t0)
    return out


def load(url: str, body: bytes, clients: int, requests: int) -> dict:
    """`clients` threads, each on its own keep-alive connection (the standard library's
    http.client: a light client, so the 2 cores go to the server, not to the load)."""
    import http.client
    import threading

    host, port = url.removeprefix("http://").split(":")
    local = threading.local()

    def one(_: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        try:
            if not hasattr(local, "conn"):
                local.conn = http.client.HTTPConnection(host, int(port), timeout=120)
            local.conn.request("POST", "/predict", body, {"Content-Type": "image/jpeg"})
            resp = local.conn.getresponse()
            resp.read()
            code = resp.status
        except (OSError, http.client.HTTPException):
            local.__dict__.pop("conn", None)
            code = -1
        return code, time.perf_counter() - t0

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(2 * clients)))  # warm-up: every connection open
        t0 = time.perf_counter()
        res = list(pool.map(one, range(requests)))
        wall = time.perf_counter() - t0
    lat = np.array([t for _, t in res]) * 1000
    return {
        "clients": clients,
        "req_per_s": requests / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": sum(c != 200 for c, _ in res),
    }


def serve(run: Path, body: bytes, requests: int, extra: list[str]) -> tuple[list[dict], dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "imgclf"
    proc = subprocess.Popen([str(exe), "serve", str(run), "--port", str(port), *extra])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                health = httpx.get(url + "/health", timeout=1).json()
                break
            except httpx.TransportError:
                time.sleep(0.25)
        rows = [load(url, body, c, requests) for c in (1, 8, 32, 64)]
    finally:
        proc.terminate()
        proc.wait(30)
    return rows, health


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--serve-args", default="", help="extra `imgclf serve` options")
    a = ap.parse_args()
    print(machine(), flush=True)
    run = Path(a.run) if a.run else train_run()
    body = photo()
    limit = forward_limit(run, body)
    print(json.dumps({"forward_images_per_s": limit}), flush=True)
    rows, health = serve(run, body, a.requests, shlex.split(a.serve_args))
    best = max(limit["onnx" if health["runtime"] == "onnx" else "eager"].values())
    keys = ("runtime", "max_batch", "max_wait_ms", "max_queue")
    print(json.dumps({"serve": {k: health[k] for k in keys}, "limit": best}), flush=True)
    for r in rows:
        print(json.dumps({**r, "ratio": r["req_per_s"] / best}), flush=True)


if __name__ == "__main__":
    main()
