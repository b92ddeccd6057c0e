"""The Live tab's worker: capture and inference in its own thread.

The GUI thread never runs the model. Settings changed in the GUI (overlay options, model,
recording) are handed over through a lock and picked up before the next frame, because the
worker's event loop is busy in ``run`` while streaming. Frames go back through a one-frame
slot: the GUI takes the newest one, older ones are dropped, never queued.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Generic, TypeVar

import cv2
import numpy as np
import numpy.typing as npt
from PySide6.QtCore import Signal, Slot

from gsmc_core.errors import UsageError
from gsmc_core.frames.detection import (
    DEFAULT_LIVE_DETECTOR,
    CombinedDetector,
    FaceDetector,
    make_live_detector,
)
from gsmc_core.frames.pipeline import FramePipeline
from gsmc_core.frames.predictor import ready_without_export
from gsmc_core.frames.recording import CAMERA_VIDEO_FPS, Recorder
from gsmc_core.frames.render import RenderOptions
from gsmc_core.frames.results import FrameResult
from gsmc_core.frames.sources import CameraEvent, CameraSource, Frame, FrameSource, VideoFileSource
from gsmc_core.frames.stream import Playback, PlaybackControl, play
from gsmc_desktop.model_handle import ModelHandle
from gsmc_desktop.threads import Worker

T = TypeVar("T")
# the start of a ``recording`` message for a recording the worker ended itself (not a failure)
RECORDING_ENDED = "Recording ended"


class LatestSlot(Generic[T]):
    """A one-item mailbox between threads: ``put`` overwrites, ``take`` empties."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: T | None = None

    def put(self, item: T) -> bool:
        """Store ``item``, dropping any unread one; True if the slot was empty (notify then)."""
        with self._lock:
            was_empty = self._item is None
            self._item = item
            return was_empty

    def take(self) -> T | None:
        with self._lock:
            item, self._item = self._item, None
            return item


@dataclass(frozen=True)
class SourceSpec:
    """What to stream: a camera index or a video file."""

    camera: int | None = None
    video: Path | None = None

    def label(self) -> str:
        return f"camera {self.camera}" if self.video is None else self.video.name


@dataclass(frozen=True)
class LiveOptions:
    """Overlay and pipeline settings. ``cam_class`` None = each face's predicted class;
    ``half_life_s`` 0 = no smoothing; ``detector`` "short", "full" or "auto" (both) with its
    minimum detection score."""

    heatmaps: bool = True
    alpha: float = 0.45
    cam_class: int | None = None
    cam_scale: str = "map"  # render.CAM_SCALES
    half_life_s: float = 0.0
    detector: str = DEFAULT_LIVE_DETECTOR
    min_score: float = 0.5


@dataclass(frozen=True)
class RecordRequest:
    csv_path: Path
    video_path: Path | None = None


@dataclass(frozen=True)
class LiveFrame:
    """One processed frame: the annotated image (RGB), the pipeline's result, the frame's
    index and time in its source, and the processing rate."""

    rgb: npt.NDArray[np.uint8]
    result: FrameResult
    index: int
    timestamp: float
    fps: float
    frame_count: int | None = None  # frames in a video file; None for a camera
    model: ModelHandle | None = None  # the model that made ``result``
    redraw: bool = False  # the paused frame again, after a change of model or overlay options
    source_fps: float = 0.0  # the video file's own rate (0 for a camera)
    runtime: str = ""  # where and how the model ran, e.g. "cpu · int8"


@dataclass
class _StreamState:
    """What one run of ``_stream`` has built from the GUI's settings."""

    pipeline: FramePipeline | None = None
    model: ModelHandle | None = None
    detector: FaceDetector | CombinedDetector | None = None
    detector_setting: tuple[str, float] | None = None
    recorder: Recorder | None = None
    record: RecordRequest | None = None
    render: RenderOptions = field(default_factory=RenderOptions)
    fps: float = 0.0  # the processing rate, smoothed
    last: float | None = None  # when the previous frame was processed


