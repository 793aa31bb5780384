"""`imgclf bench [DATA]`: time every stage (decode, cache, augment, train step, epoch, eval,
predict) on the PyTorch backend; without DATA on its own photo-sized JPEGs."""

from __future__ import annotations

import argparse

from imgclf.cli.options import add_device, positive_int
from imgclf.messages import UsageError


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    b = sub.add_parser(
        "bench",
        help="time every stage: decode, cache, augment, train step, epoch, eval, predict",
        description="PyTorch backend. Without DATA it writes its own photo-sized JPEGs.",
    )
    b.add_argument("data_dir", nargs="?", default="", metavar="DATA", help="image folder or zip")
    b.add_argument("--images", type=int, metavar="N", default=None, help="synthetic (default 500)")
    b.add_argument("--max-per-class", type=int, metavar="N", default=0, help="of DATA (0 = all)")
    b.add_argument("--model", metavar="NAME", default="cnn", help="model to time")
    add_device(b)
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
    return b


def run(args: argparse.Namespace) -> int:
    from imgclf.config import RunConfig
    from imgclf.data.synthetic import format_table, run_bench, write_bench_json

    if args.data_dir and args.images is not None:
        raise UsageError("--images sizes the synthetic folder: give DATA or --images, not both")
    if args.max_per_class and not args.data_dir:
        raise UsageError("--max-per-class applies to DATA; the synthetic folder takes --images")
    flags = {k: getattr(args, k) for k in ("amp", "cpu_bf16", "channels_last", "compile")}
    cfg = RunConfig(
        data_dir=args.data_dir,
        model=args.model,
        device=args.device,
        batch_size=args.batch_size,
        image_size=args.image_size,
        workers=args.workers,
        max_per_class=args.max_per_class,
        **{k: v for k, v in flags.items() if v is not None},
    )
    images = 500 if args.images is None else args.images
    rows, info = run_bench(cfg, images, args.decode_images, args.steps)
    print(format_table(rows, info))
    if args.json:
        write_bench_json(args.json, rows, info)
        print(f"wrote {args.json}")
    return 0
