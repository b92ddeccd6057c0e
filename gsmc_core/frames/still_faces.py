"""Work only where it is needed: a tracked face whose box and crop have not changed since it was
last classified keeps that classification instead of running the network again.

A face is "still" when its box overlaps the box it had when classified (IoU >= ``min_iou``) and
the frame, cropped where the face was when classified, differs from that crop by less than
``tolerance`` grey levels on average over a 16 x 16 grey thumbnail. Cropping at the old box, not
the new one, compares the picture rather than the detector's pixel jitter (a box moving by 2 px on
a 95 px face changes a fresh crop's thumbnail by 3-8 levels; the picture under it, with a sensor's
noise, by 0.2). Comparing with the crop last *classified*, not the previous frame, means slow
drifts add up and are caught; ``max_age`` bounds how many frames one classification may serve.
"""

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from gsmc_core.frames.detection import Face
from gsmc_core.frames.predictor import Prediction
from gsmc_core.frames.tracking import iou

THUMBNAIL = 16


def thumbnail(crop_bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The crop as a 16 x 16 grey image (area-averaged, so sensor noise mostly cancels)."""
    grey = crop_bgr if crop_bgr.ndim == 2 else cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass
class _Classified:
    face: Face
    thumbnail: npt.NDArray[np.float32]
    prediction: Prediction
    served: int = 0  # frames it has been reused for


class StillFaces:
    """The last classification of each tracked face, and whether it still holds."""

    def __init__(self, tolerance: float = 1.0, min_iou: float = 0.9, max_age: int = 15) -> None:
        self.tolerance = tolerance
        self.min_iou = min_iou
        self.max_age = max_age
        self._faces: dict[int, _Classified] = {}

    def reusable(self, face_id: int, face: Face,
                 crop_at: Callable[[Face], npt.NDArray[np.uint8]]) -> Prediction | None:
        """The face's last prediction if it is still, else None (classify it again).
        ``crop_at(face)`` crops this frame where ``face`` is."""
        kept = self._faces.get(face_id)
        if kept is None or kept.served >= self.max_age or iou(kept.face.box, face.box) < self.min_iou:
            return None
        if float(np.abs(thumbnail(crop_at(kept.face)) - kept.thumbnail).mean()) >= self.tolerance:
            return None
        kept.served += 1
        return kept.prediction

    def classified(self, face_id: int, face: Face, crop: npt.NDArray[np.uint8],
                   prediction: Prediction) -> None:
        """``face`` (its crop ``crop``) was classified as ``prediction`` on this frame."""
        self._faces[face_id] = _Classified(face, thumbnail(crop), prediction)

    def retain(self, face_ids: set[int]) -> None:
        """Forget faces the tracker no longer follows."""
        self._faces = {i: kept for i, kept in self._faces.items() if i in face_ids}
