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
from imgclf.cli.run_parsers import add_label_from_name, add_label_options, add_run_commands
from imgclf.config import RunConfig, UsageError, build_config, coerce
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
        if f.name == "label_from_name":  # a flag with an optional value: DATA goes first
            add_label_from_name(p, help_)
        elif f.type in ("bool", bool):
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
    add_run_commands(sub)
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
    _add_audit_command(sub)
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
    add_label_options(v)

    t = sub.add_parser("train", help="train a model; writes a run folder")
    t.add_argument("data_dir", nargs="?", default=None, help="image folder, zip, or cifar10")
    t.add_argument("--resume", default=None, metavar="RUN", help="continue a killed run")
    _add_config_options(t)


def _add_audit_command(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser(
        "audit",
        help="decode every image and report problems",
        description="Exit status: 0 clean, 1 problems found, 2 usage error. Label issues and "
        "outliers (--label-issues) are suspects for a person to look at, not problems: they "
        "never change the exit status.",
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
    _add_audit_finders(a)
    add_label_options(a)


def _add_audit_finders(a: argparse.ArgumentParser) -> None:
    """The optional passes over features (near-duplicates, label issues) and their exclusions."""
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
    a.add_argument(
        "--label-issues",
        action="store_true",
        help="also find suspect labels (confident learning on 5-fold out-of-sample probabilities "
        "of a linear head on EfficientNet-Lite features) and outliers; writes label_issues.png "
        "and outliers.png. Suspects are listed but do not change the exit status",
    )
    a.add_argument(
        "--exclude-issues",
        action="store_true",
        help="add every suspect label and outlier to the exclude list (needs --label-issues)",
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


PATH_OPTIONS = ("data_dir", "cache_dir", "exclude_list", "weights", "labels")


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
