"""Main window, command line, settings and the exception hook."""

import json
import logging
import sys
import threading
from pathlib import Path

import pytest
from conftest import shared_path
from desktop_support import desktop_test
from PySide6.QtCore import QSettings

import gsmc_desktop.app as app_module
import gsmc_desktop.main_window as main_window_module
from gsmc_core.labels import CANONICAL_CLASSES
from gsmc_core.resources import asset_path
from gsmc_desktop.__main__ import parse_args
from gsmc_desktop.app import ErrorReporter, install_exception_hook
from gsmc_desktop.main_window import MainWindow
from gsmc_desktop.model_handle import model_card
from gsmc_desktop.self_test import run_self_test


@pytest.fixture(autouse=True)
def isolated(qapp, tmp_path):
    with desktop_test(qapp, tmp_path / "settings"):
        yield


def test_starts_without_a_model_and_says_what_to_do(qtbot, monkeypatch):
    monkeypatch.setattr(main_window_module, "default_checkpoint", lambda: None)
    window = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(window)
    assert window.model is None and window.model_label.text() == "No model"
    assert "Open checkpoint" in window.statusBar().currentMessage()
    assert "Open checkpoint" in window.images.view.message()
    window.live.set_video(Path(__file__))  # any file: the run is refused before opening it
    window.live.start()
    assert not window.live.is_running() and "Open checkpoint" in window.live.view.message()
    window.close()


def test_model_device_and_settings_persist(qtbot, random_checkpoint, tmp_path):
    window = MainWindow(checkpoint=random_checkpoint, camera_lister=lambda: [])
    qtbot.addWidget(window)
    assert window.model is not None and window.model_label.text() == "Model: random.pt"
    assert [a.data() for a in window.device_actions.actions()][:2] == ["auto", "cpu"]
    window.set_device("cpu")
    assert window.device_label.text() == "Device: cpu" and window.live.worker._model.device.type == "cpu"
    # the photos name the runtime they ran on as the Live tab does (it said "cpu" until Live ran)
    with qtbot.waitSignal(window.images.all_done, timeout=60_000):
        window.images.add_paths([shared_path("images", "astronaut.png")])
    assert window.device_label.text() == "Device: cpu · fp32"  # this random model has no int8 graph
    plain = next(iter(window.images.results.values())).result.faces[0].probabilities
    # Device ▸ Average each face with its mirror image: the photo again, each face's logits
    # averaged with its mirror's, and said wherever the runtime is
    with qtbot.waitSignal(window.images.all_done, timeout=60_000):
        window.mirror_action.trigger()
    assert window.model.mirror and window.live.worker._model.mirror
    assert window.device_label.text() == "Device: cpu · fp32 · mirror-averaged"
    (analysed,) = window.images.results.values()
    assert analysed.runtime == "cpu · fp32 · mirror-averaged"
    # the same photo and model give the same output, so a change is the mirror's (whose
    # averaging itself test_predictor checks)
    assert abs(plain - analysed.result.faces[0].probabilities).max() > 1e-4
    model = window.model
    window.set_device("auto")  # the device in use under another name: nothing is redone
    assert window.model is model and window.images.pending == 0 and window.images.results
    assert QSettings().value("model/device") == "auto"
    window.set_device("cpu")
    card = model_card(window.model)
    assert "resnet18" in card and "happiness" in card and "112×112" in card
    assert not window.open_checkpoint(tmp_path / "missing.pt")  # explained, old model kept
    assert "file not found" in window.statusBar().currentMessage() and window.model is not None
    window.live.opacity_slider.setValue(70)
    window.tabs.setCurrentIndex(1)
    window.resize(700, 500)  # within the offscreen screen, which clamps
    window.close()

    settings = QSettings()
    assert settings.value("model/checkpoint") == str(random_checkpoint)
    assert settings.value("model/device") == "cpu"
    again = MainWindow(camera_lister=lambda: [])  # no --checkpoint: the remembered model
    qtbot.addWidget(again)
    assert again.model.path == random_checkpoint and again.tabs.currentIndex() == 1
    assert again.model.mirror and again.mirror_action.isChecked()  # remembered
    assert again.device_label.text() == "Device: cpu · mirror-averaged"  # said before any frame
    again.mirror_action.trigger()
    assert not again.model.mirror and QSettings().value("model/mirror") in (False, "false")
    assert again.live.opacity_slider.value() == 70 and again.width() == 700
    again.close()
    moved = tmp_path / "moved.pt"  # the remembered model is moved away: the default is used, and said
    moved.write_bytes(random_checkpoint.read_bytes())
    QSettings().setValue("model/checkpoint", str(moved))
    moved.unlink()
    third = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(third)
    assert third.model.path.name == "gsmc_default.pt"
    assert third.statusBar().currentMessage() == (f"The last model used, {moved}, is no longer there "
                                                  "(moved or deleted); using gsmc_default.pt")
    third.close()


