"""Training tab: a tiny real run with live curves, Stop, invalid input, closing while training."""

import pytest
from desktop_support import desktop_test
from PySide6.QtWidgets import QMessageBox

from gsmc_core.checkpoint import load_checkpoint
from gsmc_core.training.config import METHOD_DEFAULTS, TrainConfig
from gsmc_core.training.events import TrainResult
from gsmc_core.training.run_folder import RunFolder
from gsmc_desktop.main_window import MainWindow
from gsmc_desktop.threads import running_threads
from gsmc_desktop.training.tab import TrainingTab


@pytest.fixture(autouse=True)
def isolated(qapp, tmp_path):
    with desktop_test(qapp, tmp_path / "settings"):
        yield


@pytest.fixture
def tab(qtbot):
    tab = TrainingTab()
    qtbot.addWidget(tab)
    yield tab
    tab.shutdown()


def started(qtbot, tab: TrainingTab):
    """Waits until the run has started (after its labels were read in the worker): the tab says
    so in the GUI thread, after clearing the last run's figures. (Waiting for the worker's
    ``checked`` raced: that wait can end before the tab's own slot has run.)"""
    return qtbot.waitSignal(tab.status_message, timeout=60_000,
                            check_params_cb=lambda message: message.startswith("Training started"))


def tiny(tab: TrainingTab, root, out, epochs: int = 1, limit_train: int = 32) -> None:
    """Fill the form with a run of a few seconds on the CPU."""
    tab.form.load_config(TrainConfig(
        dataset="ferplus", data_root=str(root), input_size=33, output_stride=8, epochs=epochs,
        batch_size=16, limit_train=limit_train, limit_eval=16, workers=0, device="cpu", out=str(out)))


@pytest.mark.slow
def test_tiny_run_draws_curves_and_offers_the_model(qtbot, tab, ferplus_root, tmp_path):
    tiny(tab, ferplus_root, tmp_path / "run")
    with qtbot.waitSignal(tab.run_ended, timeout=120_000) as ended:
        with started(qtbot, tab):  # its labels are read in the worker first
            assert tab.start()
        assert tab.is_running() and not tab.form.isEnabled() and tab.stop_button.isEnabled()
    result = ended.args[0]
    assert result is not None and not result.stopped and result.epochs_completed == 1
    assert set(tab.curves.loss_keys()) == {"loss", "ce", "kl", "ac"}
    x, y = tab.curves.loss_series("loss")
    assert list(x) == [0.5, 1.0] and (y > 0).all()  # 32 images, batches of 16: two points
    ex, acc = tab.curves.accuracy_series("val_acc")
    assert list(ex) == [1.0] and acc[0] == pytest.approx(result.history[0]["val_acc"])
    assert tab.curves.accuracy_series("train_acc")[1][0] == pytest.approx(result.history[0]["train_acc"])
    assert tab.progress.value() == tab.progress.maximum()
    assert "epoch 1/1" in tab.log_view.toPlainText()
    assert tab.model_path() == tmp_path / "run" / "best.pt" and tab.use_button.isEnabled()
    with qtbot.waitSignal(tab.use_model, timeout=120_000) as used:
        tab.use_button.click()
        assert not tab.use_button.isEnabled() and "int8" in tab.progress_label.text()
        assert tab.progress.maximum() == 0  # busy, not the last run's 100 % standing still
        # the worker thread is busy: a run would wait behind it (and a Stop would be lost)
        assert not tab.start_button.isEnabled() and not tab.resume_button.isEnabled()
        assert not tab.start() and not tab.is_running()
    assert used.args == [tmp_path / "run" / "best.pt"]
    assert tab.progress.maximum() > 0 and tab.progress.value() == tab.progress.maximum()
    assert tab.start_button.isEnabled() and tab.resume_button.isEnabled()
    # the model was made fast for the CPU first: its int8 graph is where predictors look
    from gsmc_core.checkpoint import load_checkpoint
    from gsmc_core.frames.quantize import graph_precision, int8_graph

    graph = int8_graph(load_checkpoint(tmp_path / "run" / "best.pt"))
    assert graph is not None and graph_precision(graph) == "int8"
    assert f"int8 version for the CPU: {graph}" in tab.log_view.toPlainText()
    with qtbot.waitSignal(tab.use_model, timeout=10_000):  # a second time: nothing to make
        tab.use_button.click()
    assert tab.log_view.toPlainText().count("int8 version") == 1

    # the folder now holds a run: a new Start is refused beside the field, Resume is offered
    assert not tab.start()
    assert "already holds a run" in tab.form.out.error.text()


