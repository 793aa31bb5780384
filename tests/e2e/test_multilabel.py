"""Multi-label data through the real CLI on both backends: a CSV whose cells name several classes
(or none) trains, evaluates, predicts, serves and exports; the thresholds fitted on val reach
every answer and the exported rule; bad cells are one line, exit 2."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import COLOURS, make_folder, run_cli

FAST = ("--model", "cnn", "--image-size", "32", "--batch-size", "16", "--workers", "1")


def composites(root: Path, n: int = 240, test: int = 50) -> Path:
    """Noise with a coloured square in some of its quadrants; the label: the colours present
    (an empty cell where there is none). The last `test` rows are the test split."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        img = Image.fromarray(rng.integers(200, 255, (32, 32, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        present = [c for c in sorted(COLOURS) if rng.random() < 0.45]
        for c, q in zip(present, rng.permutation(4), strict=False):
            x, y = (q % 2) * 16, (q // 2) * 16
            draw.rectangle((x + 2, y + 2, x + 13, y + 13), fill=COLOURS[c])
        img.save(root / "img" / f"{i:03d}.png")
        rows.append((f"img/{i:03d}.png", " ".join(present), "test" if i >= n - test else "train"))
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "split"), *rows])
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return composites(tmp_path_factory.mktemp("multi") / "data")


def truth(data: Path) -> dict[str, set[str]]:
    with open(data / "labels.csv") as f:
        return {r["path"]: set(r["label"].split()) for r in csv.DictReader(f)}


def check_evaluation(run: Path) -> dict:
    proc = run_cli("evaluate", str(run), "--no-explain")
    m = json.loads((run / "metrics.json").read_text())
    assert m["multi_label"] and f"mAP {m['mAP']:.3f}" in proc.stdout
    assert m["mAP"] > m["baseline"]["prevalence_mAP"] + 0.3  # it ranks, far above prevalence
    assert m["images"] == 50 and m["images_with_no_class"] > 0
    assert {c["class"] for c in m["per_class"]} == set(COLOURS)
    fitted = json.loads((run / "calibration.json").read_text())["thresholds"]
    assert m["thresholds"]["per_class"] == pytest.approx(fitted)  # val's, applied on test
    assert (run / "pr_curves.png").stat().st_size > 0 and "mAP" in (run / "report.html").read_text()
    return m


def check_predict(run: Path, data: Path, tmp: Path) -> list[dict]:
    photos = [str(data / "img" / f"{i:03d}.png") for i in range(190, 240)]
    run_cli(
        "predict", str(run), *photos, "--json", str(tmp / "p.json"), "--grid", str(tmp / "g.png")
    )
    rows = json.loads((tmp / "p.json").read_text())
    thresholds = json.loads((run / "calibration.json").read_text())["thresholds"]
    for r in rows:
        probs = {t["class"]: t["probability"] for t in r["top"]}
        assert r["labels"] == [
            c for c in sorted(probs, key=lambda c: -probs[c]) if probs[c] >= thresholds[c]
        ]
    right = sum(set(r["labels"]) == truth(data)[f"img/{Path(r['path']).name}"] for r in rows)
    assert right >= 40, right  # exact sets, none included
    proc = run_cli("predict", str(run), photos[0], "--abstain", "0.9", check=False)
    assert proc.returncode == 2 and "single-label runs" in proc.stderr
    return rows


