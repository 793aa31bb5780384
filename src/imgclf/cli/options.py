"""Options and argparse types that several commands share, written once."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from imgclf.config import RunConfig

TTA_HELP = (
    "test-time augmentation: average with the mirror image (2x the model time); default: as the "
    "run was trained (--tta in its config, which --recipe sets)"
)


def positive_int(text: str) -> int:
    """argparse type for counts of at least one: a bad value is a usage error naming the
    option."""
    return _at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type for counts where 0 means "choose for me"."""
    return _at_least(text, 0)


def _at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def probability(text: str) -> float:
    """argparse type for --abstain P: strictly between 0 and 1."""
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < p < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability between 0 and 1")
    return p


def default_out(prefix: str, path: str) -> Path:
    """runs/<prefix>-<folder name>: where audit and preview write when --out is not given."""
    return Path("runs") / f"{prefix}-{Path(path).resolve().name}"


def _metavar(f: dataclasses.Field) -> str:
    """N for counts, FLOAT for rates, PATH/NAME for strings (from the field's metadata)."""
    return {"int": "N", "float": "FLOAT"}.get(str(f.type), f.metadata.get("metavar") or "TEXT")


def add_config_options(p: argparse.ArgumentParser) -> None:
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


def add_label_from_name(p: argparse.ArgumentParser, help_: str) -> None:
    from imgclf.data.label_sources import DEFAULT_NAME_PATTERN

    p.add_argument(
        "--label-from-name",
        dest="label_from_name",
        nargs="?",
        const=DEFAULT_NAME_PATTERN,
        default=None,
        metavar="REGEX",
        help=help_,
    )


def add_label_options(p: argparse.ArgumentParser) -> None:
    """Where the labels are, for commands that read data outside a run (train has them as
    RunConfig options; evaluate, for other data)."""
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    add_label_from_name(p, fields["label_from_name"].metadata["help"])
    for name in ("labels", "path_column", "label_column", "label_delim", "corrections"):
        f = fields[name]
        p.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default="",
            metavar=f.metadata["metavar"],
            help=f.metadata["help"],
        )


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", metavar="NAME", default="auto", help="auto picks cuda, then mps, then cpu"
    )


def add_inference_options(p: argparse.ArgumentParser, top_k: bool = True) -> None:
    """--top-k, --device, --tta and --calibration: the same for evaluate, predict and serve."""
    if top_k:
        p.add_argument(
            "--top-k", type=positive_int, metavar="N", default=3, help="classes listed per image"
        )
    add_device(p)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help=TTA_HELP)
    p.add_argument(
        "--calibration",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="apply the temperature the run fitted on its validation split (calibration.json) "
        "so that confidences match accuracy; --no-calibration: the model's own probabilities",
    )
