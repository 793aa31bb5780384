"""`imgclf preview DATA`: a batch grid and an augmentation grid as PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from imgclf.cli.options import add_label_options, default_out


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    return v


def run(args: argparse.Namespace) -> int:
    from imgclf import backends
    from imgclf.data.label_sources import LabelSource
    from imgclf.models import get_spec

    pre = get_spec(args.model).preprocess(args.image_size)
    out = Path(args.out) if args.out else default_out("preview", args.path)
    written = backends.get("torch").augment_preview(
        args.path, out, pre=pre, cache_dir=args.cache_dir, source=LabelSource.from_config(args)
    )
    for p in written:
        print(f"wrote {p}")
    return 0
