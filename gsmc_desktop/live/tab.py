"""The Live tab: source selection, the annotated stream, overlay options, charts, recording."""

import math
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import cv2
from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QPushButton,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from gsmc_core.frames.detection import DEFAULT_LIVE_DETECTOR
from gsmc_core.frames.recording import VIDEO_SUFFIX
from gsmc_core.frames.results import FaceResult
from gsmc_core.frames.sources import list_cameras
from gsmc_core.outputs import refuse_overwriting_inputs, write_image
from gsmc_desktop.live.worker import (
    RECORDING_ENDED,
    LiveFrame,
    LiveOptions,
    LiveWorker,
    RecordRequest,
    SourceSpec,
)
from gsmc_desktop.model_handle import ModelHandle
from gsmc_desktop.settings import existing_file, read_setting
from gsmc_desktop.threads import describe, expected, start_worker, stop_thread
from gsmc_desktop.widgets.color_bar import ColorBar, scale_combo
from gsmc_desktop.widgets.frame_view import FrameView
from gsmc_desktop.widgets.messages import ask, report_failure
from gsmc_desktop.widgets.palette import class_color
from gsmc_desktop.widgets.plain_text import PlainLabel, escaped
from gsmc_desktop.widgets.plots import ProbabilityChart, ProbabilityTimeline

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
DETECTOR_CHOICES = (("auto", "Auto (close + far)"), ("short", "Close (webcam)"), ("full", "Far (groups)"))
PLOT_INTERVAL_S = 0.1  # charts redraw at most 10 times a second
RATE_WINDOW_S = 1.0  # the frame rate shown counts the frames of the last second
TIMELINE_WINDOW_S = 10.0  # the timeline's span unless "Whole video" is on
SPEEDS = (("0.25×", 0.25), ("0.5×", 0.5), ("1×", 1.0), ("2×", 2.0), ("4×", 4.0), ("max", 0.0))
NO_CAMERA_HINT = ("No camera found. Plug one in and choose “Look for cameras again” in the "
                  "source list, choose “Video file…” to analyse a video, or open photos in the "
                  "Images tab.")
CHOOSE_VIDEO, RESCAN = "choose", "rescan"  # the source list's two actions (not sources)
LOOKING = "Looking for cameras…"


