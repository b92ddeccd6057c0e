"""The Live tab's worker: capture and inference in its own thread.

The GUI thread never runs the model. Settings changed in the GUI (overlay options, model,
recording) are handed over through a lock and picked up before the next frame, because the
worker's event loop is busy in ``run`` while streaming. Frames go back through a one-frame
slot: the GUI takes the newest one, older ones are dropped, never queued.
"""

import threading
import time
from collections.abc import Callable, Iterator
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
from gsmc_core.frames.recording import Recorder
from gsmc_core.frames.render import RenderOptions
from gsmc_core.frames.results import FrameResult
from gsmc_core.frames.sources import CameraEvent, CameraSource, Frame, FrameSource, VideoFileSource
from gsmc_desktop.model_handle import ModelHandle
from gsmc_desktop.threads import Worker

T = TypeVar("T")


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
class Playback:
    """How a video file plays: paused, frames to step while paused, a frame to seek to,
    speed (1 = real time, 0 = as fast as possible), and the last frame shown."""

    paused: bool = False
    steps: int = 0
    seek: int | None = None
    speed: float = 1.0
    shown: int = 0


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
    model_name: str = ""  # the model that made ``result``
    redraw: bool = False  # the paused frame again, after a change of model or overlay options
    source_fps: float = 0.0  # the video file's own rate (0 for a camera)
    runtime: str = ""  # where and how the model ran, e.g. "cpu · int8"


