"""`imgclf export RUN --format F`: ONNX/TorchScript or .keras/SavedModel, verified after writing."""

from __future__ import annotations

import argparse

from imgclf.exporter import FORMATS


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
    return x


def run(args: argparse.Namespace) -> int:
    from imgclf.exporter import export_run

    r = export_run(args.run, args.format, args.out or None, force=args.force)
    if r.replaced:
        print(f"replaced the earlier {', '.join(p.name for p in r.replaced)} in {r.path.parent}")
    print(
        f"wrote {r.path} (+ preprocess.json); verified against the original model on "
        f"batches of {' and '.join(map(str, r.batch_sizes))}: max abs difference "
        f"{r.max_abs_diff:.2e}"
    )
    return 0
