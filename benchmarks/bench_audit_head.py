"""The label pass's cross-fitted head (issue 44): scikit-learn's L-BFGS with the features in
memory vs the streamed minibatch head reading them from the cache's memory map, on CIFAR-10's
60,000 Lite0 features (the audit's own for 32 px images). Time, peak RSS, out-of-sample
accuracy, the suspects each finds and how many are the same. Reuses bench_audit_scale.py's
folder and cache (run that first, or pass --data/--cache as there).

  cd benchmarks && python bench_audit_head.py [--work /tmp/bench_audit_scale]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from bench_audit_scale import files_of, unpack

from common import machine, peak_rss_mb, run_phase


def phase_one(a: argparse.Namespace) -> dict:
    from imgclf.audit.fingerprints import features
    from imgclf.audit.suspects import cross_fit, find_label_issues

    files = files_of(unpack(Path(a.work), a.data), copies=False)
    rows, feats = features([p for p, _ in files], 0, 128, a.cache, 2, False)
    names = [Path(files[r][0]).parent.name for r in rows]
    classes = sorted(set(names))
    labels = np.array([classes.index(c) for c in names])
    t = time.perf_counter()
    probs = cross_fit(feats, labels, stream=a.method == "streamed")
    took = time.perf_counter() - t
    found = find_label_issues(probs, labels)
    return {
        "method": a.method,
        "head_s": took,
        "peak_rss_mb": peak_rss_mb(),
        "out_of_sample_accuracy": float((probs.argmax(1) == labels).mean()),
        "suspects": [s.index for s in found],
        "confident": [s.index for s in found if s.confident],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", default="")
    ap.add_argument("--work", default="/tmp/bench_audit_scale")
    ap.add_argument("--data", default="")
    ap.add_argument("--cache", default="")
    ap.add_argument("--method", default="lbfgs")
    a = ap.parse_args()
    a.cache = a.cache or str(Path(a.work) / "cache")
    if a.phase == "one":
        print(json.dumps(phase_one(a)))
        return
    passed = ["--work", a.work, "--data", a.data, "--cache", a.cache]
    out = {m: run_phase(__file__, "one", *passed, "--method", m) for m in ("lbfgs", "streamed")}
    for r in out.values():
        print(json.dumps({k: v if not isinstance(v, list) else len(v) for k, v in r.items()}))
    for key in ("suspects", "confident"):
        want, got = set(out["lbfgs"][key]), set(out["streamed"][key])
        print(
            f"{key}: L-BFGS {len(want)}, streamed {len(got)}, both {len(want & got)} "
            f"({len(want & got) / max(len(want), 1):.4f} of L-BFGS's)"
        )
    print(machine())


if __name__ == "__main__":
    sys.exit(main())