def test_torch_multi_label_trains_evaluates_predicts_serves_and_exports(
    data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    log = run_cli(
        "train",
        str(data),
        "--labels",
        str(data / "labels.csv"),
        *FAST,
        "--epochs",
        "12",
        "--out",
        str(run),
    )
    assert "multi-label:" in log.stdout and "thresholds (F1 on" in log.stdout
    assert json.loads((run / "meta.json").read_text())["multi_label"] is True
    assert isinstance(json.loads((run / "split.json").read_text())["splits"]["train"][0][1], list)
    m = check_evaluation(run)
    assert m["exact_match"] >= 0.8
    table = run_cli("compare", str(run), cwd=tmp_path).stdout
    assert "test (exact match)" in table and f"{m['exact_match']:.2%}" in table
    rows = check_predict(run, data, tmp_path)
    two = next(r["path"] for r in rows if len(r["labels"]) >= 2)
    run_cli(
        "predict",
        str(run),
        two,
        "--explain",
        str(tmp_path / "maps"),
        "--json",
        str(tmp_path / "e.json"),
    )
    (row,) = json.loads((tmp_path / "e.json").read_text())
    assert [e["class"] for e in row["explanations"]] == row["labels"]  # a map per class found
    assert all(Path(e["png"]).is_file() for e in row["explanations"])
    # serve: the list in every answer, the thresholds in /health
    from fastapi.testclient import TestClient

    from imgclf.serve.app import create_app
    from imgclf.serve.config import ServeConfig

    client = TestClient(create_app(ServeConfig(str(run))), base_url="http://localhost")
    assert client.get("/health").json()["thresholds"] == pytest.approx(
        json.loads((run / "calibration.json").read_text())["thresholds"]
    )
    png = (data / "img" / "190.png").read_bytes()
    body = client.post("/predict", files={"file": ("a.png", png, "image/png")}).json()
    assert body["labels"] == rows[0]["labels"]
    shown = (Path(two)).read_bytes()
    said = client.post("/predict?explain=1", files={"file": ("b.png", shown, "image/png")}).json()
    assert [x["class"] for x in said["explanations"]] == said["labels"] == row["labels"]
    # the Open Inference Protocol: the per-class decisions beside the probabilities
    meta = client.get("/v2/models/run").json()
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "labels"]
    names, image = meta["parameters"]["classes"], base64.b64encode(png).decode()
    ask = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]}]}
    outs = {o["name"]: o for o in client.post("/v2/models/run/infer", json=ask).json()["outputs"]}
    assert outs["labels"]["datatype"] == "BOOL" and outs["labels"]["shape"] == [1, len(names)]
    decided = {n for n, yes in zip(names, outs["labels"]["data"], strict=True) if yes}
    assert decided == set(rows[0]["labels"])
    # export: sigmoids out, the thresholds in preprocess.json; a client without imgclf applies them
    run_cli("export", str(run), "--format", "onnx", "--int8")
    int8 = json.loads((run / "export" / "int8.json").read_text())
    assert int8["agreement"] >= 0.95  # every yes/no per class, at the fitted thresholds
    rule = json.loads((run / "export" / "preprocess.json").read_text())
    fitted = json.loads((run / "calibration.json").read_text())["thresholds"]
    assert rule["multi_label"] and rule["thresholds"] == pytest.approx(fitted)
    assert plain_client_labels(run / "export", data / "img" / "190.png") == rows[0]["labels"]


def plain_client_labels(export: Path, photo: Path) -> list[str]:
    """What a client with only onnxruntime, NumPy and PIL does with preprocess.json's rule."""
    import onnxruntime as ort

    rule = json.loads((export / "preprocess.json").read_text())
    img = Image.open(photo).convert("RGB")
    side = rule["resize_shorter_side"]
    w, h = img.size
    img = img.resize((round(w * side / min(w, h)), round(h * side / min(w, h))), Image.BILINEAR)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side))
    x = (np.asarray(img, np.float32) * rule["scale"] - rule["mean"]) / rule["std"]
    x = x.transpose(2, 0, 1)[None].astype(np.float32)
    session = ort.InferenceSession(str(export / "model.onnx"))
    (p,) = session.run(None, {session.get_inputs()[0].name: x})[0]
    order = np.argsort(-p)
    names = rule["class_names"]
    return [names[k] for k in order if p[k] >= rule["thresholds"][names[k]]]


def test_keras_multi_label_trains_evaluates_predicts_and_exports(
    data: Path, tmp_path: Path
) -> None:
    pytest.importorskip("keras")
    run = tmp_path / "run"
    run_cli(
        "train",
        str(data),
        "--labels",
        str(data / "labels.csv"),
        *FAST,
        "--backend",
        "keras",
        "--epochs",
        "8",
        "--class-weights",
        "auto",
        "--out",
        str(run),
    )
    cfg = json.loads((run / "config.json").read_text())
    assert set(cfg["class_weights_used"]) == set(COLOURS)  # each class's pos_weight
    check_evaluation(run)
    check_predict(run, data, tmp_path)
    run_cli("export", str(run), "--format", "keras")
    rule = json.loads((run / "export" / "preprocess.json").read_text())
    assert rule["multi_label"] and set(rule["thresholds"]) == set(COLOURS)


