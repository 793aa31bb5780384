"""Several processes filling one decoded cache (issue 44: a torchrun audit's ranks each decode
their share): wall time of one builder decoding all of CATS_DOGS/train (3,000 JPEGs, 224 px) vs
N builders started together, each decoding its 1/N share into the same fresh store, one decode
worker each. Run it on the code before and after a change with --src to compare side by side.

    python benchmarks/bench_shared_decode.py [--builders 2] [--src OTHER_CHECKOUT/src]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from common import CATS_DOGS, machine

BUILD = """
import sys, numpy as np
from imgclf.data.cache import DecodedCache
from imgclf.data.folder import scan_class_folder
idx = scan_class_folder(sys.argv[1])
rank, world = int(sys.argv[3]), int(sys.argv[4])
s = DecodedCache(idx, 224, sys.argv[2]).build(1, False, only=np.arange(rank, len(idx), world))
print(s.decoded)
"""


def fill(src: str, builders: int) -> dict:
    """Wall seconds for `builders` processes to fill a fresh store, and the images decoded."""
    env = {**os.environ, "PYTHONPATH": src} if src else dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        args = [str(CATS_DOGS / "train"), cache]
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", BUILD, *args, str(r), str(builders)],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for r in range(builders)
        ]
        decoded = sum(int(p.communicate()[0]) for p in procs)
        wall = time.perf_counter() - t0
    return {"builders": builders, "wall_s": round(wall, 1), "decoded": decoded}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builders", type=int, default=2)
    ap.add_argument("--src", default="", help="another checkout's src/, measured beside this one")
    a = ap.parse_args()
    print(json.dumps({"machine": machine()}), flush=True)
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    for name, src in (("other", a.src), ("this", here)) if a.src else (("this", here),):
        for n in (1, a.builders):
            print(json.dumps({"code": name, **fill(src, n)}), flush=True)


if __name__ == "__main__":
    main()
