"""Face detection with MediaPipe, and face crops framed like the model's training faces."""

import atexit
import contextlib
import math
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import mediapipe as mp
import numpy as np
import numpy.typing as npt
from mediapipe.tasks.python import BaseOptions, vision

from gsmc_core.checkpoint import FaceCrop
from gsmc_core.errors import UsageError
from gsmc_core.frames.results import Box
from gsmc_core.resources import asset_path

DETECTOR_MODELS = {
    "short": "face_detection_short_range.tflite",  # faces within ~2 m: webcams (live default)
    "full": "face_detection_full_range_sparse.tflite",  # small and distant faces: photos
}
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
AUTO_TILE_SIDE = 512  # tiles="auto": about one tile per 512 px of the longer side
MAX_AUTO_TILES = 6


@dataclass(frozen=True)
class Face:
    """One detected face in the pixel coordinates of the image given to the detector.

    ``keypoints`` are the six MediaPipe points named in ``KEYPOINT_NAMES`` as (x, y) floats;
    "right" is the person's right, which is on the left of an unmirrored frontal photo.
    """

    box: Box
    score: float
    keypoints: tuple[tuple[float, float], ...]


from gsmc_core.native_stderr import NATIVE_STDERR_LOCK  # noqa: E402  (re-exported)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence native stderr (LiteRT prints ~50 INFO/WARNING lines per model load).

    The C++ logging ignores GLOG/TF environment variables, so the file descriptor itself is
    redirected; anything else written during the (short) model load is lost too.
    """
    with NATIVE_STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr (e.g. a windowed frozen app): nothing to silence
            yield
            return
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def to_rgb(image: npt.NDArray[np.uint8], color: str = "bgr") -> npt.NDArray[np.uint8]:
    """Any uint8 image (grayscale, 1/3/4 channels) as a contiguous RGB array.

    ``color`` says how 3- and 4-channel images are ordered: "bgr" (OpenCV) or "rgb".
    """
    if color not in ("bgr", "rgb"):
        raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected a non-empty uint8 image, got {image.dtype} {image.shape}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if color == "bgr" else np.ascontiguousarray(image)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if color == "bgr" else cv2.COLOR_RGBA2RGB)
    raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")


class _ClosedByUs(vision.FaceDetector):
    """MediaPipe's detector without its ``__del__``, which closes the native graph through the
    detector's own thread pool: when a detector nobody closed is collected together with that
    pool (they form a reference cycle), the pool's thread has already been told to exit, and the
    close waits for it forever in whatever thread ran the collection. Seen in the test suite: a
    Live worker froze inside an ONNX export holding the export lock, and every later model
    load waited behind it. ``FaceDetector`` closes its detector itself (``close``, the context
    manager, and at exit); one it never closes is left to the process's end."""

    def __del__(self) -> None:
        pass


