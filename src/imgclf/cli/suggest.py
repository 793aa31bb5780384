"""`imgclf suggest RUN UNLABELLED_DIR --budget N`: the N unlabelled images whose labels would
help the run most (the most uncertain, no two near-copies: review/suggest.py), printed and
written as suggestions.json for `imgclf review DATA --suggestions FILE`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imgclf.cli.options import default_out, positive_int
from imgclf.messages import UsageError, printable
from imgclf.review.suggest import STRATEGIES


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    s = sub.add_parser("suggest", help="which unlabelled images to label next (active learning)")
    s.add_argument("run", help="run folder")
    s.add_argument("unlabelled", help="folder (or files, globs) of images without labels")
    s.add_argument("--budget", type=positive_int, required=True, metavar="N", help="how many")
    s.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="margin",
        help="uncertainty: margin between the two likeliest classes, or entropy",
    )
    s.add_argument(
        "--no-diversity",
        action="store_true",
        help="rank by uncertainty alone (no features: faster, but near-copies may crowd the list)",
    )
    s.add_argument(
        "--out",
        metavar="PATH",
        default="",
        help="suggestions.json here (default runs/suggest-<folder name>/suggestions.json)",
    )
    s.add_argument("--workers", type=int, default=2, metavar="N", help="decoding processes")
    s.add_argument("--cache-dir", metavar="PATH", default="", help="decoded-image cache")
    return s


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from imgclf.files import write_json
    from imgclf.predictor import decoded_batches, expand_inputs, load_predictor, thresholds_of
    from imgclf.review.suggest import select, uncertainty

    found = expand_inputs([args.unlabelled])
    if not found:
        raise UsageError(f"{args.unlabelled}: no images")
    predictor = load_predictor(args.run)
    names, kept, parts = predictor.class_names, [], []
    for good, batch, _ in decoded_batches(found, predictor.pre.size, 64, args.workers):
        if good:
            kept += good
            parts.append(predictor.predict_proba(batch))
    if not kept:
        print(f"imgclf suggest: error: {args.unlabelled}: no readable image", file=sys.stderr)
        return 1
    probs, paths = np.concatenate(parts), [found[i] for i in kept]
    feats = None if args.no_diversity else _features(paths, args)
    chosen = select(probs, feats, args.budget, args.strategy, thresholds_of(predictor))
    u = uncertainty(probs, args.strategy, thresholds_of(predictor))
    out = []
    for rank, i in enumerate(chosen, 1):
        top = np.sort(probs[i])[::-1]
        item = {
            "rank": rank,
            "path": str(Path(paths[i]).resolve()),
            "predicted": names[int(probs[i].argmax())],
            "probability": round(float(top[0]), 4),
            "margin": round(float(top[0] - top[1]), 4) if len(top) > 1 else 0.0,
            "score": round(float(u[i]), 4),
        }
        out.append(item)
        print(f"{rank:>4}  {printable(paths[i])}  {item['predicted']} {item['probability']:.3f}"
              f"  margin {item['margin']:.3f}")  # fmt: skip
    target = Path(args.out) if args.out else default_out("suggest", args.unlabelled)
    target = target / "suggestions.json" if target.suffix != ".json" else target
    meta = {"run": str(Path(args.run).resolve()), "budget": args.budget, "pool": len(paths)}
    write_json(target, {**meta, "strategy": args.strategy, "suggestions": out})
    print(f"wrote {target}; label them with: imgclf review DATA --suggestions {target}")
    return 0


def _features(paths: list[str], args: argparse.Namespace):  # noqa: ANN202
    """The audit's EfficientNet-Lite0 features of the images (None without the weights)."""
    import numpy as np

    from imgclf.audit.fingerprints import features

    rows, feats = features(paths, 0, 224, args.cache_dir, args.workers, sys.stderr.isatty())
    if feats is None:
        return None
    full = np.zeros((len(paths), feats.shape[1]), np.float32)
    full[rows] = np.asarray(feats)  # an image the cache could not read keeps a zero vector
    return full
