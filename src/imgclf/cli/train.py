"""`imgclf train DATA`: one --option per RunConfig field; `--resume RUN` continues a killed run."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from imgclf.cli.options import add_config_options
from imgclf.config import RunConfig, build_config, coerce
from imgclf.messages import UsageError

# What a resumed run may change: how long and where it runs, not what it learns from or how.
# The world size may change too: --batch-size is the global batch, so the run learns the same.
# The data may move: the resumed run keeps its split.json, so it must find the same images there.
RESUME_MAY_CHANGE = ("epochs", "patience", "workers", "cache_dir", "device", "replicas", "data_dir")

PATH_OPTIONS = ("data_dir", "cache_dir", "exclude_list", "weights", "labels")


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    t = sub.add_parser("train", help="train a model; writes a run folder")
    t.add_argument("data_dir", nargs="?", default=None, help="image folder, zip, or cifar10")
    t.add_argument("--resume", default=None, metavar="RUN", help="continue a killed run")
    add_config_options(t)
    return t


def run(args: argparse.Namespace) -> int:
    import imgclf
    from imgclf import backends
    from imgclf.recipes import describe_recipe
    from imgclf.runs import with_run_dir

    cfg = config_from_args(args)
    backend = backends.get(cfg.backend)
    backend.check_config(cfg)  # before torchrun starts N copies that would each refuse it
    cfg = with_run_dir(cfg)  # (after: a refusal asks whether --out was given)
    status = backend.launch(cfg, args.argv)
    if status is not None:
        return status
    main = imgclf.rank() == 0
    if main and cfg.recipe != "none" and not args.resume:
        print(describe_recipe(cfg), flush=True)
    result = imgclf.train(cfg, resume=bool(args.resume), checked=True)
    if main:
        best = max((h["val_acc"] for h in result.history), default=float("nan"))
        print(f"done: best val accuracy {best:.2%}; run folder {result.run_dir}")
    return 0


def config_from_args(args: argparse.Namespace) -> RunConfig:
    keys = {f.name for f in dataclasses.fields(RunConfig)}
    given = {k: v for k, v in vars(args).items() if k in keys and v is not None}
    if args.resume:
        return resumed_config(args.resume, given, args.config)
    if not given.get("data_dir"):
        raise UsageError("train needs DATA (an image folder) or --resume RUN")
    return build_config(args.config, **absolute_paths(given))


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
    from imgclf.runs import RunDir

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