class FaceDetector:
    """MediaPipe Tasks face detector (IMAGE mode) returning ``Face`` objects.

    ``model`` is "short" (webcam distance, the live default) or "full" (small faces, the
    still-image default). Images whose longer side exceeds ``max_side`` are shrunk for detection
    (MediaPipe resizes to 128 or 192 px internally anyway) and boxes are mapped back.
    ``tiles`` > 1 also runs the detector on an overlapping tiles x tiles grid: MediaPipe sees
    the whole image at 128 or 192 px, so faces below ~6 % (full) or ~12 % (short) of the
    longer side are missed without it; tiling finds them at about tiles**2 times the cost
    (figures in docs/performance.md). ``tiles="auto"`` picks the grid from the image size
    (one tile per ``AUTO_TILE_SIDE`` px of each side), meant for still images. Tiles show many more image
    regions magnified, so they also see more face-like patterns (a mission patch on a suit, in
    our tests): detections found only in a tile must score at least ``tile_min_confidence``.
    Close it (or use it as a context manager) to free the native graph.
    """

    def __init__(
        self,
        model: str = "short",
        min_confidence: float = 0.5,
        max_side: int = 2048,
        tiles: int | str = 1,
        tile_min_confidence: float = 0.65,
    ) -> None:
        if model not in DETECTOR_MODELS:
            raise UsageError(f"unknown detector {model!r}; choose one of {', '.join(DETECTOR_MODELS)}")
        if not 0.0 <= min_confidence <= 1.0:
            raise UsageError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if tiles != "auto" and not (isinstance(tiles, int) and tiles >= 1):
            raise UsageError(f"tiles must be 'auto' or an integer >= 1, got {tiles!r}")
        path = asset_path("models", DETECTOR_MODELS[model])
        if not path.is_file():
            raise FileNotFoundError(f"face detector model {path} is missing; reinstall GSMC")
        self.model = model
        self.min_confidence = min_confidence
        self.max_side = max_side
        self.tiles = tiles
        self.tile_min_confidence = max(min_confidence, tile_min_confidence)
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_confidence,
        )
        with _quiet_stderr():
            self._detector = vision.FaceDetector.create_from_options(options)
        self._detector.__class__ = _ClosedByUs
        _open_detectors.add(self)

    def detect(self, image: npt.NDArray[np.uint8], color: str = "bgr") -> list[Face]:
        """Faces in ``image`` (uint8 grayscale, BGR/RGB or BGRA/RGBA), best score first."""
        if self._detector is None:
            raise RuntimeError("the face detector is closed")
        rgb = to_rgb(image, color)
        h, w = rgb.shape[:2]
        faces = self._detect_scaled(rgb)
        if self.tiles == "auto":  # by each side: a panorama gets a row of tall tiles
            cols, rows = (min(MAX_AUTO_TILES, math.ceil(side / AUTO_TILE_SIDE)) for side in (w, h))
        else:
            cols = rows = self.tiles
        if cols * rows > 1:
            # tiles come from the full-resolution image: shrinking first would lose the small
            # faces tiling is for
            for x0, y0, tile in _tiles(rgb, cols, rows):
                th, tw = tile.shape[:2]
                # a face cut by an inner tile edge is whole in a neighbour or the full pass
                inner_edges = (x0 > 0, y0 > 0, x0 + tw < w, y0 + th < h)
                faces += [
                    _shift(f, x0, y0)
                    for f in self._detect_scaled(tile)
                    if f.score >= self.tile_min_confidence and not _touches(f.box, tw, th, inner_edges)
                ]
            faces = _merge_duplicates(faces)
        return [_clip(f, w, h) for f in faces]

    def _detect_scaled(self, rgb: npt.NDArray[np.uint8]) -> list[Face]:
        """Detect on ``rgb`` shrunk to ``max_side`` if larger; boxes in ``rgb``'s pixels."""
        h, w = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))  # a 1 x 5000 strip too
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            return [_shift(f, 0, 0, 1.0 / scale) for f in self._detect_rgb(small)]
        return self._detect_rgb(np.ascontiguousarray(rgb))

    def _detect_rgb(self, rgb: npt.NDArray[np.uint8]) -> list[Face]:
        h, w = rgb.shape[:2]
        result = self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        faces = []
        for d in result.detections:
            b = d.bounding_box
            faces.append(
                Face(
                    box=(b.origin_x, b.origin_y, b.width, b.height),
                    score=float(d.categories[0].score),
                    keypoints=tuple((k.x * w, k.y * h) for k in d.keypoints),
                )
            )
        return sorted(faces, key=lambda f: -f.score)

    def reset(self) -> None:
        """A new stream: nothing to forget (each image is detected on its own)."""

    def close(self) -> None:
        """Free the native detector; further ``detect`` calls raise."""
        if self._detector is not None:
            with _quiet_stderr():
                self._detector.close()
            self._detector = None
            _open_detectors.discard(self)

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


LIVE_DETECTORS = ("short", "full", "auto")
DEFAULT_LIVE_DETECTOR = "auto"  # chosen on group footage: docs/performance.md