def test_stop_leaves_a_usable_checkpoint(qtbot, tab, ferplus_root, tmp_path):
    tiny(tab, ferplus_root, tmp_path / "run", epochs=5, limit_train=96)
    with qtbot.waitSignal(tab.run_ended, timeout=120_000) as ended:
        tab.start()
        qtbot.waitUntil(lambda: len(tab.curves.loss_keys()) > 0, timeout=60_000)
        tab.stop()
    result = ended.args[0]
    assert result.stopped and result.epochs_completed < 5
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last.training_state is not None and last.meta.input_size == 33
    assert tab.model_path() is not None and tab.use_button.isEnabled()
    assert "Stopped" in tab.progress_label.text()


def test_a_stop_while_the_data_is_loaded_is_said_as_such(tab, tmp_path):
    tab._running = True
    tab._on_finished(TrainResult(run_dir=tmp_path, last=None, best=None, stopped=True,
                                 epochs_completed=0, best_val_accuracy=-1.0, stopped_loading=True))
    assert tab.progress_label.text() == "Stopped while the data was loaded; no checkpoint or metrics written"
    assert not tab.use_button.isEnabled()  # a new run: nothing to use


def test_invalid_input_is_shown_beside_the_field(qtbot, tab, ferplus_root, tmp_path):
    tab.form.data_root.edit.setText("")
    assert not tab.start()
    assert tab.form.data_root.error.text() == "Choose the dataset's folder."
    tab.form.data_root.edit.setText(str(tmp_path / "missing"))
    assert not tab.start() and "folder not found" in tab.form.data_root.error.text()

    def refused(out):
        # the labels are read by the run in the worker thread (FER2013's pixel rows took
        # seconds on the GUI thread): its error comes back beside the dataset's folder
        tab.form.out.edit.setText(str(tmp_path / out))
        assert tab.start()
        assert not tab.start_button.isEnabled() and not tab.form.isEnabled()  # being read
        qtbot.waitUntil(lambda: tab.form.data_root.error.text() != "", timeout=60_000)
        assert tab.start_button.isEnabled() and tab.form.isEnabled() and not tab.is_running()
        assert not (tmp_path / out).exists()  # no run was started
        return tab.form.data_root.error.text().replace("\u200b", "")  # (break points in paths)

    tab.form.data_root.edit.setText(str(ferplus_root))
    tab.form.dataset.setCurrentText("rafdb")  # FERPlus files are not a RAF-DB layout
    assert "Not a rafdb dataset" in refused("a")
    tab.form.dataset.setCurrentText("ferplus")
    binary = tmp_path / "binary" / "FER2013Train"  # a label file that is not text
    binary.mkdir(parents=True)
    (binary / "label.csv").write_bytes(b"\xff\xfe\x00binary\x81\n")
    tab.form.data_root.edit.setText(str(binary.parent))
    said = refused("b")
    assert f"{binary / 'label.csv'}: not UTF-8 text" in said and "save it as UTF-8" in said
    tab.form.data_root.edit.setText(str(ferplus_root))
    tab.form.out.edit.setText(str(tmp_path / "new"))
    assert not tab.resume() and "Nothing to resume" in tab.form.out.error.text()
    assert not tab.is_running()
    # the line above the curves says why now (it kept blaming the dataset's folder)
    assert tab.progress_label.text() == "Not resumed: see the field marked in red"

    tab.form.method.setCurrentText("eac")  # the published recipe's defaults follow the method
    assert tab.form.lr.value() == METHOD_DEFAULTS["eac"]["lr"]
    assert tab.form.batch_size.value() == METHOD_DEFAULTS["eac"]["batch_size"]
    assert tab.form.scheduler.currentData() == "exp"
    tab.form.method.setCurrentText("gsmc")  # the tab's own default: a cosine over the run
    assert tab.form.scheduler.currentData() == "cosine" and tab.form.input_size.value() == 113
    tab.form.input_size.stepBy(-1)
    assert tab.form.input_size.value() == 97  # steps of 16 keep the mirror exact (16k + 1)
    tab.form.data_root.edit.setText(str(ferplus_root))
    tab.form.out.edit.setText(str(tmp_path / "fresh"))
    assert tab.form.config().scheduler == "cosine"


