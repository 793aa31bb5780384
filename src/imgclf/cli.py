"""The `imgclf` command: a thin argparse layer over the Python API.

Exit status: 0 success, 1 problems found or the command failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from imgclf.config import RunConfig, build_config, load_run_config

# glibc's malloc hands freed image buffers back to the OS and faults them in again each batch
# (~40 % of CPU time measured here); keeping them must be set before the process starts.
TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"
HEAVY = {"train", "evaluate", "bench", "demo", "preview"}


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
                metavar=None if f.metadata.get("choices") else "VALUE",
            )
    p.add_argument("--out", dest="out_dir", default=None, help="alias of --out-dir")
    p.add_argument("--config", default=None, help="YAML file of RunConfig keys (below the CLI)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imgclf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser(
        "audit",
        help="decode every image and report problems",
        description="Exit status: 0 clean, 1 problems found, 2 usage error.",
    )
    a.add_argument("path", help="image folder (train/ test/ val/ of <class>/, or <class>/), or zip")
    a.add_argument("--json", default="", help="write the whole report as JSON here")
    a.add_argument("--exclude-list", default="", help="write unreadable paths here (for train)")
    a.add_argument(
        "--out",
        default="",
        help="folder for report, exclude list and histogram (default runs/audit-<folder name>)",
    )
    a.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    a.add_argument("--cache-dir", default="", help="where a zip is unpacked")

    v = sub.add_parser("preview", help="save a batch grid and an augmentation grid as PNG")
    v.add_argument("path")
    v.add_argument("--out", default="", help="output folder (default runs/preview-<folder name>)")
    v.add_argument("--model", default="cnn", help="model whose image size/normalisation to use")
    v.add_argument("--image-size", type=int, default=0)
    v.add_argument("--cache-dir", default="")

    t = sub.add_parser("train", help="train a model; writes a run folder")
    t.add_argument("data_dir", nargs="?", default=None, help="image folder, zip, or cifar10")
    t.add_argument("--resume", default=None, metavar="RUN", help="continue a killed run")
    _add_config_options(t)

    e = sub.add_parser("evaluate", help="accuracy, per-class table, plots and HTML report")
    e.add_argument("run")
    e.add_argument("data", nargs="?", default="", help="other data (default: the run's)")
    e.add_argument("--split", default="test", choices=("test", "val", "train"))
    e.add_argument("--device", default="auto")

    r = sub.add_parser("predict", help="classify your own images")
    r.add_argument("run", help="run folder or checkpoint")
    r.add_argument("paths", nargs="+", help="files, folders or globs")
    r.add_argument("--csv", default="")
    r.add_argument("--json", default="")
    r.add_argument("--grid", default="", help="PNG of the images captioned with their class")
    r.add_argument("--top-k", type=int, default=3)
    r.add_argument("--device", default="auto")

    c = sub.add_parser("compare", help="table and bar chart over runs")
    c.add_argument("runs", nargs="+")
    c.add_argument("--plot", default="runs/compare.png")

    x = sub.add_parser(
        "export",
        help="ONNX/TorchScript (PyTorch) or .keras/SavedModel (Keras), verified after writing",
    )
    x.add_argument("run")
    x.add_argument(
        "--format", required=True, choices=("onnx", "torchscript", "keras", "savedmodel")
    )
    x.add_argument("--out", default="", help="output folder (default RUN/export)")

    s = sub.add_parser("serve", help="REST API + web page: drop a photo, see its class")
    s.add_argument("run")
    s.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes it to the network")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-upload-mb", type=float, default=10.0)
    s.add_argument("--top-k", type=int, default=3)
    s.add_argument("--device", default="auto")

    sub.add_parser("models", help="list registered models")
    d = sub.add_parser("demo", help="audit, preview, train, evaluate, predict on sklearn digits")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--epochs", type=int, default=8)
    return p


def _reexec_with_tunables(argv: list[str]) -> None:
    if (
        sys.platform != "linux"
        or os.environ.get("GLIBC_TUNABLES")
        or os.environ.get("IMGCLF_NO_REEXEC")
        or not argv
        or argv[0] not in HEAVY
    ):
        return
    env = {**os.environ, "GLIBC_TUNABLES": TUNABLES, "IMGCLF_NO_REEXEC": "1"}
    os.execve(sys.executable, [sys.executable, "-m", "imgclf", *argv], env)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault(
        "KERAS_BACKEND", "tensorflow"
    )  # once, before anything imports keras  # TensorBoard imports TensorFlow if present
    if argv is None:  # a real process start (console script / python -m), not a library call
        argv = sys.argv[1:]
        _reexec_with_tunables(argv)
    args = build_parser().parse_args(argv)
    from imgclf import commands

    try:
        return getattr(commands, f"cmd_{args.command}")(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"imgclf {args.command}: error: {msg}", file=sys.stderr)
        return 1


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if args.resume:
        return load_run_config(args.resume).replace(out_dir=args.resume)
    keys = {f.name for f in dataclasses.fields(RunConfig)}
    given = {k: v for k, v in vars(args).items() if k in keys and v is not None}
    if not given.get("data_dir"):
        raise ValueError("train needs DATA (an image folder) or --resume RUN")
    return build_config(args.config, **given)


def default_out(prefix: str, path: str) -> Path:
    return Path("runs") / f"{prefix}-{Path(path).resolve().name}"


if __name__ == "__main__":
    sys.exit(main())
