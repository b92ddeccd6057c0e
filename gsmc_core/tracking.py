"""Stable face IDs across frames, and temporal smoothing of each face's probabilities."""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gsmc_core.faces import Box


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _centre_distance(a: Box, b: Box) -> float:
    """Distance between box centres in units of ``a``'s larger side."""
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    return math.hypot(dx, dy) / max(1, a[2], a[3])


@dataclass
class Track:
    """A face being followed: its ID, last box and how many frames in a row it was missed."""

    id: int
    box: Box
    missed: int = 0


class FaceTracker:
    """Gives each detected face an ID that stays the same while the face stays in view.

    Boxes are matched to tracks greedily, best pair first: by IoU when it is at least
    ``min_iou``, otherwise by centre distance up to ``max_shift`` box sizes (fast motion at low
    frame rates leaves no overlap). Greedy matching is optimal whenever faces are further apart
    than they move between frames, which is the live case; SciPy's Hungarian solver is not a
    dependency. A track missed ``max_missed`` frames in a row is dropped, so a face that comes
    back later gets a new ID.
    """

    def __init__(self, max_missed: int = 10, min_iou: float = 0.3, max_shift: float = 0.5) -> None:
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        self.max_missed = max_missed
        self.min_iou = min_iou
        self.max_shift = max_shift
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: Sequence[Box]) -> list[int]:
        """Match one frame's boxes to the tracks; returns an ID per box, in input order."""
        pairs = []
        for ti, track in enumerate(self.tracks):
            for bi, box in enumerate(boxes):
                overlap = iou(track.box, box)
                shift = _centre_distance(track.box, box)
                if overlap >= self.min_iou or shift <= self.max_shift:
                    pairs.append((-overlap, shift, ti, bi))
        ids: list[int | None] = [None] * len(boxes)
        used_tracks: set[int] = set()
        for _, _, ti, bi in sorted(pairs):
            if ti in used_tracks or ids[bi] is not None:
                continue
            used_tracks.add(ti)
            track = self.tracks[ti]
            track.box, track.missed = boxes[bi], 0
            ids[bi] = track.id
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for bi, box in enumerate(boxes):
            if ids[bi] is None:
                self.tracks.append(Track(self._next_id, box))
                ids[bi] = self._next_id
                self._next_id += 1
        return [i for i in ids if i is not None]

    @property
    def active_ids(self) -> set[int]:
        """IDs of all tracks still alive (seen now or missed fewer than ``max_missed`` times)."""
        return {t.id for t in self.tracks}

    def reset(self) -> None:
        """Forget every track (a new video or camera); IDs keep counting up."""
        self.tracks.clear()


class ProbabilitySmoother:
    """Exponential moving average of each face's probabilities.

    After ``half_life`` (frames or seconds, per ``unit``) an old observation weighs half as much
    as when it arrived: ``s += (1 - 0.5 ** (dt / half_life)) * (p - s)``. Time-based half-lives
    give the same smoothing at any frame rate. ``half_life`` 0 or None returns raw values.
    """

    def __init__(self, half_life: float | None = None, unit: str = "frames") -> None:
        if unit not in ("frames", "seconds"):
            raise ValueError(f"unit must be 'frames' or 'seconds', got {unit!r}")
        if half_life is not None and half_life < 0:
            raise ValueError(f"half_life must be >= 0, got {half_life}")
        self.half_life = half_life
        self.unit = unit
        self._state: dict[int, tuple[npt.NDArray[np.float32], float]] = {}

    def update(self, face_id: int, probs: npt.NDArray[np.floating], now: float) -> npt.NDArray[np.float32]:
        """Fold in one observation of ``face_id`` at time ``now`` (a frame number when unit is
        "frames", seconds otherwise); returns the smoothed probabilities."""
        probs = np.asarray(probs, dtype=np.float32)
        previous = self._state.get(face_id)
        if not self.half_life or previous is None:
            smoothed = probs.copy()
        else:
            value, then = previous
            alpha = 1.0 - 0.5 ** (max(0.0, now - then) / self.half_life)
            smoothed = value + np.float32(alpha) * (probs - value)
        self._state[face_id] = (smoothed, now)
        return smoothed

    def retain(self, face_ids: Iterable[int]) -> None:
        """Drop the state of faces not in ``face_ids`` (tracks that ended)."""
        keep = set(face_ids)
        self._state = {k: v for k, v in self._state.items() if k in keep}