class CombinedDetector:
    """The live "auto" detector: the short-range model (close faces, webcam distance) on every
    frame and the full-range model (small and distant faces) whenever it can add something,
    duplicates merged (intersection over the smaller box, best score kept).

    The full-range model runs on every ``full_every``-th frame, so a new distant face is found
    within that many frames, and on every frame in which a face of the previous frame is not
    among the short-range model's faces (a face only the full-range model sees keeps being
    seen, without flicker). One face at a webcam then costs about 2 + 5/3 ms per frame
    instead of 2 + 5 (measured in docs/performance.md)."""

    model = "auto"

    def __init__(self, min_confidence: float = 0.5, full_every: int = 3) -> None:
        if full_every < 1:
            raise ValueError(f"full_every must be >= 1, got {full_every}")
        self.min_confidence = min_confidence
        self.full_every = full_every
        self._short = FaceDetector("short", min_confidence)
        try:
            self._full = FaceDetector("full", min_confidence)
        except BaseException:
            self._short.close()
            raise
        self._since_full = full_every  # the first frame runs both
        self._last: list[Face] = []
        self.full_runs = 0

    def detect(self, image: npt.NDArray[np.uint8], color: str = "bgr") -> list[Face]:
        rgb = to_rgb(image, color)
        faces = self._short.detect(rgb, color="rgb")
        missing = any(all(_overlap_of_smaller(f.box, s.box) <= 0.5 for s in faces) for f in self._last)
        if missing or self._since_full >= self.full_every - 1:
            faces = _merge_duplicates(faces + self._full.detect(rgb, color="rgb"))
            self._since_full = 0
            self.full_runs += 1
        else:
            self._since_full += 1
        self._last = faces
        return faces

    def reset(self) -> None:
        """A new stream: the next frame runs both models, nothing carried over."""
        self._since_full = self.full_every
        self._last = []

    def close(self) -> None:
        try:
            self._short.close()
        finally:
            self._full.close()

    def __enter__(self) -> "CombinedDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_live_detector(kind: str = "auto", min_confidence: float = 0.5) -> "FaceDetector | CombinedDetector":
    """The detector for a live stream: "short", "full" or "auto" (both, merged)."""
    if kind == "auto":
        return CombinedDetector(min_confidence)
    if kind not in DETECTOR_MODELS:
        raise UsageError(f"unknown detector {kind!r}; choose one of {', '.join(LIVE_DETECTORS)}")
    return FaceDetector(kind, min_confidence)


