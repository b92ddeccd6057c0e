"""The path every frame takes: detect faces, crop them, classify them in one batch, track them.

One ``FramePipeline`` serves the CLI, the desktop app and the tests; ``overlapped`` runs its two
stages (detection, then the rest) for consecutive frames at the same time.
"""

import dataclasses
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from gsmc_core.checkpoint import FaceCrop
from gsmc_core.frames.detection import (
    CombinedDetector,
    Face,
    FaceDetector,
    WholeImage,
    crop_face,
    heatmap_in_box,
)
from gsmc_core.frames.predictor import Prediction, Predictor
from gsmc_core.frames.render import RenderOptions, draw_frame, scale_cam
from gsmc_core.frames.results import FaceResult, FrameResult
from gsmc_core.frames.still_faces import StillFaces
from gsmc_core.frames.tracking import FaceTracker, ProbabilitySmoother


@dataclass(frozen=True)
class Detected:
    """A frame after the first stage: its faces, and when and how long detection took."""

    frame: npt.NDArray[np.uint8]
    timestamp: float
    faces: list[Face]
    started: float  # perf_counter when detection began
    detect_ms: float


class FramePipeline:
    """frame (BGR) -> faces with IDs, probabilities, labels and heatmaps.

    ``cam_class`` (index or name) fixes the heatmap's class for every face; None shows each
    face's current (smoothed) prediction. ``half_life``/``half_life_unit`` configure the
    ``ProbabilitySmoother`` (None = raw). ``heatmaps=False`` skips mapping heatmaps onto boxes;
    ``cam_scale`` is how heatmaps are scaled (``render.CAM_SCALES``). ``reuse``: a tracked face
    that has not moved or changed keeps its last network output (``still_faces.StillFaces``; for
    video, where consecutive frames repeat each other). ``all_cams``: each face's result also
    carries every class's CAM (for a grid of them; one network pass either way).
    Face crops follow the framing stored in the predictor's checkpoint metadata; with the
    ``WholeImage`` detector each image is one face crop, taken as it is.
    """

    def __init__(
        self,
        predictor: Predictor,
        detector: FaceDetector | CombinedDetector | WholeImage,
        tracker: FaceTracker | None = None,
        half_life: float | None = None,
        half_life_unit: str = "frames",
        cam_class: int | str | None = None,
        heatmaps: bool = True,
        cam_scale: str = "map",
        reuse: bool = False,
        all_cams: bool = False,
    ) -> None:
        self.predictor = predictor
        self.detector = detector
        self.tracker = tracker if tracker is not None else FaceTracker()
        self.smoother = ProbabilitySmoother(half_life, half_life_unit)
        self.cam_class = cam_class
        self.heatmaps = heatmaps
        self.cam_scale = cam_scale  # render.CAM_SCALES
        self.still = StillFaces() if reuse else None
        self.all_cams = all_cams
        self._frames = 0
        # A frame's OpenCV work (crops, heatmaps, drawing) runs on the calling thread: OpenCV's
        # own pool spreads its small resizes over the cores and its idle workers spin, which
        # cost 0.04-0.05 CPU-seconds per second of 30 fps video and gained no fps
        # (docs/performance.md). Process-wide, like ONNX Runtime's thread count.
        cv2.setNumThreads(1)

    @property
    def cam_class(self) -> int | str | None:
        return self._cam_class

    @cam_class.setter
    def cam_class(self, value: int | str | None) -> None:
        # the Predictor's own lookup, so names and ranges are validated in one place
        self._cam_index = self.predictor.class_index(value)
        self._cam_class = value

    def configure(self, heatmaps: bool, cam_class: int | str | None, cam_scale: str,
                  half_life: float | None) -> None:
        """Change the overlay and smoothing settings between frames (a GUI's options), each as
        the constructor takes it; the tracks and their smoothed probabilities are kept."""
        self.heatmaps = heatmaps
        self.cam_class = cam_class
        if cam_scale != self.cam_scale and self.still is not None:
            self.still.retain(set())  # kept heatmaps were scaled the old way
        self.cam_scale = cam_scale
        self.smoother.half_life = half_life

    def process(
        self,
        frame_bgr: npt.NDArray[np.uint8],
        timestamp: float | None = None,
        render: RenderOptions | None = None,
    ) -> FrameResult:
        """Run one frame. ``timestamp`` (seconds) drives time-based smoothing; defaults to now.
        With ``render`` options the result also carries the annotated frame."""
        return self.finish(self.detect(frame_bgr, timestamp), render)

    def detect(self, frame_bgr: npt.NDArray[np.uint8], timestamp: float | None = None) -> "Detected":
        """The first stage of ``process``: the faces of a frame. It touches only the detector,
        so it may run for the next frame while ``finish`` runs for this one (``overlapped``)."""
        started = time.perf_counter()
        faces = self.detector.detect(frame_bgr, color="bgr")
        return Detected(frame_bgr, started if timestamp is None else timestamp, faces, started,
                        (time.perf_counter() - started) * 1e3)

    def finish(self, detected: "Detected", render: RenderOptions | None = None) -> FrameResult:
        """The second stage of ``process``: crops, the network, tracking and smoothing (frames
        must come in order), heatmaps and the rendered frame."""
        frame_bgr, timestamp, faces = detected.frame, detected.timestamp, detected.faces
        framing = getattr(self.detector, "framing", None) or self.predictor.meta.face_crop
        timings: dict[str, float] = {"detect": detected.detect_ms}
        t_detect = time.perf_counter()

        h, w = frame_bgr.shape[:2]
        ids = self.tracker.update([f.box for f in faces], (w, h))
        self.smoother.retain(self.tracker.active_ids)
        t_ids = time.perf_counter()

        crops = [crop_face(frame_bgr, f, framing) for f in faces]
        predictions, reused = self._classify(frame_bgr, framing, ids, faces, crops)
        t_classify = time.perf_counter()
        timings["classify"] = (t_classify - t_ids) * 1e3

        clock = float(self._frames) if self.smoother.unit == "frames" else timestamp
        smoothed = [
            self.smoother.update(i, p.probabilities, clock) for i, p in zip(ids, predictions, strict=True)
        ]
        self._frames += 1
        t_track = time.perf_counter()
        timings["track"] = (t_ids - t_detect + t_track - t_classify) * 1e3

        results = []
        for face, face_id, crop, pred, probs, kept in zip(faces, ids, crops, predictions, smoothed, reused,
                                                          strict=True):
            index = int(probs.argmax())
            cam_class = index if self._cam_index is None else self._cam_index
            heatmap = None
            if self.heatmaps:
                crop_heat = pred.heatmap
                # smoothing changed the winner, or a kept output's crop had another size
                if cam_class != pred.cam_class or crop_heat.shape != crop.shape[:2]:
                    crop_heat = scale_cam(pred.cams, cam_class, (crop.shape[1], crop.shape[0]),
                                          self.cam_scale)
                heatmap = heatmap_in_box(crop_heat, face, framing)
            results.append(
                FaceResult(
                    id=face_id,
                    box=face.box,
                    score=face.score,
                    keypoints=face.keypoints,
                    probabilities=pred.probabilities,
                    smoothed=probs,
                    index=index,
                    label=self.predictor.classes[index],
                    cam_class=cam_class,
                    heatmap=heatmap,
                    reused=kept,
                    cams=pred.cams if self.all_cams else None,
                )
            )
        t_cam = time.perf_counter()
        timings["cam"] = (t_cam - t_track) * 1e3
        result = FrameResult(tuple(results), timestamp, (w, h), self.predictor.classes, timings)
        if render is not None:
            annotated = draw_frame(frame_bgr, result, render, bgr=True)
            timings["render"] = (time.perf_counter() - t_cam) * 1e3
            result = dataclasses.replace(result, annotated=annotated)
        timings["total"] = timings["detect"] + (time.perf_counter() - t_detect) * 1e3
        return result

    def _classify(
        self, frame_bgr: npt.NDArray[np.uint8], framing: FaceCrop, ids: list[int], faces: list[Face],
        crops: list[npt.NDArray[np.uint8]],
    ) -> tuple[list[Prediction], list[bool]]:
        """The network's output for each face (one batch), and whether it was kept from an
        earlier frame instead (``reuse``)."""
        if self.still is None:
            return (self.predictor.predict(crops, bgr=True, cam_class=self._cam_index,
                                           cam_scale=self.cam_scale), [False] * len(crops))
        self.still.retain(self.tracker.active_ids)
        kept = [self.still.reusable(i, f, lambda at: crop_face(frame_bgr, at, framing))
                for i, f in zip(ids, faces, strict=True)]
        todo = [k for k, prediction in enumerate(kept) if prediction is None]
        fresh = self.predictor.predict([crops[k] for k in todo], bgr=True, cam_class=self._cam_index,
                                       cam_scale=self.cam_scale)
        predictions = list(kept)
        for k, prediction in zip(todo, fresh, strict=True):
            predictions[k] = prediction
            self.still.classified(ids[k], faces[k], crops[k], prediction)
        return predictions, [prediction is not None for prediction in kept]

    def set_predictor(self, predictor: Predictor) -> None:
        """Classify with ``predictor`` from the next frame on (the same model on another device,
        or mirror-averaged): tracks and face IDs stay, but no face keeps or smooths an output
        of the previous predictor."""
        self.predictor = predictor
        self._forget_outputs()

    def reset(self, restart_ids: bool = False) -> None:
        """Start a new stream: forget tracks, smoothing, kept outputs and the detector's
        schedule; ``restart_ids`` numbers faces from 1 again (each still image on its own)."""
        self.tracker.reset(restart_ids)
        self.detector.reset()
        self._forget_outputs()
        self._frames = 0

    def _forget_outputs(self) -> None:
        """No face keeps or smooths an earlier network output."""
        self.smoother.retain(())
        if self.still is not None:
            self.still.retain(set())


def overlapped(pipeline: FramePipeline, frames: Iterable[tuple[npt.NDArray[np.uint8], float | None]],
               render: RenderOptions | None = None) -> Iterator[FrameResult]:
    """``pipeline.process`` over ``frames`` (image, timestamp) with two stages in flight: the
    faces of frame t+1 are detected in a second thread while frame t is classified, tracked and
    rendered here. One frame waits at most (a queue of one), results come in frame order and
    are those ``process`` gives; both threads block, never spin."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gsmc-detect") as pool:
        pending: Future[Detected] | None = None
        for frame, timestamp in frames:
            upcoming = pool.submit(pipeline.detect, frame, timestamp)
            if pending is not None:
                yield pipeline.finish(pending.result(), render)
            pending = upcoming
        if pending is not None:
            yield pipeline.finish(pending.result(), render)

