"""`imgclf serve` against the model's own limit, in one run (issue 27).

1. The limit: the model's forward pass alone on resident decoded batches, images/s at batch
   1 .. 64: PyTorch eager (one call at a time, as the server runs it), and onnxruntime, float32
   and int8 (what `--runtime onnx` and `onnx-int8` serve), both as one call on every core and as
   one single-threaded call per core side by side (how the server runs it on the CPU). The
   limit is the best of the ways of the runtime served.
2. The ceiling without HTTP: the server's workers' own job (decode the JPEG, run the model,
   batch by batch) in the same threads, with no request parsing: what HTTP leaves on the table.
3. The server (`imgclf serve RUN`, defaults unless --serve-args) at 1, 8, 32 and 64 concurrent
   clients posting a real 500 x 375 JPEG (a CATS_DOGS photo): requests/s, p50/p99, errors, and
   the ratio to the limit. The load comes from wrk (Debian's `wrk`, written in C: the load
   shares the 2 cores with the server, and 32 Python client threads cost them ~4 %) when it is
   installed, else from the standard library's http.client in threads (--client python).

    python benchmarks/bench_serve.py [--run RUN] [--seconds 10] [--serve-args "..."]
                                     [--before SRC]

--before SRC (the src/ folder of another checkout, e.g. a `git worktree` of an older commit)
also serves the run with that code, under the same load in the same run.

Without --run it trains a frozen EfficientNet-Lite0 on CATS_DOGS (as bench_explain.py does).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from common import CATS_DOGS, machine
from load import python_load, wrk_load

BATCHES = (1, 2, 4, 8, 16, 32, 64)
CLIENTS = (1, 8, 32, 64)


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


def side_by_side(work, streams: int, seconds: float = 2.0) -> float:  # noqa: ANN001
    """Items/s of `streams` threads each calling work() (-> items done) for `seconds`."""
    work()  # warm-up
    counts, stop = [0] * streams, time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < stop:
            counts[i] += work()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def forward_limit(run: Path, body: bytes) -> dict[str, dict[int, float]]:
    """images/s of the bare model per batch size, resident uint8 input, each way it can run."""
    from imgclf.onnx_runtime import OnnxPredictor, onnx_model
    from imgclf.predictor import load_predictor
    from imgclf.quantize import int8_model
    from imgclf.runs import RunDir
    from imgclf.serve.uploads import decode_upload

    cores = os.cpu_count() or 1
    eager = load_predictor(run, "cpu", tta=False, calibrated=False)
    ways: dict[str, tuple] = {"eager": (eager, 1)}
    for name, path in (("onnx", onnx_model(RunDir(run))), ("onnx-int8", int8_model(RunDir(run)))):
        ways[f"{name}, 1 call on all cores"] = (OnnxPredictor(path, eager.meta), 1)
        ways[f"{name}, {cores} calls of 1 thread"] = (OnnxPredictor(path, eager.meta, 1), cores)
    img = decode_upload(body, eager.pre.size)
    out: dict[str, dict[int, float]] = {}
    for name, (p, streams) in ways.items():
        out[name] = {}
        for b in BATCHES:
            x = np.stack([img] * b)
            out[name][b] = side_by_side(lambda p=p, x=x, b=b: (p.predict_proba(x), b)[1], streams)
    return out


def ceiling(run: Path, body: bytes, health: dict) -> float:
    """Requests/s of the server's workers' own job, without HTTP: each of `workers` threads
    decodes a batch of the photo and runs the model on it (as serve/batching.py does)."""
    from imgclf.serve.runtime import serving_predictor
    from imgclf.serve.uploads import decode_upload

    workers, batch = health["workers"], health["max_batch"]
    p, _ = serving_predictor(run, health["runtime"], "cpu", None, True, workers)

    def job() -> int:
        p.predict_proba(np.stack([decode_upload(body, p.pre.size) for _ in range(batch)]))
        return batch

    return side_by_side(job, workers, seconds=5.0)


def start(
    run: Path, extra: list[str], src: Path | None = None
) -> tuple[subprocess.Popen, str, dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "imgclf"
    env = {**os.environ, **({"PYTHONPATH": str(src)} if src else {})}
    proc = subprocess.Popen([str(exe), "serve", str(run), "--port", str(port), *extra], env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            return proc, url, httpx.get(url + "/health", timeout=1).json()
        except httpx.TransportError:
            time.sleep(0.25)
    proc.kill()
    raise RuntimeError("the server did not start")


def serve(
    run: Path, body: bytes, extra: list[str], seconds: float, wrk: bool, src: Path | None = None
) -> tuple[dict, list[dict]]:
    """(/health, a row of numbers per client count) of one server under load."""
    proc, url, health = start(run, extra, src)
    try:
        return health, [(wrk_load if wrk else python_load)(url, body, c, seconds) for c in CLIENTS]
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="")
    ap.add_argument("--seconds", type=float, default=10.0, help="of load per client count")
    ap.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--serve-args", default="", help="extra `imgclf serve` options")
    ap.add_argument("--before", type=Path, help="src/ of the code to compare against")
    a = ap.parse_args()
    print(machine(), flush=True)
    run = Path(a.run) if a.run else train_run()
    body = photo()
    limits = forward_limit(run, body)
    print(json.dumps({"forward_images_per_s": limits}), flush=True)
    wrk = a.client == "wrk" or (a.client == "auto" and shutil.which("wrk"))
    health, rows = serve(run, body, shlex.split(a.serve_args), a.seconds, wrk)
    if a.before:
        old_health, old_rows = serve(run, body, [], a.seconds, wrk, a.before.resolve())
        rows += [{**r, "code": "before", "max_batch": old_health["max_batch"]} for r in old_rows]
    runtime = health["runtime"] if health["runtime"].startswith("onnx") else "eager"
    best = max(v for k, per in limits.items() if k.split(",")[0] == runtime for v in per.values())
    keys = ("runtime", "http", "workers", "max_batch", "max_wait_ms", "max_queue")
    top = ceiling(run, body, health) if runtime != "eager" and "workers" in health else None
    print(json.dumps({"serve": {k: health.get(k) for k in keys}, "limit": best}), flush=True)
    print(json.dumps({"ceiling_without_http": top, "ratio": top and top / best}), flush=True)
    for r in rows:
        print(json.dumps({**r, "ratio": r["req_per_s"] / best}), flush=True)


if __name__ == "__main__":
    main()
