import pytest
import torch
from torch import nn

from gsmc_core.model import BACKBONES, DEFAULT_INPUT_SIZE, GSMCNet, flops_per_image


def _symmetrize(model: nn.Module) -> None:
    """Make every convolution kernel left-right symmetric, so the net is flip-equivariant."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_((m.weight + m.weight.flip(-1)) / 2)


def test_forward_shapes_and_default_cam_resolution():
    torch.manual_seed(0)
    model = GSMCNet(8).eval()
    logits, cams = model(torch.randn(2, 3, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE))
    assert logits.shape == (2, 8)
    assert cams.shape[:2] == (2, 8)
    assert cams.shape[-1] >= 7 and cams.shape[-2] >= 7
    assert model.cam_size(DEFAULT_INPUT_SIZE) == 8


def test_cams_equal_explicit_computation_from_features_and_fc():
    torch.manual_seed(1)
    model = GSMCNet(7).eval()
    x = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        logits, cams = model(x)
        feats = model.features(x)
    w = model.fc.weight
    n, k, h, wd = feats.shape
    explicit = torch.zeros(n, 7, h, wd)
    for i in range(n):
        for c in range(7):
            explicit[i, c] = (w[c].view(k, 1, 1) * feats[i]).sum(0)
    torch.testing.assert_close(cams, explicit, rtol=1e-4, atol=1e-4)
    # logits are the spatial mean of the CAMs plus the bias
    torch.testing.assert_close(logits, cams.mean(dim=(2, 3)) + model.fc.bias, rtol=1e-4, atol=1e-4)


def test_cam_of_flipped_input_flipped_back_equals_cam():
    torch.manual_seed(2)
    model = GSMCNet(8).eval()
    _symmetrize(model)
    # 113 px keeps every strided stage at an odd width, so stride-2 sampling is flip-symmetric
    half = torch.randn(1, 3, 113, 57)
    x = torch.cat([half, half[..., :56].flip(-1)], dim=-1)  # a flip-symmetric image
    assert torch.equal(x, x.flip(-1))
    with torch.no_grad():
        _, cam = model(x)
        _, cam_flip = model(x.flip(-1))
    torch.testing.assert_close(cam_flip.flip(-1), cam, rtol=1e-4, atol=1e-4)
    # and for a generic input the symmetric net is flip-equivariant
    y = torch.randn(1, 3, 113, 113)
    with torch.no_grad():
        _, cam_y = model(y)
        _, cam_y_flip = model(y.flip(-1))
    torch.testing.assert_close(cam_y_flip.flip(-1), cam_y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_registry_builds_each_backbone(arch):
    model = GSMCNet(8, arch=arch).eval()
    assert model.cam_size(112) == 7
    assert model.fc.in_features == BACKBONES[arch].feature_dim


@pytest.mark.parametrize(("stride", "side"), [(32, 4), (16, 7), (8, 14)])
def test_output_stride_sets_cam_size(stride, side):
    assert GSMCNet(8, output_stride=stride).cam_size(112) == side


def test_unknown_arch_and_stride_are_rejected():
    with pytest.raises(ValueError, match="unknown architecture"):
        GSMCNet(8, arch="vgg13")
    with pytest.raises(ValueError, match="output stride"):
        GSMCNet(8, output_stride=4)


def test_flops_count_matches_known_resnet18_figure():
    # torchvision's ResNet-18 at 224 px: 1.81 GMACs = 3.63 GFLOPs
    flops = flops_per_image(GSMCNet(1000, output_stride=32), 224)
    assert 3.5e9 < flops < 3.7e9
