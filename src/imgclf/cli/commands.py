"""CLI command handlers: parse nothing, call the API, print results, return an exit status.
Here: dispatch and the commands that read an image folder (audit, cache, preview, train, bench,
demo); run_commands.py: those on run folders (evaluate, predict, compare, models, export, serve)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import imgclf
from imgclf.cli.parser import config_from_args, default_out, parse_args
from imgclf.data.audit import AuditReport
from imgclf.data.labels import LabelSource
from imgclf.data.leaks import exact_pairs
from imgclf.messages import UsageError, printable
from imgclf.recipes import describe_recipe
from imgclf.runs import RunDir, with_run_dir


def dispatch(args: argparse.Namespace) -> int:
    """Run the handler for args.command; expected failures become one line on stderr."""
    from imgclf.cli import run_commands

    name = f"cmd_{args.command}"
    try:
        return (globals().get(name) or getattr(run_commands, name))(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UsageError as e:
        print(f"imgclf {args.command}: error: {printable(str(e))}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"imgclf {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except RecursionError:
        print(f"imgclf {args.command}: error: nesting too deep (folders?)", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        if isinstance(e, OSError) and e.filename and str(e.filename) not in str(msg):
            msg = f"{e.filename}: {e.strerror or e}"
        print(f"imgclf {args.command}: error: {printable(str(msg))}", file=sys.stderr)
        return 1


def cmd_audit(args: argparse.Namespace) -> int:
    from imgclf.data.audit import run_audit
    from imgclf.data.audit_report import format_audit, write_audit_outputs
    from imgclf.data.leaks import leak_members
    from imgclf.data.sources import resolve_data

    if not Path(args.path).exists():
        print(f"imgclf audit: error: {args.path}: no such file or folder", file=sys.stderr)
        return 2
    if args.exclude_issues and not args.label_issues:
        raise UsageError("--exclude-issues needs --label-issues")
    if args.label_issues:
        from imgclf.tools.label_audit import require_weights

        require_weights()
    root = resolve_data(args.path, args.cache_dir)
    report, sizes = run_audit(
        root, args.workers, sys.stderr.isatty(), LabelSource.from_config(args)
    )
    out = Path(args.out) if args.out else default_out("audit", args.path)
    sheet = _near_duplicates(report, args, out) if args.near_duplicates else []
    if args.label_issues:
        sheet += _label_issues(report, args, out)
    if args.exclude_leaks:
        report.leaks_raw = leak_members(report)
    written = write_audit_outputs(report, out, args.json, args.exclude_list) + sheet
    if sizes["width"]:
        from imgclf.viz import plot_size_histogram

        written.append(
            plot_size_histogram(sizes["width"], sizes["height"], out / "size_histogram.png")
        )
    print(printable(format_audit(report), lines=True))
    print(printable("\nwrote " + ", ".join(str(p) for p in written), lines=True))
    return 1 if report.problems() else 0


def _near_duplicates(report: AuditReport, args: argparse.Namespace, out: Path) -> list[Path]:
    from imgclf.tools.near_duplicates import contact_sheet, find_near_duplicates, small_sources

    found = find_near_duplicates(
        report.readable_raw,
        exact_pairs(report),
        args.cache_dir,
        args.workers,
        sys.stderr.isatty(),
        small_sources(report.size_stats),
    )
    report.near_duplicates_across, report.near_duplicates_within = found.across(), found.within()
    if not found.across():
        return []
    return [contact_sheet(found.across(), out / "near_duplicate_leaks.png")]


def _label_issues(report: AuditReport, args: argparse.Namespace, out: Path) -> list[Path]:
    from imgclf.tools.label_audit import issue_sheet, label_audit

    label_audit(report, args.cache_dir, args.workers, sys.stderr.isatty())
    if not args.exclude_issues:
        report.issues_raw, report.outliers_raw = [], []
    sheets = []
    if report.label_issues:
        title = "Suspect labels (given -> suggested, score), most suspect first"
        sheets.append(issue_sheet(report.label_issues, out / "label_issues.png", title))
    if report.outliers:
        title = "Outliers (k-NN distance in feature space), farthest first"
        sheets.append(issue_sheet(report.outliers, out / "outliers.png", title))
    return sheets


def cmd_cache(args: argparse.Namespace) -> int:
    from imgclf.data import cache_admin

    if args.action == "clear":
        print(f"freed {cache_admin.clear(args.cache_dir) / 1e6:.1f} MB")
    elif args.action == "prune":
        r = cache_admin.prune(args.cache_dir, args.older_than)
        freed = (r["bytes_before"] - r["bytes_after"]) / 1e6
        print(f"removed {r['stores_removed']} unused stores; freed {freed:.1f} MB")
    else:
        print(cache_admin.describe(cache_admin.list_cache(args.cache_dir)))
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from imgclf.registry import get_spec
    from imgclf.tools.preview import preview

    pre = get_spec(args.model).preprocess(args.image_size)
    out = Path(args.out) if args.out else default_out("preview", args.path)
    for p in preview(
        args.path, out, pre, cache_dir=args.cache_dir, source=LabelSource.from_config(args)
    ):
        print(f"wrote {p}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from imgclf import backends

    cfg = config_from_args(args)
    backend = backends.get(cfg.backend)
    backend.check_config(cfg)  # before torchrun starts N copies that would each refuse it
    cfg = with_run_dir(cfg)  # (after: a refusal asks whether --out was given)
    status = backend.launch(cfg, args.argv)
    if status is not None:
        return status
    main = os.environ.get("RANK", "0") == "0"
    if main and cfg.recipe != "none" and not args.resume:
        print(describe_recipe(cfg), flush=True)
    result = imgclf.train(cfg, resume=bool(args.resume), checked=True)
    if main:
        best = max((h["val_acc"] for h in result.history), default=float("nan"))
        print(f"done: best val accuracy {best:.2%}; run folder {result.run_dir}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from imgclf.config import RunConfig
    from imgclf.tools.bench import format_table, run_bench, write_bench_json

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


def cmd_demo(args: argparse.Namespace) -> int:
    """audit -> preview -> train -> evaluate -> predict on scikit-learn's digits, as a user would
    type them, each step printed before it runs."""
    from imgclf.tools.demo import demo_steps

    out = Path(args.out)
    for argv in demo_steps(out, args.epochs):
        print(f"\n$ imgclf {' '.join(argv)}", flush=True)
        status = dispatch(parse_args(argv))
        if status != 0:
            print(f"demo step failed with status {status}")
            return status
    print(f"\nDemo done. Open the report: {out / 'run-cnn' / RunDir.REPORT}")
    return 0
