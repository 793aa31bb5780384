"""`imgclf predict --explain` and the evaluation report's heatmaps (issue 26), through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from conftest import run_cli

TINY = ["--model", "cnn", "--image-size", "32", "--epochs", "1", "--batch-size", "8"]
TINY += ["--workers", "0"]


def test_predict_explain_writes_overlays_with_peaks_in_original_pixels(
    tiny_folder: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run_cli("train", str(tiny_folder), *TINY, "--out", str(run))
    wide = tmp_path / "wide.png"
    Image.open(tiny_folder / "test" / "red" / "red_000.png").resize((90, 30)).save(wide)
    out, js = tmp_path / "why", tmp_path / "p.json"
    grid = tmp_path / "grid.png"
    run_cli(
        "predict",
        str(run),
        str(wide),
        str(tiny_folder / "test" / "blue"),
        "--explain",
        str(out),
        "--json",
        str(js),
        "--grid",
        str(grid),
    )
    rows = json.loads(js.read_text())
    assert len(rows) == 5 and all("explanation" in r for r in rows)
    e = rows[0]["explanation"]
    assert Path(e["png"]).parent == out and Image.open(e["png"]).width >= 224
    assert e["class"] == rows[0]["class"]
    x, y = e["peak_xy"]  # the 90 x 30 photo's own pixels: within its centre 30 x 30 crop
    assert 29.5 <= x <= 60 and -0.5 <= y <= 30
    assert len(list(out.glob("*.png"))) == 5 and grid.stat().st_size > 0
    # another class on demand; an unknown one is a usage error
    explain = ["predict", str(run), str(wide), "--explain", str(out), "--explain-class"]
    run_cli(*explain, "green", "--json", str(js))
    assert json.loads(js.read_text())[0]["explanation"]["class"] == "green"
    bad = run_cli(*explain, "zebra", check=False)
    assert bad.returncode == 2 and "the model's classes are blue, green, red" in bad.stderr
    alone = run_cli("predict", str(run), str(wide), "--explain-class", "green", check=False)
    assert alone.returncode == 2 and "needs --explain DIR" in alone.stderr
    # the evaluation's top losses carry heatmaps unless --no-explain
    run_cli("evaluate", str(run))
    assert json.loads((run / "metrics.json").read_text())["top_losses_heatmaps"] is True
    run_cli("evaluate", str(run), "--no-explain")
    assert json.loads((run / "metrics.json").read_text())["top_losses_heatmaps"] is False
