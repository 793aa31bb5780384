"""RunConfig: every training default in one place, layered defaults -> YAML -> CLI options."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.messages import UsageError
from imgclf.recipes import RECIPES, recipe_settings

MAX_IMAGE_SIZE = 4096  # pixels a side; 4096^2 x 3 bytes is 48 MiB an image, larger is a typo


# --schedule onecycle, both backends: airbench's linear one-cycle. The short warm-up keeps large
# Nesterov steps from wrecking the first batches; most of the accuracy comes in the long fall.
ONECYCLE_WARMUP, ONECYCLE_START, ONECYCLE_END = 0.23, 0.2, 0.07


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None, metavar: str = "") -> Any:
    """A field with its --help text; metavar PATH/NAME for strings (ints show N, floats FLOAT)."""
    return field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar})


@dataclass(frozen=True)
class RunConfig:
    recipe: str = _opt(
        "none",
        "tuned defaults for the other options (printed, and each overridable by its own option): "
        "transfer = best pretrained model for a photo folder; cifar-fast = airbench-style "
        "CIFAR-10 net; alexnet-cifar = AlexNet with a modern schedule",
        ("none", *RECIPES),
    )
    data_dir: str = _opt(
        "", "image folder, .zip of one, or 'cifar10' / a CIFAR-10 batches folder", metavar="PATH"
    )
    model: str = _opt(
        "cnn",
        "registered model name (see `imgclf models`) or any torchvision/timm name",
        metavar="NAME",
    )
    backend: str = _opt("torch", "training library", ("torch", "keras"))
    pretrained: bool = _opt(False, "start from ImageNet weights where the model has them")
    weights: str = _opt(
        "", "local file with pretrained weights (overrides cache and download)", metavar="PATH"
    )
    freeze: bool = _opt(False, "freeze the backbone and train a new head only")
    fine_tune_after: int = _opt(0, "epochs with a frozen backbone before unfreezing it (0 = never)")
    backbone_lr_scale: float = _opt(0.1, "backbone lr = lr * this after unfreezing (0..1]")
    image_size: int = _opt(
        0, f"input side in pixels, 8..{MAX_IMAGE_SIZE} (0 = the model's default)"
    )
    batch_size: int = _opt(100, "images per step")
    epochs: int = _opt(3, "passes over the training split")
    optimizer: str = _opt(
        "adam",
        "optimizer; nesterov is SGD with Nesterov momentum; lbfgs fits a frozen backbone's head "
        "on its cached features, full batch, 20 iterations per epoch",
        ("adam", "sgd", "nesterov", "lbfgs"),
    )
    lr: float = _opt(1e-3, "peak learning rate")
    momentum: float = _opt(0.9, "SGD momentum [0, 1)")
    weight_decay: float = _opt(0.0, "L2 weight decay >= 0")
    label_smoothing: float = _opt(0.0, "cross-entropy label smoothing [0, 1)")
    class_weights: str = _opt(
        "none",
        "loss weights per class: none; auto = inverse class frequency, clipped to 0.1..10; or a "
        'JSON file of class -> weight ({"cat": 1, "dog": 4})',
        metavar="none|auto|FILE.json",
    )
    sampler: str = _opt(
        "none",
        "balanced = draw each epoch's images with replacement, 1/(class count) each, so every "
        "class fills an equal share (mini-batch optimizers)",
        ("none", "balanced"),
    )
    schedule: str = _opt(
        "constant",
        "lr schedule over steps; onecycle = rise from 0.2x to 1x over the first 23%% of steps, "
        "then fall linearly to 0.07x (airbench's)",
        ("constant", "cosine", "onecycle", "step"),
    )
    step_epochs: int = _opt(10, "step schedule: multiply lr by 0.1 every this many epochs")
    ema: float = _opt(
        0.0,
        "keep an exponential moving average of the weights, this decay per step (e.g. 0.998); "
        "it is what validates and what best/last hold (0 = off)",
    )
    lookahead: bool = _opt(
        False,
        "airbench's lookahead: every 5 steps the weights move to a slow average of themselves "
        "whose memory grows from none to 0.77 over the run; the run ends on the average",
    )
    tta: bool = _opt(False, "evaluate/predict/serve this run with flip TTA unless told --no-tta")
    patience: int = _opt(0, "early stopping: epochs without val-accuracy gain (0 = off)")
    augment: str = _opt(
        "tutorial",
        "train augmentation: tutorial = flip + rotate 10 degrees; flip = mirror (a frozen "
        "backbone's features are cached for both views); flip-crop = mirror + shift by up to 1/16 "
        "of the side, reflected at the border",
        ("tutorial", "flip", "flip-crop", "none"),
    )
    pipeline: str = _opt("cache", "data pipeline", ("cache", "plain"))
    val_fraction: float = _opt(
        -1.0,
        "share of train held out, stratified and seeded, to validate on when there is no val/ "
        "folder (-1 = auto: 20 %%)",
    )
    validate_on: str = _opt(
        "auto",
        "auto = val/, else a part of train; test = validate on test/ as the tutorials do (best "
        "checkpoint and early stopping then choose on test, so its accuracy is optimistic)",
        ("auto", "test"),
    )
    max_per_class: int = _opt(0, "train/val on at most this many images per class (0 = all)")
    exclude_list: str = _opt(
        "", "file of paths to skip (from `imgclf audit --exclude-list`)", metavar="PATH"
    )
    label_from_name: str = _opt(
        "",
        "labels from file names: a regex whose group 'label' is the class; the bare flag takes "
        "the leading word before '.', '_' or '-' and a number (cat.12.jpg, dog_3.png)",
        metavar="REGEX",
    )
    labels: str = _opt(
        "",
        "CSV of image and label (columns path/file/filename/file_name/image/id and "
        "label/class/category; paths relative to DATA; an optional split column)",
        metavar="PATH",
    )
    path_column: str = _opt("", "the --labels column holding the image path or id", metavar="NAME")
    label_column: str = _opt("", "the --labels column holding the class", metavar="NAME")
    label_delim: str = _opt(
        "",
        "what separates several classes in one --labels cell ('' = ';' where a file has one, "
        "else spaces; 'none' = never split: class names with spaces); a cell like "
        "['cat', 'dog'] is a list whatever this says",
        metavar="TEXT",
    )
    multi_label: bool = _opt(
        False,
        "one sigmoid output per class (binary cross-entropy, a threshold per class); implied by "
        "labels with several classes or none in a cell",
    )
    corrections: str = _opt(
        "",
        "corrections.csv from `imgclf review`: relabel, exclude and add the images it names "
        "(the files themselves are never touched)",
        metavar="PATH",
    )
    workers: int = _opt(2, "decoding processes")
    cache_dir: str = _opt("", "decoded-image cache (default ~/.cache/imgclf)", metavar="PATH")
    seed: int = _opt(42, "seed for weights, split, shuffling and augmentation (0 .. 2**32-1)")
    device: str = _opt("auto", "auto picks cuda, then mps, then cpu", metavar="NAME")
    amp: bool = _opt(True, "bf16 autocast on CUDA")
    cpu_bf16: bool = _opt(
        False,
        "bf16 autocast when training on the CPU (needs native bf16: AVX512-BF16 or AMX; ~1.9x "
        "faster train steps measured there, a different rounding than float32, so off unless "
        "asked)",
    )
    channels_last: bool = _opt(True, "NHWC memory format for convolutions")
    compile: bool = _opt(False, "torch.compile the train step (compiles first; `imgclf bench`)")
    out_dir: str = _opt("", "run folder (default runs/<model>-<time>)", metavar="PATH")
    replicas: int = _opt(
        1,
        "data-parallel workers on this machine: torch starts N processes with torchrun (one per "
        "GPU, gloo on CPU), keras mirrors over N devices; --batch-size stays the global batch",
    )
    sync_bn: bool = _opt(False, "SyncBatchNorm across torchrun processes (CUDA)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise UsageError(f"{f.name} must be one of {', '.join(choices)}")
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"{f.name} must be a finite number, got {value!r}")
        checks = {
            "batch_size": self.batch_size >= 1,
            "epochs": self.epochs >= 1,
            "lr": self.lr > 0,
            "momentum": 0 <= self.momentum < 1,
            "weight_decay": self.weight_decay >= 0,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "ema": 0 <= self.ema < 1,
            "image_size": self.image_size == 0 or 8 <= self.image_size <= MAX_IMAGE_SIZE,
            "seed": 0 <= self.seed < 2**32,  # NumPy's seeds
            "val_fraction": self.val_fraction == -1 or 0 <= self.val_fraction < 1,
            "backbone_lr_scale": 0 < self.backbone_lr_scale <= 1,
            "workers": self.workers >= 0,
            "replicas": self.replicas >= 1,
            "patience": self.patience >= 0,
            "fine_tune_after": self.fine_tune_after >= 0,
            "max_per_class": self.max_per_class >= 0,
        }
        if self.class_weights not in ("none", "auto") and not self.class_weights.endswith(".json"):
            raise UsageError(
                f"--class-weights {self.class_weights!r}: none, auto or a FILE.json of class -> "
                "weight"
            )
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise UsageError(f"out of range: {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def field_types() -> dict[str, type]:
    hints = typing.get_type_hints(RunConfig)
    out = {}
    for name, tp in hints.items():
        if isinstance(tp, types.UnionType):  # not used today, kept robust for `X | None`
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        out[name] = tp
    return out


def coerce(name: str, value: Any) -> Any:
    """Convert a YAML/CLI value to the field's type, with a message naming the key. Nothing is
    rounded or guessed: 2.9 is not an int, true is not a count, inf and nan are not numbers."""
    types_ = field_types()
    if name not in types_:
        raise UsageError(f"unknown config key {name!r}; valid keys: {', '.join(sorted(types_))}")
    tp = types_[name]
    flag = "--" + name.replace("_", "-")
    if tp is bool:
        if isinstance(value, bool):
            return value
        low = str(value).lower()
        if low not in {"true", "false", "1", "0", "yes", "no"}:
            raise UsageError(f"{flag} expects true/false, got {value!r}")
        return low in {"true", "1", "yes"}
    if isinstance(value, bool) and tp is not str:
        raise UsageError(f"{flag} expects {tp.__name__}, got {value!r}")
    try:
        if tp is int and isinstance(value, float):
            raise ValueError  # a YAML 2.9 (or 2.0) is not a count
        out = tp(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} expects {tp.__name__}, got {value!r}") from None
    if tp is float and not math.isfinite(out):
        raise UsageError(f"{flag} expects a finite number, got {value!r}")
    return out


def build_config(yaml_path: str | None = None, **overrides: Any) -> RunConfig:
    """Defaults, a recipe's choices, an optional YAML file, then explicit overrides (None means
    'not given')."""
    from_yaml: dict[str, Any] = {}
    if yaml_path:
        import yaml

        try:
            loaded = yaml.safe_load(Path(yaml_path).read_text()) or {}
        except yaml.YAMLError as e:  # also a !!python/object tag: safe_load builds no objects
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UsageError(f"{yaml_path}: not a YAML config ({first})") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{yaml_path}: expected a mapping of config keys")
        from_yaml = {k: coerce(k, v) for k, v in loaded.items()}
    given = {k: coerce(k, v) for k, v in overrides.items() if v is not None}
    # a recipe's choices sit below the YAML file and the options typed
    recipe = given.get("recipe", from_yaml.get("recipe", "none"))
    return RunConfig(**{**recipe_settings(recipe), **from_yaml, **given})


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """A RunConfig from a run's config.json (which also holds derived, non-config keys)."""
    known = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in data.items() if k in known})
