"""`imgclf predict RUN PATHS...`: classify your own images; print, and write CSV, JSON, a grid
and Grad-CAM overlays when asked."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from imgclf.cli.options import add_inference_options, probability
from imgclf.messages import UsageError, printable
from imgclf.serve.config import RUNTIMES


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    r.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="eager",
        help="eager: the run's framework; onnx / onnx-int8: its ONNX export in onnxruntime, "
        "float32 or int8 (made when missing, as serve does); auto: as serve chooses",
    )
    r.add_argument(
        "--abstain",
        type=probability,
        metavar="P",
        default=0.0,
        help="answer NOT SURE for an image whose top probability (calibrated) is below P, to be "
        "handed to a person; the class stays as the model's guess and --csv/--json rows gain "
        "abstained. evaluate's coverage table says what each P costs and buys",
    )
    add_inference_options(r)
    return r


def run(args: argparse.Namespace) -> int:
    from imgclf.data.folder import display_path
    from imgclf.files import write_json
    from imgclf.predictor import (
        expand_inputs,
        load_predictor,
        mark_unsure,
        predict_paths,
        thresholds_of,
    )

    predictor = (
        _predictor(args)
        if args.runtime != "eager"
        else (load_predictor(args.run, args.device, args.tta, args.calibration))
    )
    if args.abstain and thresholds_of(predictor) is not None:
        raise UsageError(
            "--abstain is for single-label runs: a multi-label run answers every class above "
            "its own threshold (calibration.json), and may answer none"
        )
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
    unsure = mark_unsure(rows, args.abstain) if args.abstain else 0
    width = max(len(printable(display_path(r["path"]))) for r in rows)
    for r in rows:
        print(f"{printable(display_path(r['path'])).ljust(width)}  {_verdict(r)}")
    if args.abstain:
        answered = sum("error" not in r for r in rows)
        print(f"not sure: {unsure} of {answered} images (top probability below {args.abstain})")
    if args.csv:
        _write_csv(rows, args.csv)
    if args.json:
        write_json(args.json, [{**r, "path": display_path(r["path"])} for r in rows])
    if args.grid:
        _prediction_grid(rows, args.grid)
    return 1 if all("error" in r for r in rows) else 0


def _verdict(r: dict) -> str:
    if "error" in r:
        return f"ERROR {printable(r['error'])}"
    if "labels" in r:  # multi-label: every class above its threshold
        said = ", ".join(f"{c['class']} {c['probability']:.3f}" for c in r["classes"])
        top = r["top"][0]
        return printable(
            said or f"(none of the classes; likeliest {top['class']} {top['probability']:.3f})"
        )
    guess = f"{printable(r['class'])}  {r['probability']:.3f}"
    return f"NOT SURE  ({guess})" if r.get("abstained") else guess


def _predictor(args: argparse.Namespace):  # noqa: ANN202 (a Predictor)
    """The run's model in onnxruntime (or as serve's auto chooses)."""
    from imgclf.serve.runtime import serving_predictor

    if args.explain:
        raise UsageError(
            f"--explain needs --runtime eager: Grad-CAM takes the framework's "
            f"gradients, which --runtime {args.runtime} has not"
        )
    if Path(args.run).is_file():
        raise UsageError(f"--runtime {args.runtime} takes a run folder, not a checkpoint file")
    return serving_predictor(args.run, args.runtime, args.device, args.tta, args.calibration)[0]


def _write_csv(rows: list[dict], out: str) -> None:
    from imgclf.data.folder import display_path
    from imgclf.files import write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    unsure = any("abstained" in r for r in rows)
    w.writerow(["path", "class", "probability", "error"] + (["abstained"] if unsure else []))
    for r in rows:
        cells = [display_path(r["path"]), r.get("class", ""), r.get("error", "")]
        path, cls, err = (spreadsheet_safe(c) for c in cells)
        flag = [str(r["abstained"]).lower() if "abstained" in r else ""] if unsure else []
        w.writerow([path, cls, r.get("probability", ""), err, *flag])
    write_text(out, buf.getvalue())


def spreadsheet_safe(cell: str) -> str:
    """OWASP's defence against CSV formula injection: a cell a spreadsheet would read as a
    formula (= + - @, tab, carriage return first) gets a leading apostrophe."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def _caption(r: dict) -> str:
    if "labels" in r:  # multi-label: all of them, or none
        return "\n".join(f"{c['class']} ({c['probability']:.0%})" for c in r["classes"]) or "none"
    cls = r["class"].upper()
    said = f"NOT SURE: {cls}?" if r.get("abstained") else f"is a {cls}"
    return f"{said}\n({r['probability']:.0%})"


def _prediction_grid(rows: list[dict], out: str) -> None:
    import numpy as np

    from imgclf.data.folder import display_path
    from imgclf.data.images import load_rgb
    from imgclf.viz import plot_image_grid

    ok = [r for r in rows if "error" not in r][:24]
    # with --explain the grid shows each overlay (the map on the picture the model saw)
    imgs = [np.asarray(load_rgb(r.get("explanation", {}).get("png") or r["path"])) for r in ok]
    titles = [f"{Path(display_path(r['path'])).name} {_caption(r)}" for r in ok]
    plot_image_grid(imgs, titles, out)
    print(f"wrote {out}")
