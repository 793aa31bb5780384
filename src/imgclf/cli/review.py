"""`imgclf review DATA`: walk through what the audit found (or a run's label issues, or
`imgclf suggest`'s list) on a local page, deciding with one key each; the decisions go to
corrections.csv, which `train/audit/evaluate/preview --corrections` apply."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from imgclf.cli.options import add_label_options, default_out
from imgclf.messages import UsageError


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    r = sub.add_parser(
        "review",
        help="look through the audit's findings in a browser and fix labels (corrections.csv)",
        description="Keys: k keep, a accept the suggestion, 1-9 pick a class, x exclude, s or -> "
        "skip, <- back, u undo. Every decision is saved at once; the data's files are never "
        "moved, renamed or rewritten.",
    )
    r.add_argument(
        "path",
        help="the data folder the findings are about (with --suggestions: the data or the "
        "unlabelled folder; the labels are the suggesting run's classes)",
    )
    what = r.add_mutually_exclusive_group()
    what.add_argument(
        "--audit",
        metavar="FILE",
        default="",
        help="an audit.json (default: runs/audit-<folder name>/audit.json, what `imgclf audit "
        "DATA --label-issues` writes)",
    )
    what.add_argument(
        "--run", metavar="RUN", default="", help="a run's `evaluate --label-issues` findings"
    )
    what.add_argument(
        "--suggestions",
        metavar="FILE",
        default="",
        help="`imgclf suggest`'s suggestions.json: label those images (decision 'label')",
    )
    r.add_argument(
        "--out",
        metavar="PATH",
        default="",
        help="folder for corrections.csv (default runs/review-<folder name>); an earlier "
        "review there resumes",
    )
    r.add_argument("--host", default="127.0.0.1", help="address to bind (loopback by default)")
    r.add_argument("--port", type=int, default=8001, metavar="N", help="TCP port")
    add_label_options(r)
    return r


def data_labels(root: Path, args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """Each image of the data (real path) -> its class, and the class names (as training
    reads them, with --corrections if given: a second review builds on the first)."""
    from imgclf.data.label_sources import LabelSource
    from imgclf.data.splits import load_splits

    splits = load_splits(root, 0.0, source=LabelSource.from_config(args))
    if splits["train"].multi_label:
        raise UsageError(f"{root}: multi-label data; imgclf review decides single labels only")
    names = splits["train"].class_names
    labels = {
        os.path.realpath(p): names[y]
        for idx in splits.values()
        for p, y in zip(idx.paths, idx.labels, strict=True)
    }
    return labels, names


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from imgclf.data.sources import resolve_data
    from imgclf.review.app import Review, create_review_app
    from imgclf.review.findings import from_audit, from_run, from_suggestions

    root = resolve_data(args.path, "")
    if args.suggestions:  # unlabelled images: the classes are the run's that suggested them
        items, names = from_suggestions(Path(args.suggestions), root)
    else:
        labels, names = data_labels(root, args)
    if args.run:
        items = from_run(Path(args.run), root, labels)
    elif not args.suggestions:
        audit = Path(args.audit) if args.audit else default_out("audit", args.path) / "audit.json"
        if not audit.is_file():
            raise UsageError(
                f"{audit}: no audit report; run `imgclf audit {args.path} --label-issues` first "
                "or pass --audit FILE"
            )
        items = from_audit(audit, root, labels)
    if not items:
        print("nothing to review: the findings are empty")
        return 0
    out = Path(args.out) if args.out else default_out("review", args.path)
    out.mkdir(parents=True, exist_ok=True)
    review = Review(items, names, out / "corrections.csv")
    p = review.progress()
    print(f"{p['total']} findings, {p['reviewed']} decided already; decisions go to {review.csv}")
    print(f"review on http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    hosts = None if args.host in ("127.0.0.1", "localhost", "::1") else ["*"]
    if hosts:  # the page can relabel the data: say that others can reach it
        print(f"note: --host {args.host}: anyone who reaches this port can decide", flush=True)
    uvicorn.run(
        create_review_app(review, hosts), host=args.host, port=args.port, log_level="warning"
    )
    print(f"train on the corrected labels: imgclf train {args.path} --corrections {review.csv}")
    return 0