def test_closing_during_training_asks_then_stops_cleanly(qtbot, monkeypatch, ferplus_root, tmp_path):
    window = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(window)
    tiny(window.training, ferplus_root, tmp_path / "run", epochs=20, limit_train=96)
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "exec", lambda box: answers.pop(0))
    window.show()
    assert window.training.start()
    qtbot.waitUntil(lambda: len(window.training.curves.loss_keys()) > 0, timeout=60_000)
    assert not window.close()  # "No": the window and the run stay
    assert window.training.is_running()
    # "Yes": the run stops (it saves last.pt) while the window stays responsive (it waited in
    # closeEvent, frozen, for up to 10 minutes), then the window closes and every thread ends
    assert not window.close() and window.isVisible()
    assert window.statusBar().currentMessage().startswith("Stopping the training run")
    assert not window.close() and answers == []  # a second close does not ask again
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert running_threads() == []
    assert load_checkpoint(tmp_path / "run" / "last.pt").training_state is not None


def test_stop_and_quit_keeps_the_window_if_the_run_fails_and_closes_if_it_has_ended(qtbot, monkeypatch):
    window = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(window)
    window.show()
    window.training._running = True  # a run whose stop then fails (last.pt cannot be written)
    monkeypatch.setattr(QMessageBox, "exec", lambda box: QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(window.training, "stop", lambda: None)
    assert not window.close()
    window.training._running = False
    window.training.run_ended.emit(None)
    assert window.isVisible() and window.tabs.currentWidget() is window.training
    assert "failed while stopping" in window.statusBar().currentMessage()
    window.training._running = True  # the run ends while the question is on screen: "Yes" closes

    def answered_after_the_end(box):
        window.training._running = False
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "exec", answered_after_the_end)
    assert window.close() and not window.isVisible()


def test_closing_while_a_cleaned_dataset_is_written_waits_for_it(qtbot):
    window = MainWindow(camera_lister=lambda: [])
    qtbot.addWidget(window)
    window.show()
    window.review._exporting = True  # an export in the review worker (it cannot be interrupted)
    assert not window.close() and window.isVisible()  # it waited frozen, then Qt aborted the thread
    assert window.statusBar().currentMessage().startswith("Writing the cleaned dataset")
    window.review._exporting = False
    window.review.export_ended.emit()
    assert not window.isVisible()


def _wheel(widget, steps: int = -1):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    pos = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)
    return event


def test_mouse_wheel_changes_a_field_only_when_it_has_focus(qtbot, tab):
    tab.show()
    qtbot.waitExposed(tab)
    form = tab.form
    epochs, stride = form.epochs.value(), form.output_stride.currentText()
    # an unfocused field leaves the wheel event unaccepted: Qt then hands a real (spontaneous)
    # wheel event to the parents, and the scroll area scrolls the form
    assert not _wheel(form.epochs).isAccepted()
    assert not _wheel(form.output_stride).isAccepted()
    assert form.epochs.value() == epochs and form.output_stride.currentText() == stride
    form.epochs.setFocus()
    qtbot.waitUntil(form.epochs.hasFocus)
    assert _wheel(form.epochs, steps=1).isAccepted()
    assert form.epochs.value() == epochs + 1  # a field the user is in takes the wheel


