"""The data loop as a user runs it: audit -> review in real Chromium -> corrections.csv ->
train --corrections; and suggest -> review --suggestions -> the new labels in training."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import draw_shape, free_port, make_folder, run_cli, snapshot, wait_until_up

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TRAIN = ["--model", "cnn", "--image-size", "32", "--epochs", "2", "--batch-size", "8"]


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, audit.json): shapes with a few red ones filed as blue, audited for label issues."""
    tmp = tmp_path_factory.mktemp("review")
    data = make_folder(tmp / "d", {"train": 12, "test": 4})
    for i in range(3):
        draw_shape((220, 50, 40), 900 + i, 32).save(data / "train" / "blue" / f"odd_{i}.png")
    out = tmp / "audit"
    run_cli("audit", str(data), "--label-issues", "--out", str(out), "--workers", "1")
    return data, out / "audit.json"


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = Path(sys.executable).parent / "imgclf"
    proc = subprocess.Popen(
        [str(exe), "review", *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/api/state", proc, lambda: proc.stdout.read() if proc.stdout else "")
    return proc, url


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_review_in_real_chromium_keys_reload_and_undo(audited, tmp_path: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import sync_playwright

    data, audit = audited
    before = snapshot(data)
    out = tmp_path / "rev"
    proc, url = _start(str(data), "--audit", str(audit), "--out", str(out))
    try:
        items = httpx.get(url + "/api/state").json()["items"]
        assert len(items) >= 4 and items[0]["kind"] == "label issue"
        assert items[0]["given_probability"] is not None and items[0]["related"]
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )  # fmt: skip
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready='1']")
            assert page.inner_text("#path") == items[0]["path"]
            assert page.eval_on_selector("#photo", "i => i.complete && i.naturalWidth") > 0
            page.keyboard.press("a")  # take the suggestion
            page.wait_for_selector(f"#path:text-is('{items[1]['path']}')")
            page.keyboard.press("x")  # exclude
            page.wait_for_selector(f"#path:text-is('{items[2]['path']}')")
            page.keyboard.press("3")  # the third class: red
            page.wait_for_selector(f"#path:text-is('{items[3]['path']}')")
            page.reload()  # a closed tab or a crash: the decisions are on disk already
            page.wait_for_selector("body[data-ready='1']")
            assert page.inner_text("#progress").startswith("3 / ")
            assert page.inner_text("#path") == items[3]["path"]  # resumes at the next one
            page.keyboard.press("u")  # undo the latest: back to the third item
            page.wait_for_selector(f"#path:text-is('{items[2]['path']}')")
            assert page.inner_text("#progress").startswith("2 / ")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    rows = _rows(out / "corrections.csv")
    assert [(r["path"], r["decision"], r["new_label"]) for r in rows] == [
        (items[0]["path"], "relabel", items[0]["suggested"]),
        (items[1]["path"], "exclude", ""),
    ]
    assert all(r["given"] == items[n]["given"] and r["time"] for n, r in enumerate(rows))
    assert snapshot(data) == before  # the user's files: not moved, renamed or rewritten


def test_the_review_api_takes_json_from_this_machine_only(audited, tmp_path: Path) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from imgclf.review.app import Review, create_review_app
    from imgclf.review.findings import from_audit

    data, audit = audited
    labels = {os.path.realpath(p): p.parent.name for p in data.rglob("*.png")}
    review = Review(from_audit(audit, data, labels), ["blue", "green", "red"], tmp_path / "c.csv")
    client = TestClient(create_review_app(review), base_url="http://127.0.0.1")
    form = client.post("/api/decide", content='{"id": 0, "action": "keep"}')  # no JSON type
    assert form.status_code == 415
    foreign = TestClient(create_review_app(review), base_url="http://evil.example")
    assert foreign.get("/api/state").status_code == 400
    assert client.get("/image/0/99").status_code == 404
    assert client.get(f"/image/{len(review.items)}/0").status_code == 404
    bad = client.post("/api/decide", json={"id": 0, "action": "relabel", "label": "purple"})
    assert bad.status_code == 400 and "purple" in bad.json()["detail"]
    assert not (tmp_path / "c.csv").exists()  # nothing decided, nothing written


def _labels(run: Path) -> dict[str, int]:
    splits = json.loads((run / "split.json").read_text())["splits"]
    return {p: y for rows in splits.values() for p, y in rows}


def test_train_with_corrections_changes_what_they_name_and_nothing_else(
    audited,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    data, _ = audited
    fixes = tmp_path / "corrections.csv"
    fixes.write_text(
        "path,given,decision,new_label,time\n"
        "train/blue/odd_0.png,blue,relabel,red,t\n"
        "train/blue/odd_1.png,blue,exclude,,t\n"
        "train/green/green_000.png,green,keep,,t\n"
    )
    plain, fixed = tmp_path / "plain", tmp_path / "fixed"
    run_cli("train", str(data), *TRAIN, "--out", str(plain))
    r = run_cli(
        "train", str(data), *TRAIN, "--out", str(fixed),
        "--corrections", str(fixes),
    )  # fmt: skip
    assert "relabelled" in r.stdout
    a, b = _labels(plain), _labels(fixed)
    changed = {p for p in a if a[p] != b.get(p)}
    odd0, odd1 = (
        os.path.join("train", "blue", "odd_0.png"),
        os.path.join("train", "blue", "odd_1.png"),
    )
    assert changed == {odd0, odd1} and b[odd0] == 2 and odd1 not in b
    meta = json.loads((fixed / "meta.json").read_text())["corrections"]
    assert (meta["relabelled"], meta["excluded"], meta["kept"]) == (1, 1, 1)
    assert meta["file"] == str(fixes.resolve())


@pytest.mark.parametrize(
    "row, words",
    [
        ("../elsewhere.png,x,exclude,,t", "outside the data folder"),
        ("train/red/red_000.png,red,relabel,purple,t", "class 'purple' is not one of"),
        ("train/red/gone.png,red,exclude,,t", "no such image"),
        ("train/red/red_000.png,red,rename,,t", "decision 'rename'"),
    ],
)
def test_a_bad_correction_is_refused_in_one_line(
    audited,
    tmp_path: Path,
    row: str,
    words: str,  # noqa: ANN001
) -> None:
    data, _ = audited
    (data.parent / "elsewhere.png").write_bytes((data / "train/red/red_000.png").read_bytes())
    fixes = tmp_path / "c.csv"
    fixes.write_text("path,given,decision,new_label,time\n" + row + "\n")
    for cmd in (["train", str(data), *TRAIN, "--out", str(tmp_path / "run")], ["audit", str(data)]):
        r = run_cli(*cmd, "--corrections", str(fixes), check=False)
        assert r.returncode == 2 and words in r.stderr, (cmd[0], r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_suggest_then_label_then_train_on_the_new_labels(audited, tmp_path: Path) -> None:  # noqa: ANN001
    from imgclf.predictor import decoded_batches, expand_inputs, load_predictor
    from imgclf.review.suggest import uncertainty

    data, _ = audited
    run = tmp_path / "run"
    run_cli("train", str(data), *TRAIN, "--out", str(run))
    pool = tmp_path / "unlabelled"
    pool.mkdir()
    colours = [(220, 50, 40), (40, 60, 200), (50, 190, 60), (130, 120, 120)]
    for i in range(24):
        draw_shape(colours[i % 4], 3000 + i, 32).save(pool / f"u{i:02d}.png")
    out = tmp_path / "s.json"
    r = run_cli("suggest", str(run), str(pool), "--budget", "5", "--out", str(out))
    assert r.returncode == 0, r.stderr
    chosen = [s["path"] for s in json.loads(out.read_text())["suggestions"]]
    assert len(chosen) == len(set(chosen)) == 5
    predictor = load_predictor(run)
    paths = expand_inputs([str(pool)])
    probs = np.concatenate(
        [predictor.predict_proba(b) for _, b, _ in decoded_batches(paths, 32, 64)]
    )
    u = dict(zip([str(Path(p).resolve()) for p in paths], uncertainty(probs), strict=True))
    median = float(np.median(list(u.values())))
    assert all(u[p] >= median for p in chosen)
    # label the first suggestion as review --suggestions does, then train with it
    from imgclf.review.app import Review
    from imgclf.review.findings import from_suggestions

    items, names = from_suggestions(out, pool)
    assert names == ["blue", "green", "red"] and items[0].path == chosen[0]  # absolute
    review = Review(items, names, tmp_path / "c.csv")
    assert review.labelling and review.decide(0, "relabel", "green")["decision"] == "label"
    grown = tmp_path / "grown"
    run_cli(
        "train", str(data), *TRAIN, "--out", str(grown), "--corrections", str(tmp_path / "c.csv")
    )
    meta = json.loads((grown / "meta.json").read_text())
    assert meta["corrections"]["added"] == 1
    added = [p for p in _labels(grown) if p.endswith(Path(chosen[0]).name)]
    assert added and _labels(grown)[added[0]] == 1  # green
