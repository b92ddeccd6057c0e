"""What the frame pipeline produces for a frame and each of its faces: plain data, so the
pipeline, the overlays, the CSV writer and the GUI share it without importing each other."""

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Box = tuple[int, int, int, int]
"""x, y, width, height in pixels."""


@dataclass(frozen=True)
class FaceResult:
    """One face of a frame.

    ``probabilities`` are this frame's network output, ``smoothed`` the tracked face's
    temporally smoothed ones (equal when smoothing is off); ``index``/``label``/``confidence``
    follow ``smoothed``. ``heatmap`` is the CAM of class ``cam_class`` resampled onto the face
    box (box height x box width, [0, 1]); None when heatmaps are off. ``reused``: the face had
    not changed since an earlier frame, whose network output it kept (``still_faces``).
    ``cams``: every class's raw CAM (C x h x w, the network's resolution) when the pipeline was
    asked for them (``all_cams``, the Images tab's grid), else None.
    """

    id: int
    box: Box
    score: float
    keypoints: tuple[tuple[float, float], ...]
    probabilities: npt.NDArray[np.float32]
    smoothed: npt.NDArray[np.float32]
    index: int
    label: str
    cam_class: int
    heatmap: npt.NDArray[np.float32] | None
    reused: bool = False
    cams: npt.NDArray[np.float32] | None = None

    @property
    def confidence(self) -> float:
        return float(self.smoothed[self.index])


@dataclass(frozen=True)
class FrameResult:
    """All faces of one frame, the class names, and per-stage times in milliseconds.

    ``timings`` keys: "detect", "classify" (crops + one batched forward pass, which yields the
    CAMs too), "cam" (heatmaps mapped onto the boxes), "track" (IDs and smoothing), "render"
    (only when ``process`` was asked to draw; ``annotated`` then holds the drawn BGR frame),
    "total".
    """

    faces: tuple[FaceResult, ...]
    timestamp: float
    size: tuple[int, int]
    classes: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    annotated: npt.NDArray[np.uint8] | None = None