@dataclass
class _StreamState:
    """What one run of ``_stream`` has built from the GUI's settings, and where its playback is."""

    seen_changes: int = -1
    pipeline: FramePipeline | None = None
    model: ModelHandle | None = None
    detector: FaceDetector | CombinedDetector | None = None
    detector_setting: tuple[str, float] | None = None
    recorder: Recorder | None = None
    record: RecordRequest | None = None
    render: RenderOptions = field(default_factory=RenderOptions)
    fps: float = 0.0  # the processing rate, smoothed
    last: float | None = None  # when the previous frame was processed
    clock: float = field(default_factory=time.monotonic)  # when frame time 0 was (at the speed)
    pace: tuple[float, int] = (1.0, 0)  # (speed, frame index) ``clock`` was set for
    shown: Frame | None = None  # the raw frame on screen, made again after a change


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
        self._changes = 0  # bumped by every setter; the loop re-reads settings when it moves
        self._playback = Playback()

    # --- called from the GUI thread -------------------------------------------------------------

    def set_options(self, options: LiveOptions) -> None:
        with self._lock:
            self._options = options
            self._changes += 1

    def set_model(self, model: ModelHandle | None) -> None:
        with self._lock:
            self._model = model
            self._changes += 1

    def set_recording(self, request: RecordRequest | None) -> None:
        """Start (at the next frame, or when the next run starts) or stop recording."""
        with self._lock:
            self._record = request
            self._changes += 1

    # video files only: pause, frame steps, seeking and speed
    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self._playback = replace(self._playback, paused=paused, steps=0)

    def step(self, frames: int = 1) -> None:
        """While paused: show the next frame (``frames`` > 0) or an earlier one (< 0)."""
        with self._lock:
            if frames > 0:
                self._playback = replace(self._playback, steps=self._playback.steps + frames)
            else:
                target = max(0, self._playback.shown + frames)
                self._playback = replace(self._playback, seek=target, steps=1)

    def seek(self, index: int) -> None:
        """Continue at frame ``index`` (shown at once, also while paused)."""
        with self._lock:
            self._playback = replace(self._playback, seek=max(0, index), steps=1)

    def set_speed(self, speed: float) -> None:
        """Playback speed: 1 = the file's frame rate, 0 = as fast as frames are processed."""
        with self._lock:
            self._playback = replace(self._playback, speed=speed)

    def playback(self) -> "Playback":
        with self._lock:
            return self._playback

    # --- slots, run in the worker thread -------------------------------------------------------

    @Slot()
    def scan_cameras(self) -> None:
        self.cameras_found.emit(self._camera_lister())

    def _wait_to_show(self, source: FrameSource, applied_changes: int) -> str:
        """For a video file: block while paused; "show" when this frame may be shown, "seek"
        when the file was moved to another frame (this one is dropped), "redraw" when the
        model or an overlay option changed while paused (the frame on screen is made again),
        "stop" on a stop."""
        while True:
            with self._lock:
                play = self._playback
                changed = self._changes != applied_changes
                if play.seek is not None:
                    self._playback = replace(play, seek=None)
                elif play.paused and play.steps > 0:
                    self._playback = replace(play, steps=play.steps - 1)
            if play.seek is not None:
                source.seek(play.seek)
                return "seek"
            if not play.paused or play.steps > 0:
                return "show"
            if changed:
                return "redraw"
            if self._stop.wait(0.03):
                return "stop"

    @Slot(object)
    def run(self, spec: SourceSpec) -> None:
        self._stop.clear()
        with self._lock:
            self._playback = replace(self._playback, steps=0, seek=None, shown=0)
        try:
            source = self._open(spec)
        except Exception as exc:  # a camera or file that cannot be opened names itself
            self.fail(exc, spec.label())
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

    def _frames(self, source: FrameSource) -> Iterator[Frame]:
        if isinstance(source, CameraSource):
            # short waits so a stop request is seen within 50 ms even with no frames coming
            while not self._stop.is_set():
                frame = source.read_latest(timeout=0.05)
                if frame is not None:
                    yield frame
        else:
            yield from source

    def _stream(self, source: FrameSource, spec: SourceSpec) -> str:
        state = _StreamState()
        try:
            while True:
                verdict = self._play(state, source, spec)
                if verdict is not None:
                    return verdict
                if self._stop.is_set() or spec.video is None:
                    return "stopped"
                verdict = self._pause_at_end(state, source, spec)
                if verdict != "again":
                    return verdict
                if state.pipeline is not None:  # sought or played over: a cut, IDs from 1
                    state.pipeline.reset(restart_ids=True)
        finally:
            if state.detector is not None:
                state.detector.close()
            if state.recorder is not None:
                self.recording.emit(f"Recorded {state.recorder.close()}")
            with self._lock:
                self._record = None  # a recording ends with its run

    def _play(self, state: "_StreamState", source: FrameSource, spec: SourceSpec) -> str | None:
        """Show frames until the source runs out (None) or the run ends ("stopped", "no model")."""
        for frame in self._frames(source):
            if self._stop.is_set():
                return "stopped"
            if spec.video is not None:
                waited = time.monotonic()
                verdict = self._wait_to_show(source, state.seen_changes)
                while verdict == "redraw":  # paused: the frame on screen with the new settings
                    if not self._redraw(state, source):
                        return "no model"
                    verdict = self._wait_to_show(source, state.seen_changes)
                if verdict == "stop":
                    return "stopped"
                if verdict == "seek":
                    if state.pipeline is not None:  # a seek is a cut: new tracks, IDs from 1
                        state.pipeline.reset(restart_ids=True)
                    continue
                speed = self.playback().speed
                if (speed, frame.index - 1) != state.pace or time.monotonic() - waited > 0.05:
                    # paused, stepped, sought or the speed changed: restart the clock here
                    state.clock = time.monotonic() - frame.timestamp / max(speed, 1e-9)
                state.pace = (speed, frame.index)
                if source.fps and speed > 0:
                    # play a file no faster than its frame rate x speed (every frame is processed)
                    delay = state.clock + frame.timestamp / speed - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return "stopped"
            model_before = state.model
            if not self._apply_settings(state, source, state.fps, frame):
                return "no model"
            if state.model is not model_before:
                # building it may take seconds (the first ONNX export): a file resumes
                # its pace from this frame instead of rushing to catch up
                state.clock = time.monotonic() - frame.timestamp
                state.pace = (-1.0, -1)  # re-anchored at the next frame, at the set speed
            now = time.monotonic()
            if state.last is not None:
                rate = 1.0 / max(now - state.last, 1e-6)
                state.fps = rate if state.fps == 0.0 else 0.9 * state.fps + 0.1 * rate
            state.last = now
            self._process(state, source, frame, state.fps)
            state.shown = frame
        return None

    def _redraw(self, state: "_StreamState", source: FrameSource) -> bool:
        """Paused and a setting changed: the frame on screen made again; False without a model."""
        if state.shown is not None:
            if not self._apply_settings(state, source, state.fps, state.shown):
                return False
            self._process(state, source, state.shown, state.fps, redraw=True)
        state.seen_changes = self._current_changes()
        return True

    def _pause_at_end(self, state: "_StreamState", source: FrameSource, spec: SourceSpec) -> str:
        """A video file's last frame is on screen: close the recording (every frame is in it) and
        wait, paused, for a seek or a step back ("again": the file continues there), Play
        ("again" from the first frame), a changed setting (the last frame made again) or a stop
        ("stopped")."""
        if state.recorder is not None:
            self.recording.emit(f"Recorded {state.recorder.close()}")
            state.recorder = None
        with self._lock:
            self._record = state.record = None
            self._playback = replace(self._playback, paused=True, steps=0)
        self.reached_end.emit(f"end of {spec.label()}")
        while True:
            verdict = self._wait_to_show(source, state.seen_changes)
            if verdict == "redraw":
                if not self._redraw(state, source):
                    return "no model"
            elif verdict == "stop":
                return "stopped"
            elif verdict == "seek":
                return "again"
            elif not self.playback().paused:  # Play: from the start
                source.seek(0)
                return "again"
            # else a step forward: there is no next frame, stay here

    def _current_changes(self) -> int:
        with self._lock:
            return self._changes

    def _apply_settings(self, state: "_StreamState", source: FrameSource, fps: float,
                        frame: Frame) -> bool:
        """Bring the detector, pipeline, overlays and recorder up to the settings the GUI set;
        False when there is no model to run."""
        with self._lock:
            changed = self._changes != state.seen_changes
            state.seen_changes = self._changes
            options, wanted_model, wanted_record = self._options, self._model, self._record
        if not changed:
            return True
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
            state.model = wanted_model
            if not ready_without_export(wanted_model.checkpoint):  # the first start exports it
                self.status.emit("Preparing the model for this computer (once)…")
            # a face that sits still keeps its output: at rest the network runs ~1 frame in 16
            state.pipeline = FramePipeline(state.model.new_predictor(), state.detector,
                                           half_life_unit="seconds", reuse=True)
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
                state.recorder = self._open_recorder(wanted_record, model, source, fps)
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
        with self._lock:
            self._playback = replace(self._playback, shown=frame.index)
        predictor = state.pipeline.predictor
        if self.frames.put(LiveFrame(rgb, result, frame.index, frame.timestamp, fps,
                                     source.frame_count, state.model.name, redraw,
                                     source.fps or 0.0, f"{predictor.device.type} · {predictor.precision}")):
            self.frame_ready.emit()

    def _open_recorder(self, record: RecordRequest, model: ModelHandle, source: FrameSource,
                       fps: float) -> Recorder | None:
        # a camera has no nominal rate: record at the rate frames are processed
        video_fps = source.fps or (round(fps) if fps >= 1 else 15.0)
        try:
            return Recorder(record.csv_path, model.classes, record.video_path, video_fps)
        except OSError as exc:
            self.recording.emit(f"Cannot record to {record.csv_path}: {exc.strerror or exc}")
            return None