class WholeImage:
    """A stand-in detector for images that are already face crops (``gsmc predict
    --no-detect``, deepface's ``detector_backend='skip'``): every image is one face, cropped as
    it is (``framing``: no margin, not made square)."""

    framing = FaceCrop(margin=0.0, square=False, align=False)

    def detect(self, image: npt.NDArray[np.uint8], color: str = "bgr") -> list[Face]:
        h, w = image.shape[:2]
        return [Face((0, 0, w, h), 1.0, ())]

    def reset(self) -> None:
        """Nothing to forget."""

    def close(self) -> None:
        """Nothing to free."""

    def __enter__(self) -> "WholeImage":
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to free."""


# A detector left open at exit makes MediaPipe print tracebacks: its __del__ runs during
# interpreter teardown ("'NoneType' object is not callable"), and a close from an atexit handler
# is too late, since its C calls go through a thread pool that refuses work once threading has
# shut down ("cannot schedule new futures after shutdown"). So open detectors are closed just
# before that shutdown, by the hook concurrent.futures itself uses (registered after it, so run
# before it); plain atexit where that hook does not exist.
_open_detectors: "weakref.WeakSet[FaceDetector]" = weakref.WeakSet()


def _close_open_detectors() -> None:
    for detector in list(_open_detectors):
        detector.close()


getattr(threading, "_register_atexit", atexit.register)(_close_open_detectors)


def _touches(box: Box, width: int, height: int, edges: tuple[bool, bool, bool, bool]) -> bool:
    """Whether ``box`` reaches one of the flagged tile edges (left, top, right, bottom)."""
    x, y, w, h = box
    near = (x <= 1, y <= 1, x + w >= width - 1, y + h >= height - 1)
    return any(e and n for e, n in zip(edges, near, strict=True))


def _tiles(
    image: npt.NDArray[np.uint8], cols: int, rows: int, overlap: float = 0.25
) -> Iterator[tuple[int, int, npt.NDArray[np.uint8]]]:
    """A cols x rows grid of views whose neighbours overlap by ``overlap`` of a tile (faces cut
    by one tile's edge are whole in the next)."""
    h, w = image.shape[:2]
    tw, th = math.ceil(w / (cols - (cols - 1) * overlap)), math.ceil(h / (rows - (rows - 1) * overlap))
    for row in range(rows):
        for col in range(cols):
            x0 = min(round(col * tw * (1 - overlap)), w - tw)
            y0 = min(round(row * th * (1 - overlap)), h - th)
            yield x0, y0, image[y0 : y0 + th, x0 : x0 + tw]


def _shift(face: Face, dx: float, dy: float, scale: float = 1.0) -> Face:
    x, y, w, h = face.box
    return Face(
        box=(round((x + dx) * scale), round((y + dy) * scale), round(w * scale), round(h * scale)),
        score=face.score,
        keypoints=tuple(((kx + dx) * scale, (ky + dy) * scale) for kx, ky in face.keypoints),
    )


def _clip(face: Face, width: int, height: int) -> Face:
    x, y, w, h = face.box
    x0, y0 = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
    x1, y1 = min(max(x + w, x0 + 1), width), min(max(y + h, y0 + 1), height)
    return Face(box=(x0, y0, x1 - x0, y1 - y0), score=face.score, keypoints=face.keypoints)


def _merge_duplicates(faces: Sequence[Face], threshold: float = 0.5) -> list[Face]:
    """Greedy suppression across tiles: a face covered more than ``threshold`` by a
    better-scoring one (intersection over the smaller box, so a partial face at a tile edge
    counts as covered) is dropped."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(_overlap_of_smaller(face.box, k.box) <= threshold for k in kept):
            kept.append(face)
    return kept


def _overlap_of_smaller(a: Box, b: Box) -> float:
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / max(1, min(a[2] * a[3], b[2] * b[3]))


def crop_transform(face: Face, framing: FaceCrop) -> tuple[npt.NDArray[np.float64], tuple[int, int]]:
    """The affine map from image pixels to the face crop, and the crop's (width, height).

    The crop is the box, made square around its centre if ``framing.square``, grown by
    ``framing.margin`` of its size on every side and, if ``framing.align``, rotated about its
    centre so the eyes (keypoints 0 and 1) are level.
    """
    x, y, w, h = face.box
    cx, cy = x + w / 2.0, y + h / 2.0
    if framing.square:
        w = h = max(w, h)
    cw, ch = max(1, round(w * (1 + 2 * framing.margin))), max(1, round(h * (1 + 2 * framing.margin)))
    angle = 0.0
    if framing.align and len(face.keypoints) >= 2:
        (rx, ry), (lx, ly) = face.keypoints[0], face.keypoints[1]
        angle = math.degrees(math.atan2(ly - ry, lx - rx))
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    matrix[0, 2] += cw / 2.0 - cx
    matrix[1, 2] += ch / 2.0 - cy
    if angle == 0.0:
        # whole-pixel offsets make the unrotated crop an exact copy of the image's pixels
        matrix[:, 2] = np.round(matrix[:, 2])
    return matrix, (cw, ch)


def crop_face(image: npt.NDArray[np.uint8], face: Face, framing: FaceCrop) -> npt.NDArray[np.uint8]:
    """The face framed as ``framing`` says; parts outside the image repeat its border pixels."""
    matrix, size = crop_transform(face, framing)
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def heatmap_in_box(
    heatmap: npt.NDArray[np.floating], face: Face, framing: FaceCrop
) -> npt.NDArray[np.float32]:
    """A crop-sized heatmap resampled onto the face box (box height x box width), so it can be
    drawn inside the box in image coordinates."""
    matrix, _ = crop_transform(face, framing)
    x, y, w, h = face.box
    box_to_crop = matrix.copy()
    box_to_crop[:, 2] = matrix[:, :2] @ np.array([x, y], dtype=np.float64) + matrix[:, 2]
    return cv2.warpAffine(
        heatmap.astype(np.float32),
        box_to_crop,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
