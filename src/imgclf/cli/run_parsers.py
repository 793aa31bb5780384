"""The parsers of the commands on run folders (evaluate, predict, compare, export, serve) and of
cache, bench, models and demo; parser.py builds the top level and the data commands."""

from __future__ import annotations

import argparse
import dataclasses

from imgclf.cli.arg_types import positive_int
from imgclf.cli.serve_parser import add_serve_command
from imgclf.exporter import FORMATS

TTA_HELP = (
    "test-time augmentation: average with the mirror image (2x the model time); default: as the "
    "run was trained (--tta in its config, which --recipe sets)"
)


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    """evaluate, predict, compare, export, serve on run folders; cache, bench, models, demo."""
    _add_evaluate_predict(sub)
    _add_compare_export(sub)
    add_serve_command(sub, _add_inference_options)
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


def add_label_from_name(p: argparse.ArgumentParser, help_: str) -> None:
    from imgclf.data.labels import DEFAULT_NAME_PATTERN

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
    from imgclf.config import RunConfig

    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    add_label_from_name(p, fields["label_from_name"].metadata["help"])
    for name in ("labels", "path_column", "label_column"):
        f = fields[name]
        p.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default="",
            metavar=f.metadata["metavar"],
            help=f.metadata["help"],
        )


def _add_inference_options(p: argparse.ArgumentParser, top_k: bool = True) -> None:
    """--top-k, --device, --tta and --calibration: the same for evaluate, predict and serve."""
    if top_k:
        p.add_argument(
            "--top-k", type=positive_int, metavar="N", default=3, help="classes listed per image"
        )
    p.add_argument(
        "--device", metavar="NAME", default="auto", help="auto picks cuda, then mps, then cpu"
    )
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help=TTA_HELP)
    p.add_argument(
        "--calibration",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="apply the temperature the run fitted on its validation split (calibration.json) "
        "so that confidences match accuracy; --no-calibration: the model's own probabilities",
    )


def _add_evaluate_predict(sub: argparse._SubParsersAction) -> None:
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
    _add_inference_options(e, top_k=False)
    add_label_options(e)  # for other data; the run's own data keeps the run's labels
    _add_evaluate_findings(e)
    _add_predict(sub)


def _add_evaluate_findings(e: argparse.ArgumentParser) -> None:
    """What evaluate looks for beyond the metrics: heatmaps on mistakes, suspect labels."""
    e.add_argument(
        "--explain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Grad-CAM heatmaps on the most confident mistakes (top_losses.png, the report); "
        "PyTorch runs",
    )
    e.add_argument(
        "--label-issues",
        action="store_true",
        help="suspect labels of the evaluated split by confident learning on the run's own "
        "probabilities (out of sample for test and val): metrics.json label_issues and "
        "label_issues.png",
    )


def _add_predict(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("predict", help="classify your own images")
    r.add_argument("run", help="run folder or checkpoint")
    r.add_argument("paths", nargs="+", help="files, folders or globs")
    r.add_argument("--csv", metavar="PATH", default="", help="write path,class,probability here")
    r.add_argument("--json", metavar="PATH", default="", help="write every row, top-k too")
    r.add_argument(
        "--grid", metavar="PATH", default="", help="PNG of the images captioned with their class"
    )
    r.add_argument(
        "--explain",
        metavar="DIR",
        default="",
        help="write a Grad-CAM overlay PNG per image here (where the model looked for the class); "
        "--json rows gain explanation: png, class, peak_xy (original pixels)",
    )
    r.add_argument(
        "--explain-class",
        metavar="NAME",
        default="",
        help="explain this class instead of the predicted one",
    )
    _add_inference_options(r)


def _add_compare_export(sub: argparse._SubParsersAction) -> None:
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
    b.add_argument(
        "--device", metavar="NAME", default="auto", help="auto picks cuda, then mps, then cpu"
    )
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
