"""The `imgclf` command line: argparse built from RunConfig, one --option per field.

Exit status: 0 success, 1 problems found or the command failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any

from imgclf import __version__
from imgclf.config import RunConfig, UsageError, build_config, coerce
from imgclf.exporter import FORMATS
from imgclf.runs import RunDir


def _metavar(f: dataclasses.Field) -> str:
    """N for counts, FLOAT for rates, PATH/NAME for strings (from the field's metadata)."""
    return {"int": "N", "float": "FLOAT"}.get(str(f.type), f.metadata.get("metavar") or "TEXT")


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """One --option per RunConfig field: one name per concept, from CLI to trainer."""
    for f in dataclasses.fields(RunConfig):
        if f.name == "data_dir":
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{f.metadata['help']} (default: {f.default!r})"
        if f.type in ("bool", bool):
            p.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_
            )
        else:
            p.add_argument(
                flag,
                dest=f.name,
                default=None,
                choices=f.metadata.get("choices"),
                help=help_,
                metavar=None if f.metadata.get("choices") else _metavar(f),
            )
    p.add_argument("--out", dest="out_dir", default=None, metavar="PATH", help="alias of --out-dir")
    p.add_argument(
        "--config", default=None, metavar="PATH", help="YAML file of RunConfig keys (below the CLI)"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imgclf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"imgclf {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    _add_run_commands(sub)
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser (its usage), with the nearest option
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        command = sub.choices[args.command]
        known = [o for a in command._actions for o in a.option_strings]
        close = difflib.get_close_matches(extra[0].split("=")[0], known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        command.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    args.argv = list(argv)  # `train --replicas N` hands the same command line to torchrun
    return args


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """audit, preview, train: commands that read an image folder."""
    a = sub.add_parser(
        "audit",
        help="decode every image and report problems",
        description="Exit status: 0 clean, 1 problems found, 2 usage error.",
    )
    a.add_argument("path", help="image folder (train/ test/ val/ of <class>/, or <class>/), or zip")
    a.add_argument("--json", metavar="PATH", default="", help="write the whole report as JSON here")
    a.add_argument(
        "--exclude-list", metavar="PATH", default="", help="write unreadable paths here (for train)"
    )
    a.add_argument(
        "--out",
        metavar="PATH",
        default="",
        help="folder for report, exclude list and histogram (default runs/audit-<folder name>)",
    )
    a.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=os.cpu_count() or 2,
        help="decoding processes (default: the CPU count)",
    )
    a.add_argument("--cache-dir", metavar="PATH", default="", help="where a zip is unpacked")
    a.add_argument(
        "--near-duplicates",
        action="store_true",
        help="also find re-encoded, resized, cropped, shifted or recoloured copies (hash + "
        "EfficientNet-Lite0 features); writes near_duplicate_leaks.png",
    )
    a.add_argument(
        "--exclude-leaks",
        action="store_true",
        help="add the test side of every cross-split duplicate group to the exclude list",
    )

    v = sub.add_parser("preview", help="save a batch grid and an augmentation grid as PNG")
    v.add_argument("path", help="image folder or zip")
    v.add_argument(
        "--out",
        metavar="PATH",
        default="",
        help="output folder (default runs/preview-<folder name>)",
    )
    v.add_argument(
        "--model", metavar="NAME", default="cnn", help="model whose image size/normalisation to use"
    )
    v.add_argument("--image-size", type=int, metavar="N", default=0, help="0 = the model's default")
    v.add_argument("--cache-dir", metavar="PATH", default="", help="where a zip is unpacked")

    t = sub.add_parser("train", help="train a model; writes a run folder")
    t.add_argument("data_dir", nargs="?", default=None, help="image folder, zip, or cifar10")
    t.add_argument("--resume", default=None, metavar="RUN", help="continue a killed run")
    _add_config_options(t)


DEVICE_HELP = "auto picks cuda, then mps, then cpu"
TOP_K_HELP = "classes listed per image"


def positive_int(text: str) -> int:
    """argparse type for counts of at least one: a bad value is a usage error naming the
    option."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


TTA_HELP = (
    "test-time augmentation: average with the mirror image (2x the model time); default: as the "
    "run was trained (--tta in its config, which --recipe sets)"
)


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    """evaluate, predict, compare, export, serve on run folders; models; demo."""
    e = sub.add_parser("evaluate", help="accuracy, per-class table, plots and HTML report")
    e.add_argument("run", help="run folder")
    e.add_argument("data", nargs="?", default="", help="other data (default: the run's)")
    e.add_argument(
        "--data",
        dest="data_opt",
        metavar="PATH",
        default="",
        help="the same as DATA: other data, or where the run's data has moved",
    )
    e.add_argument(
        "--split",
        default="test",
        choices=("test", "val", "train"),
        help="test (default) writes the run's own metrics and report; another split or other "
        "data writes into RUN/eval-<data>-<split>/",
    )
    e.add_argument("--device", metavar="NAME", default="auto", help=DEVICE_HELP)
    e.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help=TTA_HELP)

    r = sub.add_parser("predict", help="classify your own images")
    r.add_argument("run", help="run folder or checkpoint")
    r.add_argument("paths", nargs="+", help="files, folders or globs")
    r.add_argument("--csv", metavar="PATH", default="", help="write path,class,probability here")
    r.add_argument("--json", metavar="PATH", default="", help="write every row, top-k too")
    r.add_argument(
        "--grid", metavar="PATH", default="", help="PNG of the images captioned with their class"
    )
    r.add_argument("--top-k", type=positive_int, metavar="N", default=3, help=TOP_K_HELP)
    r.add_argument("--device", metavar="NAME", default="auto", help=DEVICE_HELP)
    r.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help=TTA_HELP)

    c = sub.add_parser("compare", help="table and bar chart over runs")
    c.add_argument("runs", nargs="+", help="run folders")
    c.add_argument("--plot", metavar="PATH", default="runs/compare.png", help="bar chart PNG")

    x = sub.add_parser(
        "export",
        help="ONNX/TorchScript (PyTorch) or .keras/SavedModel (Keras), verified after writing",
    )
    x.add_argument("run", help="run folder")
    x.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    x.add_argument("--out", metavar="PATH", default="", help="output folder (default RUN/export)")
    x.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier export in --out (in RUN/export it is always replaced, and said)",
    )

    _add_serve_command(sub)
    _add_cache_command(sub)
    _add_bench_command(sub)
    m = sub.add_parser("models", help="list registered models")
    m.add_argument(
        "--backend",
        default="torch",
        choices=("torch", "keras", "all"),
        help="whose models (keras and all load TensorFlow, which takes seconds)",
    )
    d = sub.add_parser("demo", help="audit, preview, train, evaluate, predict on sklearn digits")
    d.add_argument("--out", metavar="PATH", default="runs/demo", help="folder for it all")
    d.add_argument("--epochs", type=positive_int, metavar="N", default=8, help="of training")


def _add_serve_command(sub: argparse._SubParsersAction) -> None:
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
        help="decodes at a time (0: min(4, cores))",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        default=64,
        help="requests in flight, then 503 with Retry-After (/health is always answered)",
    )
    s.add_argument(
        "--header-timeout",
        type=float,
        metavar="SECONDS",
        default=10.0,
        help="a connection that sends no complete request headers in this time is closed",
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
    s.add_argument("--top-k", type=positive_int, metavar="N", default=3, help=TOP_K_HELP)
    s.add_argument("--device", metavar="NAME", default="auto", help=DEVICE_HELP)
    s.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help=TTA_HELP)


def _add_bench_command(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "bench",
        help="time every stage: decode, cache, augment, train step, epoch, eval, predict",
        description="PyTorch backend. Without DATA it writes its own photo-sized JPEGs.",
    )
    b.add_argument("data_dir", nargs="?", default="", metavar="DATA", help="image folder or zip")
    b.add_argument("--images", type=int, metavar="N", default=None, help="synthetic (default 500)")
    b.add_argument("--max-per-class", type=int, metavar="N", default=0, help="of DATA (0 = all)")
    b.add_argument("--model", metavar="NAME", default="cnn", help="model to time")
    b.add_argument("--device", metavar="NAME", default="auto", help=DEVICE_HELP)
    b.add_argument("--batch-size", type=positive_int, metavar="N", default=100, help="images")
    b.add_argument("--image-size", type=int, metavar="N", default=0, help="0 = the model's default")
    b.add_argument("--workers", type=int, metavar="N", default=2, help="cache-build processes")
    for flag, help_ in (
        ("amp", "bf16 autocast on CUDA (default on)"),
        ("cpu-bf16", "bf16 autocast on a CPU with native bf16 (default off)"),
        ("channels-last", "NHWC memory format (default on)"),
        ("compile", "torch.compile the train step (default off)"),
    ):
        b.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=None, help=help_)
    b.add_argument(
        "--decode-images", type=int, metavar="N", default=200, help="images the decode stage times"
    )
    b.add_argument("--steps", type=int, metavar="N", default=20, help="timed train steps")
    b.add_argument("--json", metavar="PATH", default="", help="write info and stages here")


def _add_cache_command(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser(
        "cache",
        help="list, prune or clear the decoded-image cache and unpacked archives",
        description="list: what is cached. prune: drop rows of changed or deleted files, compact, "
        "and remove what was unused for --older-than days. clear: remove all of it.",
    )
    k.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=("list", "prune", "clear"),
        help="default: list",
    )
    k.add_argument("--cache-dir", metavar="PATH", default="", help="default ~/.cache/imgclf")
    k.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        default=30.0,
        help="prune: remove stores unused this long",
    )


# What a resumed run may change: how long and where it runs, not what it learns from or how.
# The world size may change too: --batch-size is the global batch, so the run learns the same.
# The data may move: the resumed run keeps its split.json, so it must find the same images there.
RESUME_MAY_CHANGE = ("epochs", "patience", "workers", "cache_dir", "device", "replicas", "data_dir")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    keys = {f.name for f in dataclasses.fields(RunConfig)}
    given = {k: v for k, v in vars(args).items() if k in keys and v is not None}
    if args.resume:
        return resumed_config(args.resume, given, args.config)
    if not given.get("data_dir"):
        raise UsageError("train needs DATA (an image folder) or --resume RUN")
    return build_config(args.config, **absolute_paths(given))


PATH_OPTIONS = ("data_dir", "cache_dir", "exclude_list", "weights")


def absolute_paths(given: dict[str, Any]) -> dict[str, Any]:
    """A run records its input paths absolute, so evaluate, predict and --resume work from any
    working directory ('cifar10', a name rather than a path, stays as it is)."""
    out = dict(given)
    for k in PATH_OPTIONS:
        if out.get(k) and (k != "data_dir" or os.path.exists(out[k])):
            out[k] = os.path.abspath(out[k])
    return out


def resumed_config(run: str, given: dict[str, Any], yaml_path: str | None) -> RunConfig:
    """The run's own config with the options a resume may change applied; any other option that
    differs from the run's is refused by name rather than ignored."""
    if yaml_path:
        raise UsageError("--config cannot be combined with --resume (the run has its config)")
    cfg = RunDir(run).read_config()
    changes = {k: coerce(k, v) for k, v in absolute_paths(given).items() if k != "out_dir"}
    refused = [k for k, v in changes.items() if k not in RESUME_MAY_CHANGE and v != getattr(cfg, k)]
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUME_MAY_CHANGE)
        raise UsageError(f"--resume {run}: {flags} would change the run; only {allowed} may")
    keep = {k: v for k, v in changes.items() if k in RESUME_MAY_CHANGE}
    return cfg.replace(**keep, out_dir=run)


def default_out(prefix: str, path: str) -> Path:
    return Path("runs") / f"{prefix}-{Path(path).resolve().name}"
