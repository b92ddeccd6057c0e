"""What the Live tab shows is true (issue 27): Space and the arrows act whatever has focus, a
paused frame is made again when an overlay option or the model changes (and says which model
made it), the frame rate shown is the rate frames reach the screen, and opening another video
during playback plays it."""

import csv
import time

import numpy as np
import pytest
from desktop_support import desktop_test, write_clip
from PySide6.QtCore import Qt

from gsmc_desktop.live.tab import RATE_WINDOW_S, LiveTab
from gsmc_desktop.model_handle import load_model


@pytest.fixture(autouse=True)
def isolated(qapp, tmp_path):
    with desktop_test(qapp, tmp_path / "settings"):
        yield


@pytest.fixture
def tab(qtbot, random_checkpoint):
    tab = LiveTab(camera_lister=lambda: [])
    qtbot.addWidget(tab)
    tab.set_model(load_model(random_checkpoint, "cpu"))
    with qtbot.waitActive(tab):  # keys reach the active window, as a person's do
        tab.show()
        tab.activateWindow()
    yield tab
    tab.shutdown()


def playing(qtbot, tab, clip, frames=3):
    tab.set_video(clip)
    tab.start()
    qtbot.waitUntil(lambda: tab.frames_shown >= frames, timeout=60_000)


def test_space_and_arrows_act_whatever_has_focus(qtbot, tab, astronaut_rgb, tmp_path):
    playing(qtbot, tab, write_clip(astronaut_rgb, tmp_path / "long.mp4", frames=200, fps=10.0))
    controls = [tab.play_button, tab.back_button, tab.forward_button, tab.record_button,
                tab.snapshot_button, tab.seek_slider, tab.speed_combo, tab.opacity_slider,
                tab.heatmap_check, tab.source_combo, tab.view]
    for control in controls:
        control.setFocus()
        paused = tab.play_button.isChecked()
        qtbot.keyClick(control, Qt.Key.Key_Space)
        assert tab.play_button.isChecked() != paused, control  # toggled once, not twice
        assert not tab.record_button.isChecked()  # and no button was pressed instead
    tab.play_button.setChecked(True)
    qtbot.wait(300)
    for control in (tab.seek_slider, tab.back_button, tab.speed_combo):
        control.setFocus()
        held = tab.last_frame.index
        qtbot.keyClick(control, Qt.Key.Key_Right)
        qtbot.waitUntil(lambda held=held: tab.last_frame.index == held + 1, timeout=10_000)
        qtbot.keyClick(control, Qt.Key.Key_Left)
        qtbot.waitUntil(lambda held=held: tab.last_frame.index == held, timeout=10_000)
    assert tab.speed_combo.currentData() == 1.0  # the arrows did not change the speed


def test_a_paused_frame_is_made_again_for_each_change(qtbot, tab, astronaut_rgb, tmp_path,
                                                      random_checkpoint):
    playing(qtbot, tab, write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=200, fps=10.0))
    tab.play_button.setChecked(True)
    qtbot.wait(400)
    index = tab.last_frame.index
    for change in (lambda: tab.heatmap_check.setChecked(False),
                   lambda: tab.heatmap_check.setChecked(True),
                   lambda: tab.opacity_slider.setValue(90),
                   lambda: tab.cam_combo.setCurrentIndex(tab.cam_combo.count() - 1)):
        before = tab.last_frame.rgb.copy()
        change()
        qtbot.waitUntil(lambda before=before: not np.array_equal(tab.last_frame.rgb, before), timeout=10_000)
        assert tab.last_frame.redraw and tab.last_frame.index == index  # the same frame, made again
    other = tmp_path / "other.pt"
    other.write_bytes(random_checkpoint.read_bytes())
    tab.set_model(load_model(other, "cpu"))  # "Use this model" while paused
    qtbot.waitUntil(lambda: tab.last_frame.model.name == "other.pt", timeout=30_000)
    assert tab.last_frame.index == index and "other.pt" in tab.chart.getPlotItem().titleLabel.text
    assert tab.chart.getPlotItem().titleLabel.text != "No face"


