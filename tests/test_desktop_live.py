"""Live tab: a video file through the worker thread, overlays, charts, CSV, stop, no camera."""

import csv

import numpy as np
import pytest
from desktop_support import desktop_test, write_clip

from gsmc_core.frames.sources import VideoFileSource
from gsmc_core.labels import CANONICAL_CLASSES
from gsmc_desktop.live.tab import NO_CAMERA_HINT, LiveTab
from gsmc_desktop.model_handle import load_model


@pytest.fixture(autouse=True)
def isolated(qapp, tmp_path):
    with desktop_test(qapp, tmp_path / "settings"):
        yield


@pytest.fixture(scope="module")
def clip(astronaut_rgb, tmp_path_factory):
    return write_clip(astronaut_rgb, tmp_path_factory.mktemp("clip") / "clip.mp4", frames=6)


@pytest.fixture
def tab(qtbot, random_checkpoint):
    tab = LiveTab(camera_lister=lambda: [])
    qtbot.addWidget(tab)
    tab.set_model(load_model(random_checkpoint, "cpu"))
    yield tab
    tab.shutdown()


def test_video_file_shows_overlays_and_records_every_face(qtbot, tab, clip, tmp_path):
    csv_path = tmp_path / "faces.csv"
    runtimes = []
    tab.runtime_changed.connect(runtimes.append)
    tab.start_recording(csv_path)
    tab.set_video(clip)
    assert tab.current_source().video == clip
    with qtbot.waitSignal(tab.reached_end, timeout=60_000) as ended:
        tab.start()
    assert ended.args == ["end of clip.mp4"]
    # the run stays, paused on the last frame; the recording closed with the file
    assert tab.is_running() and not tab.record_button.isChecked()
    assert tab.play_button.isChecked() and tab.play_button.text() == "Play"
    assert runtimes == ["cpu · fp32"]  # said once; this random model has no int8 graph

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["frame", "time_s", "face_id", "x", "y", "w", "h", "score", "expression",
                             *(f"p_{c}" for c in CANONICAL_CLASSES)]
    assert [int(r["frame"]) for r in rows] == list(range(6))  # one face in every frame
    assert {r["face_id"] for r in rows} == {"1"}
    assert [r["time_s"] for r in rows[:2]] == ["0.000", "0.100"]
    for r in rows:
        probs = np.array([float(r[f"p_{c}"]) for c in CANONICAL_CLASSES])
        assert abs(probs.sum() - 1) < 1e-3 and r["expression"] == CANONICAL_CLASSES[probs.argmax()]

    frame = tab.last_frame
    assert frame is not None and 1 <= tab.frames_shown <= 6
    (face,) = frame.result.faces
    assert face.heatmap is not None and face.heatmap.shape == (face.box[3], face.box[2])
    raw = next(f.image for f in VideoFileSource(clip) if f.index == frame.index)[:, :, ::-1]
    x, y, w, h = face.box
    inside = np.abs(frame.rgb[y + 5 : y + h - 5, x + 5 : x + w - 5].astype(int)
                    - raw[y + 5 : y + h - 5, x + 5 : x + w - 5]).mean()
    outside = np.abs(frame.rgb[:, :30].astype(int) - raw[:, :30]).mean()
    assert inside > 10 and outside < 3  # the heatmap is drawn in the box, nothing outside
    assert tab.view.image().width() == 640
    np.testing.assert_allclose(tab.chart.values, face.smoothed)
    times, probs = tab.timeline.series()
    assert len(times) == tab.frames_shown and probs.shape == (tab.frames_shown, 8)
    np.testing.assert_allclose(probs[-1], face.smoothed)
    assert tab.view.message() == ""  # the last frame is not dimmed under a message

    snapshot = tmp_path / "snap.png"
    tab.save_snapshot(snapshot)
    assert snapshot.stat().st_size > 0


