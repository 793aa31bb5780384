"""Every Matplotlib figure (audit, evaluate, preview, predict, compare), for either backend; each
function writes one PNG atomically. The only module that imports Matplotlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
# Titles hold file and class names: "$" in one must print as is, not start mathtext (which
# crashed evaluate and predict --grid on "price_$5.jpg").
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from imgclf.files import atomic_write  # noqa: E402


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a figure atomically and close it."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    out = atomic_write(path, lambda t: fig.savefig(t, format=fmt, dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return out


def plot_confusion(cm: list[list[int]], class_names: list[str], path: str | Path) -> Path:
    cm_a = np.asarray(cm)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * n + 2), max(3.5, 0.6 * n + 1.5)))
    ax.imshow(cm_a, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = cm_a.max() if cm_a.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(cm_a[i, j]),
                ha="center",
                va="center",
                color="white" if cm_a[i, j] > top / 2 else "black",
                fontsize=8,
            )
    ax.set_title("Confusion matrix")
    return save_figure(fig, path)


def plot_curves(history: list[dict[str, Any]], path: str | Path) -> Path:
    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a1.plot(ep, [h["val_loss"] for h in history], "o-", label="val")
    a1.set(title="Loss", xlabel="epoch")
    a2.plot(ep, [h["train_acc"] for h in history], "o-", label="train")
    a2.plot(ep, [h["val_acc"] for h in history], "o-", label="val")
    a2.set(title="Accuracy", xlabel="epoch", ylim=(0, 1))
    for a in (a1, a2):
        a.legend()
        a.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_image_grid(
    images: list[np.ndarray],
    titles: list[str],
    path: str | Path,
    ncols: int = 4,
    suptitle: str = "",
) -> Path:
    """uint8 HWC images with a caption each (the tutorials' prediction and batch grids)."""
    n = max(1, len(images))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3 * ncols, 3.2 * nrows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return save_figure(fig, path)


def plot_size_histogram(widths: list[int], heights: list[int], path: str | Path) -> Path:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.hist(widths, bins=40, color="tab:blue")
    a1.set(title="Image width", xlabel="pixels", ylabel="images")
    a2.hist(heights, bins=40, color="tab:orange")
    a2.set(title="Image height", xlabel="pixels")
    return save_figure(fig, path)


def plot_bars(
    labels: list[str], values: list[float], path: str | Path, title: str, ylabel: str
) -> Path:
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(labels) + 2), 3.8))
    bars = ax.bar(range(len(labels)), values, color="tab:green")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set(title=title, ylabel=ylabel, ylim=(0, max([1.0, *values])))
    for b, v in zip(bars, values, strict=True):
        ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.1%}", ha="center", va="bottom", fontsize=8)
    return save_figure(fig, path)


def plot_reliability(calibration: dict[str, Any], path: str | Path) -> Path:
    """Reliability diagram: accuracy against confidence per bin, the model's own probabilities
    and the temperature-scaled ones; the diagonal is a calibrated model."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    curves = [("reliability_before", "model", f"ECE {calibration['ece_before']:.1%}")]
    if calibration.get("temperature"):
        t, e = calibration["temperature"], calibration["ece_after"]
        curves.append(("reliability_after", f"T = {t:.2f}", f"ECE {e:.1%}"))
    for key, name, ece_text in curves:
        rows = calibration.get(key, [])
        ax.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            "o-",
            label=f"{name} ({ece_text})",
        )
    ax.set(
        title=f"Reliability ({calibration['bins']} bins)",
        xlabel="confidence (top class)",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_coverage(cov: dict[str, Any], path: str | Path) -> Path:
    """Accuracy of the answered images against the share answered (predict --abstain P)."""
    from imgclf.evaluation.metrics import threshold_text  # P near 1 with the digits that count

    fig, ax = plt.subplots(figsize=(4.8, 4.0))
    xs, ys = zip(*cov["curve"], strict=True) if cov["curve"] else ((), ())
    ax.plot(xs, ys, "-")
    for p in cov["points"][1:]:
        ax.annotate(
            f"P {threshold_text(p['threshold'])}", (p["coverage"], p["accuracy"]), fontsize=7
        )
        ax.plot(p["coverage"], p["accuracy"], "o", color="C1", ms=3)
    ax.set(
        title="Accuracy when the least sure are not answered",
        xlabel="coverage (share answered)",
        ylabel="accuracy of the answered",
        xlim=(0.5, 1.0),
    )
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def blend(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """uint8 image with a [0, 1] map laid over it: jet colours at 45 % (Grad-CAM overlays)."""
    heat = (matplotlib.colormaps["jet"](cam)[..., :3] * 255).astype(np.float32)
    return (0.55 * image.astype(np.float32) + 0.45 * heat).clip(0, 255).astype(np.uint8)


def plot_pr_curves(y: np.ndarray, probs: np.ndarray, names: list[str], path: str | Path) -> Path:
    """A multi-label run's precision-recall curve per class, its average precision in the key."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for c, name in enumerate(names):
        if not y[:, c].any():
            continue
        prec, rec, _ = precision_recall_curve(y[:, c], probs[:, c])
        ap = average_precision_score(y[:, c], probs[:, c])
        ax.plot(rec, prec, label=f"{name} (AP {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("Precision-recall per class")
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)
