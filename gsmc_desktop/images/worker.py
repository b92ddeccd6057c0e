"""The Images tab's worker: still images through the frame pipeline, in its own thread."""

import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PySide6.QtCore import Signal, Slot

from gsmc_core.checkpoint import FaceCrop
from gsmc_core.errors import UsageError
from gsmc_core.frames.detection import Face, FaceDetector, WholeImage, crop_face
from gsmc_core.frames.pipeline import FramePipeline
from gsmc_core.frames.predictor import Predictor
from gsmc_core.frames.render import overlay_heatmap, scale_cam
from gsmc_core.frames.results import FrameResult
from gsmc_core.frames.sources import SourceError, read_image
from gsmc_desktop.model_handle import ModelHandle
from gsmc_desktop.threads import Worker, describe

TILE_SIZE = 128
CAM_ALPHA = 0.5


@dataclass(frozen=True)
class ImageJob:
    """Images to analyse: (entry number, path) pairs, the detector to use, how heatmaps are
    scaled (``render.CAM_SCALES``) and the job's number (``Wanted``)."""

    entries: tuple[tuple[int, Path], ...]
    detector: str = "full"
    cam_scale: str = "map"
    number: int = 0


class Wanted:
    """Which job's analysis of each open image is wanted: the tab sets it when it queues a job
    and drops images it takes off the list; the worker skips an image whose wanted job is
    another (a newer model, scale or detector), so new work never waits behind thrown-away work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._job: dict[int, int] = {}

    def set(self, entries: Iterable[int], job: int) -> None:
        with self._lock:
            self._job.update(dict.fromkeys(entries, job))

    def drop(self, entries: Iterable[int]) -> None:
        with self._lock:
            for entry in entries:
                self._job.pop(entry, None)

    def wants(self, entry: int, job: int) -> bool:
        with self._lock:
            return self._job.get(entry) == job


@dataclass(frozen=True)
class ImageResult:
    """One analysed image. ``cam_tiles[f][c]`` is face ``f``'s crop (as the model saw it, RGB)
    with the CAM of class ``c`` laid over it; ``error`` is set when the image could not be
    read, and then nothing else is. ``model`` is the model that produced it."""

    entry: int
    path: Path
    model: ModelHandle | None = None
    result: FrameResult | None = None
    cam_tiles: tuple[tuple[npt.NDArray[np.uint8], ...], ...] = ()
    error: str | None = None
    runtime: str = ""  # where and how the model ran, e.g. "cpu · int8"
    cam_scale: str = "map"  # how the job scaled the heatmaps (``ImageJob.cam_scale``)
    job: int = 0  # ``ImageJob.number``
    superseded: bool = False  # not analysed: a newer job has the image (or it was removed)
    stamp: tuple[int, int] | None = None  # the file's ``file_stamp`` when it was read


def file_stamp(path: Path) -> tuple[int, int] | None:
    """The file's modification time (ns) and size: another stamp means other pixels. None
    when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def cam_tiles(image_bgr: npt.NDArray[np.uint8], result: FrameResult, framing: FaceCrop,
              scale: str = "map") -> tuple[tuple[npt.NDArray[np.uint8], ...], ...]:
    """For each face of ``result`` (from a pipeline with ``all_cams``): its crop with each
    class's CAM over it, ``TILE_SIZE`` px. No second network pass: the CAMs came with the result."""
    tiles = []
    for face in result.faces:
        crop = crop_face(image_bgr, Face(face.box, face.score, face.keypoints), framing)
        rgb = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), (TILE_SIZE, TILE_SIZE),
                         interpolation=cv2.INTER_AREA)
        tiles.append(tuple(
            overlay_heatmap(rgb, scale_cam(face.cams, c, (TILE_SIZE, TILE_SIZE), scale), CAM_ALPHA)
            for c in range(len(face.cams))
        ))
    return tuple(tiles)


