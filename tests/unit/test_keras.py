"""Keras backend: the same models with the same parameter counts as PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import imgclf.backends.keras  # noqa: F401  (loads torch before TensorFlow: see there)

keras = pytest.importorskip("keras", reason="the [keras] extra is not installed")

from imgclf.backends.torch.models.transfer import count_params  # noqa: E402
from imgclf.models import create_model, list_models  # noqa: E402

pytestmark = pytest.mark.keras


@pytest.mark.parametrize(
    "name,size,classes",
    [("cnn", 224, 2), ("alexnet", 227, 10), ("cnn", 32, 3), ("alexnet", 128, 3)],
)
def test_parameter_parity_with_pytorch(name: str, size: int, classes: int) -> None:
    k = create_model(name, classes, backend="keras", image_size=size)
    t = create_model(name, classes, image_size=size)
    assert k.count_params() == count_params(t)
    out = k.predict_on_batch(np.zeros((2, size, size, 3), np.float32))
    assert out.shape == (2, classes) and np.allclose(out.sum(1), 1, atol=1e-5)


def test_both_alexnets_refuse_images_too_small_for_them() -> None:
    """Keras' grew every image to 227 px inside the model whatever --image-size said."""
    for backend in ("keras", "torch"):
        with pytest.raises(ValueError, match="at least 67 px, got 32"):
            create_model("alexnet", 10, backend=backend, image_size=32)


def test_the_registry_says_which_keras_models_have_a_backbone() -> None:
    from imgclf.backends.keras.models import backbone_of
    from imgclf.models import get_spec

    for name in ("cnn", "alexnet", "mobilenet_v3_small"):
        model = create_model(name, 2, backend="keras", pretrained=False)
        assert get_spec(name, "keras").backbone == (backbone_of(model) is not None)


def test_both_backends_register_the_tutorial_models() -> None:
    assert {"cnn", "alexnet"} <= set(list_models("keras")) & set(list_models("torch"))


def test_keras_application_without_weights_offline_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # noqa: ANN001
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    m = create_model("mobilenet_v2", 3, backend="keras", pretrained=False, image_size=96)
    assert m.predict_on_batch(np.zeros((1, 96, 96, 3), np.float32)).shape == (1, 3)


@pytest.mark.parametrize("kind", ["flip", "flip-crop"])
def test_augment_kinds_train_randomly_and_leave_inference_alone(kind: str) -> None:
    from imgclf.backends.keras.models import inference_model

    m = create_model("cnn", 3, backend="keras", image_size=32, augment=kind)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    first = m.layers[1]
    seen = np.asarray(first(x, training=True))
    # some images mirrored (or shifted), and what the model serves is untouched by augmentation
    assert not np.allclose(seen, x)
    plain = inference_model(m)
    assert not any("random" in layer.name for layer in plain.layers)
    assert np.allclose(plain.predict_on_batch(x), m.predict_on_batch(x), atol=1e-6)
    if kind == "flip-crop":
        assert any("random_translation" in layer.name for layer in m.layers)
