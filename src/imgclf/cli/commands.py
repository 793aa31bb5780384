"""CLI command handlers: parse nothing, call the API, print results, return an exit status."""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path

import imgclf
from imgclf.cli.parser import config_from_args, default_out, parse_args
from imgclf.data.audit import AuditReport, exact_pairs
from imgclf.data.folder import display_path
from imgclf.files import write_json, write_text
from imgclf.runs import RunDir


def dispatch(args: argparse.Namespace) -> int:
    """Run the handler for args.command; expected failures become one line on stderr."""
    try:
        return globals()[f"cmd_{args.command}"](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        if isinstance(e, OSError) and e.filename and str(e.filename) not in str(msg):
            msg = f"{e.filename}: {e.strerror or e}"
        print(f"imgclf {args.command}: error: {msg}", file=sys.stderr)
        return 1


def cmd_audit(args: argparse.Namespace) -> int:
    from imgclf.data.audit import leak_members, run_audit
    from imgclf.data.audit_report import format_audit, write_audit_outputs
    from imgclf.data.sources import resolve_data

    if not Path(args.path).exists():
        print(f"imgclf audit: error: {args.path}: no such file or folder", file=sys.stderr)
        return 2
    root = resolve_data(args.path, args.cache_dir)
    report, sizes = run_audit(root, workers=args.workers, progress=sys.stderr.isatty())
    out = Path(args.out) if args.out else default_out("audit", args.path)
    sheet = _near_duplicates(report, args, out) if args.near_duplicates else []
    if args.exclude_leaks:
        report.leaks_raw = leak_members(report)
    written = write_audit_outputs(report, out, args.json, args.exclude_list) + sheet
    if sizes["width"]:
        from imgclf.viz import plot_size_histogram

        written.append(
            plot_size_histogram(sizes["width"], sizes["height"], out / "size_histogram.png")
        )
    print(format_audit(report))
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 1 if report.problems() else 0


def _near_duplicates(report: AuditReport, args: argparse.Namespace, out: Path) -> list[Path]:
    from imgclf.tools.near_duplicates import contact_sheet, find_near_duplicates

    found = find_near_duplicates(
        report.readable_raw, exact_pairs(report), args.cache_dir, args.workers, sys.stderr.isatty()
    )
    report.near_duplicates_across, report.near_duplicates_within = found.across(), found.within()
    if not found.across():
        return []
    return [contact_sheet(found.across(), out / "near_duplicate_leaks.png")]


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
    for p in preview(args.path, out, pre, cache_dir=args.cache_dir):
        print(f"wrote {p}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from imgclf import backends

    cfg = config_from_args(args)
    status = backends.get(cfg.backend).launch(cfg, args.argv)
    if status is not None:
        return status
    result = imgclf.train(cfg, resume=bool(args.resume))
    if os.environ.get("RANK", "0") == "0":
        best = max((h["val_acc"] for h in result.history), default=float("nan"))
        print(f"done: best val accuracy {best:.2%}; run folder {result.run_dir}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from imgclf.config import RunConfig
    from imgclf.tools.bench import format_table, run_bench, write_bench_json

    if args.data_dir and args.images is not None:
        raise ValueError("--images sizes the synthetic folder: give DATA or --images, not both")
    if args.max_per_class and not args.data_dir:
        raise ValueError("--max-per-class applies to DATA; the synthetic folder takes --images")
    flags = {k: getattr(args, k) for k in ("amp", "channels_last", "compile")}
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from imgclf.evaluation.metrics import format_per_class
    from imgclf.evaluation.run_eval import evaluate_run

    m = evaluate_run(args.run, args.data, args.split, sys.stderr.isatty(), args.device, args.tta)
    tta = " with flip TTA" if args.tta else ""
    where = f"{m['split']} of {m['data']}{tta}"
    print(f"{m['model']} ({m['backend']}) on {where}: {m['images']} images")
    print(f"accuracy {m['accuracy']:.2%}   loss {m['loss']:.4f}   macro F1 {m['macro_f1']:.3f}")
    print(format_per_class(m))
    if m["skipped"]:
        print(f"skipped {len(m['skipped'])} unreadable file(s)")
    if leaks := m.get("near_duplicate_leaks"):
        print(
            f"{leaks['images']} of {m['images']} {m['split']} images have a (near-)duplicate in "
            f"train ({leaks['audit']}); accuracy without them {leaks['accuracy_without']:.2%}"
        )
    print(f"report: {Path(args.run) / RunDir.REPORT}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from imgclf.predictor import expand_inputs, load_predictor, predict_paths

    predictor = load_predictor(args.run, args.device, args.tta)
    paths = expand_inputs(args.paths)
    if not paths:
        print("imgclf predict: error: no images matched", file=sys.stderr)
        return 1
    rows = predict_paths(predictor, paths, top_k=args.top_k)
    width = max(len(display_path(r["path"])) for r in rows)
    for r in rows:
        name = display_path(r["path"]).ljust(width)
        print(
            f"{name}  ERROR {r['error']}"
            if "error" in r
            else f"{name}  {r['class']}  {r['probability']:.3f}"
        )
    if args.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "class", "probability", "error"])
        for r in rows:
            w.writerow(
                [
                    display_path(r["path"]),
                    r.get("class", ""),
                    r.get("probability", ""),
                    r.get("error", ""),
                ]
            )
        write_text(args.csv, buf.getvalue())
    if args.json:
        write_json(args.json, [{**r, "path": display_path(r["path"])} for r in rows])
    if args.grid:
        _prediction_grid(rows, args.grid)
    return 1 if all("error" in r for r in rows) else 0


def _prediction_grid(rows: list[dict], out: str) -> None:
    import numpy as np

    from imgclf.data.images import load_rgb
    from imgclf.viz import plot_image_grid

    ok = [r for r in rows if "error" not in r][:24]
    imgs = [np.asarray(load_rgb(r["path"])) for r in ok]
    titles = [
        f"{Path(display_path(r['path'])).name} is a {r['class'].upper()}\n({r['probability']:.0%})"
        for r in ok
    ]
    plot_image_grid(imgs, titles, out)
    print(f"wrote {out}")


def cmd_compare(args: argparse.Namespace) -> int:
    from imgclf.tools.compare import compare_runs, format_table

    rows = compare_runs(args.runs, args.plot)
    print(format_table(rows))
    print(f"\nwrote {args.plot}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from imgclf import backends
    from imgclf.registry import create_model, get_spec, list_models

    print(
        f"{'name':20} {'backend':8} {'params (2 classes)':>18} {'trainable':>12} {'size':>5}  "
        f"{'mean / std':24} description"
    )
    for name in backends.NAMES:
        try:
            backend, models = backends.get(name), list_models(name)
        except (ImportError, RuntimeError):
            continue  # that backend's extra is not installed
        for model in models:
            spec = get_spec(model, name)
            m = create_model(model, 2, backend=name, pretrained=False, image_size=spec.image_size)
            total, trainable = backend.count_params(m)
            norm = f"{spec.mean[0]:.3f} / {spec.std[0]:.3f}"
            print(
                f"{model:20} {name:8} {total:>18,} {trainable:>12,} {spec.image_size:>5}  "
                f"{norm:24} {spec.description}"
            )
    print(
        "\nAlso: any torchvision or timm classification model by name (e.g. resnet18, "
        "mobilenet_v3_small, convnext_tiny)."
    )
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


def cmd_export(args: argparse.Namespace) -> int:
    from imgclf.exporter import export_run

    r = export_run(args.run, args.format, args.out or None)
    print(
        f"wrote {r.path} (+ preprocess.json); verified against the original model on "
        f"batches of {' and '.join(map(str, r.batch_sizes))}: max abs difference "
        f"{r.max_abs_diff:.2e}"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from imgclf.serve.app import create_app

    hosts = args.allowed_host
    if hosts is None:
        exposed = args.host not in ("127.0.0.1", "localhost", "::1")
        hosts = ["*"] if exposed else None
        if exposed:
            print("note: any Host header is accepted; --allowed-host NAME restricts it", flush=True)
    app = create_app(
        args.run,
        int(args.max_upload_mb * 1024 * 1024),
        args.top_k,
        args.device,
        max_pixels=int(args.max_megapixels * 1e6),
        max_decodes=args.max_decodes,
        allowed_hosts=hosts,
        upload_timeout=args.upload_timeout,
    )
    print(f"serving {args.run} on http://{args.host}:{args.port}/ (API docs at /docs)", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        limit_concurrency=args.max_connections,
        timeout_keep_alive=5,
    )
    return 0