def test_stop_is_immediate_and_options_reach_the_worker(qtbot, tab, astronaut_rgb, tmp_path):
    long_clip = write_clip(astronaut_rgb, tmp_path / "long.mp4", frames=100)
    tab.set_video(long_clip)
    tab.heatmap_check.setChecked(False)
    tab.cam_combo.setCurrentText("fear")
    assert tab.options().cam_class == CANONICAL_CLASSES.index("fear") and not tab.options().heatmaps
    tab.start()
    qtbot.waitUntil(lambda: tab.frames_shown >= 2, timeout=30_000)
    assert all(f.heatmap is None for f in tab.last_frame.result.faces)
    with qtbot.waitSignal(tab.finished, timeout=2_000) as ended:
        tab.stop()
    assert ended.args == ["stopped"]
    assert tab.last_frame.index < 99 and not tab.is_running()
    assert tab.start_button.isEnabled() and not tab.stop_button.isEnabled()


def test_no_camera_gives_a_hint_and_camera_trouble_is_shown(qtbot, tab):
    qtbot.waitUntil(lambda: tab.cameras == [])
    assert tab.view.message() == NO_CAMERA_HINT
    assert [tab.source_combo.itemText(i) for i in range(tab.source_combo.count())] == [
        "Video file…", "Look for cameras again"]
    assert not tab.start_button.isEnabled()
    tab.start()  # nothing to start: the hint stays, no crash
    assert not tab.is_running() and tab.view.message() == NO_CAMERA_HINT
    rates = []
    tab.rate_changed.connect(rates.append)
    tab.worker.status.emit("reopening camera 0 in 2 s…")
    qtbot.waitUntil(lambda: tab.view.message() == "reopening camera 0 in 2 s…")
    assert rates == ["– fps"]  # no frames come meanwhile: the last rate would be false


def test_detector_choice_reaches_the_worker_and_is_remembered(qtbot, tab, clip):
    assert tab.options().detector == "auto" and tab.options().min_score == 0.5  # the defaults
    tab.detector_combo.setCurrentIndex(tab.detector_combo.findData("full"))
    tab.min_score_spin.setValue(0.65)
    assert (tab.worker._options.detector, tab.worker._options.min_score) == ("full", 0.65)
    tab.set_video(clip)
    with qtbot.waitSignal(tab.reached_end, timeout=60_000):
        tab.start()
    assert tab.frames_shown >= 1 and tab.last_frame.result.faces  # the far model finds the face
    again = LiveTab(camera_lister=lambda: [])
    qtbot.addWidget(again)
    assert (again.options().detector, again.options().min_score) == ("full", 0.65)
    again.shutdown()