class ImagesWorker(Worker):
    """Runs ``ImageJob``s; emits ``image_done`` per image, ``errored`` when a job breaks off."""

    image_done = Signal(object)

    def __init__(self, wanted: Wanted) -> None:
        super().__init__()
        self.wanted = wanted
        self._lock = threading.Lock()
        self._model: ModelHandle | None = None
        self._cancel = threading.Event()
        self._predictor: tuple[ModelHandle, Predictor] | None = None
        self._detectors: dict[str, FaceDetector | WholeImage] = {}

    def set_model(self, model: ModelHandle | None) -> None:
        with self._lock:
            self._model = model

    def cancel(self) -> None:
        """Abandon the jobs queued or running (shutting down)."""
        self._cancel.set()

    def _predictor_for(self, model: ModelHandle) -> Predictor:
        if self._predictor is None or self._predictor[0] is not model:
            self._predictor = (model, model.new_predictor())
        return self._predictor[1]

    def _get_detector(self, name: str) -> FaceDetector | WholeImage:
        if name not in self._detectors:
            if name == "whole":  # images that are face crops already (a dataset's faces)
                self._detectors[name] = WholeImage()
            else:  # photos: tiles="auto" also finds faces too small for one pass over the image
                self._detectors[name] = FaceDetector(name, tiles="auto" if name == "full" else 1)
        return self._detectors[name]

    @Slot(object)
    def run(self, job: ImageJob) -> None:
        """Analyse the job's images; each entry comes back once, as a result or an error (also
        when the job breaks half-way), so the tab never waits for an image forever."""
        with self._lock:
            model = self._model
        done = 0
        try:
            if not any(self.wanted.wants(entry, job.number) for entry, _ in job.entries):
                for entry, path in job.entries:  # all thrown away: not even its model is built
                    self.image_done.emit(ImageResult(entry, path, job=job.number, superseded=True))
                return
            if model is None:
                raise UsageError("No model loaded: use File ▸ Open checkpoint… first")
            predictor = self._predictor_for(model)
            pipeline = FramePipeline(predictor, self._get_detector(job.detector), cam_scale=job.cam_scale,
                                     all_cams=True)
            for entry, path in job.entries:
                if self._cancel.is_set():
                    return
                if self.wanted.wants(entry, job.number):
                    result = self._analyse(pipeline, predictor, entry, path, job.cam_scale)
                    result = replace(result, model=model, cam_scale=job.cam_scale, job=job.number)
                else:
                    result = ImageResult(entry, path, job=job.number, superseded=True)
                self.image_done.emit(result)
                done += 1
        except Exception as exc:  # keep the app alive; the tab says what broke
            self.fail(exc, "images")
            for entry, path in job.entries[done:]:
                self.image_done.emit(ImageResult(entry, path, model, error=f"{path}: not analysed: "
                                                 f"{describe(exc)}", cam_scale=job.cam_scale,
                                                 job=job.number))

    def _analyse(self, pipeline: FramePipeline, predictor: Predictor, entry: int, path: Path,
                 cam_scale: str) -> ImageResult:
        stamp = file_stamp(path)
        try:
            image = read_image(path)
        except (OSError, SourceError) as exc:
            return ImageResult(entry, path, error=str(exc))
        pipeline.reset(restart_ids=True)  # stills are unrelated: faces numbered from 1 in each
        result = pipeline.process(image)
        # numbered left to right (then top to bottom), as a person reads a group photo
        faces = sorted(result.faces, key=lambda f: (f.box[0], f.box[1]))
        result = replace(result, faces=tuple(replace(f, id=k) for k, f in enumerate(faces, start=1)))
        # the crops the network saw: the detector's own framing (a face crop's: the whole image)
        framing = getattr(pipeline.detector, "framing", None) or predictor.meta.face_crop
        return ImageResult(entry, path, result=result, cam_tiles=cam_tiles(image, result, framing, cam_scale),
                           runtime=predictor.summary, stamp=stamp)

    @Slot()
    def close(self) -> None:
        """Free the detectors (run in the worker thread, which created them)."""
        for detector in self._detectors.values():
            detector.close()
        self._detectors.clear()