@pytest.mark.slow
def test_resume_shows_the_runs_history_and_by_class_figures(qtbot, tab, ferplus_root, tmp_path):
    tiny(tab, ferplus_root, tmp_path / "run", epochs=3, limit_train=64)
    with qtbot.waitSignal(tab.run_ended, timeout=120_000):
        with qtbot.waitSignal(tab.worker.epoch, timeout=120_000):
            assert tab.start()
        tab.stop()  # during epoch 2: last.pt holds epoch 1
    # the table holds the epoch's validation confusion matrix and per-class accuracy
    first = tab.result.history[0]
    assert tab.by_class.table.rowCount() == 8 and "epoch 1" in tab.by_class.title.text()
    assert sum(int(tab.by_class.cell(r, c)) for r in range(8) for c in range(8)) == 16
    # resuming draws the run's earlier epoch from metrics.csv, then the new ones; a damaged line
    # is said and left out (it raised in the GUI thread and left the tab running for ever)
    with open(tmp_path / "run" / "metrics.csv", "a") as f:
        f.write("2x,an edit\n")
    tab.curves.clear()
    with qtbot.waitSignal(tab.run_ended, timeout=120_000):
        assert tab.resume()
    assert "metrics.csv is damaged (line 3: 2 columns" in tab.log_view.toPlainText()
    assert (tmp_path / "run" / "metrics.csv.damaged").read_text().endswith("2x,an edit\n")
    epochs, acc = tab.curves.accuracy_series("val_acc")
    assert list(epochs) == [1.0, 2.0, 3.0]
    assert acc[0] == pytest.approx(first["val_acc"])
    # test-split figures of the best model, in the worker thread
    with qtbot.waitSignal(tab.test_done, timeout=300_000):
        assert tab.evaluate_on_test()
        assert not tab.start_button.isEnabled() and not tab.start()
    assert tab.by_class.title.text().startswith("Test (best.pt, 3137 images)")
    assert tab.compare_run(tmp_path / "run") and not tab.compare_run(tmp_path)
    assert len(tab.curves.comparisons) == 1


def test_output_folder_problems_are_found_with_the_other_fields(tab, ferplus_root, tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "best.pt").write_bytes(b"x")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, message in ((tmp_path / "old", "already holds a run (best.pt)"),
                         (a_file, "is a file, not a folder"),
                         (a_file / "sub", "Cannot write in")):
        tiny(tab, ferplus_root, out)
        assert not tab.start()
        assert message in tab.form.out.error.text()
        assert tab.form.first_error_field() is tab.form.out


def test_curves_axes_history_and_a_new_run_clears_the_last_runs_figures(qtbot, tab, ferplus_root, tmp_path):
    from gsmc_core.training.events import EpochEvent

    curves = tab.curves
    assert not curves.loss_plot.getAxis("bottom").autoSIPrefix  # no "epoch (x0.001)"
    metrics = tmp_path / "old" / "metrics.csv"
    metrics.parent.mkdir()
    metrics.write_text("epoch,loss,ce,train_acc,val_acc,selected\n1,2.0,2.0,0.3,0.35,student\n")
    assert curves.load_history(RunFolder(metrics.parent).history()) == 1
    x, y = curves.loss_series("loss")
    assert list(x) == [0.0, 1.0] and list(y) == [2.0, 2.0]  # one epoch is a visible segment
    assert tab.compare_run(metrics.parent) and len(curves.accuracy_plot.listDataItems()) == 3
    tab.by_class.show_metrics("old run", {"a": 0.5, "b": None}, [[1, 1], [0, 0]])
    tab._on_epoch(EpochEvent(1, 2, {"loss": 1.0, "train_acc": 0.4, "val_acc": 0.5, "selected": "student",
                                    "val_per_class": {"a": 0.5, "b": 0.5}, "val_confusion": [[1, 1], [1, 1]]},
                             True))
    assert "(student)" not in tab.by_class.title.text()  # a CE run has one model, not a student
    tiny(tab, ferplus_root, tmp_path / "new", epochs=1)
    with started(qtbot, tab):
        assert tab.start()
        assert len(curves.accuracy_plot.listDataItems()) == 3  # kept until the labels are read
    assert curves.accuracy_plot.listDataItems() == [] and tab.by_class.table.rowCount() == 0
    qtbot.waitUntil(lambda: not tab.is_running(), timeout=120_000)