@pytest.mark.parametrize("speed", [1.0, 0.0])
def test_the_rate_shown_is_the_rate_frames_reach_the_screen(qtbot, tab, astronaut_rgb, tmp_path, speed):
    # each rate shown, with the time and the count of frames on screen when it was shown
    rates = []
    tab.rate_changed.connect(lambda text: rates.append((time.monotonic(), tab.frames_shown, text)))
    tab.speed_combo.setCurrentIndex(tab.speed_combo.findData(speed))
    playing(qtbot, tab, write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=300, fps=12.0), frames=5)
    start, shown = time.monotonic(), tab.frames_shown
    qtbot.wait(5000)
    counted = (tab.frames_shown - shown) / (time.monotonic() - start)
    # the label is the rate of the last second: compare it with the frames that reached the
    # screen in that second (a 5 s average differs whenever another program's load changes)
    t_last, shown_last, text = rates[-1]
    t_prev, shown_prev, _ = next(r for r in reversed(rates) if t_last - r[0] >= RATE_WINDOW_S)
    in_window = (shown_last - shown_prev) / (t_last - t_prev)
    label = float(text.split()[0])
    assert abs(label - in_window) <= 0.15 * in_window, (text, in_window)
    assert "(video 12 fps)" in text
    if speed == 1.0:
        assert abs(counted - 12.0) < 1.5 or counted < 12.0  # never faster than the video
    tab.play_button.setChecked(True)
    assert rates[-1][2].startswith("paused")


def test_opening_a_video_during_playback_plays_it(qtbot, tab, astronaut_rgb, tmp_path):
    first = write_clip(astronaut_rgb, tmp_path / "first.mp4", frames=300, fps=10.0)
    second = write_clip(astronaut_rgb[:, ::-1].copy(), tmp_path / "second.mp4", frames=40, fps=10.0)
    playing(qtbot, tab, first)
    tab.set_video(second)  # what File ▸ Open video does
    tab.start()
    qtbot.waitUntil(lambda: tab.last_frame is not None and tab.last_frame.frame_count == 40
                    and tab.is_running(), timeout=60_000)
    assert tab.seek_slider.maximum() == 39 and tab.current_source().video == second


def test_a_failed_snapshot_is_a_dialog_naming_the_file_and_is_logged(qtbot, tab, astronaut_rgb, tmp_path,
                                                                    monkeypatch, caplog):
    import gsmc_desktop.widgets.messages as messages

    shown = []
    monkeypatch.setattr(messages, "warn", lambda parent, title, text: shown.append((title, text)))
    playing(qtbot, tab, write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=100, fps=10.0))
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    target = blocker / "snapshot.png"
    monkeypatch.setattr("gsmc_desktop.live.tab.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(target), ""))
    with caplog.at_level("ERROR", logger="gsmc_desktop"):
        tab._on_snapshot_clicked()
    assert shown and shown[0][0] == "Cannot save the snapshot" and str(target) in shown[0][1]
    assert "folder missing or unknown extension" not in shown[0][1]
    assert any(r.exc_info for r in caplog.records if "Cannot save the snapshot" in r.getMessage())


def test_a_click_on_the_seek_groove_seeks_and_a_seek_restarts_face_ids(qtbot, tab, astronaut_rgb, tmp_path):
    from PySide6.QtWidgets import QAbstractSlider

    playing(qtbot, tab, write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=300, fps=10.0))
    tab.play_button.setChecked(True)
    qtbot.wait(300)
    tab.seek_slider.setPageStep(100)
    before = tab.last_frame.index
    tab.seek_slider.triggerAction(QAbstractSlider.SliderAction.SliderPageStepAdd)  # a groove click
    qtbot.waitUntil(lambda: tab.last_frame.index >= before + 90, timeout=10_000)
    assert [f.id for f in tab.last_frame.result.faces] == [1]  # a cut: the only face is #1 again
    tab.seek_slider.triggerAction(QAbstractSlider.SliderAction.SliderPageStepSub)
    qtbot.waitUntil(lambda: tab.last_frame.index <= before + 10, timeout=10_000)
    assert [f.id for f in tab.last_frame.result.faces] == [1]