def test_command_line():
    args = parse_args(["--video", "clip.mp4", "--checkpoint", "m.pt"])
    assert (args.video, args.camera, args.checkpoint) == ("clip.mp4", None, "m.pt")
    assert parse_args(["--camera", "1"]).camera == 1
    assert parse_args(["a.png", "photos/"]).photos == ["a.png", "photos/"]  # for the Images tab
    with pytest.raises(SystemExit):
        parse_args(["--camera", "0", "--video", "clip.mp4"])


def test_exception_hook_logs_and_reports(qtbot, qapp, monkeypatch, tmp_path):
    monkeypatch.setattr(app_module, "log_dir", lambda: tmp_path / "logs")
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    shown = []
    monkeypatch.setattr(ErrorReporter, "_show", lambda self, summary, details: shown.append(summary))
    log_file = install_exception_hook(qapp)
    try:
        try:
            raise ValueError("boom")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        qtbot.waitUntil(lambda: shown == ["ValueError: boom"])
        assert "ValueError: boom" in log_file.read_text() and "Traceback" in log_file.read_text()
    finally:
        for handler in list(app_module.log.handlers):
            if isinstance(handler, logging.FileHandler):
                app_module.log.removeHandler(handler)
                handler.close()


def test_import_weights_fills_the_training_init(qtbot, monkeypatch, tmp_path):
    import torch
    from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox
    from torchvision.models import resnet18

    source = tmp_path / "backbone.pth"
    torch.save(resnet18().state_dict(), source)
    out = tmp_path / "init.pt"
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(source), ""))
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("torchvision", True))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    told = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: told.append(box.text()) or 0)
    window = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(window)
    window._on_import_weights()
    assert out.is_file() and window.training.form.init.text() == str(out)
    assert "Init weights" in told[0]
    window.close()


def test_self_test_classifies_the_sample_face(qtbot, random_checkpoint, capsys):
    assert run_self_test(random_checkpoint) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] and summary["step"] == "done" and summary["qt_platform"] == "offscreen"
    # a model without an int8 graph runs its fp32 export (both paths are checked, and agree)
    assert summary["precision"] == "fp32" and summary["onnx_file"] == summary["fp32_onnx_file"]
    assert summary["image"].endswith("astronaut.jpg") and len(summary["faces"]) == 1
    face = summary["faces"][0]
    x, y, w, h = face["box"]
    assert 150 < x < 200 and 40 < y < 100 and 80 < w < 130  # the face in the 512x512 portrait
    assert face["expression"] in CANONICAL_CLASSES and face["score"] > 0.8
    assert face["cam_shape"] == [h, w]
    # "Use this model" quantises: done here too, and the graph agrees with fp32
    assert summary["quantized_here"]["max_prob_diff"] < 0.1 and "quantize" in summary["seconds"]


def test_self_test_fails_with_the_step_and_the_file(qtbot, tmp_path, capsys):
    missing = tmp_path / "absent.pt"
    assert run_self_test(missing) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert not summary["ok"] and summary["step"] == "load model"
    assert str(missing) in summary["error"] and "FAILED at step 'load model'" in captured.err


def _crafted_checkpoint(tmp_path: Path, **meta_changes) -> Path:
    import torch

    from gsmc_core.resources import DEFAULT_CHECKPOINT
    payload = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    payload["meta"].update(meta_changes)
    if not meta_changes:
        payload["state_dict"]["fc.weight"][0, 0] = float("nan")
    path = tmp_path / "crafted.pt"
    torch.save(payload, path)
    return path


