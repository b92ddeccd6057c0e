"""Shifts a studio or a webcam brings to a face crop, applied to test faces to measure how robust a
model is (`gsmc eval --shifts`), and the test faces that have a pixel-identical training twin.

Each shift maps an RGB uint8 face crop (as the dataset gives it, before the model's own resize) to
another of the same shape. Sizes are relative to the crop, so a 48 px FERPlus face and a 224 px
photo get the same change. Where a shift needs pixels the crop does not hold (a looser crop, a
rolled face's corners) the border is replicated: the datasets hold no wider context to take them from.
"""

import dataclasses
import hashlib
from collections.abc import Callable

import cv2
import numpy as np
import numpy.typing as npt

from gsmc_core.training.data.samples import DataError, Split, load_image

Image = npt.NDArray[np.uint8]


def _resize_to(image: Image, shape: tuple[int, ...]) -> Image:
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def crop(scale: float) -> Callable[[Image], Image]:
    """The face box scaled by ``scale`` about its centre (< 1 tighter, > 1 looser), resized back."""
    def apply(image: Image) -> Image:
        h, w = image.shape[:2]
        if scale < 1:
            ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
            top, left = (h - ch) // 2, (w - cw) // 2
            return _resize_to(image[top:top + ch, left:left + cw], image.shape)
        pad_y, pad_x = round(h * (scale - 1) / 2), round(w * (scale - 1) / 2)
        padded = cv2.copyMakeBorder(image, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_REPLICATE)
        return _resize_to(padded, image.shape)
    return apply


def roll(degrees: float) -> Callable[[Image], Image]:
    """The face rotated in the image plane by ``degrees`` (positive: counter-clockwise)."""
    def apply(image: Image) -> Image:
        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
        return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    return apply


def gamma(value: float) -> Callable[[Image], Image]:
    """out = 255 (in / 255) ^ value: < 1 brightens the shadows (overexposed), > 1 darkens."""
    table = np.clip(255.0 * (np.arange(256) / 255.0) ** value + 0.5, 0, 255).astype(np.uint8)
    return lambda image: cv2.LUT(image, table)


def contrast(factor: float) -> Callable[[Image], Image]:
    """Contrast scaled by ``factor`` about the crop's mean grey (a flat, washed-out face at < 1)."""
    def apply(image: Image) -> Image:
        mean = float(image.mean())
        return np.clip(mean + factor * (image.astype(np.float32) - mean) + 0.5, 0, 255).astype(np.uint8)
    return apply


def blur(sigma_at_48: float) -> Callable[[Image], Image]:
    """Gaussian blur of ``sigma_at_48`` pixels on a 48 px face (scaled with the crop's size)."""
    def apply(image: Image) -> Image:
        sigma = sigma_at_48 * min(image.shape[:2]) / 48
        return cv2.GaussianBlur(image, (0, 0), sigma)
    return apply


def jpeg(quality: int) -> Callable[[Image], Image]:
    """Encoded and decoded as JPEG at ``quality`` (webcams stream MJPEG at 50-80, cheap ones lower)."""
    def apply(image: Image) -> Image:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return apply


def grey_rows(start: float, stop: float) -> Callable[[Image], Image]:
    """Rows from ``start`` to ``stop`` (fractions of the height) set to mid grey (a hand, a mask,
    a scarf; or a probe of which half of the face the model reads)."""
    def apply(image: Image) -> Image:
        h = image.shape[0]
        out = image.copy()
        out[round(h * start):round(h * stop)] = 128
        return out
    return apply


SHIFTS: dict[str, Callable[[Image], Image]] = {
    "crop tighter 15%": crop(0.85),
    "crop looser 15%": crop(1.15),
    "roll -10°": roll(-10),
    "roll +10°": roll(10),
    "gamma 0.6 (bright)": gamma(0.6),
    "gamma 1.6 (dark)": gamma(1.6),
    "contrast x0.5": contrast(0.5),
    "blur sigma 1 px@48": blur(1.0),
    "JPEG quality 30": jpeg(30),
    "lower 40% grey": grey_rows(0.6, 1.0),
    "upper 40% grey": grey_rows(0.0, 0.4),
}


def _pixel_digest(image: Image) -> bytes:
    return hashlib.blake2b(image.tobytes() + repr(image.shape).encode(), digest_size=16).digest()


def without_twins(test: Split, train: Split) -> tuple[Split, list[str]]:
    """``test`` less the faces whose decoded pixels equal a training face's (FER2013 holds exact
    duplicates across its splits), and the keys left out. Undecodable images count as no twin."""
    seen = set()
    for sample in train.samples:
        try:
            seen.add(_pixel_digest(load_image(sample)))
        except DataError:
            continue
    kept, twins = [], []
    for sample in test.samples:
        try:
            twin = _pixel_digest(load_image(sample)) in seen
        except DataError:
            twin = False
        if twin:
            twins.append(sample.key)
        else:
            kept.append(sample)
    return dataclasses.replace(test, samples=kept), twins