def test_pausing_shows_the_probabilities_of_the_frame_on_screen(qtbot, tab, astronaut_rgb, tmp_path):
    tab.speed_combo.setCurrentIndex(tab.speed_combo.findData(0.0))  # fast: the charts are throttled
    playing(qtbot, tab, write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=400, fps=25.0), frames=20)
    tab.play_button.setChecked(True)
    qtbot.wait(500)  # a frame on its way may still arrive
    tab.play_button.setChecked(False)
    tab.play_button.setChecked(True)
    face = tab.last_frame.result.faces[0]
    assert f"{face.confidence:.0%}" in tab.chart.getPlotItem().titleLabel.text


def test_recording_over_the_playing_video_is_refused(qtbot, tab, astronaut_rgb, tmp_path, monkeypatch):
    import gsmc_desktop.widgets.messages as messages

    shown = []
    monkeypatch.setattr(messages, "warn", lambda parent, title, text: shown.append((title, text)))
    clip = write_clip(astronaut_rgb, tmp_path / "clip.mkv", frames=100, fps=10.0)
    before = clip.read_bytes()
    playing(qtbot, tab, clip)
    target = tmp_path / "clip.csv"  # with "+ annotated video" its video would be clip.mkv
    tab.mp4_check.setChecked(True)
    monkeypatch.setattr("gsmc_desktop.live.tab.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(target), ""))
    tab.record_button.click()  # as a person does
    assert shown and "is an input" in shown[0][1] and not tab.record_button.isChecked()
    tab.stop()
    qtbot.waitUntil(lambda: not tab.is_running(), timeout=30_000)
    assert clip.read_bytes() == before


@pytest.fixture
def seven_class_model(tmp_path):
    """A random-weights RAF-DB-style model: seven classes where the default model has eight."""
    import torch

    from gsmc_core.checkpoint import Checkpoint, ModelMeta, save_checkpoint
    from gsmc_core.labels import SEVEN_CLASSES
    from gsmc_core.model import GSMCNet

    torch.manual_seed(1)
    meta = ModelMeta(arch="resnet18", classes=SEVEN_CLASSES, input_size=112, output_stride=16)
    path = tmp_path / "seven.pt"
    save_checkpoint(Checkpoint(meta=meta, state_dict=GSMCNet(7).state_dict()), path)
    return load_model(path, "cpu")


def test_switching_to_a_model_with_other_classes_during_playback(qtbot, tab, astronaut_rgb, tmp_path,
                                                                 random_checkpoint, seven_class_model):
    # the worker is busy with a frame when the model changes: that frame, the old model's, must
    # not reach charts already rebuilt for the new classes (an 8-vector in a 7-class timeline)
    eight = load_model(random_checkpoint, "cpu")
    playing(qtbot, tab, write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=300, fps=10.0))
    tab.speed_combo.setCurrentIndex(tab.speed_combo.findData(0.0))  # frames as fast as made
    for model in (seven_class_model, eight, seven_class_model, eight, seven_class_model):
        tab.set_model(model)
        qtbot.waitUntil(lambda model=model: tab.last_frame.model is model and tab.timeline.count >= 2,
                        timeout=30_000)
        assert len(tab.last_frame.result.faces[0].smoothed) == len(model.classes)
        assert tab.chart.classes == model.classes and tab.timeline._p.shape[1] == len(model.classes)


def test_a_click_on_the_previous_models_frame_changes_nothing(qtbot, tab, astronaut_rgb, tmp_path,
                                                              seven_class_model):
    playing(qtbot, tab, write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=40, fps=10.0))
    tab.stop()
    qtbot.waitUntil(lambda: not tab.is_running(), timeout=30_000)
    face = tab.last_frame.result.faces[0]
    tab.set_model(seven_class_model)  # stopped: the frame stays, marked as the old model's
    assert tab.view.message().startswith("Results of random.pt")
    bx, by, bw, bh = face.box
    tab._selected_id = None  # as if another face had been chosen: a click would choose this one
    tab._on_view_clicked(bx + bw / 2, by + bh / 2)
    assert tab._selected_id is None and tab.chart.classes == seven_class_model.classes
    assert tab.view.message().startswith("Results of random.pt")


