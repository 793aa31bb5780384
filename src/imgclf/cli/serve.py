"""`imgclf serve RUN`: the REST API and web page under uvicorn. Every default is ServeConfig's
(serve/config.py); the options build one ServeConfig, checked before the model loads."""

from __future__ import annotations

import argparse
from typing import Any

from imgclf.cli.options import add_inference_options, non_negative_int, positive_int, probability
from imgclf.serve.config import HTTP_PARSERS, RUNTIMES, ServeConfig, default

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    s = sub.add_parser("serve", help="REST API + web page: drop a photo, see its class")
    s.add_argument("run", help="run folder")
    _option(s, "--host", "0.0.0.0 exposes it to the network", metavar="HOST")
    _option(s, "--port", "TCP port", type=int, metavar="N")
    _option(s, "--max-upload-mb", "larger bodies: 413", type=float, metavar="FLOAT")
    _option(
        s,
        "--max-megapixels",
        "larger images are refused from their header, before decoding",
        type=float,
        metavar="FLOAT",
    )
    _option(
        s,
        "--max-decodes",
        "batcher workers: decodes at a time, and onnxruntime calls at once, each on its share "
        "of the cores (0: cores + 1, at most 4)",
        type=int,
        metavar="N",
    )
    _option(
        s,
        "--model-name",
        "the model's name in the Open Inference Protocol's /v2/models/NAME (default: the run "
        "folder's name)",
        metavar="NAME",
    )
    _option(
        s,
        "--max-request-images",
        "images in one /v2 infer request at most; more: 400",
        type=positive_int,
        metavar="N",
    )
    _option(
        s,
        "--abstain",
        "answers whose top probability (calibrated) is under P say abstained: true, for a "
        "person to take over (the class stays the model's guess); `imgclf evaluate` says what "
        "each P costs and buys",
        type=probability,
        metavar="P",
    )
    _add_connection_options(s)
    _add_batching_options(s)
    add_inference_options(s)
    return s


def _option(p: argparse.ArgumentParser, flag: str, help_: str, **kw: Any) -> None:
    """An option whose default is the ServeConfig field of its name (one place for each)."""
    p.add_argument(flag, default=default(flag[2:].replace("-", "_")), help=help_, **kw)


def _add_connection_options(s: argparse.ArgumentParser) -> None:
    _option(
        s,
        "--max-connections",
        "requests in flight, then 503 with Retry-After (/health is always answered)",
        type=int,
        metavar="N",
    )
    _option(s, "--upload-timeout", "for a body; then 408", type=float, metavar="SECONDS")
    s.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        default=None,
        help="Host header to accept (repeatable; default: localhost names, or any with 0.0.0.0)",
    )
    _option(
        s,
        "--header-timeout",
        "a connection that sends no complete request headers in this time is closed",
        type=float,
        metavar="SECONDS",
    )
    _option(
        s,
        "--http",
        "HTTP parser: httptools (C, faster) or h11 (pure Python); auto: httptools when "
        "installed. Both close idle and slow sockets (--header-timeout)",
        choices=HTTP_PARSERS,
    )


def _add_batching_options(s: argparse.ArgumentParser) -> None:
    _option(
        s,
        "--max-batch",
        "images per model call at most (dynamic batching); 0: 2 in onnxruntime, 4 in PyTorch "
        "or Keras on the CPU, 32 on a GPU (chosen by benchmarks/bench_serve.py)",
        type=non_negative_int,
        metavar="N",
    )
    _option(
        s,
        "--max-wait-ms",
        "after a batch's first request, wait this long at most for uploads still arriving "
        "(queued ones join at once)",
        type=float,
        metavar="MS",
    )
    _option(
        s,
        "--max-queue",
        "images waiting for the model; past it 503 with Retry-After at once",
        type=positive_int,
        metavar="N",
    )
    _option(
        s,
        "--runtime",
        "eager: the run's framework; onnx: its ONNX export in onnxruntime (exported when "
        "missing); onnx-int8: that model quantized to int8 and checked (imgclf export --int8, "
        "made when missing); auto: onnx for a PyTorch run on the CPU (faster here), else eager",
        choices=RUNTIMES,
    )
    _option(
        s,
        "--drain-timeout",
        "on SIGTERM or Ctrl-C: stop accepting, answer requests in flight for this long, exit",
        type=float,
        metavar="SECONDS",
    )


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """The options as one ServeConfig (its checks refuse bad values by flag name)."""
    names = ServeConfig.__dataclass_fields__
    given = {k: v for k, v in vars(args).items() if k in names and k != "allowed_hosts"}
    return ServeConfig(**given, allowed_hosts=_allowed_hosts(args))


def _allowed_hosts(args: argparse.Namespace) -> tuple[str, ...] | None:
    """--allowed-host, or: loopback names (None) on loopback, any name when exposed."""
    if args.allowed_host is not None:
        return tuple(args.allowed_host)
    if args.host in LOOPBACK:
        return None
    print("note: any Host header is accepted; --allowed-host NAME restricts it", flush=True)
    return ("*",)


def run(args: argparse.Namespace) -> int:
    import gc
    import signal

    import uvicorn

    from imgclf.serve.app import create_app
    from imgclf.serve.protocol import guarded_protocol

    cfg = serve_config(args)
    # uvicorn's protocol class with the connection guards; a parser that is not installed is
    # refused here, before the model loads
    protocol = guarded_protocol(cfg.header_timeout, max(1024, 16 * cfg.max_connections), cfg.http)
    app = create_app(cfg)
    app.state.info["http"] = protocol.parser
    # the ~200k objects of the libraries and the model, loaded once, leave the garbage
    # collector's sight: a full collection over them held every thread for 105 ms (p99 of a
    # lone client: 60 ms; frozen: 16 ms, measured)
    gc.freeze()
    print(f"serving {cfg.run} on http://{cfg.host}:{cfg.port}/ (API docs at /docs)", flush=True)
    # SIGTERM or Ctrl-C: uvicorn stops accepting, lets requests in flight finish for up to
    # --drain-timeout seconds, then the app's shutdown answers what is still queued. uvicorn
    # raises the SIGTERM again once drained; taking it here makes a drained stop exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level="warning",
        # idle and slow sockets are closed by the protocol's header deadline; the app limits
        # requests in flight (uvicorn's limit_concurrency would count idle sockets too)
        http=protocol,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=cfg.drain_timeout,
    )
    return 0
