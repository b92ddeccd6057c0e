"""The Training tab: the settings form, Start/Stop/Resume, progress, live curves and the log."""

import datetime
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gsmc_core.training.config import TrainConfig
from gsmc_core.training.events import BatchEvent, EpochEvent, TrainResult
from gsmc_core.training.run_folder import RunFolder
from gsmc_desktop.settings import read_setting
from gsmc_desktop.threads import describe, start_worker, stop_thread
from gsmc_desktop.training.by_class import ByClassTable
from gsmc_desktop.training.curves import TrainingCurves
from gsmc_desktop.training.form import TrainingForm
from gsmc_desktop.training.worker import TrainingWorker
from gsmc_desktop.widgets.plain_text import PlainLabel

PROGRESS_STEPS = 10_000


def format_duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03``."""
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainingTab(QWidget):
    """Runs the core trainer in a worker thread. ``use_model`` carries the checkpoint to load
    when the user presses "Use this model"; ``run_ended`` the TrainResult (None on failure)."""

    use_model = Signal(Path)
    run_ended = Signal(object)
    status_message = Signal(str)
    test_done = Signal()
    _run_requested = Signal(object)
    _check_requested = Signal(object)
    _evaluate_requested = Signal(str, str, str)
    _prepare_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._running = False
        self.result: TrainResult | None = None
        self._run_dir: Path | None = None  # the folder of the run started last
        self.worker = TrainingWorker()
        self.thread = start_worker(self.worker, "training-worker")
        self._run_requested.connect(self.worker.run)
        self._check_requested.connect(self.worker.check)
        self.worker.checked.connect(self._on_checked)
        self.worker.batch.connect(self._on_batch)
        self.worker.epoch.connect(self._on_epoch)
        self.worker.log.connect(self.append_log)
        self.worker.finished.connect(self._on_finished)
        self.worker.errored.connect(self._on_errored)
        self._evaluate_requested.connect(self.worker.evaluate)
        self.worker.evaluated.connect(self._on_evaluated)
        self._prepare_requested.connect(self.worker.prepare)
        self.worker.prepared.connect(self._on_prepared)
        self._evaluating = False
        self._preparing = False
        self._checking = False  # a start's training labels are being read
        self._build()
        self._restore_settings()
        self._update_buttons()

    def _build(self) -> None:
        self.form = TrainingForm()
        self.scroll = scroll = QScrollArea()
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.form.sizeHint().width() + 24)

        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the run in the output folder from its last.pt")
        self.resume_button.clicked.connect(lambda: self.resume())
        self.use_button = QPushButton("Use this model")
        self.use_button.setToolTip("Load the run's best checkpoint into the Live and Images tabs")
        self.use_button.clicked.connect(self._on_use_clicked)
        self.test_button = QPushButton("Evaluate on test")
        self.test_button.setToolTip("Score the run's best model on the dataset's test split")
        self.test_button.clicked.connect(lambda: self.evaluate_on_test())
        self.compare_button = QPushButton("Compare runs…")
        self.compare_button.setToolTip("Overlay the validation curves of other run folders")
        self.compare_button.clicked.connect(self._on_compare_clicked)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.resume_button, self.use_button):
            buttons.addWidget(button)
        more = QHBoxLayout()
        more.addWidget(self.test_button)
        more.addWidget(self.compare_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(scroll, 1)
        left_layout.addLayout(buttons)
        left_layout.addLayout(more)

        self.progress = QProgressBar()
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.progress_label = PlainLabel("Not started")
        self.curves = TrainingCurves()
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.by_class = ByClassTable()
        self.lower_tabs = QTabWidget()
        self.lower_tabs.addTab(self.log_view, "Log")
        self.lower_tabs.addTab(self.by_class, "By class")
        right_split = QSplitter(Qt.Orientation.Vertical)
        right_split.addWidget(self.curves)
        right_split.addWidget(self.lower_tabs)
        right_split.setSizes([420, 160])
        right_split.setStretchFactor(0, 3)  # a taller window goes mostly to the curves
        right_split.setStretchFactor(1, 1)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.progress_label)
        right_layout.addWidget(self.progress)
        right_layout.addWidget(right_split, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def _restore_settings(self) -> None:
        root = read_setting("training/data_root", "", str)
        if root:
            self.form.data_root.edit.setText(root)
        dataset = read_setting("training/dataset", "", str)
        if dataset:
            self.form.dataset.setCurrentText(dataset)
        out = read_setting("training/out", "", str)
        if out:
            self.form.out.edit.setText(out)

    # --- start / stop -----------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self._running

    def start(self, config: TrainConfig | None = None) -> bool:
        """Start a new run with ``config`` (default: the form's, validated); False if the input
        is invalid (the form shows why), a run is going, or the worker thread is evaluating or
        preparing a model (a run would wait behind it, and a Stop meanwhile would be lost)."""
        if self._running or self._checking:
            return False
        if self._evaluating or self._preparing:
            self.status_message.emit("Training not started: wait for the evaluation or the model "
                                     "preparation to finish")
            return False
        config = config or self.form.config()
        if config is None:
            self._not_started("Training not started: fix the fields marked in red")
            return False
        self._checking = True  # the labels are read in the worker; _on_checked goes on
        self.progress_label.setText("Reading the dataset's labels…")
        self._update_buttons()
        self._check_requested.emit(config)
        return True

    @Slot(object, object)
    def _on_checked(self, config: TrainConfig, problem: BaseException | None) -> None:
        self._checking = False
        if problem is not None:  # the last run's figures and model stay
            self.form.show_data_error(config.dataset, config.data_root, problem)
            self.progress_label.setText("Training not started: see the dataset's folder")
            self.status_message.emit(f"Training not started: {describe(problem)}")
            self._update_buttons()
            return
        self._launch(config)

    def _launch(self, config: TrainConfig) -> None:
        s = QSettings()
        s.setValue("training/data_root", config.data_root)
        s.setValue("training/dataset", config.dataset)
        s.setValue("training/out", config.out)
        rows, problems = self._history(RunFolder(config.out)) if config.resume else ([], [])
        self._running = True
        self.result = None
        self._run_dir = Path(config.out)
        self.curves.clear()
        self.by_class.reset()
        self.status_message.emit(f"Training {'resumed' if config.resume else 'started'}: {config.out}")
        if rows:  # the run's past epochs, from its metrics.csv
            self.append_log(f"{self.curves.load_history(rows)} earlier epoch(s) of the run loaded "
                            "from its metrics.csv")
        if problems:
            self.append_log(f"Its metrics.csv is damaged ({'; '.join(problems[:3])}): those rows are "
                            "not drawn; the run repairs the file and keeps a copy as it was (its log "
                            "names it)")
        self.progress.setValue(0)
        self.progress_label.setText("Reading the dataset…")
        verb = "Resuming" if config.resume else "Starting"
        self.append_log(f"{verb} {config.method} on {config.dataset} ({config.data_root}) -> {config.out}")
        self._update_buttons()
        self._run_requested.emit(config)

    def resume(self) -> bool:
        """Continue the run in the output folder (its own settings, see ``resume_config``)."""
        if self._running:
            return False
        config = self.form.resume_config()
        if config is None:
            self._not_started("Not resumed: see the field marked in red")
            return False
        return self.start(config)

    def _not_started(self, message: str) -> None:
        """Say why above the curves and in the status bar (an earlier reason would stay there),
        and bring the first field marked in red into view."""
        field = self.form.first_error_field()
        if field is not None:  # a problem below the visible part of the form: show it
            self.scroll.ensureWidgetVisible(field)
            getattr(field, "edit", field).setFocus()
        self.progress_label.setText(message)
        self.status_message.emit(message)

    def stop(self) -> None:
        """Stop after the batch in progress; the run's last.pt stays usable and resumable."""
        if self._running:
            self.worker.request_stop()
            self.progress_label.setText("Stopping after this batch (at once while the data loads)…")

    def shutdown(self) -> None:
        """Stop a run cleanly (it saves last.pt) or an evaluation, and end the worker thread."""
        self.worker.close_soon()
        stop_thread(self.thread, timeout_ms=600_000)

    def _update_buttons(self) -> None:
        self.form.setEnabled(not (self._running or self._checking))
        idle = not (self._running or self._evaluating or self._preparing or self._checking)  # one thread
        self.start_button.setEnabled(idle)
        self.resume_button.setEnabled(idle)
        self.stop_button.setEnabled(self._running)
        self.use_button.setEnabled(not self._running and not self._preparing
                                   and self.model_path() is not None)
        self.test_button.setEnabled(not self._running and not self._evaluating
                                    and self.model_path() is not None)

    # --- events from the trainer ------------------------------------------------------------------

    @Slot(str)
    def append_log(self, message: str) -> None:
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        self.log_view.appendPlainText(f"{stamp}  {message}")

    @Slot(object)
    def _on_batch(self, event: BatchEvent) -> None:
        done = (event.epoch - 1) * event.batches + event.batch
        self.progress.setValue(round(PROGRESS_STEPS * done / (event.epochs * event.batches)))
        self.progress_label.setText(
            f"Epoch {event.epoch}/{event.epochs} · batch {event.batch}/{event.batches} · "
            f"loss {event.losses.get('loss', float('nan')):.3f} · {event.images_per_s:.0f} img/s · "
            f"ETA {format_duration(event.eta_s)}")
        self.curves.add_batch(event)

    @Slot(object)
    def _on_epoch(self, event: EpochEvent) -> None:
        m = event.metrics
        has_teacher = "val_acc_teacher" in m
        teacher = f" (teacher {m['val_acc_teacher']:.1%})" if has_teacher else ""
        chosen = f" ({m.get('selected', 'student')})" if has_teacher else ""  # a CE run has one model
        best = f", best so far{chosen} saved as best.pt" if event.is_best else ""
        self.append_log(f"epoch {event.epoch}/{event.epochs}: loss {m.get('loss', float('nan')):.4f}, "
                        f"train acc {m.get('train_acc', 0):.1%}, val acc {m.get('val_acc', 0):.1%}"
                        f"{teacher}{best}")
        self.curves.add_epoch(event)
        if "val_per_class" in m:
            self.by_class.show_metrics(
                f"Validation, epoch {event.epoch}{chosen}: accuracy "
                f"{m.get('val_acc_teacher' if m.get('selected') == 'teacher' else 'val_acc', 0):.1%}",
                m["val_per_class"], m["val_confusion"])

    @Slot(object)
    def _on_finished(self, result: TrainResult) -> None:
        self._running = False
        self.result = result
        if result.stopped_loading:
            kept = f"; {result.last} is as it was" if result.last else ""
            self.progress_label.setText("Stopped while the data was loaded; no checkpoint or "
                                        f"metrics written{kept}")
        elif result.stopped:
            self.progress_label.setText(f"Stopped after {result.epochs_completed} epoch(s); "
                                        f"{result.last} can be resumed or used")
        else:
            self.progress.setValue(PROGRESS_STEPS)
            self.progress_label.setText(f"Finished: best validation accuracy {result.best_val_accuracy:.1%}")
        self.append_log(f"run folder: {result.run_dir}")
        self.status_message.emit(self.progress_label.text())
        self._update_buttons()
        self.run_ended.emit(result)

    @Slot(object, str)
    def _on_errored(self, exc: BaseException, task: str) -> None:
        message = describe(exc)
        if task == "quantization":  # the model is used all the same, in fp32
            self.append_log(f"no int8 version ({message}); the model runs in fp32")
        elif task == "evaluation":
            self._evaluation_failed(message)
        else:
            self._training_failed(message)

    def _training_failed(self, message: str) -> None:
        self._running = False
        kept = self.model_path()
        self.progress_label.setText("Failed: see the log" + (
            f". The run's {kept.name} is still there: Use this model or Evaluate on test" if kept else ""))
        self.append_log(f"error: {message}")
        self.status_message.emit(f"Training failed: {message}")
        self._update_buttons()
        self.run_ended.emit(None)

    def model_path(self) -> Path | None:
        """The finished (or stopped) run's best checkpoint, else its last one; after a failed
        run (a damaged last.pt, a divergence) the best.pt its folder still holds."""
        if self.result is None:
            best = RunFolder(self._run_dir).best if self._run_dir is not None else None
            return best if best is not None and best.is_file() else None
        for path in (self.result.best, self.result.last):
            if path is not None and path.is_file():
                return path
        return None

    def evaluate_on_test(self) -> bool:
        """Score the finished run's best model on the test split, in the worker thread; the
        figures go to the "By class" table. False when there is nothing to evaluate."""
        path = self.model_path()
        if path is None or self._running or self._evaluating or self.result is None:
            return False
        config = self.form.config_of_run(self.result.run_dir)
        if config is None:
            return False
        self._evaluating = True
        self._update_buttons()
        self.progress_label.setText(f"Evaluating {path.name} on the test split of {config.dataset}…")
        self._evaluate_requested.emit(str(path), config.dataset, config.data_root)
        return True

    @Slot(str, object)
    def _on_evaluated(self, path: str, metrics: dict) -> None:
        self._evaluating = False
        text = (f"Test ({Path(path).name}, {metrics['n']} images): accuracy {metrics['accuracy']:.1%}, "
                f"mean class accuracy {metrics['mean_class_accuracy']:.1%}")
        self.by_class.show_metrics(text, metrics["per_class"], metrics["confusion_matrix"])
        self.lower_tabs.setCurrentWidget(self.by_class)
        self.progress_label.setText(text)
        self.append_log(text)
        self._update_buttons()
        self.test_done.emit()

    def _evaluation_failed(self, message: str) -> None:
        self._evaluating = False
        self.progress_label.setText("Test evaluation failed: see the log")
        self.append_log(f"error: {message}")
        self._update_buttons()
        self.test_done.emit()

    @Slot()
    def _on_compare_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a run folder to compare",
                                                  self.form.out.text())
        if folder:
            self.compare_run(Path(folder))

    def compare_run(self, folder: Path) -> bool:
        """Overlay the validation accuracy of the run in ``folder`` (its metrics.csv)."""
        run = RunFolder(folder)
        if not run.metrics_file.is_file():
            self.status_message.emit(f"{folder}: no metrics.csv, so not a run folder")
            return False
        rows, problems = self._history(run)
        if not rows:
            self.status_message.emit(f"{run.metrics_file}: no epoch to compare with"
                                     f"{f' ({problems[0]})' if problems else ''}")
            return False
        self.curves.add_comparison(folder, rows)
        left_out = f"; {len(problems)} damaged row(s) of its metrics.csv left out" if problems else ""
        self.status_message.emit(f"Comparing with {folder.name}{left_out}")
        return True

    def _history(self, run: RunFolder) -> tuple[list[dict[str, str]], list[str]]:
        """A run's metrics rows and what is wrong with the others; an unreadable file is one
        problem (the GUI reads it, so it must not raise)."""
        try:
            return run.read_history()
        except OSError as exc:
            return [], [f"cannot be read: {describe(exc)}"]

    def is_preparing(self) -> bool:
        """Whether "Use this model" is making the model's int8 graph (it cannot be interrupted)."""
        return self._preparing

    @Slot()
    def _on_use_clicked(self) -> None:
        path = self.model_path()
        if path is not None and not self._preparing:
            self._preparing = True
            self.progress_label.setText("Preparing the model for this computer (int8, once; "
                                        "up to a minute)…")
            self.progress.setRange(0, 0)  # busy: no figure to show, but it is working
            self._update_buttons()
            self._prepare_requested.emit(str(path))

    @Slot(str, str)
    def _on_prepared(self, checkpoint: str, note: str) -> None:
        self._preparing = False
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setValue(PROGRESS_STEPS)
        if note:
            self.append_log(note)
        self.progress_label.setText(f"Using {Path(checkpoint).parent.name}/{Path(checkpoint).name}")
        self._update_buttons()
        self.use_model.emit(Path(checkpoint))