def test_video_pause_step_seek_speed_and_whole_timeline(qtbot, tab, astronaut_rgb, tmp_path):
    import math

    clip = write_clip(astronaut_rgb, tmp_path / "long.mp4", frames=60, fps=10.0)
    rates = []
    tab.rate_changed.connect(rates.append)
    tab.set_video(clip)
    assert tab.video_bar.isVisibleTo(tab)
    tab.start()
    qtbot.waitUntil(lambda: tab.frames_shown >= 3, timeout=30_000)
    assert tab.seek_slider.maximum() == 59
    tab.play_button.setChecked(True)  # pause
    assert tab.play_button.text() == "Play" and tab.forward_button.isEnabled()
    qtbot.wait(300)
    held = tab.last_frame.index
    qtbot.wait(500)
    assert tab.last_frame.index in (held, held + 1)  # paused (one frame may have been on its way)
    held = tab.last_frame.index
    tab.forward_button.click()
    qtbot.waitUntil(lambda: tab.last_frame.index == held + 1, timeout=10_000)
    tab.back_button.click()
    qtbot.waitUntil(lambda: tab.last_frame.index == held, timeout=10_000)
    tab.worker.seek(40)  # as the slider does on release
    qtbot.waitUntil(lambda: tab.last_frame.index == 40, timeout=10_000)
    assert tab.seek_slider.value() == 40 and "frame 41/60 ·    4.0 / 6.0 s" in tab.position_label.text()
    tab.whole_check.setChecked(True)
    assert math.isinf(tab.timeline.window_s)
    tab.speed_combo.setCurrentIndex(tab.speed_combo.findData(0.0))  # as fast as possible
    started = __import__("time").monotonic()
    with qtbot.waitSignal(tab.reached_end, timeout=30_000):
        tab.play_button.setChecked(False)
    # 19 frames at 10 fps would take 1.9 s in real time
    assert __import__("time").monotonic() - started < 1.9
    assert tab.last_frame.index == 59 and tab.play_button.text() == "Play"
    assert rates[-1] == "end of the video (video 10 fps)"

    # at the end, stepping and seeking still work, a step forward stays, Play starts over
    tab.back_button.click()
    qtbot.waitUntil(lambda: tab.last_frame.index == 58, timeout=10_000)
    assert rates[-1] == "paused (video 10 fps)"
    # the timeline keeps what came before frame 58 (a step back once emptied it: one sample,
    # which draws no line) and drops frame 59's sample
    times, _ = tab.timeline.series()
    assert times[-1] == pytest.approx(5.8) and len(times) > 10
    assert np.all(np.diff(times) > 0)
    with qtbot.waitSignal(tab.reached_end, timeout=10_000):
        tab.step(1)  # the last frame again: the end again
    assert tab.last_frame.index == 59
    shown = tab.frames_shown
    tab.step(1)  # past the last frame: nothing to show, still paused there
    qtbot.wait(300)
    assert tab.frames_shown == shown and tab.play_button.isChecked() and tab.is_running()
    tab.worker.seek(20)
    qtbot.waitUntil(lambda: tab.last_frame.index == 20, timeout=10_000)
    assert [f.id for f in tab.last_frame.result.faces] == [1]  # a cut: IDs from 1
    times, _ = tab.timeline.series()  # the first seconds as they were read, then frame 20
    assert times[-1] == pytest.approx(2.0) and 1 < len(times) <= 21 and np.all(np.diff(times) > 0)
    tab.step(1)
    qtbot.waitUntil(lambda: tab.last_frame.index == 21, timeout=10_000)
    with qtbot.waitSignal(tab.reached_end, timeout=30_000):
        tab.step(100)  # run to the end
    assert tab.last_frame.index == 59
    tab.play_button.setChecked(False)  # Play at the end: from the first frame
    qtbot.waitUntil(lambda: tab.last_frame.index < 10, timeout=10_000)
    tab.play_button.setChecked(True)
    tab.worker.seek(0)  # the first frame's time is 0: the length comes from the file's rate
    qtbot.waitUntil(lambda: tab.last_frame.index == 0, timeout=10_000)
    assert "frame 1/60 ·    0.0 / 6.0 s" in tab.position_label.text()
    with qtbot.waitSignal(tab.finished, timeout=5_000) as ended:
        tab.stop()
    assert ended.args == ["stopped"] and not tab.is_running()


def test_a_frame_of_the_previous_model_is_marked_after_a_switch(qtbot, tab, clip):
    from gsmc_core.resources import DEFAULT_CHECKPOINT

    tab.set_video(clip)
    with qtbot.waitSignal(tab.reached_end, timeout=60_000):
        tab.start()
    with qtbot.waitSignal(tab.finished, timeout=5_000):
        tab.stop()
    assert tab.last_frame is not None
    tab.set_model(load_model(DEFAULT_CHECKPOINT, "cpu"))
    assert tab.view.message() == "Results of random.pt; press Start to see gsmc_default.pt"
    with qtbot.waitSignal(tab.runtime_changed, timeout=60_000) as runtime:
        tab.start()  # the shipped model runs its int8 graph
    assert runtime.args == ["cpu · int8"]
    with qtbot.waitSignal(tab.finished, timeout=10_000):
        tab.stop()


