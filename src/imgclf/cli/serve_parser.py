"""The `imgclf serve` parser: limits on uploads and connections, dynamic batching, runtime."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from imgclf.cli.arg_types import non_negative_int, positive_int

# chosen from benchmarks/bench_serve.py's numbers (RESULTS.md): a wait that costs a few per
# cent of one batch's compute (the batch size itself depends on the device: serve/runtime.py)
MAX_WAIT_MS = 5.0


def add_serve_command(sub: argparse._SubParsersAction, inference_options: Callable) -> None:
    s = sub.add_parser("serve", help="REST API + web page: drop a photo, see its class")
    s.add_argument("run", help="run folder")
    s.add_argument(
        "--host", metavar="HOST", default="127.0.0.1", help="0.0.0.0 exposes it to the network"
    )
    s.add_argument("--port", type=int, metavar="N", default=8000, help="TCP port")
    s.add_argument(
        "--max-upload-mb", type=float, metavar="FLOAT", default=10.0, help="larger bodies: 413"
    )
    s.add_argument(
        "--max-megapixels",
        type=float,
        metavar="FLOAT",
        default=40.0,
        help="larger images are refused from their header, before decoding",
    )
    s.add_argument(
        "--max-decodes",
        type=int,
        metavar="N",
        default=0,
        help="batcher workers: decodes at a time, and onnxruntime calls at once, each on its "
        "share of the cores (0: cores + 1, at most 4)",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        default=64,
        help="requests in flight, then 503 with Retry-After (/health is always answered)",
    )
    s.add_argument(
        "--upload-timeout", type=float, metavar="SECONDS", default=30.0, help="for a body; then 408"
    )
    s.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        default=None,
        help="Host header to accept (repeatable; default: localhost names, or any with 0.0.0.0)",
    )
    _add_connection_options(s)
    _add_batching_options(s)
    inference_options(s)


def _add_connection_options(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--header-timeout",
        type=float,
        metavar="SECONDS",
        default=10.0,
        help="a connection that sends no complete request headers in this time is closed",
    )
    s.add_argument(
        "--http",
        choices=("auto", "httptools", "h11"),
        default="auto",
        help="HTTP parser: httptools (C, faster) or h11 (pure Python); auto: httptools when "
        "installed. Both close idle and slow sockets (--header-timeout)",
    )


def _add_batching_options(s: argparse.ArgumentParser) -> None:
    from imgclf.serve.runtime import RUNTIMES

    s.add_argument(
        "--max-batch",
        type=non_negative_int,
        metavar="N",
        default=0,
        help="images per model call at most (dynamic batching); 0: 2 in onnxruntime, 4 in "
        "PyTorch or Keras on the CPU, 32 on a GPU (chosen by benchmarks/bench_serve.py)",
    )
    s.add_argument(
        "--max-wait-ms",
        type=float,
        metavar="MS",
        default=MAX_WAIT_MS,
        help="after a batch's first request, wait this long at most for uploads still "
        "arriving (queued ones join at once)",
    )
    s.add_argument(
        "--max-queue",
        type=positive_int,
        metavar="N",
        default=256,
        help="images waiting for the model; past it 503 with Retry-After at once",
    )
    s.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="eager: the run's framework; onnx: its ONNX export in onnxruntime (exported when "
        "missing); auto: onnx for a PyTorch run on the CPU (faster here), else eager",
    )
    s.add_argument(
        "--drain-timeout",
        type=float,
        metavar="SECONDS",
        default=30.0,
        help="on SIGTERM or Ctrl-C: stop accepting, answer requests in flight for this long, exit",
    )
