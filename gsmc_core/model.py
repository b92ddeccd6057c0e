"""GSMCNet: a ResNet backbone, a linear classifier and class activation maps (CAMs).

The CAMs come straight from the classifier weights: ``CAM[n, c] = sum_k W[c, k] * F[n, k]``
where ``F`` is the last feature map. Logits are the global average of the CAMs plus the bias,
so the maps show exactly what the classifier sums.

Default: ResNet-18 at 113x113 with the last stage dilated (output stride 16), giving 8x8 CAMs.
A plain ResNet-18 at 112 px gives only 4x4 maps; 224 px input (as in the paper) costs 4x the
compute of the early stages. Dilating layer4 keeps the early stages at 112-px cost and makes the
attention maps finer than the paper's 7x7 (see docs/design.md for the speed reasoning). 113, not
112: at sizes of the form 16k + 1 every stride-2 layer sees an odd width, so the network's mirror
is exact and the flip consistency compares the right cells (``mirror_exact``).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision import models


@dataclass(frozen=True)
class Backbone:
    build: Callable[..., models.ResNet]
    feature_dim: int


BACKBONES: dict[str, Backbone] = {
    "resnet18": Backbone(models.resnet18, 512),
    "resnet34": Backbone(models.resnet34, 512),
    "resnet50": Backbone(models.resnet50, 2048),
}
OUTPUT_STRIDES = (8, 16, 32)
DEFAULT_ARCH = "resnet18"
DEFAULT_INPUT_SIZE = 113
DEFAULT_OUTPUT_STRIDE = 16


def mirror_exact(input_size: int, output_stride: int) -> bool:
    """Whether the mirror of the network is exact at this input size: CAM(flip x) ==
    flip(CAM(x)) for mirror-symmetric kernels.

    A stride-2 layer samples columns 0, 2, 4, ...; on an odd width these are symmetric about
    the centre, on an even width the mirror image samples the odd columns instead, so
    flip(CAM(flip x)) is shifted by part of a cell. With log2(output_stride) stride-2 layers
    every layer sees an odd width exactly when ``input_size - 1`` is a multiple of the stride
    (65 or 113 at stride 16, not 64 or 112).
    """
    return (input_size - 1) % output_stride == 0


def mirror_exact_sizes_near(input_size: int, output_stride: int) -> tuple[int, int]:
    """The mirror-exact input sizes just below and just above ``input_size``."""
    below = input_size - (input_size - 1) % output_stride
    return below, below + output_stride


def _dilate_last_stage(layer: nn.Sequential) -> None:
    """Remove the stride of a ResNet stage and dilate its later 3x3 convolutions by 2.

    Same result as torchvision's ``replace_stride_with_dilation``, which BasicBlock
    (ResNet-18/34) does not support: the first block keeps dilation 1, the others use 2.
    """
    for index, block in enumerate(layer):
        for conv in block.modules():
            if not isinstance(conv, nn.Conv2d):
                continue
            conv.stride = (1, 1)
            if index > 0 and conv.kernel_size == (3, 3):
                conv.dilation = (2, 2)
                conv.padding = (2, 2)


class GSMCNet(nn.Module):
    """ResNet backbone + linear classifier; ``forward`` returns ``(logits, cams)``."""

    def __init__(
        self,
        num_classes: int,
        arch: str = DEFAULT_ARCH,
        output_stride: int = DEFAULT_OUTPUT_STRIDE,
    ) -> None:
        super().__init__()
        if arch not in BACKBONES:
            raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(BACKBONES)}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output stride must be one of {OUTPUT_STRIDES}, not {output_stride}")
        spec = BACKBONES[arch]
        self.arch = arch
        self.output_stride = output_stride
        self.num_classes = num_classes
        backbone = spec.build(weights=None)
        backbone.fc = nn.Identity()
        if output_stride <= 16:
            _dilate_last_stage(backbone.layer4)
        if output_stride == 8:
            backbone.maxpool = nn.Identity()
        self.backbone = backbone
        self.fc = nn.Linear(spec.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map, N x K x h x w."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def cams_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        """CAMs N x C x h x w from features; the classifier weight is detached (METHOD.md)."""
        return torch.einsum("ck,nkhw->nchw", self.fc.weight.detach(), feats)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        logits = self.fc(feats.mean(dim=(2, 3)))
        return logits, self.cams_from_features(feats)

    def cam_size(self, input_size: int) -> int:
        """Side of the CAM for a square input of ``input_size`` pixels."""
        with torch.no_grad():
            was_training = self.training
            self.eval()
            feats = self.features(torch.zeros(1, 3, input_size, input_size))
            self.train(was_training)
        return int(feats.shape[-1])


def flops_per_image(model: GSMCNet, input_size: int) -> int:
    """Multiply-accumulate count x 2 of one forward pass (convolutions and the classifier)."""
    total = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += 2 * output.numel() * per_out
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(torch.zeros(1, 3, input_size, input_size))
            model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return total
