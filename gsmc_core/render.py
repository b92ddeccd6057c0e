"""Overlays drawn on images: heatmaps, face boxes, labels. Pure functions on numpy arrays."""

import cv2
import numpy as np
import numpy.typing as npt


def colorize_heatmap(heatmap: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """A [0, 1] heatmap as an RGB image with the JET colour map."""
    scaled = np.clip(heatmap, 0.0, 1.0) * 255.0
    bgr = cv2.applyColorMap(scaled.astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay_heatmap(
    image: npt.NDArray[np.uint8], heatmap: npt.NDArray[np.floating], alpha: float = 0.5
) -> npt.NDArray[np.uint8]:
    """Blend a [0, 1] heatmap (resized to the image if needed) over an RGB uint8 image.

    ``alpha`` is the heatmap's weight: 0 returns the image, 1 the coloured heatmap.
    The input is not modified.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if heatmap.shape != (h, w):
        heatmap = cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colored = colorize_heatmap(heatmap)
    return cv2.addWeighted(colored, alpha, image, 1.0 - alpha, 0.0)
