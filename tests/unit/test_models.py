"""Every registered model builds and runs; parameter counts match the tutorials; real weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import models as tvm

from imgclf.backends.torch.models.pretrained import WeightsUnavailable
from imgclf.backends.torch.models.transfer import TransferNet, count_params
from imgclf.models import create_model, get_spec, list_models
from imgclf.registry import register_model


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_at_its_input_size(name: str) -> None:
    spec = get_spec(name)
    model = create_model(name, 3, pretrained=False, image_size=spec.image_size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, spec.image_size, spec.image_size))
    assert out.shape == (2, 3)
    # the registry's flag is what the refusal tables read before any model is built
    assert spec.backbone == isinstance(model, TransferNet)


def test_tutorial_parameter_counts() -> None:
    assert count_params(create_model("cnn", 2)) == 5_610_222  # first tutorial, printed there
    assert count_params(create_model("alexnet", 10)) == 58_322_314  # "58.3 millones"
    frozen = create_model("alexnet_transfer", 2, pretrained=False)
    assert count_params(frozen, trainable_only=True) == 9_440_258  # first tutorial, printed there
    assert count_params(create_model("cnn", 2, image_size=32)) < 100_000  # flatten follows size


def test_unknown_and_duplicate_names_are_errors() -> None:
    with pytest.raises(ValueError, match="registered: airbench, alexnet"):
        get_spec("no_such_net")
    with pytest.raises(ValueError, match="already registered"):
        register_model("cnn")(lambda *a, **k: None)


def test_torchvision_and_timm_names_resolve() -> None:
    m = create_model("resnet18", 4)
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    t = create_model("mobilenetv3_small_050", 4, freeze_backbone=True)
    assert t(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    assert count_params(t, True) == t.head.weight.numel() + t.head.bias.numel()


@pytest.mark.slow
def test_alexnet_weights_from_local_file_and_from_torch_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = tvm.alexnet(weights=None)  # stands in for the ImageNet file: same format and keys
    path = tmp_path / "alexnet.pth"
    torch.save(ref.state_dict(), path)
    m = create_model("alexnet_transfer", 2, weights=str(path))
    assert torch.equal(m.backbone[0][0].weight, ref.features[0].weight)
    assert not any(p.requires_grad for p in m.backbone.parameters())
    # torch's hub cache, under TORCH_HOME, with torchvision's file name
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    cache = tmp_path / "th" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(ref.state_dict(), cache / "alexnet-owt-7be5be79.pth")
    m2 = create_model("alexnet_tv", 2, pretrained=True)
    assert torch.equal(m2.backbone[0][3].weight, ref.features[3].weight)


def test_our_torchvision_alexnet_is_torchvisions_tensor_for_tensor() -> None:
    from imgclf.backends.torch.models.alexnet import TorchvisionAlexNet

    ref, ours = tvm.alexnet(weights=None).eval(), TorchvisionAlexNet().eval()
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in ref.state_dict().items()}
    ours.load_state_dict(ref.state_dict())  # strict: ImageNet's file loads as is
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_missing_weights_say_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("IMGCLF_OFFLINE", "1")
    with pytest.raises(
        WeightsUnavailable,
        match=r"download https://download\.pytorch\.org/models/"
        r"alexnet-owt-7be5be79\.pth into .*--weights",
    ):
        create_model("alexnet_transfer", 2)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_weights_are_real_imagenet(variant: int) -> None:
    """scikit-image's photo of Chelsea the cat must come out as an ImageNet cat (281-285)."""
    from PIL import Image
    from skimage.data import chelsea

    from imgclf.backends.torch.models.efficientnet_lite import (
        LITE_VARIANTS,
        build_lite_imagenet,
        lite_weights_path,
    )
    from imgclf.data.images import resize_center_crop
    from imgclf.data.presets import LITE_MEAN, LITE_STD

    if variant == 0:
        assert "57934424" in lite_weights_path(0).name  # the checkpoint the brief names
    net = build_lite_imagenet(variant).eval()
    size = LITE_VARIANTS[variant]
    img = np.asarray(resize_center_crop(Image.fromarray(chelsea()), size), np.float32) / 255
    x = (
        torch.from_numpy(img).permute(2, 0, 1)[None] - torch.tensor(LITE_MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(LITE_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        top = net(x).argmax(1).item()
    assert 281 <= top <= 285, top


def test_airbench_whitening_decorrelates_the_training_patches() -> None:
    import torch

    from imgclf.models import create_model

    g = torch.Generator().manual_seed(0)
    # strongly correlated channels and neighbours, as photos have
    base = torch.randn(64, 1, 33, 33, generator=g)
    smooth = (base[..., 1:, 1:] + base[..., :-1, :-1]) / 2
    images = smooth.repeat(1, 3, 1, 1) + 0.1 * torch.randn(64, 3, 32, 32, generator=g)
    net = create_model("airbench", 10)
    net.init_from_data(images)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(images, net.whiten.weight[:12])  # one sign of each
    flat = out.permute(1, 0, 2, 3).reshape(12, -1)
    cov = torch.cov(flat)
    assert torch.allclose(cov, torch.eye(12), atol=0.05)
    assert net(images[:2]).shape == (2, 10)


def test_builders_refuse_options_they_do_not_take_instead_of_swallowing_them() -> None:
    """Every builder took **_ and dropped whatever it did not know (a typo'd option, or one
    meant for another model) without a word."""
    from imgclf.messages import UsageError

    with pytest.raises(UsageError, match="--dropout 0.3: the torch model airbench does not take"):
        create_model("airbench", 10, dropout=0.3)
    with pytest.raises(UsageError, match="--augment flip: the torch model cnn does not take"):
        create_model("cnn", 10, image_size=32, augment="flip")
    # not asked for (empty), or the size the images are decoded at: nothing to refuse
    assert count_params(create_model("airbench", 10, weights="", image_size=64)) > 0
