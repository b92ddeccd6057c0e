"""Frame sources behind one interface: camera by index, video file, image folder.

Iterating a source yields ``Frame`` objects with BGR images (OpenCV's order); ``close()`` (or a
``with`` block) releases the device or file. A camera source keeps only its newest frame, so a
slow consumer sees fresh frames instead of a growing queue.
"""

import io
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import PIL.Image

from gsmc_core.errors import GsmcError
from gsmc_core.limits import max_image_pixels

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# A 76 kB PNG can decode to 25000 x 25000 pixels (1.9 GB as BGR, more in the pipeline). 100 MP
# covers any camera's photos; larger images are refused before they are decoded.
MAX_IMAGE_PIXELS = max_image_pixels()  # GSMC_MAX_IMAGE_MP raises it; OpenCV's limit follows
PIL.Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # Pillow's own bomb check (errors at twice it)
RAISE_LIMIT = ("scale it down first, or raise the limit by starting the program with the "
               "environment variable GSMC_MAX_IMAGE_MP set to more megapixels (docs/user-guide.md)")
MIN_IMAGE_SIDE = 8
MAX_CAMERA_INDEX = 99
# OpenCV's Orbbec depth-camera backend prints "Camera index out of range" for every index probed
# (5 lines per camera scan on a machine without one); ordinary webcams use V4L2/MSMF/AVFoundation.
os.environ.setdefault("OPENCV_VIDEOIO_PRIORITY_OBSENSOR", "0")

# OpenCV prints a warning for every camera index that fails to open; probing is expected to fail
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class SourceError(GsmcError, ValueError):
    """A camera, video file or image folder cannot be opened; the message names it."""


@dataclass(frozen=True)
class Frame:
    """One frame: BGR image, time in seconds (file position, or since a camera opened), and its
    index in the source (frames skipped by ``step`` still count)."""

    image: npt.NDArray[np.uint8]
    timestamp: float
    index: int


@dataclass(frozen=True)
class CameraEvent:
    """What happened to a camera: "lost" (frames stopped), "retry" (reopening in ``delay_s``),
    "reopened"."""

    kind: str
    camera: int
    message: str
    attempt: int = 0
    delay_s: float = 0.0