class LiveTab(QWidget):
    """Streams a camera or video file through the pipeline in a worker thread.

    ``status_message`` carries one-line notes for the status bar, ``rate_changed`` the
    processing rate, ``finished`` why a run ended ("stopped", "failed"...), ``reached_end`` that a
    video file's last frame is on screen (the run stays, paused there: seek and step still work).
    """

    status_message = Signal(str)
    finished = Signal(str)
    reached_end = Signal(str)
    rate_changed = Signal(str)
    runtime_changed = Signal(str)  # where and how the model runs ("cpu · int8"), when it changes
    video_played = Signal(Path)  # a video file showed its first frame (for File ▸ Recent)
    _run_requested = Signal(object)
    _scan_requested = Signal()

    def __init__(self, camera_lister: Callable[[], list[int]] = list_cameras,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._model: ModelHandle | None = None
        self._running = False
        self._selected_id: int | None = None
        self.last_frame: LiveFrame | None = None
        self.frames_shown = 0
        self._plots_drawn = -math.inf
        self._shown_at: deque[float] = deque()  # when the frames of the last second arrived
        self._pending: SourceSpec | None = None  # a source opened while another one played
        self._spec: SourceSpec | None = None  # the source playing
        self._end_index: int | None = None  # the video's last frame, once the run reached it
        self.cameras: list[int] | None = None  # None until the first scan answers

        self.worker = LiveWorker(camera_lister)
        self.thread = start_worker(self.worker, "live-worker")
        self._run_requested.connect(self.worker.run)
        self._scan_requested.connect(self.worker.scan_cameras)
        self.worker.frame_ready.connect(self._on_frame_ready)
        self.worker.status.connect(self._on_status)
        self.worker.errored.connect(self._on_errored)
        self.worker.finished.connect(self._on_finished)
        self.worker.reached_end.connect(self._on_reached_end)
        self.worker.recording.connect(self._on_recording)
        self.worker.cameras_found.connect(self._on_cameras)

        self._build()
        self._make_shortcuts()
        self._restore_settings()
        self._push_options()
        self._scan_requested.emit()

    # --- layout -----------------------------------------------------------------------------------

    def _build(self) -> None:
        self.source_combo = QComboBox()
        self.source_combo.setMinimumContentsLength(18)
        self.source_combo.activated.connect(self._on_source_activated)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.record_button = QPushButton("Record CSV…")
        self.record_button.setCheckable(True)
        self.record_button.setToolTip("Write every face of every frame to a CSV file")
        self.record_button.clicked.connect(self._on_record_clicked)
        self.mp4_check = QCheckBox("+ annotated video")
        self.mp4_check.setToolTip("Also write the annotated frames beside the CSV as .mkv (Matroska: stays "
                                  "playable even if the program is killed mid-recording)")
        self.snapshot_button = QPushButton("Snapshot…")
        self.snapshot_button.clicked.connect(self._on_snapshot_clicked)

        top = QHBoxLayout()
        top.addWidget(PlainLabel("Source:"))
        top.addWidget(self.source_combo)
        top.addWidget(self.start_button)
        top.addWidget(self.stop_button)
        top.addSpacing(16)
        top.addWidget(self.record_button)
        top.addWidget(self.mp4_check)
        top.addWidget(self.snapshot_button)
        top.addStretch(1)

        self.heatmap_check = QCheckBox("Heatmap")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setFixedWidth(120)
        self.cam_combo = QComboBox()
        self.cam_combo.setMinimumContentsLength(len("Predicted class"))
        self.cam_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.cam_combo.setToolTip("Class whose attention map is shown (the face labels name it "
                                  "when it is not the predicted class)")
        self.scale_combo = scale_combo()
        self.color_bar = ColorBar()
        self.smoothing_spin = QDoubleSpinBox()
        self.smoothing_spin.setRange(0.0, 10.0)
        self.smoothing_spin.setSingleStep(0.1)
        self.smoothing_spin.setSuffix(" s")
        self.smoothing_spin.setSpecialValueText("off")
        self.smoothing_spin.setToolTip("Half-life of each face's probability smoothing (0 = raw)")
        self.detector_combo = QComboBox()
        for key, text in DETECTOR_CHOICES:
            self.detector_combo.addItem(text, key)
        self.detector_combo.setToolTip(
            "Face detector: Auto runs the close-range model on every frame and the long-range one "
            "every third frame and whenever it adds a face; Close suits one person at a webcam; "
            "Far finds small, distant faces")
        self.min_score_spin = QDoubleSpinBox()
        self.min_score_spin.setRange(0.1, 0.95)
        self.min_score_spin.setSingleStep(0.05)
        self.min_score_spin.setToolTip("Minimum detection score: lower finds more faces and more false ones")
        self.min_score_spin.setKeyboardTracking(False)  # each value rebuilds the detectors
        for signal in (self.heatmap_check.toggled, self.opacity_slider.valueChanged,
                       self.cam_combo.currentIndexChanged, self.scale_combo.currentIndexChanged,
                       self.smoothing_spin.valueChanged,
                       self.detector_combo.currentIndexChanged, self.min_score_spin.valueChanged):
            signal.connect(lambda *_: self._push_options())

        options = QHBoxLayout()  # the heatmap
        options.addWidget(self.heatmap_check)
        options.addWidget(PlainLabel("Opacity"))
        options.addWidget(self.opacity_slider)
        options.addSpacing(12)
        options.addWidget(PlainLabel("CAM class"))
        options.addWidget(self.cam_combo)
        options.addWidget(self.scale_combo)
        options.addWidget(self.color_bar)
        options.addStretch(1)
        detection = QHBoxLayout()  # faces and smoothing
        detection.addWidget(PlainLabel("Faces"))
        detection.addWidget(self.detector_combo)
        detection.addWidget(PlainLabel("min score"))
        detection.addWidget(self.min_score_spin)
        detection.addSpacing(12)
        detection.addWidget(PlainLabel("Smoothing half-life"))
        detection.addWidget(self.smoothing_spin)
        detection.addStretch(1)

        self.play_button = QPushButton("Pause")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Pause or play the video (Space)")
        self.play_button.toggled.connect(self._on_pause_toggled)
        self.back_button = QPushButton("◀ frame")
        self.back_button.setToolTip("The previous frame (←), pausing first")
        self.back_button.clicked.connect(lambda: self.step(-1))
        self.forward_button = QPushButton("frame ▶")
        self.forward_button.setToolTip("The next frame (→), pausing first")
        self.forward_button.clicked.connect(lambda: self.step(1))
        self.seek_slider = QSlider(Qt.Orientation.Horizontal)
        self.seek_slider.setToolTip("Position in the video: drag to seek")
        self.seek_slider.sliderReleased.connect(lambda: self.worker.seek(self.seek_slider.value()))
        # a click on the groove (or Page Up/Down) moves the handle: seek there too; the frames'
        # own updates of the position are made with the signals blocked
        self.seek_slider.valueChanged.connect(
            lambda value: None if self.seek_slider.isSliderDown() else self.worker.seek(value))
        self.position_label = PlainLabel("")
        self.speed_combo = QComboBox()
        for text, speed in SPEEDS:
            self.speed_combo.addItem(text, speed)
        self.speed_combo.setCurrentIndex(self.speed_combo.findData(1.0))
        self.speed_combo.setToolTip("Playback speed (every frame is analysed; \"max\" plays as fast "
                                    "as frames are processed)")
        self.speed_combo.currentIndexChanged.connect(
            lambda *_: self.worker.set_speed(self.speed_combo.currentData()))
        self.whole_check = QCheckBox("Whole video")
        self.whole_check.setToolTip("Show the whole video in the timeline, not the last 10 s")
        self.whole_check.toggled.connect(self._on_whole_toggled)
        self.video_bar = QWidget()
        video = QHBoxLayout(self.video_bar)
        video.setContentsMargins(0, 0, 0, 0)
        for widget in (self.play_button, self.back_button, self.forward_button):
            video.addWidget(widget)
        video.addWidget(self.seek_slider, 1)
        video.addWidget(self.position_label)
        video.addWidget(PlainLabel("Speed"))
        video.addWidget(self.speed_combo)
        video.addWidget(self.whole_check)

        self.view = FrameView()
        self.view.clicked.connect(self._on_view_clicked)
        self.chart = ProbabilityChart()
        self.timeline = ProbabilityTimeline()
        self.legend = PlainLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)  # coloured squares; names escaped
        self.legend.setWordWrap(True)
        timeline_box = QWidget()
        timeline_layout = QVBoxLayout(timeline_box)
        timeline_layout.setContentsMargins(0, 0, 0, 0)
        timeline_layout.addWidget(self.timeline, 1)
        timeline_layout.addWidget(self.legend)
        side = QSplitter(Qt.Orientation.Vertical)
        side.addWidget(self.chart)
        side.addWidget(timeline_box)
        side.setSizes([260, 260])
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.view)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(options)
        layout.addLayout(detection)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.video_bar)
        self._update_buttons()

    # --- model and sources ------------------------------------------------------------------------

    def set_model(self, model: ModelHandle | None) -> None:
        """Use ``model`` from the next frame on (None: no model loaded). A frame left on screen
        from the previous model is marked as such until the next start."""
        previous = self._model
        self._model = model
        if model is not previous and not self._running:
            self._mark_other_models_frame()
        classes = model.classes if model is not None else ()
        wanted = self.cam_combo.currentText()
        self.cam_combo.blockSignals(True)
        self.cam_combo.clear()
        self.cam_combo.addItem("Predicted class", None)
        for i, name in enumerate(classes):
            self.cam_combo.addItem(name, i)
        self.cam_combo.setCurrentIndex(max(0, self.cam_combo.findText(wanted)))
        self.cam_combo.blockSignals(False)
        self.chart.set_classes(classes)
        self.timeline.set_classes(classes)
        self.legend.setText(" ".join(f"<span style='color: rgb{class_color(i)}'>■</span>&nbsp;{escaped(name)}"
                                     for i, name in enumerate(classes)))
        self.worker.set_model(model)
        self._push_options()
        self._update_buttons()

    def _same_model(self, model: ModelHandle | None) -> bool:
        """``model`` is the loaded one, perhaps on another device or mirror-averaged: its faces
        and classes are this model's."""
        return model is not None and self._model is not None and model.checkpoint is self._model.checkpoint

    def _mark_other_models_frame(self) -> None:
        """Say so over a frame on screen that another model made (the stream has stopped)."""
        made_by = self.last_frame.model if self.last_frame is not None else None
        if made_by is not None and not self._same_model(made_by):
            self.view.set_message(f"Results of {made_by.name}; press Start to see "
                                  f"{self._model.name if self._model is not None else 'a new model'}")

    @Slot(list)
    def _on_cameras(self, cameras: list[int]) -> None:
        self.cameras = cameras
        current = self.source_combo.currentData()
        self.source_combo.clear()
        playing = self._spec if self._running else None
        if playing is not None and playing.camera is not None:  # (a scan may miss a camera in use)
            cameras = sorted({*cameras, playing.camera})
        for index in cameras:
            self.source_combo.addItem(f"Camera {index}", index)
        if self._video is not None:
            self.source_combo.addItem(self._video.name, str(self._video))
        self.source_combo.addItem("Video file…", CHOOSE_VIDEO)
        self.source_combo.addItem("Look for cameras again", RESCAN)
        found = -1
        if playing is not None:  # the list names what plays
            found = self.source_combo.findData(str(playing.video) if playing.video else playing.camera)
        if found < 0 and current not in (None, CHOOSE_VIDEO, RESCAN):
            found = self.source_combo.findData(current)
        if found < 0 and self._saved_source is not None:
            found = self.source_combo.findData(self._saved_source)
        self.source_combo.setCurrentIndex(max(0, found))
        if not cameras and self._video is None and not self._running:
            self.view.set_message(NO_CAMERA_HINT)
        elif self.view.message() == LOOKING:  # the answer to "Look for cameras again"
            names = ", ".join(f"camera {i}" for i in cameras)
            self.view.set_message(f"Found {names}: press Start" if cameras else NO_CAMERA_HINT)
        self._update_buttons()

    @Slot(int)
    def _on_source_activated(self, index: int) -> None:
        if self.source_combo.itemData(index) == RESCAN:  # (not offered during a run)
            self._select_playing_or_first()
            self.view.set_message(LOOKING)
            self._scan_requested.emit()
            return
        if self.source_combo.itemData(index) == CHOOSE_VIDEO:
            path, _ = QFileDialog.getOpenFileName(self, "Open a video", "", VIDEO_FILTER)
            if path:
                self.set_video(Path(path))
            else:  # cancelled: back to the source playing (or the first one)
                self._select_playing_or_first()
        if self._running:  # a source chosen during a run replaces the one playing
            self.start()
        self._update_buttons()

    def _select_playing_or_first(self) -> None:
        playing = self._spec if self._running else None
        data = None if playing is None else (str(playing.video) if playing.video else playing.camera)
        self.source_combo.setCurrentIndex(max(0, self.source_combo.findData(data)))

    def set_video(self, path: Path) -> None:
        """Offer ``path`` in the source list and select it."""
        self._video = path
        self._saved_source = str(path)
        self._on_cameras(self.cameras or [])
        self.source_combo.setCurrentIndex(self.source_combo.findData(str(path)))
        self._update_buttons()
        if not self._running:
            self.view.set_message(f"{path.name}: press Start")

    def current_source(self) -> SourceSpec | None:
        data = self.source_combo.currentData()
        if isinstance(data, int):
            return SourceSpec(camera=data)
        if isinstance(data, str) and data not in (CHOOSE_VIDEO, RESCAN):
            return SourceSpec(video=Path(data))
        return None

    # --- start / stop -----------------------------------------------------------------------------

    def start(self, spec: SourceSpec | None = None) -> None:
        """Stream ``spec`` (default: the selected source)."""
        spec = spec or self.current_source()
        if self._running:
            if spec is not None and spec != self._spec:  # another source: it replaces this one
                self._pending = spec
                self.stop()
            return
        if spec is None:
            self.view.set_message(NO_CAMERA_HINT if not self.cameras else "Choose a source first.")
            return
        if self._model is None:
            self.view.set_message("No model loaded: use File ▸ Open checkpoint… first.")
            return
        self._running = True
        self._spec = spec
        self._end_index = None
        self._selected_id = None
        self.timeline.clear_data()
        self.play_button.setChecked(False)
        self.view.set_message(f"Opening {spec.label()}…")
        self._update_buttons()
        self._unsaved_source = spec  # remembered for the next start once it shows a frame
        # the list names what plays (`--camera 1`, a recent video): also once the camera scan lands
        self._saved_source = str(spec.video) if spec.video else spec.camera
        found = self.source_combo.findData(self._saved_source)
        if found >= 0:
            self.source_combo.setCurrentIndex(found)
        # a new run starts here, not when the worker picks it up: a Stop (or another source)
        # meanwhile, while the worker still scans the cameras, is kept for the run
        self.worker.control.new_run()
        self._run_requested.emit(spec)

    def stop(self) -> None:
        """Stop streaming; the worker ends after the frame in progress."""
        self.worker.request_stop()

    def is_running(self) -> bool:
        return self._running

    def shutdown(self) -> None:
        """Stop the stream and the worker thread (closing the window)."""
        self.worker.request_stop()
        stop_thread(self.thread)

    @Slot(str)
    def _on_finished(self, reason: str) -> None:
        self._running = False
        # the last frames may have come between two redraws (not when the run ended before the
        # new model's first frame: the charts have that model's classes)
        if self.last_frame is not None and self._same_model(self.last_frame.model):
            faces = self.last_frame.result.faces
            self._draw_plots(next((f for f in faces if f.id == self._selected_id), None))
        self._plots_drawn = -math.inf
        self.record_button.setChecked(False)
        self._shown_at.clear()
        self.rate_changed.emit("– fps")
        if reason == "stopped":  # (a failure's message stays)
            self.view.set_message("")
            self._mark_other_models_frame()  # stopped before the new model's first frame
        self._update_buttons()
        self.finished.emit(reason)
        pending, self._pending = self._pending, None
        if pending is not None:
            self.start(pending)

    @Slot(str)
    def _on_reached_end(self, reason: str) -> None:
        """The last frame of the file is on screen and the worker paused there; the recording
        closed with it. The frame stays undimmed for inspection; the status bar says what works."""
        self.record_button.setChecked(False)
        self._end_index = self.last_frame.index if self.last_frame is not None else None
        self.play_button.setChecked(True)  # paused (the worker is already)
        self._report_rate()
        self.status_message.emit(f"{reason[0].upper()}{reason[1:]}: ← and the seek bar still work; "
                                 "Play starts it over")
        self.reached_end.emit(reason)

    @Slot(str)
    def _on_recording(self, message: str) -> None:
        """A recording's summary for the status bar; its failure in a dialog and the log."""
        if message.startswith(("Cannot record", "Recording stopped")):
            self.record_button.setChecked(False)
            report_failure(self, "Recording failed", OSError(message))
        elif message.startswith(RECORDING_ENDED):
            self.record_button.setChecked(False)
            self.status_message.emit(message)
        else:
            self.status_message.emit(message)

    @Slot(object, str)
    def _on_errored(self, exc: BaseException, task: str) -> None:
        # the message names the file or camera; a bug's is prefixed with the source it broke on
        message = describe(exc) if expected(exc) else f"{task}: {describe(exc)}"
        self.view.set_message(message)
        self.status_message.emit(message)

    @Slot(str)
    def _on_status(self, message: str) -> None:
        # camera lost / retrying / back, or the model being prepared: shown over the last frame
        # until it recovers; no frames come meanwhile, so the rate no longer holds
        self.view.set_message(message)
        if message:
            self.status_message.emit(message)
            self._shown_at.clear()
            self.rate_changed.emit("– fps")

    def _update_buttons(self) -> None:
        self.start_button.setEnabled(not self._running and self.current_source() is not None)
        rescan = self.source_combo.findData(RESCAN)
        if rescan >= 0:  # the worker scans between runs only
            self.source_combo.model().item(rescan).setEnabled(not self._running)
        self.stop_button.setEnabled(self._running)
        self.snapshot_button.setEnabled(self.last_frame is not None)
        source = self._spec if self._running else self.current_source()  # while running: what plays
        self.video_bar.setVisible(source is not None and source.video is not None)
        playing_file = self._running and source is not None and source.video is not None
        for widget in (self.play_button, self.speed_combo):
            widget.setEnabled(playing_file)
        # a file whose header gives no frame count cannot be sought (the slider has no range)
        length_known = self.last_frame is not None and bool(self.last_frame.frame_count)
        self.seek_slider.setEnabled(playing_file and length_known)
        self.back_button.setEnabled(playing_file)
        self.forward_button.setEnabled(playing_file)

    def _make_shortcuts(self) -> None:
        """Tab-wide keys that act whatever control has focus (a focused button would otherwise
        take Space, a focused slider the arrows): Space plays or pauses, ←/→ step a frame."""
        for key, slot in (("Space", self.toggle_pause), ("Left", lambda: self.step(-1)),
                          ("Right", lambda: self.step(1))):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)

    def toggle_pause(self) -> None:
        if self.play_button.isEnabled():
            self.play_button.toggle()

    def step(self, frames: int) -> None:
        """Show the frame ``frames`` away (pausing first): the arrows and the frame buttons."""
        if not self.play_button.isEnabled():
            return
        if not self.play_button.isChecked():
            self.play_button.setChecked(True)
        self.worker.step(frames)

    @Slot(bool)
    def _on_pause_toggled(self, paused: bool) -> None:
        self.play_button.setText("Play" if paused else "Pause")
        self.worker.set_paused(paused)
        self._shown_at.clear()
        if paused and self.last_frame is not None:  # the charts were throttled: the frame on screen
            faces = self.last_frame.result.faces
            self._draw_plots(next((f for f in faces if f.id == self._selected_id), None))
        self._report_rate()
        self._update_buttons()

    @Slot(bool)
    def _on_whole_toggled(self, whole: bool) -> None:
        self.timeline.window_s = math.inf if whole else TIMELINE_WINDOW_S
        self.timeline.redraw()

    def _show_position(self, frame: LiveFrame) -> None:
        if frame.frame_count:
            self.seek_slider.blockSignals(True)
            self.seek_slider.setRange(0, frame.frame_count - 1)
            if not self.seek_slider.isSliderDown():
                self.seek_slider.setValue(frame.index)
            self.seek_slider.blockSignals(False)
            if frame.source_fps:  # the file's own rate
                total = frame.frame_count / frame.source_fps
            else:  # none in the header: estimated from the frames' times so far
                total = frame.timestamp * frame.frame_count / max(frame.index, 1)
            self.position_label.setText(f"frame {frame.index + 1}/{frame.frame_count} · "
                                        f"{frame.timestamp:6.1f} / {total:.1f} s")
        else:  # the header gives no length: where it is, no slider
            self.position_label.setText(f"frame {frame.index + 1} · {frame.timestamp:6.1f} s")

    def _report_rate(self) -> None:
        """The rate frames reach the screen, counted over the last second (not the worker's
        smoothed estimate), "paused" while paused, and the video's own rate beside it."""
        source = self.last_frame.source_fps if self.last_frame is not None else 0.0
        own = f" (video {source:.0f} fps)" if source else ""
        if not self._running:
            self.rate_changed.emit("– fps")
        elif self.play_button.isChecked() and self.play_button.isEnabled():
            at_end = self.last_frame is not None and self.last_frame.index == self._end_index
            self.rate_changed.emit(f"{'end of the video' if at_end else 'paused'}{own}")
        elif len(self._shown_at) >= 2:
            span = self._shown_at[-1] - self._shown_at[0]
            rate = (len(self._shown_at) - 1) / span if span > 0 else 0.0
            self.rate_changed.emit(f"{rate:.1f} fps{own}")

    # --- frames -----------------------------------------------------------------------------------

    @Slot()
    def _on_frame_ready(self) -> None:
        frame = self.worker.frames.take()
        # a frame the previous model made after a switch (its classes may differ) is not shown
        if frame is None or not self._running or frame.model is not self._model:
            return
        if self.last_frame is not None and frame.timestamp < self.last_frame.timestamp:
            self.timeline.keep_before(frame.timestamp)  # moved back: later samples go
        # also for a frame of a new model: the status bar was set to the bare device meanwhile
        if (self.last_frame is None or frame.runtime != self.last_frame.runtime
                or frame.model is not self.last_frame.model):
            self.runtime_changed.emit(frame.runtime)
        self.last_frame = frame
        self.frames_shown += 1
        if self._unsaved_source is not None:  # (a file that cannot be played is not reopened)
            spec, self._unsaved_source = self._unsaved_source, None
            QSettings().setValue("live/source", str(spec.video) if spec.video else str(spec.camera))
            if spec.video is not None:
                self.video_played.emit(Path(spec.video))
        self._show_position(frame)
        if not frame.redraw:
            now = time.monotonic()
            self._shown_at.append(now)
            while self._shown_at and now - self._shown_at[0] > RATE_WINDOW_S:
                self._shown_at.popleft()
        faces = frame.result.faces
        if self.frames_shown == 1 or self.view.message().startswith(("Opening", "Preparing")):
            if self.view.message().startswith("Preparing"):
                self.status_message.emit("")  # done: the status bar no longer says so
            self.view.set_message("")
        if faces and not any(f.id == self._selected_id for f in faces):
            # the selected face left (or none was chosen): follow the most confident one; a
            # frame without faces keeps the selection, as the tracker keeps the face's ID
            self._selected_id = faces[0].id
            self.timeline.clear_data()
        self.view.set_image(frame.rgb)
        selected = next((f for f in faces if f.id == self._selected_id), None)
        self.view.set_highlight(selected.box if selected is not None and len(faces) > 1 else None)
        if selected is not None:
            self.timeline.append(frame.timestamp, selected.smoothed, redraw=False)
        # the charts are pyqtgraph (Python) and hold the GIL while they redraw: at every frame
        # they halved the worker's rate, so they follow at PLOT_INTERVAL_S
        now = time.monotonic()
        paused = self.play_button.isChecked()
        if frame.redraw or paused or now - self._plots_drawn >= PLOT_INTERVAL_S:  # paused: at once
            self._draw_plots(selected)
            self._plots_drawn = now
        self._update_buttons()

    def _draw_plots(self, selected: FaceResult | None) -> None:
        self.chart.set_probabilities(None if selected is None else selected.smoothed)
        self.timeline.redraw()
        made_by = self.last_frame.model if self.last_frame is not None else None
        model = f" · {made_by.name}" if made_by is not None else ""
        if selected is not None:
            self.chart.setTitle(escaped(f"Face #{selected.id}: {selected.label} "
                                        f"{selected.confidence:.0%}{model}"))
        elif self._selected_id is not None:
            self.chart.setTitle(escaped(f"Face #{self._selected_id} not in view{model}"))
        else:
            self.chart.setTitle(escaped(f"No face{model}"))
        self._report_rate()

    @Slot(float, float)
    def _on_view_clicked(self, x: float, y: float) -> None:
        if self.last_frame is None or not self._same_model(self.last_frame.model):
            return  # the frame on screen is another model's (marked so): its faces are not chosen
        for face in self.last_frame.result.faces:
            bx, by, bw, bh = face.box
            if bx <= x <= bx + bw and by <= y <= by + bh:
                if face.id != self._selected_id:
                    self._selected_id = face.id
                    self.timeline.clear_data()
                    self._draw_plots(face)  # at once, also when the stream has stopped
                return

    # --- options, recording, snapshot ---------------------------------------------------------

    def options(self) -> LiveOptions:
        return LiveOptions(
            heatmaps=self.heatmap_check.isChecked(),
            alpha=self.opacity_slider.value() / 100.0,
            cam_class=self.cam_combo.currentData(),
            cam_scale=self.scale_combo.currentData(),
            half_life_s=self.smoothing_spin.value(),
            detector=self.detector_combo.currentData(),
            min_score=round(self.min_score_spin.value(), 2),
        )

    def _push_options(self) -> None:
        options = self.options()
        for widget in (self.opacity_slider, self.cam_combo, self.scale_combo, self.color_bar):
            widget.setEnabled(options.heatmaps)
        self.color_bar.set_scale(options.cam_scale)
        self.worker.set_options(options)
        s = QSettings()
        s.setValue("live/heatmaps", options.heatmaps)
        s.setValue("live/opacity", self.opacity_slider.value())
        s.setValue("live/cam_scale", options.cam_scale)  # the CAM class is not kept: a session
        # that starts on another class than the predicted one would mislabel what it shows
        s.setValue("live/half_life", options.half_life_s)
        s.setValue("live/detector", options.detector)
        s.setValue("live/min_score", options.min_score)

    def _restore_settings(self) -> None:
        # read everything before setting any widget: each widget change saves all options
        heatmaps = read_setting("live/heatmaps", True, bool)
        opacity = read_setting("live/opacity", 45, int, lambda v: 0 <= v <= 100)
        half_life = read_setting("live/half_life", 0.0, float, lambda v: 0 <= v <= 60)
        detector = read_setting("live/detector", DEFAULT_LIVE_DETECTOR, str)
        min_score = read_setting("live/min_score", 0.5, float, lambda v: 0 <= v <= 1)
        saved = read_setting("live/source", None, str)
        cam_scale = read_setting("live/cam_scale", "map", str)
        self.heatmap_check.setChecked(heatmaps)
        self.scale_combo.setCurrentIndex(max(0, self.scale_combo.findData(cam_scale)))
        self.opacity_slider.setValue(opacity)
        self.smoothing_spin.setValue(half_life)
        index = self.detector_combo.findData(detector)
        self.detector_combo.setCurrentIndex(index if index >= 0 else self.detector_combo.findData(
            DEFAULT_LIVE_DETECTOR))
        self.min_score_spin.setValue(min_score)
        self._saved_source: int | str | None = None
        self._unsaved_source: SourceSpec | None = None
        self._video: Path | None = None
        if saved is not None and saved.isdigit() and len(saved) < 4:
            self._saved_source = int(saved)
        elif saved:
            if existing_file(saved):
                self._video = Path(str(saved))
                self._saved_source = str(saved)

    def start_recording(self, csv_path: Path, video_path: Path | None = None) -> None:
        """Record every face of every frame to ``csv_path`` (and the annotated frames to
        ``video_path``) from the next frame, or from the start of the next run."""
        self.worker.set_recording(RecordRequest(csv_path, video_path))
        self.record_button.setChecked(True)
        self.status_message.emit(f"Recording to {csv_path}")

    def stop_recording(self) -> None:
        self.worker.set_recording(None)
        self.record_button.setChecked(False)

    @Slot(bool)
    def _on_record_clicked(self, checked: bool) -> None:
        if not checked:
            self.stop_recording()
            return
        path, _ = QFileDialog.getSaveFileName(self, "Record faces to CSV", "faces.csv", "CSV (*.csv)")
        if not path:
            self.record_button.setChecked(False)
            return
        csv_path = Path(path)
        video = csv_path.with_suffix(VIDEO_SUFFIX) if self.mp4_check.isChecked() else None
        try:
            refuse_overwriting_inputs({"The recording": csv_path, "Its video": video}, self._inputs())
        except OSError as exc:
            self.record_button.setChecked(False)
            report_failure(self, "Cannot record there", exc)
            return
        # the save dialog asked about the CSV only; the video beside it is asked about here
        if video is not None and video.exists() and not ask(
                self, "Replace the video?", f"{video} already exists. The recording's annotated video "
                "would replace it. Replace it?"):
            self.record_button.setChecked(False)
            return
        self.start_recording(csv_path, video)

    def _inputs(self) -> list[Path]:
        """The files this tab reads, which nothing it saves may replace: the video, the model."""
        specs = (self.current_source(), self._spec if self._running else None)  # selected, playing
        model = self._model.checkpoint.path if self._model is not None else None
        return [p for p in (*(s.video for s in specs if s is not None), model) if p]

    def save_snapshot(self, path: Path) -> None:
        """Write the frame on screen, with its overlays, as an image file."""
        if self.last_frame is None:
            raise ValueError("no frame to save yet")
        refuse_overwriting_inputs({"The snapshot": path}, self._inputs())
        write_image(path, cv2.cvtColor(self.last_frame.rgb, cv2.COLOR_RGB2BGR))

    @Slot()
    def _on_snapshot_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save snapshot", "snapshot.png", "PNG (*.png)")
        if not path:
            return
        try:
            self.save_snapshot(Path(path))
        except (OSError, ValueError) as exc:
            report_failure(self, "Cannot save the snapshot", exc)
            return
        self.status_message.emit(f"Saved {path}")
