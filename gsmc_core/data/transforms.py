"""Training and evaluation transforms (the recipe's augmentation) on RGB uint8 arrays.

Both start from ``preprocess.prepare_image``, the same resize and colour handling as inference.
"""

from functools import partial

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


def eval_transform(meta: ModelMeta) -> v2.Compose:
    return v2.Compose([
        partial(prepare_image, meta=meta),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(meta.mean, meta.std),
    ])
