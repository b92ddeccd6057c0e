"""Stable face IDs across frames, and temporal smoothing of each face's probabilities."""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gsmc_core.frames.results import Box


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


Offset = tuple[float, float, float, float]
"""Where a box lies relative to another: centre offset and size, in units of the other's size."""


def _size(box: Box) -> float:
    return max(1.0, math.sqrt(box[2] * box[3]))


def _offset(box: Box, anchor: Box) -> Offset:
    size = _size(anchor)
    return ((box[0] + box[2] / 2 - anchor[0] - anchor[2] / 2) / size,
            (box[1] + box[3] / 2 - anchor[1] - anchor[3] / 2) / size, box[2] / size, box[3] / size)


def _placed(offset: Offset, anchor: Box) -> tuple[float, float, float, float]:
    """The box (centre x, centre y, w, h) at ``offset`` from ``anchor``."""
    size = _size(anchor)
    return (anchor[0] + anchor[2] / 2 + offset[0] * size, anchor[1] + anchor[3] / 2 + offset[1] * size,
            offset[2] * size, offset[3] * size)


def _in_view(box: Box, frame_size: tuple[int, int] | None) -> bool:
    """Whether ``box`` lies inside the frame without touching its edge: detections are clipped
    to the frame, so a face leaving it was last seen touching the edge, and a face cut by the
    edge is rarely detected. True when the frame size is not known."""
    if frame_size is None:
        return True
    x, y, w, h = box
    return x > 0 and y > 0 and x + w < frame_size[0] and y + h < frame_size[1]


@dataclass
class Track:
    """A face being followed: its ID, its last box (seen, or predicted while missed), how many
    frames since it was last seen it was missed in view and out of view (``away``), and while
    missed, where it lies relative to faces still seen (``anchors``: track ID -> offset)."""

    id: int
    box: Box
    missed: int = 0
    away: int = 0
    anchors: dict[int, Offset] = field(default_factory=dict)


class FaceTracker:
    """Gives each detected face an ID that stays the same while the face stays in view.

    Boxes are matched to tracks greedily, best pair first: by IoU when it is at least
    ``min_iou``, otherwise by centre distance up to ``max_shift`` box sizes (fast motion at low
    frame rates leaves no overlap). Greedy matching is optimal whenever faces are further apart
    than they move between frames, which is the live case; SciPy's Hungarian solver is not a
    dependency.

    A face the detector misses keeps its place relative to the faces still seen: a camera pan
    or zoom moves every face alike, so its box is predicted from theirs (the median over them)
    and matched again when it is found. A track missed ``max_missed`` frames (1 s at 30 fps)
    while in view is dropped, so a face that comes back later gets a new ID; frames in which its
    box (predicted, or where it was last seen) touches or crosses the frame's edge (``update`` is
    given the frame size) count apart, up to ``max_missed_outside`` (10 s at 30 fps): a person
    who left the frame, or whom the camera panned away from, keeps their ID when they come back
    near where the other faces say they should be.
    """

    def __init__(self, max_missed: int = 30, min_iou: float = 0.3, max_shift: float = 0.5,
                 max_missed_outside: int = 300) -> None:
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        if max_missed_outside < 0:
            raise ValueError(f"max_missed_outside must be >= 0, got {max_missed_outside}")
        self.max_missed = max_missed
        self.max_missed_outside = max_missed_outside
        self.min_iou = min_iou
        self.max_shift = max_shift
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: Sequence[Box], frame_size: tuple[int, int] | None = None) -> list[int]:
        """Match one frame's boxes to the tracks; returns an ID per box, in input order.
        ``frame_size`` (width, height) lets tracks out of view be kept longer."""
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        made = self._match(boxes, ids, used)
        seen_before = {self.tracks[ti].id: self.tracks[ti].box for ti, _ in made}
        seen_now = {self.tracks[ti].id: boxes[bi] for ti, bi in made}
        for ti, track in enumerate(self.tracks):
            if ti not in used:
                self._follow(track, seen_before, seen_now)
        made += self._match(boxes, ids, used)
        for ti, bi in made:
            track = self.tracks[ti]
            track.box, track.missed, track.away, track.anchors = boxes[bi], 0, 0, {}
        for ti, track in enumerate(self.tracks):
            if ti not in used:
                if _in_view(track.box, frame_size):
                    track.missed += 1
                else:
                    track.away += 1
        self.tracks = [t for t in self.tracks
                       if t.missed <= self.max_missed and t.away <= self.max_missed_outside]
        for bi, box in enumerate(boxes):
            if ids[bi] is None:
                self.tracks.append(Track(self._next_id, box))
                ids[bi] = self._next_id
                self._next_id += 1
        return [i for i in ids if i is not None]

    @staticmethod
    def _follow(track: Track, seen_before: dict[int, Box], seen_now: dict[int, Box]) -> None:
        """Move a missed track with the faces seen now, and anchor it to any it is not yet."""
        placed = [_placed(off, seen_now[a]) for a, off in track.anchors.items() if a in seen_now]
        if placed:
            cx, cy, w, h = np.median(np.array(placed), axis=0)
            track.box = (round(cx - w / 2), round(cy - h / 2), max(1, round(w)), max(1, round(h)))
            for a, box in seen_now.items():
                track.anchors.setdefault(a, _offset(track.box, box))
        else:  # just missed, or its anchors are gone too: anchor it where it was last frame
            track.anchors = {a: _offset(track.box, seen_before[a]) for a in seen_now}
            if track.anchors:
                FaceTracker._follow(track, seen_before, seen_now)

    def _match(self, boxes: Sequence[Box], ids: list[int | None], used: set[int]) -> list[tuple[int, int]]:
        """Greedy matching of unused tracks to unassigned boxes, best pair first; fills in
        ``ids`` and ``used`` and returns the (track, box) pairs made."""
        pairs = []
        for ti, track in enumerate(self.tracks):
            if ti in used:
                continue
            for bi, box in enumerate(boxes):
                if ids[bi] is not None:
                    continue
                overlap = iou(track.box, box)
                shift = _centre_distance(track.box, box)
                if overlap >= self.min_iou or shift <= self.max_shift:
                    pairs.append((-overlap, shift, ti, bi))
        made = []
        for _, _, ti, bi in sorted(pairs):
            if ti in used or ids[bi] is not None:
                continue
            used.add(ti)
            made.append((ti, bi))
            ids[bi] = self.tracks[ti].id
        return made

    @property
    def active_ids(self) -> set[int]:
        """IDs of all tracks still alive (seen now, or missed but within their patience)."""
        return {t.id for t in self.tracks}

    def reset(self, restart_ids: bool = False) -> None:
        """Forget every track (a new video or camera); IDs keep counting up unless
        ``restart_ids`` (unrelated still images, each numbered from 1)."""
        self.tracks.clear()
        if restart_ids:
            self._next_id = 1


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