def test_a_bad_checkpoint_falls_back_to_the_default_model_and_says_why(qtbot, tmp_path):
    bad = _crafted_checkpoint(tmp_path)  # NaN weights
    window = MainWindow(checkpoint=bad, camera_lister=lambda: [])
    qtbot.addWidget(window)
    assert window.model is not None and window.model.name == "gsmc_default.pt"
    assert "crafted.pt" in window.startup_problem and "NaN" in window.startup_problem
    assert "The default model gsmc_default.pt is used instead" in window.statusBar().currentMessage()
    assert window.startup_problem.count(str(bad)) == 1 and ".." not in window.startup_problem
    assert QSettings().value("model/checkpoint") in (None, "")  # the bad file is not remembered
    window.close()
    # a remembered model damaged since: said once, then forgotten (it warned at every start)
    QSettings().setValue("model/checkpoint", str(bad))
    again = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(again)
    assert "(it is no longer remembered)" in again.startup_problem
    assert QSettings().value("model/checkpoint") in (None, "")
    again.close()
    third = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(third)
    assert not third.startup_problem and third.model.name == "gsmc_default.pt"
    third.close()


def test_checkpoint_text_in_error_dialogs_is_plain_text(qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box) or 0)
    window = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(window)
    window.show()
    crafted = _crafted_checkpoint(tmp_path, arch="<h1>big</h1><a href='x'>link</a><img src='/etc/x.png'>")
    assert not window.open_checkpoint(crafted)
    assert len(shown) == 1 and shown[0].textFormat() == Qt.TextFormat.PlainText
    assert "<h1>big</h1>" in shown[0].text()  # shown as the characters it is
    assert window.model.name == "gsmc_default.pt"
    window.close()


def test_help_shows_the_model_card_and_file_menu_opens_and_remembers(qtbot, tmp_path):
    window = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(window)
    card = window.show_model_card()
    assert card is not None and "Model card" in card.text() and "accuracy" in card.text()
    summary = model_card(window.model)  # the shipped model's own validation figure comes first
    assert "85.6%, mean class accuracy 70.1% after calibration" in summary
    assert "(logit adjustment tau 0.2)" in summary and "Validation in training" in summary
    # stage 5 kept an EMA teacher beside the student and exported it (validation 86.31 %, epoch 10)
    assert "accuracy 86.3% after epoch 10, the teacher" in summary
    assert "augment occluded, init runs/default_0.5.pt, teachers runs/default_0.5.pt" in summary
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QTextDocument
    figure = card.browser.loadResource(QTextDocument.ResourceType.ImageResource.value,
                                       QUrl("confusion_matrix.png"))
    assert figure is not None and not figure.isNull()  # the card's pictures are found
    docs = window.show_documentation()
    assert docs is not None and "What the heatmaps mean, and what they do not" in docs.text()
    assert "Review tab" in docs.text() and "<" not in docs.text()[:40]  # rendered, not raw
    photo = tmp_path / "photo.png"
    photo.write_bytes(asset_path("images", "astronaut.jpg").read_bytes())
    assert window.open_images([photo]) == 1 and window.tabs.currentWidget() is window.images
    assert window.recent_files()[0] == photo.resolve()
    assert [a.text() for a in window.recent_menu.actions()] == ["photo.png"]
    folder = tmp_path / "holiday"  # an opened folder is listed too (it took a slot, unlisted)
    folder.mkdir()
    (folder / "beach.png").write_bytes(photo.read_bytes())
    assert window.open_images([folder]) == 1
    assert [a.text() for a in window.recent_menu.actions()] == ["holiday/", "photo.png"]
    window.close()


def test_startup_report_shows_a_splash_within_three_seconds():
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "gsmc_desktop", "--startup-report"],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen",
                               "OMP_NUM_THREADS": "1"})
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["model"] == "gsmc_default.pt"
    assert 0 < report["splash_s"] < report["window_s"]


