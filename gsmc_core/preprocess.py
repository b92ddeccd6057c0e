"""The one image preparation shared by training, evaluation and inference.

Colour mode and input size come from the checkpoint metadata; normalisation uses its mean/std.
"""

import cv2
import numpy as np
import numpy.typing as npt

from gsmc_core.checkpoint import ModelMeta


def prepare_image(image_rgb: npt.NDArray[np.uint8], meta: ModelMeta) -> npt.NDArray[np.uint8]:
    """An RGB (or grayscale) uint8 image as the model's S x S x 3 uint8 input, before normalising.

    Grayscale models see the luminance replicated to three channels, as in training.
    """
    if image_rgb.ndim == 2:
        image_rgb = cv2.cvtColor(image_rgb, cv2.COLOR_GRAY2RGB)
    elif meta.color == "gray":
        image_rgb = cv2.cvtColor(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    size = meta.input_size
    h, w = image_rgb.shape[:2]
    shrinking = h > size or w > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image_rgb, (size, size), interpolation=interpolation)
