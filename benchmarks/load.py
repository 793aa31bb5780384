"""HTTP load for bench_serve.py: `clients` keep-alive connections, each posting the same JPEG
as soon as its previous answer came, for a fixed time after a warm-up. Two generators with the
same output: wrk (C, Debian's `wrk`) and the standard library's http.client in threads."""

from __future__ import annotations

import http.client
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

WARM_UP_S = 2.0
SCRIPT = """
local f = io.open("{body}", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
"""


def wrk_load(url: str, body: bytes, clients: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "photo.jpg").write_bytes(body)
        lua = Path(tmp) / "post.lua"
        lua.write_text(SCRIPT.format(body=Path(tmp) / "photo.jpg"))

        def wrk(secs: float) -> str:
            cmd = ["wrk", "-t1", f"-c{clients}", f"-d{secs:g}s", "--latency", "-s", str(lua)]
            out = subprocess.run(
                [*cmd, url + "/predict"], capture_output=True, text=True, check=True
            ).stdout
            # wrk leaves its last requests unanswered: let the server finish them before the
            # next run's connections count against its limit on requests in flight
            time.sleep(1.0)
            return out

        wrk(WARM_UP_S)
        out = wrk(seconds)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    errors = int(bad.group(1) if bad else 0) + sum(map(int, sock.groups() if sock else ()))
    secs = float(done.group(2)) * (1e-3 if done.group(3) == "ms" else 1.0)
    return {
        "client": "wrk",
        "clients": clients,
        "req_per_s": (int(done.group(1)) - errors) / secs,  # answered with 200
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        "errors": errors,
    }


def _ms(text: str) -> float:
    """wrk's durations: 812.00us, 7.61ms, 1.02s."""
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def python_load(url: str, body: bytes, clients: int, seconds: float) -> dict:
    host, port = url.removeprefix("http://").split(":")

    def client(stop: float, out: list) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/predict", body, {"Content-Type": "image/jpeg"})
                resp = conn.getresponse()
                resp.read()
                code = resp.status
            except (OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection(host, int(port), timeout=120)
                code = -1
            out.append((code, time.perf_counter() - t0))

    def run(secs: float) -> tuple[list, float]:
        out: list = []
        stop, t0 = time.perf_counter() + secs, time.perf_counter()
        threads = [threading.Thread(target=client, args=(stop, out)) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out, time.perf_counter() - t0

    run(WARM_UP_S)
    res, wall = run(seconds)
    lat = np.array([t for _, t in res]) * 1000
    return {
        "client": "python",
        "clients": clients,
        "req_per_s": sum(c == 200 for c, _ in res) / wall,  # answered with 200
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": sum(c != 200 for c, _ in res),
    }
