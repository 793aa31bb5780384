"""CLI handlers of the commands on run folders: evaluate, predict, compare, models, export, serve
(dispatched from commands.py)."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from imgclf.data.folder import display_path
from imgclf.files import write_json, write_text
from imgclf.messages import UsageError, printable
from imgclf.runs import RunDir


def cmd_evaluate(args: argparse.Namespace) -> int:
    from imgclf.data.labels import LabelSource
    from imgclf.evaluation.run_eval import evaluate_run

    if args.data and args.data_opt:
        raise UsageError("give the data as DATA or as --data, not both")
    data = args.data or args.data_opt
    if not data and (args.label_from_name or args.labels):
        raise UsageError(
            "the run's own data keeps the labels it was trained with; --label-from-name and "
            "--labels describe other data (DATA or --data)"
        )
    m = evaluate_run(
        args.run,
        data,
        args.split,
        sys.stderr.isatty(),
        args.device,
        args.tta,
        args.calibration,
        LabelSource.from_config(args),
        args.explain,
        args.label_issues,
    )
    print_evaluation(m)
    return 0


def print_evaluation(m: dict) -> None:
    """What evaluate says: accuracy, the baseline, warnings, calibration, the per-class table."""
    from imgclf.evaluation.calibration import describe
    from imgclf.evaluation.metrics import format_per_class

    tta = " with flip TTA" if m["tta"] == "flip" else ""
    where = f"{m['split']} of {m['data']}{tta}"
    print(printable(f"{m['model']} ({m['backend']}) on {where}: {m['images']} images"))
    print(f"accuracy {m['accuracy']:.2%}   loss {m['loss']:.4f}   macro F1 {m['macro_f1']:.3f}")
    b = m["baseline"]
    print(
        printable(
            f"baseline: always {b['majority_class']!r} (train's most common class) "
            f"{b['majority_accuracy']:.2%}, chance {b['chance']:.2%}"
        )
    )
    if not b["beaten"]:
        print("warning: the model does not beat the baseline: its answers mean little")
    if m.get("split_warning"):
        print(f"warning: {m['split_warning']}")
    print(printable(describe(m["calibration"], m["split"])))
    print(printable(format_per_class(m), lines=True))
    if m["skipped"]:
        print(f"skipped {len(m['skipped'])} unreadable file(s)")
    if leaks := m.get("near_duplicate_leaks"):
        print(
            f"{leaks['images']} of {m['images']} {m['split']} images have a (near-)duplicate in "
            f"train ({leaks['audit']}); accuracy without them {leaks['accuracy_without']:.2%}"
        )
    if sus := m.get("suspect_labels"):
        print(
            f"{sus['images']} of {m['images']} {m['split']} images have a suspect label "
            f"({sus['audit']}); accuracy without them {sus['accuracy_without']:.2%}"
        )
    if "label_issues" in m:
        print(_issue_lines(m["label_issues"], m["split"]))
    print(f"report: {Path(m['out']) / RunDir.REPORT}")


def _issue_lines(found: list[dict], split: str) -> str:
    from imgclf.data.label_issues import pair_counts

    counts = pair_counts(found).get(split, {})
    lines = [f"label issues ({split}, the run's own probabilities): {len(found)}"]
    lines += [f"  {pair}: {n}" for pair, n in counts.items()]
    lines += [f"  {x['score']:.3f} {x['path']}" for x in found[:10]]
    return printable("\n".join(lines), lines=True)


def cmd_predict(args: argparse.Namespace) -> int:
    from imgclf.predictor import expand_inputs, load_predictor, predict_paths

    predictor = load_predictor(args.run, args.device, args.tta, args.calibration)
    paths = expand_inputs(args.paths)
    if not paths:
        print("imgclf predict: error: no images matched", file=sys.stderr)
        return 1
    if args.explain_class and not args.explain:
        raise UsageError("--explain-class NAME needs --explain DIR (where the overlays go)")
    if args.explain:
        from imgclf.explain import explain_class, explain_paths

        cls = (
            explain_class(predictor.class_names, args.explain_class) if args.explain_class else None
        )
        rows = explain_paths(predictor, paths, args.explain, cls, top_k=args.top_k)
    else:
        rows = predict_paths(predictor, paths, top_k=args.top_k)
    width = max(len(printable(display_path(r["path"]))) for r in rows)
    for r in rows:
        name = printable(display_path(r["path"])).ljust(width)
        print(
            f"{name}  ERROR {printable(r['error'])}"
            if "error" in r
            else f"{name}  {printable(r['class'])}  {r['probability']:.3f}"
        )
    if args.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "class", "probability", "error"])
        for r in rows:
            cells = [display_path(r["path"]), r.get("class", ""), r.get("error", "")]
            path, cls, err = (spreadsheet_safe(c) for c in cells)
            w.writerow([path, cls, r.get("probability", ""), err])
        write_text(args.csv, buf.getvalue())
    if args.json:
        write_json(args.json, [{**r, "path": display_path(r["path"])} for r in rows])
    if args.grid:
        _prediction_grid(rows, args.grid)
    return 1 if all("error" in r for r in rows) else 0


def spreadsheet_safe(cell: str) -> str:
    """OWASP's defence against CSV formula injection: a cell a spreadsheet would read as a
    formula (= + - @, tab, carriage return first) gets a leading apostrophe."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def _prediction_grid(rows: list[dict], out: str) -> None:
    import numpy as np

    from imgclf.data.images import load_rgb
    from imgclf.viz import plot_image_grid

    ok = [r for r in rows if "error" not in r][:24]
    # with --explain the grid shows each overlay (the map on the picture the model saw)
    imgs = [np.asarray(load_rgb(r.get("explanation", {}).get("png") or r["path"])) for r in ok]
    titles = [
        f"{Path(display_path(r['path'])).name} is a {r['class'].upper()}\n({r['probability']:.0%})"
        for r in ok
    ]
    plot_image_grid(imgs, titles, out)
    print(f"wrote {out}")


