"""Training and evaluation transforms (each recipe's augmentation) on RGB uint8 arrays.

Both start from ``preprocess.prepare_image``, the same resize and colour handling as inference.
"""

from functools import partial

import numpy as np
import numpy.typing as npt
import torch
from torchvision.transforms import v2

from gsmc_core.checkpoint import ModelMeta
from gsmc_core.preprocess import prepare_image


def train_transform(meta: ModelMeta) -> v2.Compose:
    """Random flip, p=0.2 rotation (±20°) + padded random crop, normalise, random erasing.

    The published recipe pads the crop by 32 px at 224 px input; the padding scales with size.
    """
    size = meta.input_size
    pad = max(1, round(32 * size / 224))
    return v2.Compose([
        partial(prepare_image, meta=meta),
        v2.ToImage(),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.RandomRotation(20), v2.RandomCrop(size, padding=pad)], p=0.2),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(meta.mean, meta.std),
        v2.RandomErasing(scale=(0.02, 0.25)),
    ])


EAC_NOISE_VARIANCE = 30.0  # EAC's add_g: Gaussian pixel noise of variance 30 (std ~5.5 levels)


class EacPairTransform:
    """EAC's published augmentation: no flip, rotation or crop; two views, the image (with
    probability 0.5 Gaussian pixel noise added) and the mirror of the raw image (no noise), each
    normalised and randomly erased on its own. Returns a 2 x 3 x S x S tensor; the trainer
    feeds view 0 to the loss and the CAM consistency compares it with view 1."""

    def __init__(self, meta: ModelMeta) -> None:
        self.meta = meta
        self.view = v2.Compose([
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(meta.mean, meta.std),
            v2.RandomErasing(scale=(0.02, 0.25)),
        ])

    def __call__(self, image_rgb: npt.NDArray[np.uint8]) -> torch.Tensor:
        image = prepare_image(image_rgb, self.meta)
        mirror = np.ascontiguousarray(image[:, ::-1])  # of the raw image, before the noise
        if float(torch.rand(())) < 0.5:
            noise = torch.randn(image.shape) * EAC_NOISE_VARIANCE ** 0.5
            image = (torch.from_numpy(image).float() + noise).clamp(0, 255).to(torch.uint8).numpy()
        return torch.stack([self.view(image), self.view(mirror)])


def eval_transform(meta: ModelMeta) -> v2.Compose:
    return v2.Compose([
        partial(prepare_image, meta=meta),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(meta.mean, meta.std),
    ])
