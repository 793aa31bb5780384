"""`imgclf evaluate RUN [DATA]`: accuracy, the baseline, calibration, the per-class table, plots
and the HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imgclf.cli.options import add_inference_options, add_label_options
from imgclf.messages import UsageError, printable


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    add_inference_options(e, top_k=False)
    add_label_options(e)  # for other data; the run's own data keeps the run's labels
    _add_findings(e)
    return e


def _add_findings(e: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    from imgclf.data.label_sources import LabelSource
    from imgclf.evaluation.run_eval import evaluate_run

    if args.data and args.data_opt:
        raise UsageError("give the data as DATA or as --data, not both")
    data = args.data or args.data_opt
    if not data and (args.label_from_name or args.labels):
        raise UsageError(
            "the run's own data keeps the labels it was trained with; --label-from-name and "
            "--labels describe other data (DATA or --data); --corrections FILE applies a "
            "review's decisions to either"
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
    from imgclf.calibration import describe
    from imgclf.evaluation.metrics import format_coverage, format_per_class
    from imgclf.runs import RunDir

    tta = " with flip TTA" if m["tta"] == "flip" else ""
    where = f"{m['split']} of {m['data']}{tta}"
    print(printable(f"{m['model']} ({m['backend']}) on {where}: {m['images']} images"))
    if m.get("multi_label"):
        return _print_multilabel(m)
    print(
        f"accuracy {m['accuracy']:.2%}   balanced accuracy {m['balanced_accuracy']:.2%}   "
        f"loss {m['loss']:.4f}   macro F1 {m['macro_f1']:.3f}"
    )
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
    if differs := m.get("class_mix", {}).get("differs"):
        print(printable(f"note: {differs}"))
    print(printable(describe(m["calibration"], m["split"])))
    print(printable(format_per_class(m), lines=True))
    if m.get("coverage", {}).get("points"):
        print(format_coverage(m["coverage"]))
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


def _print_multilabel(m: dict) -> None:
    from imgclf.evaluation.multilabel import format_multilabel
    from imgclf.runs import RunDir

    print(printable(format_multilabel(m), lines=True))
    if "label_issues" in m:
        found = m["label_issues"]
        lines = [f"label issues ({m['split']}, the run's own probabilities): {len(found)}"]
        lines += [f"  {x['score']:.3f} {x['path']} ({x['text']})" for x in found[:10]]
        print(printable("\n".join(lines), lines=True))
    print(f"report: {Path(m['out']) / RunDir.REPORT}")


def _issue_lines(found: list[dict], split: str) -> str:
    from imgclf.audit.suspects import pair_counts

    counts = pair_counts(found).get(split, {})
    lines = [f"label issues ({split}, the run's own probabilities): {len(found)}"]
    lines += [f"  {pair}: {n}" for pair, n in counts.items()]
    lines += [f"  {x['score']:.3f} {x['path']}" for x in found[:10]]
    return printable("\n".join(lines), lines=True)
