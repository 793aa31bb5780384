"""Write bench_transfer_levers.py's sets built unlike the training photos (shifted, offcrop: the
same seeded images its feature phase scores) as photo folders, so a trained run can be scored on
them end to end: `imgclf evaluate RUN OUT/shifted`. PNG, so each holds exactly the pixels the
benchmark decoded (its JPEG re-encoding included).

    python benchmarks/unlike_sets.py /tmp/unlike      # then OUT/{shifted,offcrop}/test/{CAT,DOG}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_transfer_levers import CLASSES, photos, unlike  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    imgs, labels = photos("test")
    for name, built in unlike(imgs).items():
        for k, (img, label) in enumerate(zip(built, labels, strict=True)):
            folder = args.out / name / "test" / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{k:04d}.png")
        print(name, len(built), "photos ->", args.out / name)


if __name__ == "__main__":
    main()
