"""Loopback load test of `imgclf serve`: N requests, C at a time, p50/p99 latency and errors.

python benchmarks/bench_serve.py RUN [--requests 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from common import machine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "imgclf"
    proc = subprocess.Popen([str(exe), "serve", a.run, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.25)
        buf = io.BytesIO()
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), np.uint8)).save(buf, "JPEG")
        body = buf.getvalue()  # a Kaggle-sized 500x375 JPEG
        client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=a.concurrency))

        def one(_: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            code = client.post(url + "/predict", content=body).status_code
            return code, time.perf_counter() - t0

        one(0)  # warm-up
        t0 = time.perf_counter()
        with ThreadPoolExecutor(a.concurrency) as pool:
            res = list(pool.map(one, range(a.requests)))
        wall = time.perf_counter() - t0
        lat = np.array([t for _, t in res]) * 1000
        errors = sum(c != 200 for c, _ in res)
        print(machine())
        print(
            f"{a.requests} requests, {a.concurrency} at a time, {len(body):,}-byte JPEG: "
            f"p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, "
            f"{a.requests / wall:.1f} req/s, errors {errors}"
        )
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