class FrameSource:
    """Base of all sources: an iterator of ``Frame`` and a context manager.

    ``frame_count`` and ``fps`` are known for files and folders (for progress bars), None for
    cameras.
    """

    frame_count: int | None = None
    fps: float | None = None
    name: str = ""

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file; iteration ends."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file's header without decoding the pixels (Pillow reads only the
    header on open: PNG, JPEG, TIFF, WebP, BMP...); None when Pillow cannot parse it (OpenCV's
    own pixel limit still applies when it decodes)."""
    try:
        with warnings.catch_warnings():  # sizes between Pillow's limit and ours: we decide
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(io.BytesIO(data)) as image:
                return image.size
    except PIL.Image.DecompressionBombError:  # Pillow's own check, at 2 x 89 MP
        raise SourceError(f"more than {2 * PIL.Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP, and this "
                          f"program opens up to {MAX_IMAGE_PIXELS / 1e6:.0f} MP; {RAISE_LIMIT}") from None
    except (OSError, ValueError, SyntaxError, PIL.UnidentifiedImageError):
        return None


def read_image(path: str | os.PathLike) -> npt.NDArray[np.uint8]:
    """An image file as BGR uint8. Reads bytes first so non-ASCII paths work on Windows too.
    Images above ``MAX_IMAGE_PIXELS`` are refused before decoding."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise SourceError(f"{path}: is not a file")
    data = np.fromfile(path, dtype=np.uint8)
    try:
        size = header_size(data.tobytes())
    except SourceError as exc:
        raise SourceError(f"{path}: {exc}") from None
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise SourceError(f"{path}: {size[0]} x {size[1]} pixels ({size[0] * size[1] / 1e6:.4g} MP) is "
                          f"more than the {MAX_IMAGE_PIXELS / 1e6:.4g} MP this program opens; "
                          f"{RAISE_LIMIT}")
    if size is not None and min(size) < MIN_IMAGE_SIDE:
        raise SourceError(f"{path}: {size[0]} x {size[1]} pixels is too thin to hold a face "
                          f"(sides of at least {MIN_IMAGE_SIDE} px are needed)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise SourceError(f"{path}: cannot be decoded as an image (damaged, not an image, or "
                          f"above {MAX_IMAGE_PIXELS / 1e6:.0f} MP)")
    return image


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


class ImageFolderSource(FrameSource):
    """The images of a folder in name order, one frame each, at a nominal ``fps``.

    Files that cannot be decoded are reported to ``on_skip`` and skipped.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        fps: float = 1.0,
        on_skip: Callable[[Path, str], None] | None = None,
    ) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise SourceError(f"{folder}: is not a folder")
        self.files = image_files(folder)
        if not self.files:
            raise SourceError(f"{folder}: contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        self.name = str(folder)
        self.frame_count = len(self.files)
        self.fps = fps
        self._on_skip = on_skip
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.files):
            if self._closed:
                return
            try:
                image = read_image(path)
            except (OSError, SourceError) as exc:
                if self._on_skip is not None:
                    self._on_skip(path, str(exc))
                continue
            yield Frame(image, i / self.fps, i)

    def close(self) -> None:
        self._closed = True


class VideoFileSource(FrameSource):
    """A video file, decoded in order; ends cleanly at the end of the file.

    ``step`` > 1 yields every step-th frame (the others are grabbed but not converted).
    Timestamps are the frames' own (their presentation time: right for the variable frame rate
    of phone videos too), or ``index / fps`` where the file gives none. A frame that
    cannot be decoded before the file's announced end is skipped and counted in ``damaged``;
    ``MAX_DAMAGED_RUN`` failures in a row end the file. A file that ends before any frame could
    be decoded raises ``SourceError`` (it opened, but nothing in it can be shown).
    """

    MAX_DAMAGED_RUN = 25

    def __init__(self, path: str | os.PathLike, step: int = 1) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}")
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            raise SourceError(f"{path}: cannot be opened as a video")
        self.name = str(path)
        self.step = step
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        self.fps = fps if fps > 0 else None
        self.damaged = 0
        self.ends_after: int | None = None  # a file cut short (a crash): the frames it has
        self._index = 0
        self._decoded_any = False

    def seek(self, index: int) -> None:
        """Continue iteration at frame ``index`` (clamped to the file)."""
        last = (self.frame_count or index + 1) - 1
        index = max(0, min(index, last))
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        self._index = index

    def _more_expected(self, index: int, failures_in_a_row: int) -> bool:
        return (self.frame_count is not None and index < self.frame_count - 1
                and failures_in_a_row < self.MAX_DAMAGED_RUN)

    def __iter__(self) -> Iterator[Frame]:
        failures = 0
        fps = self.fps or 30.0  # files without a rate: assume 30 so timestamps still advance
        while self._capture.isOpened():
            index = self._index  # ``seek`` may move it between two frames
            if index % self.step:
                ok, image = self._capture.grab(), None
            else:
                ok, image = self._capture.read()
            if ok:
                failures = 0
                if image is not None:
                    self._index = index + 1
                    self._decoded_any = True
                    yield Frame(image, self._time_of(index, fps), index)
                    continue
            elif self._more_expected(index, failures):
                failures += 1
                self.damaged += 1
            else:
                if failures:  # no frame decoded since: the file ends before its announced end
                    self.damaged -= failures
                    self.ends_after = index - failures
                if not self._decoded_any:
                    raise SourceError(f"{self.name}: no frame of it can be decoded (an empty or "
                                      "damaged file, or a codec this build cannot read)")
                break
            self._index = index + 1

    def _time_of(self, index: int, fps: float) -> float:
        """The time of the frame just read: its presentation time, or ``index / fps`` where the
        file gives none (0 after the first frame)."""
        ms = self._capture.get(cv2.CAP_PROP_POS_MSEC)
        if math.isfinite(ms) and ms >= 0 and (ms > 0 or index == 0):
            return ms / 1000
        return index / fps

    def close(self) -> None:
        self._capture.release()


def _open_camera(index: int) -> cv2.VideoCapture | None:
    if not 0 <= index <= MAX_CAMERA_INDEX:  # cv2.VideoCapture(-1) can crash the process
        raise SourceError(f"camera {index}: camera numbers are 0 to {MAX_CAMERA_INDEX}")
    capture = cv2.VideoCapture(index)
    if capture.isOpened():
        return capture
    capture.release()
    return None


def list_cameras(max_index: int = 5) -> list[int]:
    """Indices in 0..max_index-1 of cameras that open and deliver a frame."""
    found = []
    for index in range(max_index):
        capture = _open_camera(index)
        if capture is not None:
            if capture.read()[0]:
                found.append(index)
            capture.release()
    return found


class CameraSource(FrameSource):
    """A camera by OpenCV index, read by a background thread into a one-frame slot.

    Iteration blocks until a frame newer than the last one handed out arrives, so frames the
    consumer was too slow for are dropped, never queued. When frames stop (camera unplugged),
    ``on_event`` gets a "lost" event and the thread reopens the camera with exponential back-off
    (``retry_delays`` seconds, the last repeated) until it works or the source is closed.
    """

    def __init__(
        self,
        index: int,
        width: int | None = None,
        height: int | None = None,
        on_event: Callable[[CameraEvent], None] | None = None,
        retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0),
    ) -> None:
        self.index = index
        self.name = f"camera {index}"
        self._size = (width, height)
        self._on_event = on_event
        self._retry_delays = retry_delays
        capture = self._open()
        if capture is None:
            raise SourceError(
                f"camera {index} cannot be opened (not connected, in use by another program, or "
                "no permission); `gsmc video` lists the cameras it finds when given a bad index"
            )
        self._capture = capture
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._handed_out = -1
        self._closed = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"camera-{index}", daemon=True)
        self._thread.start()

    def _open(self) -> cv2.VideoCapture | None:
        capture = _open_camera(self.index)
        if capture is not None:
            width, height = self._size
            if width:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            # ask the driver for the smallest buffer it allows: fewer stale frames on read
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return capture

    def _emit(self, event: CameraEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _run(self) -> None:
        count = 0
        while not self._closed.is_set():
            ok, image = self._capture.read()
            if ok and image is not None and image.size:  # (some drivers return empty frames)
                with self._cond:
                    self._latest = Frame(image, time.monotonic() - self._t0, count)
                    self._cond.notify_all()
                count += 1
                continue
            self._capture.release()
            self._emit(CameraEvent("lost", self.index, f"camera {self.index} stopped delivering frames"
                                   if count else f"camera {self.index} opened but gives no frames "
                                   "(in use by another program, or no permission?)"))
            self._reopen()
        self._capture.release()

    def _reopen(self) -> None:
        attempt = 0
        while not self._closed.is_set():
            delay = self._retry_delays[min(attempt, len(self._retry_delays) - 1)]
            attempt += 1
            self._emit(
                CameraEvent(
                    "retry", self.index, f"reopening camera {self.index} in {delay:g} s", attempt, delay
                )
            )
            if self._closed.wait(delay):
                return
            capture = self._open()
            if capture is not None:
                self._capture = capture
                self._emit(CameraEvent("reopened", self.index, f"camera {self.index} is back", attempt))
                return

    def read_latest(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet handed out, waiting up to ``timeout`` s; None if none came."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._closed.is_set()
                or (self._latest is not None and self._latest.index != self._handed_out),
                timeout,
            ):
                return None
            if self._closed.is_set() or self._latest is None:
                return None
            self._handed_out = self._latest.index
            return self._latest

    def __iter__(self) -> Iterator[Frame]:
        while not self._closed.is_set():
            frame = self.read_latest(timeout=0.5)
            if frame is not None:
                yield frame

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)


def open_source(spec: str | int, step: int = 1,
                on_event: Callable[[CameraEvent], None] | None = None,
                on_skip: Callable[[Path, str], None] | None = None) -> FrameSource:
    """A camera (an int or a string of digits; ``on_event`` hears when it is lost and back), an
    image folder (``on_skip`` hears of each image that cannot be read), or a video file
    (``step``: every step-th frame)."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        if int(spec) > MAX_CAMERA_INDEX:
            raise SourceError(f"camera index {spec} is out of range (0-{MAX_CAMERA_INDEX}); cameras "
                              f"found: {list_cameras() or 'none'}")
        return CameraSource(int(spec), on_event=on_event)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, on_skip=on_skip)
    return VideoFileSource(path, step=step)
