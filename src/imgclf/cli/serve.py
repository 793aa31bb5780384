"""`imgclf serve RUN`: the REST API and web page under uvicorn. Every default is ServeConfig's
(serve/config.py); the options build one ServeConfig, checked before the model loads."""

from __future__ import annotations

import argparse

from imgclf.cli.options import add_inference_options, non_negative_int, positive_int
from imgclf.serve.config import HTTP_PARSERS, RUNTIMES, ServeConfig, default

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    s = sub.add_parser("serve", help="REST API + web page: drop a photo, see its class")
    s.add_argument("run", help="run folder")
    s.add_argument(
        "--host", metavar="HOST", default=default("host"), help="0.0.0.0 exposes it to the network"
    )
    s.add_argument("--port", type=int, metavar="N", default=default("port"), help="TCP port")
    s.add_argument(
        "--max-upload-mb",
        type=float,
        metavar="FLOAT",
        default=default("max_upload_mb"),
        help="larger bodies: 413",
    )
    s.add_argument(
        "--max-megapixels",
        type=float,
        metavar="FLOAT",
        default=default("max_megapixels"),
        help="larger images are refused from their header, before decoding",
    )
    s.add_argument(
        "--max-decodes",
        type=int,
        metavar="N",
        default=default("max_decodes"),
        help="batcher workers: decodes at a time, and onnxruntime calls at once, each on its "
        "share of the cores (0: cores + 1, at most 4)",
    )
    _add_connection_options(s)
    _add_batching_options(s)
    add_inference_options(s)
    return s


def _add_connection_options(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        default=default("max_connections"),
        help="requests in flight, then 503 with Retry-After (/health is always answered)",
    )
    s.add_argument(
        "--upload-timeout",
        type=float,
        metavar="SECONDS",
        default=default("upload_timeout"),
        help="for a body; then 408",
    )
    s.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        default=None,
        help="Host header to accept (repeatable; default: localhost names, or any with 0.0.0.0)",
    )
    s.add_argument(
        "--header-timeout",
        type=float,
        metavar="SECONDS",
        default=default("header_timeout"),
        help="a connection that sends no complete request headers in this time is closed",
    )
    s.add_argument(
        "--http",
        choices=HTTP_PARSERS,
        default=default("http"),
        help="HTTP parser: httptools (C, faster) or h11 (pure Python); auto: httptools when "
        "installed. Both close idle and slow sockets (--header-timeout)",
    )


def _add_batching_options(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--max-batch",
        type=non_negative_int,
        metavar="N",
        default=default("max_batch"),
        help="images per model call at most (dynamic batching); 0: 2 in onnxruntime, 4 in "
        "PyTorch or Keras on the CPU, 32 on a GPU (chosen by benchmarks/bench_serve.py)",
    )
    s.add_argument(
        "--max-wait-ms",
        type=float,
        metavar="MS",
        default=default("max_wait_ms"),
        help="after a batch's first request, wait this long at most for uploads still "
        "arriving (queued ones join at once)",
    )
    s.add_argument(
        "--max-queue",
        type=positive_int,
        metavar="N",
        default=default("max_queue"),
        help="images waiting for the model; past it 503 with Retry-After at once",
    )
    s.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=default("runtime"),
        help="eager: the run's framework; onnx: its ONNX export in onnxruntime (exported when "
        "missing); auto: onnx for a PyTorch run on the CPU (faster here), else eager",
    )
    s.add_argument(
        "--drain-timeout",
        type=float,
        metavar="SECONDS",
        default=default("drain_timeout"),
        help="on SIGTERM or Ctrl-C: stop accepting, answer requests in flight for this long, exit",
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
