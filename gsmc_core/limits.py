"""Limits on what a file may ask for, with the setting that raises them (no heavy imports: the
package's ``__init__`` reads these before OpenCV is loaded)."""

import logging
import os

DEFAULT_MAX_IMAGE_MP = 100.0  # covers any camera's photos; a 76 kB PNG can claim 625 MP
log = logging.getLogger(__name__)


def max_image_pixels() -> int:
    """The largest image, in pixels, that is decoded: ``GSMC_MAX_IMAGE_MP`` megapixels (1 to
    10,000; default 100)."""
    text = os.environ.get("GSMC_MAX_IMAGE_MP", "")
    if not text:
        return int(DEFAULT_MAX_IMAGE_MP * 1e6)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= 10_000:
        log.warning("GSMC_MAX_IMAGE_MP=%.20s is not 1 to 10000; using %g", text, DEFAULT_MAX_IMAGE_MP)
        value = DEFAULT_MAX_IMAGE_MP
    return int(value * 1e6)
