"""Keras builders under the same names as the PyTorch ones, with the same parameter counts."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from imgclf.registry import ModelSpec, register_model
from imgclf.rules import ROTATION_DEGREES, SHIFT_FRACTION, alexnet_flat_side


def _augment(kind: str) -> list:
    """The --augment kinds as Keras layers (the PyTorch side: transforms.augment_batch)."""
    flip = [layers.RandomFlip("horizontal")] if kind != "none" else []
    if kind == "tutorial":  # Keras counts rotation in fractions of a turn
        return flip + [layers.RandomRotation(ROTATION_DEGREES / 360, fill_mode="constant")]
    if kind == "flip-crop":  # the border reflected, as on the PyTorch side
        most = SHIFT_FRACTION
        shift = layers.RandomTranslation(most, most, fill_mode="reflect", interpolation="nearest")
        return flip + [shift]
    return flip


AUGMENT_LAYERS = (layers.RandomFlip, layers.RandomRotation, layers.RandomTranslation)


def _classifier(num_classes: int) -> layers.Layer:
    # float32 even under a mixed-precision policy: probabilities and the loss stay exact
    return layers.Dense(num_classes, activation="softmax", dtype="float32")


def sigmoid_outputs(model: keras.Model) -> None:
    """A multi-label run: the classifier's softmax becomes one sigmoid per class (saved with the
    .keras archive's config, so a loaded model keeps it)."""
    head = model.layers[-1]
    if not isinstance(head, layers.Dense):
        raise ValueError(f"{model.name}: its last layer is not the classifier (a Dense)")
    head.activation = keras.activations.sigmoid


def multi_label_loss(pos_weight: np.ndarray | None, smoothing: float):  # noqa: ANN201
    """Binary cross-entropy summed over the classes of an image (the PyTorch side's loss), the
    positives weighted by pos_weight (--class-weights), targets smoothed toward 1/2."""
    pw = keras.ops.convert_to_tensor(1.0 if pos_weight is None else pos_weight, "float32")

    def binary_cross_entropy(y_true, y_pred):  # noqa: ANN001, ANN202
        y = keras.ops.cast(y_true, "float32") * (1 - smoothing) + smoothing / 2
        p = keras.ops.clip(keras.ops.cast(y_pred, "float32"), 1e-7, 1 - 1e-7)
        terms = pw * y * keras.ops.log(p) + (1 - y) * keras.ops.log(1 - p)
        return -keras.ops.sum(terms, axis=-1)

    return binary_cross_entropy


def _augmented(model_layers: list, size: int, augment: str, name: str) -> keras.Model:
    inputs = keras.Input((size, size, 3))
    x = inputs
    for layer in _augment(augment) + model_layers:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


@register_model(
    "cnn", backend="keras", image_size=224, description="first tutorial's 2-conv CNN (Keras)"
)
def build_cnn(
    num_classes: int,
    pretrained: bool = False,
    freeze_backbone: bool = False,
    image_size: int = 224,
    augment: str = "none",
) -> keras.Model:
    if pretrained:
        raise ValueError("cnn has no pretrained weights")
    return _augmented(
        [
            layers.Conv2D(6, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu"),
            _classifier(num_classes),
        ],
        image_size,
        augment,
        "cnn",
    )


@register_model(
    "alexnet",
    backend="keras",
    image_size=227,
    description="second tutorial's AlexNet from scratch (Keras)",
)
def build_alexnet(
    num_classes: int,
    pretrained: bool = False,
    freeze_backbone: bool = False,
    image_size: int = 227,
    augment: str = "none",
) -> keras.Model:
    if pretrained:
        raise ValueError("alexnet (from scratch) has no pretrained weights")
    alexnet_flat_side(image_size)  # refuses what the network cannot take, as the PyTorch one
    # no Resizing(227) inside (the tutorial's): images arrive at --image-size in both backends
    return _augmented(
        [
            layers.Conv2D(96, 11, strides=4, activation="relu"),
            layers.MaxPooling2D(3, strides=2),
            layers.Conv2D(256, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(3, strides=2),
            layers.Conv2D(384, 3, padding="same", activation="relu"),
            layers.Conv2D(384, 3, padding="same", activation="relu"),
            layers.Conv2D(256, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(3, strides=2),
            layers.Flatten(),
            layers.Dense(4096, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(4096, activation="relu"),
            layers.Dropout(0.5),
            _classifier(num_classes),
        ],
        image_size,
        augment,
        "alexnet",
    )


# keras.applications by our name: (constructor, size, mean, std) with the mean/std that turns our
# 0..1 pixels into what each model expects (MobileNetV2: [-1, 1]; EfficientNet and MobileNetV3
# rescale 0..255 inside the model, so they get raw pixel values).
APPLICATIONS = {
    "mobilenet_v2": ("MobileNetV2", 224, 0.5, 0.5),
    "mobilenet_v3_small": ("MobileNetV3Small", 224, 0.0, 1 / 255),
    "efficientnet_b0": ("EfficientNetB0", 224, 0.0, 1 / 255),
}


def _application_builder(name: str):  # noqa: ANN202
    cls_name, size, _, _ = APPLICATIONS[name]

    def build(
        num_classes: int,
        pretrained: bool = False,
        freeze_backbone: bool = False,
        image_size: int = size,
        augment: str = "none",
        weights: str = "",
    ) -> keras.Model:
        cls = getattr(keras.applications, cls_name)
        try:
            base = cls(
                include_top=False,
                pooling="avg",
                input_shape=(image_size, image_size, 3),
                # a local weights file (--weights), else Keras' download/cache of ImageNet's
                weights=(weights or "imagenet") if pretrained else None,
            )
        except ValueError:
            raise
        except Exception as e:  # urllib errors when offline and not cached
            raise RuntimeError(
                f"Keras ImageNet weights for {cls_name} are not available ({type(e).__name__}): "
                "Keras downloads them into ~/.keras/models when online; copy the file there "
                "to work offline"
            ) from None
        base.trainable = not freeze_backbone
        return _augmented(
            [base, layers.Dropout(0.2), _classifier(num_classes)], image_size, augment, name
        )

    return build


def resolve_application(name: str) -> ModelSpec | None:
    if name not in APPLICATIONS:
        return None
    _, size, mean, std = APPLICATIONS[name]
    return ModelSpec(
        name=name,
        backend="keras",
        builder=_application_builder(name),
        image_size=size,
        mean=(mean,) * 3,
        std=(std,) * 3,
        description=f"keras.applications.{APPLICATIONS[name][0]}",
        backbone=True,
    )


register_model("__external__", backend="keras", extra={"resolve": resolve_application})(
    lambda *a, **k: None
)


def inference_model(model: keras.Model) -> keras.Model:
    """The same layers and weights without the random augmentation layers, for export: a traced
    SavedModel would otherwise keep them active (measured: probabilities off by 0.15)."""
    inputs = keras.Input(model.input_shape[1:])
    x = inputs
    for layer in model.layers[1:]:
        if not isinstance(layer, AUGMENT_LAYERS):
            x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def backbone_of(model: keras.Model) -> keras.Model | None:
    """The pretrained feature extractor inside a keras.applications model (None for cnn/alexnet)."""
    return next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)


def count_params(model: keras.Model) -> tuple[int, int]:
    """(all, trainable)"""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return model.count_params(), trainable