def test_multi_label_on_single_label_data_scores_as_single_label(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "d", {"train": 16, "test": 8})
    args = (str(folder), *FAST, "--epochs", "6", "--seed", "5")
    run_cli("train", *args, "--out", str(tmp_path / "single"))
    run_cli("train", *args, "--multi-label", "--out", str(tmp_path / "multi"))
    run_cli("evaluate", str(tmp_path / "single"), "--no-explain")
    run_cli("evaluate", str(tmp_path / "multi"), "--no-explain")
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())["accuracy"]
    multi = json.loads((tmp_path / "multi" / "metrics.json").read_text())
    assert multi["multi_label"] and abs(multi["top1_accuracy"] - single) <= 0.01 + 1e-9


@pytest.mark.parametrize(
    ("cell", "said"),
    [
        ("red,green", "holds ',', which imgclf does not split on by default"),
        ("red red", "names 'red' twice"),
        ("['red', 'green'", "is not a list of names"),
        ("blue teal", "class 'teal' has no train image"),
    ],
)
def test_a_bad_label_cell_is_one_line_and_exit_2(
    cell: str, said: str, data: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.csv"
    rows = (data / "labels.csv").read_text().splitlines()
    split = "test" if "teal" in cell else "train"
    buf = io.StringIO()
    csv.writer(buf).writerow(["img/001.png", cell, split])
    labels.write_text("\n".join([rows[0], buf.getvalue().strip(), *rows[3:]]) + "\n")
    proc = run_cli(
        "train",
        str(data),
        "--labels",
        str(labels),
        *FAST,
        "--out",
        str(tmp_path / "r"),
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        proc.stderr.count("\n") == 1 and f"{labels} line 2" in proc.stderr and said in proc.stderr
    )
    assert not (tmp_path / "r").exists()


def test_an_empty_cell_needs_multi_label(data: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\nimg/000.png,red\nimg/001.png,\nimg/002.png,blue\n")
    proc = run_cli("train", str(data), "--labels", str(labels), *FAST, check=False)
    assert proc.returncode == 2 and "line 3: empty label for 'img/001.png'" in proc.stderr
    assert "--multi-label" in proc.stderr


def test_audit_counts_each_class_and_finds_labels_left_out(data: Path, tmp_path: Path) -> None:
    with open(data / "labels.csv") as f:
        rows = list(csv.reader(f))
    dropped = [r[0] for r in rows[1:] if "blue" in r[1].split() and r[2] == "train"][:6]
    for r in rows[1:]:
        if r[0] in dropped:
            r[1] = " ".join(c for c in r[1].split() if c != "blue")
    noisy = tmp_path / "noisy.csv"
    with open(noisy, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "audit"
    proc = run_cli("audit", str(data), "--labels", str(noisy), "--label-issues", "--out", str(out))
    report = json.loads((out / "audit.json").read_text())
    shown = sum(r[1].count("blue") for r in rows[1:] if r[2] == "train")
    assert report["counts"]["train"]["blue"] == shown  # an image counts for each of its classes
    found = {Path(x["path"]).name for x in report["label_issues"] if "blue" in x["missing"]}
    assert len(found & {Path(p).name for p in dropped}) >= 3, found
    assert "likely also blue)" in proc.stdout and "labelled {" in proc.stdout


def test_a_hugging_face_list_column_is_multi_label(tmp_path: Path) -> None:
    root = composites(tmp_path / "hf", n=60, test=0)
    with open(root / "labels.csv") as f:
        rows = [(r["path"], str(r["label"].split())) for r in csv.DictReader(f)]
    with open(root / "metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file_name", "label"), *rows])
    (root / "labels.csv").unlink()
    proc = run_cli("train", str(root), *FAST, "--epochs", "1", "--out", str(tmp_path / "r"))
    assert "Hugging Face imagefolder metadata" in proc.stdout and "multi-label:" in proc.stdout
    stored = json.loads((tmp_path / "r" / "split.json").read_text())["splits"]
    assert any(y == [] for _, y in stored["train"] + stored["val"])  # an image with none