def test_the_plots_never_overlap_at_the_smallest_window(qtbot):
    """At the smallest window the accuracy plot covered a third of the loss plot: now the plots
    are stacked when the tab is narrow, and side by side when it is wide."""
    window = MainWindow(checkpoint=None, camera_lister=lambda: [])
    qtbot.addWidget(window)
    window.tabs.setCurrentWidget(window.training)
    window.show()
    curves = window.training.curves
    for size, stacked in (((400, 300), True), ((1600, 900), False)):
        window.resize(*size)  # 400x300 is clamped to the minimum size
        qtbot.waitUntil(lambda: curves.width() > 0)
        qtbot.wait(50)
        loss, accuracy = curves.loss_plot.geometry(), curves.accuracy_plot.geometry()
        assert not loss.intersects(accuracy), (size, loss, accuracy)
        assert curves.rect().contains(loss) and curves.rect().contains(accuracy)
        assert min(loss.width(), accuracy.width()) >= 150 and min(loss.height(), accuracy.height()) >= 100
        for plot in (curves.loss_plot, curves.accuracy_plot):  # the plot (title, axes) is not clipped
            drawn = plot.getPlotItem().size()
            assert drawn.width() <= plot.viewport().width() + 1, (size, drawn, plot.viewport().size())
            assert drawn.height() <= plot.viewport().height() + 1, (size, drawn, plot.viewport().size())
        assert (loss.bottom() < accuracy.top()) == stacked
    window.shutdown()


def test_closing_during_an_evaluation_ends_it_without_a_result(qtbot, tab, ferplus_root, tmp_path):
    from PySide6.QtCore import Qt

    tiny(tab, ferplus_root, tmp_path / "run")
    with qtbot.waitSignal(tab.run_ended, timeout=120_000):
        assert tab.start()
    finished = []  # in the worker thread, as soon as the evaluation returns
    tab.worker.evaluated.connect(lambda *args: finished.append(args), Qt.ConnectionType.DirectConnection)
    started = []
    tab.worker._unless_closing = (lambda real: lambda d, t: (started.append(d), real(d, t)))(
        tab.worker._unless_closing)
    assert tab.evaluate_on_test()  # the 3,137 test faces: many batches
    qtbot.waitUntil(lambda: len(started) >= 1, timeout=60_000)
    tab.shutdown()  # the window closes
    assert not tab.thread.isRunning() and finished == []  # stopped between batches, no figures
    assert len(started) < 25  # (the whole split is 25 batches of 128)


def test_resume_of_a_finished_run_goes_on_to_the_forms_epochs_and_a_failed_one_keeps_best_pt(
        qtbot, tab, ferplus_root, tmp_path):
    run = tmp_path / "run"
    tiny(tab, ferplus_root, run, epochs=1)
    with qtbot.waitSignal(tab.run_ended, timeout=120_000):
        assert tab.start()
    # Resume of a run that has trained all its epochs trained nothing and said "Finished"
    assert not tab.resume()
    assert "has trained all its 1 epochs. To train it further, set Epochs above 1" in \
        tab.form.out.error.text()
    tab.form.epochs.setValue(2)
    with qtbot.waitSignal(tab.run_ended, timeout=120_000) as ended:
        assert tab.resume()
    assert ended.args[0] is not None and [r["epoch"] for r in ended.args[0].history] == [2]
    # a last.pt cut short: the failure says what is left, and the run's best.pt stays usable
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    tab.form.epochs.setValue(3)
    with qtbot.waitSignal(tab.run_ended, timeout=120_000) as ended:
        assert tab.resume()
    assert ended.args[0] is None and "best.pt is intact" in tab.log_view.toPlainText()
    assert "best.pt is still there" in tab.progress_label.text()
    assert tab.model_path() == run / "best.pt" and tab.use_button.isEnabled()