@pytest.mark.parametrize("replace", [False, True])
def test_recording_asks_before_replacing_the_video_beside_the_csv(qtbot, tab, tmp_path, monkeypatch,
                                                                  replace):
    asked = []
    monkeypatch.setattr("gsmc_desktop.live.tab.ask",
                        lambda _parent, _title, text: asked.append(text) or replace)
    earlier = tmp_path / "faces.mkv"  # an earlier recording's video
    earlier.write_bytes(b"earlier recording")
    tab.mp4_check.setChecked(True)
    monkeypatch.setattr("gsmc_desktop.live.tab.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "faces.csv"), ""))
    tab.record_button.click()
    assert len(asked) == 1 and str(earlier) in asked[0]
    assert tab.record_button.isChecked() == replace
    assert earlier.read_bytes() == b"earlier recording"  # nothing written before a frame comes


def test_a_video_chosen_in_the_source_list_during_playback_plays(qtbot, tab, astronaut_rgb, tmp_path,
                                                                  monkeypatch):
    first = write_clip(astronaut_rgb, tmp_path / "first.mp4", frames=300, fps=10.0)
    second = write_clip(astronaut_rgb[:, ::-1].copy(), tmp_path / "second.mp4", frames=40, fps=10.0)
    playing(qtbot, tab, first)
    monkeypatch.setattr("gsmc_desktop.live.tab.QFileDialog.getOpenFileName",
                        lambda *a, **k: (str(second), ""))
    tab._on_source_activated(tab.source_combo.findData("choose"))  # "Video file…" in the list
    qtbot.waitUntil(lambda: tab.last_frame.frame_count == 40 and tab.is_running(), timeout=60_000)
    assert tab.video_bar.isVisible() and tab.play_button.isEnabled() and tab.seek_slider.maximum() == 39
    assert not tab.start_button.isEnabled()


def test_a_stop_right_after_a_switch_to_other_classes(qtbot, tab, astronaut_rgb, tmp_path,
                                                      seven_class_model):
    playing(qtbot, tab, write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=300, fps=10.0))
    tab.set_model(seven_class_model)
    with qtbot.waitSignal(tab.finished, timeout=30_000):
        tab.stop()  # before the new model's first frame: the frame on screen is the old model's
    assert tab.chart.classes == seven_class_model.classes  # (its 8 values raised in the chart)
    if tab.last_frame.model is not seven_class_model:
        assert tab.view.message() == "Results of random.pt; press Start to see seven.pt"


def test_cancelling_the_video_dialog_during_playback_keeps_playing(qtbot, tab, astronaut_rgb, tmp_path,
                                                                   monkeypatch):
    clip = write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=300, fps=10.0)
    tab._on_cameras([0])  # a camera is listed first
    playing(qtbot, tab, clip)
    monkeypatch.setattr("gsmc_desktop.live.tab.QFileDialog.getOpenFileName", lambda *a, **k: ("", ""))
    tab._on_source_activated(tab.source_combo.findData("choose"))
    shown = tab.frames_shown
    qtbot.waitUntil(lambda: tab.frames_shown > shown + 3, timeout=30_000)
    assert tab.is_running() and tab.current_source().video == clip and tab.last_frame.frame_count == 300


@pytest.mark.parametrize("other_classes", [True, False])
def test_a_model_switch_ends_the_recording_its_csv_stays_whole(qtbot, tab, astronaut_rgb, tmp_path,
                                                                random_checkpoint, seven_class_model,
                                                                other_classes):
    # a CSV holds one model's classes and face IDs: the switch closes it (it kept the old header
    # and took the new model's rows: one column fewer per row with seven classes)
    said = []
    tab.status_message.connect(said.append)
    playing(qtbot, tab, write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=300, fps=10.0))
    csv_path = tmp_path / "faces.csv"
    tab.start_recording(csv_path)
    qtbot.waitUntil(lambda: csv_path.exists() and len(csv_path.read_text().splitlines()) >= 3,
                    timeout=30_000)
    new = seven_class_model if other_classes else load_model(random_checkpoint, "cpu")
    tab.set_model(new)
    qtbot.waitUntil(lambda: not tab.record_button.isChecked(), timeout=30_000)
    qtbot.waitUntil(lambda: tab.last_frame.model is new and tab.frames_shown > 3, timeout=30_000)
    rows = list(csv.reader(csv_path.open()))
    assert {len(row) for row in rows} == {len(rows[0])} and "contempt" in ",".join(rows[0])
    assert any(m.startswith("Recording ended: the model changed. Recorded") for m in said)
    shown = tab.frames_shown
    qtbot.waitUntil(lambda: tab.frames_shown > shown + 3, timeout=30_000)
    assert list(csv.reader(csv_path.open())) == rows  # nothing written after the switch


