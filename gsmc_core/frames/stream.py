"""Playing a frame source: the one loop of the Live tab and `gsmc video`, free of Qt.

``play(source, control)`` yields a ``Cue`` for each frame to process: "show" (the next frame;
``cut`` when it follows a seek or a restart, so tracks begin again), "redraw" (paused, and a
setting changed: make the frame on screen again) and "end" (a video file's last frame is on
screen; playback waits there, paused, for a seek, a step back, Play or a stop). A
``PlaybackControl`` steers it from any thread: pause, step, seek, speed, stop, and "settings
changed". A video file is paced at its frame rate x speed (0: as fast as frames are processed),
a camera gives its newest frame. Without a control, every frame of the source comes once, as
fast as it is read (`gsmc video`).
"""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from gsmc_core.frames.sources import CameraSource, Frame, FrameSource

POLL_SECONDS = 0.03  # how often a paused stream looks for a change
RESUME_SECONDS = 0.05  # a wait longer than this (paused, stepped) restarts the pacing clock


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
class Cue:
    """What to do with ``frame``: "show", "redraw" or "end" (see the module's docstring)."""

    frame: Frame
    kind: str = "show"
    cut: bool = False  # a seek or a restart came before this frame: start tracks afresh


class PlaybackControl:
    """Pause, step, seek and speed of a video file, a stop, and "the settings changed": set from
    any thread (a GUI), obeyed by ``play`` in the thread that plays."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop_event = stop if stop is not None else threading.Event()
        self._lock = threading.Lock()
        self._playback = Playback()
        self._changes = 0
        self._taken = -1
        self._restart_clock = False

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
        """1 = the file's frame rate, 0 = as fast as frames are processed."""
        with self._lock:
            self._playback = replace(self._playback, speed=speed)

    def playback(self) -> Playback:
        with self._lock:
            return self._playback

    def settings_changed(self) -> None:
        """A setting changed: a paused stream makes its frame again (a "redraw" cue)."""
        with self._lock:
            self._changes += 1

    def take_changes(self) -> bool:
        """Whether settings changed since the last call (the consumer applies them now)."""
        with self._lock:
            changed, self._taken = self._changes != self._taken, self._changes
            return changed

    def restart_clock(self) -> None:
        """Pace again from the next frame (after work that took long, e.g. loading a model),
        instead of rushing to catch up."""
        with self._lock:
            self._restart_clock = True

    def new_run(self) -> None:
        """A new source: no steps or seek pending, nothing shown, every setting to be applied
        afresh (``take_changes`` says True); pause and speed are kept."""
        self.stop_event.clear()
        with self._lock:
            self._playback = replace(self._playback, steps=0, seek=None, shown=0)
            self._taken = -1
            self._restart_clock = False

    # --- used by ``play`` ------------------------------------------------------------------

    def _shown(self, index: int) -> None:
        with self._lock:
            self._playback = replace(self._playback, shown=index)

    def _pause_here(self) -> None:
        with self._lock:
            self._playback = replace(self._playback, paused=True, steps=0)

    def _clock_restart_asked(self) -> bool:
        with self._lock:
            asked, self._restart_clock = self._restart_clock, False
            return asked

    def _wait_to_show(self, source: FrameSource) -> str:
        """Block while paused; "show" when the next frame may be shown, "seek" when the file
        was moved to another frame, "redraw" when a setting changed while paused, "stop"."""
        while True:
            with self._lock:
                play = self._playback
                changed = self._changes != self._taken
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
            if self.stop_event.wait(POLL_SECONDS):
                return "stop"


def play(source: FrameSource, control: PlaybackControl | None = None) -> Iterator[Cue]:
    """The cues of ``source`` (see the module's docstring)."""
    if control is None:
        for frame in source:
            yield Cue(frame)
        return
    if isinstance(source, CameraSource):
        # short waits so a stop is seen within 50 ms even with no frames coming
        while not control.stop_event.is_set():
            frame = source.read_latest(timeout=0.05)
            if frame is not None:
                yield Cue(frame)
        return
    yield from _play_file(source, control)


def _play_file(source: FrameSource, control: PlaybackControl) -> Iterator[Cue]:
    clock = time.monotonic()  # when frame time 0 was, at the current speed
    pace = (1.0, 0)  # the (speed, frame index) ``clock`` was set for
    shown: Frame | None = None
    cut = False
    while True:
        for frame in source:
            if control.stop_event.is_set():
                return
            waited = time.monotonic()
            verdict = control._wait_to_show(source)
            while verdict == "redraw":  # paused: the frame on screen with the new settings
                if shown is not None:
                    yield Cue(shown, "redraw")
                else:
                    control.take_changes()  # nothing on screen to redraw yet
                verdict = control._wait_to_show(source)
            if verdict == "stop":
                return
            if verdict == "seek":  # this frame is dropped; the next one read is the target
                cut = True
                continue
            speed = control.playback().speed
            if (control._clock_restart_asked() or (speed, frame.index - 1) != pace
                    or time.monotonic() - waited > RESUME_SECONDS):
                # paused, stepped, sought, slowed down or the speed changed: the clock starts here
                clock = time.monotonic() - frame.timestamp / max(speed, 1e-9)
            pace = (speed, frame.index)
            if source.fps and speed > 0:
                # a file plays no faster than its frame rate x speed (every frame is processed)
                delay = clock + frame.timestamp / speed - time.monotonic()
                if delay > 0 and control.stop_event.wait(delay):
                    return
            control._shown(frame.index)
            yield Cue(frame, cut=cut)
            shown, cut = frame, False
        if control.stop_event.is_set() or shown is None:
            return
        control._pause_here()
        yield Cue(shown, "end")
        while True:  # the last frame stays on screen until something moves the file
            verdict = control._wait_to_show(source)
            if verdict == "redraw":
                yield Cue(shown, "redraw")
            elif verdict == "stop":
                return
            elif verdict == "seek":
                break
            elif not control.playback().paused:  # Play: from the start
                source.seek(0)
                break
            # else a step forward: there is no next frame, stay here
        cut = True