def test_the_window_has_a_usable_minimum_size(qtbot):
    window = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(window)
    window.resize(640, 400)
    window.show()
    hint = window.minimumSizeHint()
    assert hint.width() <= 1024 and hint.height() <= 640  # fits a small laptop screen
    for i in range(window.tabs.count()):  # no tab needs more than the window's minimum
        tab = window.tabs.widget(i).minimumSizeHint()
        assert tab.width() <= hint.width() and tab.height() <= hint.height()
    combo = window.live.cam_combo
    assert combo.width() >= combo.fontMetrics().horizontalAdvance("Predicted class")
    window.close()


def test_a_tabs_message_names_it_elsewhere_and_goes_when_another_tab_is_shown(qtbot):
    window = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(window)
    try:
        window.tabs.setCurrentWidget(window.training)
        window.review.status_message.emit("Scoring failed: /data/x: not a dataset")
        assert window.statusBar().currentMessage() == "Review: Scoring failed: /data/x: not a dataset"
        window.training.status_message.emit("")  # another tab's clearing leaves it
        assert window.statusBar().currentMessage().startswith("Review: ")
        assert window.fps_label.isHidden()  # the Live tab's rate, shown with it only
        window.tabs.setCurrentWidget(window.images)  # it read as about the tab in view
        assert window.statusBar().currentMessage() == "" and window.fps_label.isHidden()
        window.tabs.setCurrentWidget(window.live)
        assert not window.fps_label.isHidden() and window.fps_label.text() == "– fps"
        window.tabs.setCurrentWidget(window.images)
        window.images.status_message.emit("Saved 8 maps")
        assert window.statusBar().currentMessage() == "Saved 8 maps"
        window.images.status_message.emit("")
        assert window.statusBar().currentMessage() == ""
    finally:
        window.close()


def test_a_video_enters_file_recent_only_once_it_plays(qtbot, random_checkpoint, tmp_path, astronaut_rgb):
    from desktop_support import write_clip

    window = MainWindow(checkpoint=random_checkpoint, camera_lister=lambda: [])
    qtbot.addWidget(window)
    fake = tmp_path / "notvideo.mp4"  # a text file named .mp4 stayed in File ▸ Recent
    fake.write_text("not a video")
    window.open_video(fake)
    qtbot.waitUntil(lambda: not window.live.is_running(), timeout=30_000)
    assert fake.resolve() not in window.recent_files()
    clip = write_clip(astronaut_rgb, tmp_path / "clip.mp4", frames=20, fps=10.0)
    window.open_video(clip)
    qtbot.waitUntil(lambda: clip.resolve() in window.recent_files(), timeout=60_000)
    assert [a.text() for a in window.recent_menu.actions()] == ["clip.mp4"]
    window.close()


def test_closing_while_use_this_model_prepares_closes_once_it_is_done(qtbot, random_checkpoint, tmp_path,
                                                                      monkeypatch):
    import time

    import gsmc_desktop.training.worker as training_worker

    def slow_quantize(ckpt, calibration):  # int8 calibration takes up to a minute on a CPU
        time.sleep(3)
        return tmp_path / "never.onnx"

    monkeypatch.setattr(training_worker, "int8_graph", lambda ckpt: None)
    monkeypatch.setattr(training_worker, "calibration_faces", lambda ckpt, dataset, root: [])
    monkeypatch.setattr(training_worker, "quantize_int8", slow_quantize)
    import dataclasses

    from gsmc_core.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    trained = load_checkpoint(random_checkpoint)  # a run's model: it names its dataset
    save_checkpoint(dataclasses.replace(trained, train_config={"dataset": "ferplus", "data_root": "x"}),
                    run / "best.pt")
    window = MainWindow(checkpoint=random_checkpoint, camera_lister=lambda: [])
    qtbot.addWidget(window)
    window.show()
    window.training._run_dir = run  # as after a run in this folder
    window.training._update_buttons()
    window.training.use_button.click()
    assert window.training.is_preparing()
    started = time.monotonic()
    window.close()  # froze the window (the worker thread was waited on) with no word
    assert time.monotonic() - started < 1 and window.isVisible()
    assert "the window closes once it is done" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert time.monotonic() - started > 2  # it waited for the int8 graph, then closed
