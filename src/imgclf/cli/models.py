"""`imgclf models`: the registered models of a backend, with their sizes and preprocessing."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    m = sub.add_parser("models", help="list registered models")
    m.add_argument(
        "--backend",
        default="torch",
        choices=("torch", "keras", "all"),
        help="whose models (keras and all load TensorFlow, which takes seconds)",
    )
    return m


HEADERS = [
    "name",
    "backend",
    "params (2 classes)",
    "trainable",
    "size",
    "mean / std",
    "description",
]


def run(args: argparse.Namespace) -> int:
    from imgclf import backends
    from imgclf.tables import table

    chosen = backends.NAMES if args.backend == "all" else (args.backend,)
    rows, missing = [], []
    for name in chosen:
        try:
            rows += _rows(name)
        except (ImportError, RuntimeError):
            missing.append(f"({name}: its extra is not installed)")
    print(table(rows, HEADERS, right=(2, 3, 4)))
    for line in missing:
        print(line)
    print(
        "\nAlso: any torchvision or timm classification model by name (e.g. resnet18, "
        "mobilenet_v3_small, convnext_tiny)."
    )
    if others := [n for n in backends.NAMES if n not in chosen]:
        print(f"Other backends' models (loads their library): imgclf models --backend {others[0]}")
    return 0


def _rows(name: str) -> list[list[str]]:
    """One row a registered model of the backend `name`, its parameters counted for 2 classes."""
    from contextlib import nullcontext

    from imgclf import backends
    from imgclf.models import create_model, get_spec, list_models

    backend, models = backends.get(name), list_models(name)
    # torch counts parameters on its meta device: no memory, no init time
    ctx = backend.listing_device() if hasattr(backend, "listing_device") else nullcontext()
    rows = []
    for model in models:
        spec = get_spec(model, name)
        with ctx:
            m = create_model(model, 2, name, pretrained=False, image_size=spec.image_size)
        total, trainable = backend.count_params(m)
        norm = f"{spec.mean[0]:.3f} / {spec.std[0]:.3f}"
        rows.append(
            [model, name, f"{total:,}", f"{trainable:,}", str(spec.image_size), norm,
             spec.description]
        )  # fmt: skip
    return rows