@pytest.fixture
def slow_scan(qtbot, random_checkpoint):
    """A Live tab whose camera scan (the worker's first task) lasts until ``release`` is set,
    as a scan that opens each camera in turn; it finds camera 0."""
    import threading

    release = threading.Event()
    tab = LiveTab(camera_lister=lambda: release.wait(60) and [0])
    qtbot.addWidget(tab)
    tab.set_model(load_model(random_checkpoint, "cpu"))
    yield tab, release
    release.set()
    tab.shutdown()


def test_a_stop_while_the_cameras_are_scanned_is_kept(qtbot, slow_scan, astronaut_rgb, tmp_path):
    # the run waits behind the scan in the worker thread; its Stop was cleared when it began
    tab, release = slow_scan
    tab.set_video(write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=300, fps=10.0))
    tab.start()
    tab.stop()
    reasons = []
    tab.finished.connect(reasons.append)
    release.set()
    qtbot.waitUntil(lambda: reasons == ["stopped"], timeout=15_000)  # (30 s of video otherwise)
    assert not tab.is_running() and tab.frames_shown <= 1


def test_the_source_list_names_the_camera_that_plays(qtbot, slow_scan, astronaut_rgb, tmp_path):
    # `gsmc-desktop --camera 0` after a session that ended on a video: the list said the video
    from PySide6.QtCore import QSettings

    from gsmc_desktop.live.worker import SourceSpec

    tab, release = slow_scan
    clip = write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=5)
    tab.set_video(clip)
    QSettings().setValue("live/source", str(clip))
    shown = []
    tab.source_combo.currentIndexChanged.connect(lambda *_: shown.append(tab.source_combo.currentData()))
    tab.start(SourceSpec(camera=0))  # no camera here: it fails to open, after the scan lands
    release.set()
    qtbot.waitUntil(lambda: not tab.is_running(), timeout=30_000)
    assert tab.source_combo.currentData() == 0 and str(clip) not in shown[-1:]
    # a source that could not be opened is not the one the next start opens (a broken video
    # greeted every launch with its error); one that showed a frame is
    assert QSettings().value("live/source") == str(clip)
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    tab.set_video(broken)
    tab.start()
    qtbot.waitUntil(lambda: not tab.is_running(), timeout=30_000)
    assert "broken.mp4" in tab.view.message() and QSettings().value("live/source") == str(clip)
    other = write_clip(astronaut_rgb, tmp_path / "other.mp4", frames=5)
    tab.set_video(other)
    tab.start()
    qtbot.waitUntil(lambda: tab.frames_shown >= 1, timeout=30_000)
    assert QSettings().value("live/source") == str(other)


@pytest.mark.slow
def test_a_video_without_a_frame_count_cannot_be_sought_and_says_where_it_is(qtbot, tab, astronaut_rgb,
                                                                            tmp_path):
    import cv2

    first = write_clip(astronaut_rgb, tmp_path / "first.mp4", frames=300, fps=10.0)
    raw = tmp_path / "raw.mjpeg"  # concatenated JPEGs: OpenCV reads them at 25 fps, no length
    raw.write_bytes(b"".join(cv2.imencode(".jpg", astronaut_rgb[..., ::-1])[1].tobytes()
                             for _ in range(200)))
    playing(qtbot, tab, first)
    assert tab.seek_slider.isEnabled()
    tab.set_video(raw)
    tab.start()
    qtbot.waitUntil(lambda: tab.last_frame is not None and tab.last_frame.frame_count is None
                    and tab.last_frame.index >= 2, timeout=60_000)
    # the last video's range stayed on the slider: a drag sought past this file's end
    assert not tab.seek_slider.isEnabled()
    assert tab.position_label.text().startswith(f"frame {tab.last_frame.index + 1} · ")
