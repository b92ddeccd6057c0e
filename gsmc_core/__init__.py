"""GSMC core: the network, training recipe, data readers and the frame pipeline (no Qt).

The Python API, for scripting (a photo, a video frame or already-cropped faces)::

    from gsmc_core import FaceDetector, FramePipeline, Predictor, read_image

    predictor = Predictor.from_checkpoint()  # the shipped default model
    with FaceDetector() as detector:
        result = FramePipeline(predictor, detector).process(read_image("photo.jpg"))
    for face in result.faces:
        print(face.box, face.label, face.confidence)

``Predictor.predict_crops`` classifies face crops without detection. The names below are
imported on first use, so ``import gsmc_core`` stays light.
"""

import importlib
import os

from gsmc_core.limits import max_image_pixels

__version__ = "0.6.0"
# OpenCV reads its decoder pixel limit once, when cv2 is first used: set before any import of it
# (limits.max_image_pixels; files whose header Pillow reads are refused before that)
os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(max_image_pixels())

_EXPORTS = {
    "Predictor": "gsmc_core.frames.predictor",
    "FaceDetector": "gsmc_core.frames.detection",
    "FramePipeline": "gsmc_core.frames.pipeline",
    "FrameResult": "gsmc_core.frames.results",
    "FaceResult": "gsmc_core.frames.results",
    "read_image": "gsmc_core.frames.sources",
    "load_checkpoint": "gsmc_core.checkpoint",
    "DEFAULT_CHECKPOINT": "gsmc_core.resources",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gsmc_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