class LiveWorker(Worker):
    """Streams a source through ``FramePipeline``; lives in a worker thread.

    Signals: ``frame_ready`` (a new ``LiveFrame`` is in ``frames``), ``status`` (camera lost,
    retrying, back), ``errored`` (the run could not start or broke), ``finished`` (why it ended),
    ``reached_end`` (a video file's last frame was shown: the run stays, paused there, so seeking
    and stepping still work and Play starts the file over), ``recording`` (a summary when a
    recording closes, or its error), ``cameras_found``.
    """

    frame_ready = Signal()
    status = Signal(str)
    finished = Signal(str)
    reached_end = Signal(str)
    recording = Signal(str)
    cameras_found = Signal(list)

    def __init__(self, camera_lister: Callable[[], list[int]]) -> None:
        super().__init__()
        self.frames: LatestSlot[LiveFrame] = LatestSlot()
        self._camera_lister = camera_lister
        self._lock = threading.Lock()
        self._options = LiveOptions()
        self._model: ModelHandle | None = None
        self._record: RecordRequest | None = None
        # pause, steps, seek, speed and "settings changed", obeyed by the core's play loop
        self.control = PlaybackControl(self._stop)

    # --- called from the GUI thread -------------------------------------------------------------

    def set_options(self, options: LiveOptions) -> None:
        with self._lock:
            self._options = options
        self.control.settings_changed()

    def set_model(self, model: ModelHandle | None) -> None:
        with self._lock:
            self._model = model
        self.control.settings_changed()

    def set_recording(self, request: RecordRequest | None) -> None:
        """Start (at the next frame, or when the next run starts) or stop recording."""
        with self._lock:
            self._record = request
        self.control.settings_changed()

    # video files only: pause, frame steps, seeking and speed (``stream.PlaybackControl``)
    def set_paused(self, paused: bool) -> None:
        self.control.set_paused(paused)

    def step(self, frames: int = 1) -> None:
        """While paused: show the next frame (``frames`` > 0) or an earlier one (< 0)."""
        self.control.step(frames)

    def seek(self, index: int) -> None:
        """Continue at frame ``index`` (shown at once, also while paused)."""
        self.control.seek(index)

    def set_speed(self, speed: float) -> None:
        """Playback speed: 1 = the file's frame rate, 0 = as fast as frames are processed."""
        self.control.set_speed(speed)

    def playback(self) -> Playback:
        return self.control.playback()

    # --- slots, run in the worker thread -------------------------------------------------------

    @Slot()
    def scan_cameras(self) -> None:
        self.cameras_found.emit(self._camera_lister())

    @Slot(object)
    def run(self, spec: SourceSpec) -> None:
        """Stream ``spec``; the caller has called ``control.new_run()`` (in its own thread, so a
        stop asked for before this slot runs is kept)."""
        try:
            source = self._open(spec)
        except Exception as exc:  # a camera or file that cannot be opened names itself
            self.fail(exc, spec.label())
            with self._lock:
                self._record = None  # a recording ends with its run, also one that never started
            self.finished.emit("failed")
            return
        reason = "stopped"
        try:
            reason = self._stream(source, spec)
        except Exception as exc:  # keep the app alive; the tab says what broke
            self.fail(exc, spec.label())
            reason = "failed"
        finally:
            source.close()
            self.finished.emit(reason)

    def _open(self, spec: SourceSpec) -> FrameSource:
        if spec.video is not None:
            return VideoFileSource(spec.video)
        return CameraSource(spec.camera or 0, on_event=self._camera_event)

    def _camera_event(self, event: CameraEvent) -> None:
        # called on the camera's capture thread; the signal is queued to the GUI
        self.status.emit("" if event.kind == "reopened" else f"{event.message}…")

    def _stream(self, source: FrameSource, spec: SourceSpec) -> str:
        """Process the cues of the core's play loop until a stop ("stopped") or a run without a
        model ("no model"); the worker only applies the GUI's settings, processes and emits."""
        state = _StreamState()
        try:
            for cue in play(source, self.control):
                if cue.kind == "end":
                    self._at_end(state, spec)
                    continue
                if cue.cut and state.pipeline is not None:  # a seek or a restart: IDs from 1
                    state.pipeline.reset(restart_ids=True)
                redraw = cue.kind == "redraw"
                model_before = state.model
                if not self._apply_settings(state, source):
                    return "no model"
                if state.model is not model_before and not redraw:
                    # building it may take seconds (the first ONNX export): a file resumes
                    # its pace from the next frame instead of rushing to catch up
                    self.control.restart_clock()
                if not redraw:
                    now = time.monotonic()
                    if state.last is not None:
                        rate = 1.0 / max(now - state.last, 1e-6)
                        state.fps = rate if state.fps == 0.0 else 0.9 * state.fps + 0.1 * rate
                    state.last = now
                self._process(state, source, cue.frame, state.fps, redraw=redraw)
            return "stopped"
        finally:
            if state.detector is not None:
                state.detector.close()
            if state.recorder is not None:
                self.recording.emit(f"Recorded {state.recorder.close()}")
            with self._lock:
                self._record = None  # a recording ends with its run

    def _at_end(self, state: "_StreamState", spec: SourceSpec) -> None:
        """A video file's last frame is on screen (paused there): close the recording (every
        frame is in it) and say so."""
        if state.recorder is not None:
            self.recording.emit(f"Recorded {state.recorder.close()}")
            state.recorder = None
        with self._lock:
            self._record = state.record = None
        self.reached_end.emit(f"end of {spec.label()}")

    def _apply_settings(self, state: "_StreamState", source: FrameSource) -> bool:
        """Bring the detector, pipeline, overlays and recorder up to the settings the GUI set;
        False when there is no model to run."""
        if not self.control.take_changes():
            return True
        with self._lock:
            options, wanted_model, wanted_record = self._options, self._model, self._record
        if wanted_model is None:
            self.fail(UsageError("No model loaded: use File ▸ Open checkpoint… first"), "live")
            return False
        if (options.detector, options.min_score) != state.detector_setting:
            if state.detector is not None:
                state.detector.close()
            state.detector = make_live_detector(options.detector, options.min_score)
            state.detector_setting = (options.detector, options.min_score)
            if state.pipeline is not None:
                state.pipeline.detector = state.detector
        if wanted_model is not state.model:
            other = state.model is None or wanted_model.checkpoint is not state.model.checkpoint
            if state.recorder is not None and other:  # a CSV holds one model's classes and face IDs
                summary = state.recorder.close()
                state.recorder = None
                with self._lock:
                    ended = self._record is state.record  # (not when a new one was asked for)
                    if ended:
                        self._record = wanted_record = None
                self.recording.emit(f"{RECORDING_ENDED}: the model changed. Recorded {summary}"
                                    if ended else f"Recorded {summary}")
                state.record = None
            state.model = wanted_model
            if not ready_without_export(wanted_model.checkpoint):  # the first start exports it
                self.status.emit("Preparing the model for this computer (once)…")
            if other or state.pipeline is None:
                # a face that sits still keeps its output: at rest the network runs ~1 frame in 16
                state.pipeline = FramePipeline(state.model.new_predictor(), state.detector,
                                               half_life_unit="seconds", reuse=True)
            else:  # the same model on another device: its faces keep their IDs and the recording
                state.pipeline.set_predictor(state.model.new_predictor())
                if state.recorder is not None:  # its rows change kind from the next frame: said
                    self.recording.emit("Recording goes on; from the next frame the model runs as "
                                        f"{state.pipeline.predictor.summary}")
        pipeline, model = state.pipeline, state.model
        in_range = options.cam_class is not None and options.cam_class < len(model.classes)
        pipeline.configure(options.heatmaps, options.cam_class if in_range else None,
                           options.cam_scale, options.half_life_s or None)
        state.render = replace(state.render, heatmaps=options.heatmaps, alpha=options.alpha)
        if wanted_record is not state.record:
            if state.recorder is not None:
                self.recording.emit(f"Recorded {state.recorder.close()}")
                state.recorder = None
            state.record = wanted_record
            if wanted_record is not None:
                state.recorder = self._open_recorder(wanted_record, model, source)
        return True

    def _process(self, state: "_StreamState", source: FrameSource, frame: Frame, fps: float,
                 redraw: bool = False) -> None:
        """Run the pipeline on ``frame``, record it (not a redraw: it was recorded once) and put
        it in the slot the GUI takes frames from."""
        result = state.pipeline.process(frame.image, frame.timestamp, render=state.render)
        if state.recorder is not None and not redraw:
            try:
                state.recorder.write(frame.index, frame.timestamp, result, result.annotated)
            except OSError as exc:
                where = exc.filename or state.recorder.csv_path
                self.recording.emit(f"Recording stopped: {where}: {exc.strerror or exc}")
                state.recorder.close()
                state.recorder = None
        rgb = cv2.cvtColor(result.annotated, cv2.COLOR_BGR2RGB)
        if self.frames.put(LiveFrame(rgb, result, frame.index, frame.timestamp, fps,
                                     source.frame_count, state.model, redraw,
                                     source.fps or 0.0, state.pipeline.predictor.summary)):
            self.frame_ready.emit()

    def _open_recorder(self, record: RecordRequest, model: ModelHandle,
                       source: FrameSource) -> Recorder | None:
        # a file records every frame at its own rate; a camera's frames come as fast as they are
        # processed, so its video is written in real time at a nominal rate (copies or drops)
        camera = isinstance(source, CameraSource)
        try:
            return Recorder(record.csv_path, model.classes, record.video_path,
                            CAMERA_VIDEO_FPS if camera else source.fps or CAMERA_VIDEO_FPS,
                            timed=camera)
        except OSError as exc:
            self.recording.emit(f"Cannot record to {record.csv_path}: {exc.strerror or exc}")
            return None
