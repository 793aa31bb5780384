"""Grad-CAM maps that point at the object (issue 26): on an ImageNet EfficientNet-Lite0 and real
photos, the peak follows the photo around a canvas, differs between two classes in one picture,
mirrors with the image, changes when the weights are random (Adebayo et al. 2018), and lands in
the original photo's own pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CATS_DOGS, needs_cats_dogs
from imgclf.backends.torch.explain import GradCAM, target_layer
from imgclf.backends.torch.transforms import normalize_batch
from imgclf.data.images import decode_square
from imgclf.data.presets import LITE_MEAN, LITE_STD, Preprocess
from imgclf.explain import peak, to_original

PRE = Preprocess(224, LITE_MEAN, LITE_STD)
CAT_CLASSES, DOG_CLASSES = range(281, 286), range(151, 269)  # ImageNet's cats and dogs


@pytest.fixture(scope="module")
def cam() -> GradCAM:
    from imgclf.backends.torch.models.efficientnet_lite import build_lite_imagenet

    torch.manual_seed(0)
    net = build_lite_imagenet(0).eval()
    return GradCAM(net, target_layer(net, "_swish"))


def x_of(img: np.ndarray) -> torch.Tensor:
    return normalize_batch(torch.from_numpy(np.array(img[None])), PRE)


def photo(kind: str, i: int, size: int) -> np.ndarray:
    return decode_square(str(sorted((CATS_DOGS / "test" / kind).iterdir())[i]), size)


def test_crop_coordinates_map_back_to_the_original_photo() -> None:
    # 400 x 200 -> resized 200 x 100, centre crop from x = 50: crop pixel 0 is original 100.5
    assert to_original(0, 0, 400, 200, 100) == (100.5, 0.5)
    assert to_original(99, 99, 400, 200, 100) == (298.5, 198.5)
    assert to_original(10, 0, 100, 300, 100) == (10.0, 100.0)


@needs_cats_dogs
def test_the_peak_follows_the_photo_into_each_quadrant(cam: GradCAM) -> None:
    for kind, i in (("CAT", 0), ("DOG", 1)):
        small = photo(kind, i, 112)
        for q in range(4):
            canvas = np.full((224, 224, 3), 128, np.uint8)
            r, c = divmod(q, 2)
            canvas[r * 112 : (r + 1) * 112, c * 112 : (c + 1) * 112] = small
            x, y = peak(cam(x_of(canvas))[0][0])
            assert (y >= 112) * 2 + (x >= 112) == q, (kind, q, x, y)


@needs_cats_dogs
def test_two_classes_in_one_picture_have_their_own_peaks(cam: GradCAM) -> None:
    canvas = np.full((224, 224, 3), 128, np.uint8)
    canvas[56:168, :112], canvas[56:168, 112:] = photo("CAT", 0, 112), photo("DOG", 0, 112)
    logits = cam(x_of(canvas))[1][0]
    cat = CAT_CLASSES[0] + int(logits[list(CAT_CLASSES)].argmax())
    dog = DOG_CLASSES[0] + int(logits[list(DOG_CLASSES)].argmax())
    (cat_map,), _ = cam(x_of(canvas), [cat])
    (dog_map,), _ = cam(x_of(canvas), [dog])
    assert peak(cat_map)[0] < 112 <= peak(dog_map)[0]


@needs_cats_dogs
def test_a_mirrored_image_gives_a_mirrored_map(cam: GradCAM) -> None:
    img = photo("CAT", 0, 224)
    (a,), _ = cam(x_of(img))
    (b,), _ = cam(x_of(img[:, ::-1]))
    assert np.corrcoef(a.ravel(), b[:, ::-1].ravel())[0, 1] > 0.9


@needs_cats_dogs
def test_random_weights_change_the_map(cam: GradCAM) -> None:
    from imgclf.backends.torch.models.efficientnet_lite import build_lite_imagenet

    img = photo("CAT", 0, 224)
    (trained,), logits = cam(x_of(img))
    torch.manual_seed(0)
    net = build_lite_imagenet(0, pretrained=False).eval()
    (random,), _ = GradCAM(net, target_layer(net, "_swish"))(x_of(img), [int(logits[0].argmax())])
    # a random net's map is flat or elsewhere: far from the trained one's, pixel for pixel
    assert np.abs(trained - random).mean() > 0.15 and peak(trained) != peak(random)


@needs_cats_dogs
def test_the_peak_of_a_wide_photo_is_in_its_own_pixels(cam: GradCAM) -> None:
    # a 448 x 224 grey photo with the cat at x 240..352: the model sees the centre 224 crop
    wide = np.full((224, 448, 3), 128, np.uint8)
    wide[56:168, 240:352] = photo("CAT", 0, 112)
    crop = wide[:, 112:336]
    x, y = to_original(*peak(cam(x_of(crop))[0][0]), 448, 224, 224)
    assert 240 <= x < 352 and 56 <= y < 168, (x, y)


def test_frozen_backbones_and_every_registered_model_give_a_map() -> None:
    from imgclf.models import create_model, get_spec, list_models

    for name in list_models("torch"):
        spec = get_spec(name)
        size = 64 if name not in ("alexnet", "airbench") else spec.image_size
        model = create_model(name, 2, pretrained=False, image_size=size, freeze_backbone=True)
        model.eval()
        x = torch.rand(2, 3, size, size)
        cams, logits = GradCAM(model, target_layer(model, spec.cam_layer))(x, [0, 1])
        assert cams.shape == (2, size, size) and logits.shape == (2, 2), name
        assert np.isfinite(cams).all() and cams.max() <= 1, name