def test_the_mirror_option_mid_run_keeps_the_recording_says_so_and_the_faces_stay_clickable(
        qtbot, tab, astronaut_rgb, tmp_path):
    from dataclasses import replace

    long_clip = write_clip(astronaut_rgb, tmp_path / "long.mp4", frames=60)
    messages: list[str] = []
    tab.status_message.connect(messages.append)
    tab.start_recording(tmp_path / "faces.csv")
    tab.set_video(long_clip)
    with qtbot.waitSignal(tab.runtime_changed, timeout=60_000):
        tab.start()
    qtbot.waitUntil(lambda: tab.last_frame is not None and bool(tab.last_frame.result.faces), timeout=10_000)
    before = tab.last_frame.result.faces[0].probabilities.copy()
    with qtbot.waitSignal(tab.runtime_changed, timeout=60_000) as runtime:
        tab.set_model(replace(tab._model, mirror=True))  # Device ▸ Average each face with its mirror
    assert runtime.args == ["cpu · fp32 · mirror-averaged"]
    # the still face shows the new predictor's output at once, not its kept one (for 15 frames)
    qtbot.waitUntil(lambda: tab.last_frame.runtime.endswith("mirror-averaged"), timeout=10_000)
    assert not np.allclose(tab.last_frame.result.faces[0].probabilities, before, atol=1e-4)
    qtbot.waitUntil(lambda: any(m.startswith("Recording goes on; from the next frame the model runs "
                                             "as cpu · fp32 · mirror-averaged") for m in messages),
                    timeout=10_000)
    assert tab.record_button.isChecked()  # the same model: the recording goes on
    with qtbot.waitSignal(tab.finished, timeout=10_000):
        tab.stop()
    tab.set_model(replace(tab._model, mirror=False))  # toggled back while stopped
    face = tab.last_frame.result.faces[0]
    x, y, w, h = face.box
    tab._selected_id = None
    tab._on_view_clicked(x + w / 2, y + h / 2)  # the frame on screen is still this model's
    assert tab._selected_id == face.id


def test_a_recording_asked_for_before_a_start_that_fails_is_dropped(qtbot, tab, clip, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    csv_path = tmp_path / "faces.csv"
    tab.start_recording(csv_path)  # Record pressed before Start
    tab.set_video(broken)
    tab.start()
    qtbot.waitUntil(lambda: not tab.is_running() and "broken.mp4" in tab.view.message(), timeout=30_000)
    assert not tab.record_button.isChecked()
    tab.set_video(clip)  # the next start, with Record off, records nothing
    tab.start()
    qtbot.waitUntil(lambda: tab.frames_shown >= 3, timeout=60_000)
    tab.stop()
    qtbot.waitUntil(lambda: not tab.is_running(), timeout=30_000)
    assert not csv_path.exists()


@pytest.mark.slow
def test_a_camera_plugged_in_later_is_found_by_looking_again(qtbot, random_checkpoint, clip):
    plugged: list[int] = []
    tab = LiveTab(camera_lister=lambda: list(plugged))
    qtbot.addWidget(tab)
    try:
        qtbot.waitUntil(lambda: tab.view.message() == NO_CAMERA_HINT)
        assert "Look for cameras again" in NO_CAMERA_HINT
        plugged.append(0)  # the webcam plugged in after the app started
        tab._on_source_activated(tab.source_combo.findData("rescan"))  # chosen in the list
        assert tab.view.message() == "Looking for cameras…"
        qtbot.waitUntil(lambda: tab.view.message() == "Found camera 0: press Start")
        assert tab.current_source().camera == 0 and tab.start_button.isEnabled()
        tab.set_model(load_model(random_checkpoint, "cpu"))
        tab.set_video(clip)
        tab.start()  # (the video: there is no camera 0 here)
        qtbot.waitUntil(lambda: tab.frames_shown >= 1, timeout=30_000)
        rescan = tab.source_combo.findData("rescan")  # the worker scans between runs only
        assert not tab.source_combo.model().item(rescan).isEnabled()
        with qtbot.waitSignal(tab.finished, timeout=10_000):
            tab.stop()
        assert tab.source_combo.model().item(rescan).isEnabled()
    finally:
        tab.shutdown()
