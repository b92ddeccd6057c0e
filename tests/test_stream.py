"""The core's play loop (frames/stream.py), without Qt: what the Live tab and `gsmc video` share."""

import queue
import threading
import time

import cv2
import numpy as np
import pytest

from gsmc_core.frames.sources import VideoFileSource
from gsmc_core.frames.stream import Cue, PlaybackControl, play


@pytest.fixture
def clip(tmp_path):
    """Eight 64x48 frames at 20 fps, frame k a flat grey of 20 k (so a frame names itself)."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for k in range(8):
        writer.write(np.full((48, 64, 3), 20 * k, np.uint8))
    writer.release()
    return path


class Player:
    """``play`` in a thread of its own, as the Live worker runs it; cues arrive in a queue."""

    def __init__(self, source, control: PlaybackControl) -> None:
        self.cues: queue.Queue[Cue | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(source, control), daemon=True)
        self.thread.start()

    def _run(self, source, control) -> None:
        for cue in play(source, control):
            if cue.kind != "end":
                control.take_changes()  # the consumer applies the settings at every frame it makes
            self.cues.put(cue)
        self.cues.put(None)

    def next(self, timeout: float = 10.0) -> Cue | None:
        return self.cues.get(timeout=timeout)

    def quiet(self, seconds: float = 0.3) -> bool:
        """Nothing arrives for ``seconds``."""
        try:
            self.cues.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


def test_without_a_control_every_frame_comes_once(clip):
    with VideoFileSource(clip) as source:
        cues = list(play(source))
    assert [c.frame.index for c in cues] == list(range(8)) and {c.kind for c in cues} == {"show"}


def test_a_file_ends_paused_on_its_last_frame_and_play_starts_it_over(clip):
    control = PlaybackControl()
    control.set_speed(0)  # as fast as frames are taken
    with VideoFileSource(clip) as source:
        player = Player(source, control)
        shown = [player.next() for _ in range(8)]
        assert [c.frame.index for c in shown] == list(range(8)) and not any(c.cut for c in shown)
        end = player.next()
        assert end.kind == "end" and end.frame.index == 7 and control.playback().paused
        assert player.quiet()  # it waits there
        control.settings_changed()  # a setting changed at the end: the last frame again
        redraw = player.next()
        assert redraw.kind == "redraw" and redraw.frame.index == 7
        control.set_paused(False)  # Play: from the first frame, tracks afresh
        again = player.next()
        assert again.frame.index == 0 and again.cut and again.kind == "show"
        control.stop_event.set()
        while player.next() is not None:
            pass
        player.thread.join(5)
        assert not player.thread.is_alive()


def test_paused_steps_seeks_and_redraws(clip):
    control = PlaybackControl()
    control.set_paused(True)
    control.step(1)  # the first frame, then nothing while paused
    with VideoFileSource(clip) as source:
        player = Player(source, control)
        first = player.next()
        assert first.frame.index == 0 and player.quiet()
        assert control.playback().shown == 0
        control.step(2)
        assert [player.next().frame.index for _ in range(2)] == [1, 2] and player.quiet()
        control.settings_changed()
        redraw = player.next()
        assert redraw.kind == "redraw" and redraw.frame.index == 2 and player.quiet()
        control.seek(5)  # shown at once though paused, as a cut
        sought = player.next()
        assert sought.frame.index == 5 and sought.cut
        control.step(-3)  # back from the frame shown
        back = player.next()
        assert back.frame.index == 2 and back.cut
        control.stop_event.set()
        assert player.next() is None


def test_a_file_never_plays_faster_than_its_rate(clip):
    control = PlaybackControl()  # speed 1: 20 fps
    with VideoFileSource(clip) as source:
        start = time.monotonic()
        for cue in play(source, control):
            if cue.kind == "end":
                break
    assert time.monotonic() - start >= 7 / 20 - 0.01  # frame 7 is due 0.35 s after frame 0


def test_a_new_run_applies_every_setting_again():
    control = PlaybackControl()
    assert control.take_changes() and not control.take_changes()
    control.settings_changed()
    assert control.take_changes()
    control.new_run()
    assert control.take_changes()  # a new source: its pipeline is built from the settings