def cmd_compare(args: argparse.Namespace) -> int:
    from imgclf.tools.compare import compare_runs, format_table, mixed_splits

    rows = compare_runs(args.runs, args.plot)
    print(printable(format_table(rows), lines=True))
    if warning := mixed_splits(rows):
        print(warning)
    print(f"\nwrote {args.plot}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from imgclf import backends
    from imgclf.registry import create_model, get_spec, list_models

    print(
        f"{'name':20} {'backend':8} {'params (2 classes)':>18} {'trainable':>12} {'size':>5}  "
        f"{'mean / std':24} description"
    )
    chosen = backends.NAMES if args.backend == "all" else (args.backend,)
    for name in chosen:
        try:
            backend, models = backends.get(name), list_models(name)
        except (ImportError, RuntimeError):
            print(f"({name}: its extra is not installed)")
            continue
        # torch counts parameters on its meta device: no memory, no init time
        ctx = backend.listing_device() if hasattr(backend, "listing_device") else nullcontext()
        for model in models:
            spec = get_spec(model, name)
            with ctx:
                m = create_model(model, 2, name, pretrained=False, image_size=spec.image_size)
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
    if others := [n for n in backends.NAMES if n not in chosen]:
        print(f"Other backends' models (loads their library): imgclf models --backend {others[0]}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
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


def _allowed_hosts(args: argparse.Namespace) -> list[str] | None:
    """--allowed-host, or: loopback names (None) on loopback, any name when exposed."""
    if args.allowed_host is not None:
        return args.allowed_host
    if args.host in ("127.0.0.1", "localhost", "::1"):
        return None
    print("note: any Host header is accepted; --allowed-host NAME restricts it", flush=True)
    return ["*"]


def _serve_protocol(args: argparse.Namespace) -> type:
    """uvicorn's protocol class with the connection guards; bad options (or a parser that is
    not installed) are refused here, before the model loads."""
    from imgclf.serve.protocol import guarded_protocol

    if args.max_wait_ms < 0:
        raise UsageError(f"--max-wait-ms must be 0 or more, got {args.max_wait_ms:g}")
    return guarded_protocol(args.header_timeout, max(1024, 16 * args.max_connections), args.http)


def cmd_serve(args: argparse.Namespace) -> int:
    import gc
    import signal

    import uvicorn

    from imgclf.serve.app import create_app

    protocol = _serve_protocol(args)
    app = create_app(
        args.run,
        int(args.max_upload_mb * 1024 * 1024),
        args.top_k,
        args.device,
        max_pixels=int(args.max_megapixels * 1e6),
        max_decodes=args.max_decodes,
        allowed_hosts=_allowed_hosts(args),
        upload_timeout=args.upload_timeout,
        tta=args.tta,
        max_requests=args.max_connections,
        calibrated=args.calibration,
        batching=(args.max_batch, args.max_wait_ms / 1000, args.max_queue),
        runtime=args.runtime,
    )
    app.state.info["http"] = protocol.parser
    # the ~200k objects of the libraries and the model, loaded once, leave the garbage
    # collector's sight: a full collection over them held every thread for 105 ms (p99 of a
    # lone client: 60 ms; frozen: 16 ms, measured)
    gc.freeze()
    print(f"serving {args.run} on http://{args.host}:{args.port}/ (API docs at /docs)", flush=True)
    # SIGTERM or Ctrl-C: uvicorn stops accepting, lets requests in flight finish for up to
    # --drain-timeout seconds, then the app's shutdown answers what is still queued. uvicorn
    # raises the SIGTERM again once drained; taking it here makes a drained stop exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        # idle and slow sockets are closed by the protocol's header deadline; the app limits
        # requests in flight (uvicorn's limit_concurrency would count idle sockets too)
        http=protocol,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=args.drain_timeout,
    )
    return 0
