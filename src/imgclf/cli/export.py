"""`imgclf export RUN --format F`: ONNX/TorchScript or .keras/SavedModel, verified after writing;
`--int8`: the ONNX model quantized and checked against the float one (quantize.py)."""

from __future__ import annotations

import argparse

from imgclf.cli.options import positive_int
from imgclf.exporter import FORMATS
from imgclf.messages import UsageError


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    x.add_argument(
        "--int8",
        action="store_true",
        help="onnx: also write model.int8.onnx (onnxruntime static quantization calibrated on "
        "the run's training images), checked on its validation split against the float model",
    )
    x.add_argument(
        "--max-drop",
        type=float,
        metavar="POINTS",
        default=None,
        help="--int8: refuse (exit 1, nothing written) when validation accuracy drops by more "
        "than this many points (default 0.5)",
    )
    x.add_argument(
        "--calibration-images",
        type=positive_int,
        metavar="N",
        default=None,
        help="--int8: training images that set the activation ranges, a seeded sample "
        "(default 300)",
    )
    return x


def run(args: argparse.Namespace) -> int:
    from imgclf.exporter import export_run

    _check_int8_options(args)
    r = export_run(args.run, args.format, args.out or None, force=args.force)
    if r.replaced:
        print(f"replaced the earlier {', '.join(p.name for p in r.replaced)} in {r.path.parent}")
    print(
        f"wrote {r.path} (+ preprocess.json); verified against the original model on "
        f"batches of {' and '.join(map(str, r.batch_sizes))}: max abs difference "
        f"{r.max_abs_diff:.2e}"
    )
    if args.int8:
        from imgclf.quantize import CALIBRATION_IMAGES, MAX_DROP, quantize_run, summary

        q = quantize_run(
            args.run,
            r.path,
            calibration_images=args.calibration_images or CALIBRATION_IMAGES,
            max_drop=MAX_DROP if args.max_drop is None else args.max_drop,
        )
        print(summary(q))
    return 0


def _check_int8_options(args: argparse.Namespace) -> None:
    """--int8 is for ONNX, and its options mean nothing without it (never silently ignored)."""
    if args.int8 and args.format != "onnx":
        raise UsageError(f"--int8 quantizes the ONNX model; --format {args.format} has no int8")
    for flag, value in (
        ("--max-drop", args.max_drop),
        ("--calibration-images", args.calibration_images),
    ):
        if value is not None and not args.int8:
            raise UsageError(f"{flag} applies to --int8 only")
    if args.max_drop is not None and not args.max_drop >= 0:
        raise UsageError(f"--max-drop must be 0 or more points, got {args.max_drop:g}")
