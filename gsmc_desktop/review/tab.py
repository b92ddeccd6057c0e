"""The Review tab: find the mislabelled faces of a dataset with a trained model, look at each with
the CAMs of its given and its predicted class, and fix the labels with the keyboard.

Keys (whatever control has focus inside the tab): 1-8 give the face that class, 0 or Delete mark
it unusable, Space keeps its label, ←/→ move, Ctrl+Z undoes. Every decision is written at once
to ``review/decisions.csv`` beside the checkpoint (append-only; reopening resumes); Export writes
a cleaned copy of the dataset (``gsmc_core.review.relabel``) and never touches the original files.
"""

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import QSettings, Qt, QThread, Signal, Slot
from PySide6.QtGui import QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gsmc_core.errors import UsageError
from gsmc_core.review.label_issues import SCORES
from gsmc_core.review.relabel import RELABEL_DATASETS, RelabelResult
from gsmc_core.review.review_log import ReviewLog
from gsmc_core.training.data.readers import DATASETS
from gsmc_desktop.review.worker import ExportRequest, RenderedFace, ReviewWorker, ScoredRun, ScoreRequest
from gsmc_desktop.settings import existing_file, existing_folder, read_setting
from gsmc_desktop.threads import describe, start_worker, stop_thread
from gsmc_desktop.training.form import PathField
from gsmc_desktop.widgets.frame_view import rgb_to_qimage
from gsmc_desktop.widgets.messages import report_failure
from gsmc_desktop.widgets.plain_text import PlainLabel

T = TypeVar("T")

SCORE_LABELS = {"audit": "audit score (another class ≥ 50 %)",
                "self_confidence": "confident learning, self-confidence",
                "normalized_margin": "confident learning, normalised margin"}


def review_log_path(checkpoint: Path) -> Path:
    """Where a review of the run that wrote ``checkpoint`` keeps its decisions."""
    return checkpoint.parent / "review" / "decisions.csv"


class ReviewTab(QWidget):
    status_message = Signal(str)
    train_on = Signal(str, str)  # dataset format, cleaned root: start training from it
    _score_requested = Signal(object)
    _render_requested = Signal(object, int)  # ScoredRun, row
    _export_requested = Signal(object)
    export_ended = Signal()  # an export was written or failed (said either way)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run: ScoredRun | None = None
        self._exporting = False  # an export is being written (in the worker)
        self.log: ReviewLog | None = None
        self.rows: list[int] = []  # suspect rows shown (filtered), worst first
        self.position = 0

        self.dataset = QComboBox()
        self.dataset.addItems([d for d in DATASETS if d in RELABEL_DATASETS])
        self.data_root = PathField(folder=True, placeholder="dataset folder")
        self.checkpoint = PathField(folder=False, placeholder="a run's best.pt (a final model that "
                                                         "learnt the noise agrees with it)")
        self.score = QComboBox()
        for name in SCORES:
            self.score.addItem(SCORE_LABELS[name], name)
        self.model_choice = QComboBox()
        self.model_choice.addItems(["auto", "teacher", "student", "exported"])
        self.model_choice.setToolTip("auto: GSMC's EMA teacher when the run has one")
        self.folds = QSpinBox()
        self.folds.setRange(0, 10)
        self.folds.setSpecialValueText("off (the run's own predictions)")
        self.folds.setToolTip("Cross-validation: train the run's recipe this many times, each without "
                              "one part of the faces, and score each part with the model that never "
                              "saw it (out-of-sample, more trustworthy; takes that many trainings, "
                              "resumable)")
        self.score_button = QPushButton("&Score the training faces")
        self.score_button.clicked.connect(self.start_scoring)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress_label = PlainLabel("Choose a dataset and a trained run, then Score.")
        self.progress_label.setWordWrap(True)

        self.given_filter = QComboBox()
        self.predicted_filter = QComboBox()
        self.min_score = QDoubleSpinBox()
        self.min_score.setRange(-1.0, 1.0)
        self.min_score.setSingleStep(0.05)
        self.min_score.setValue(-1.0)
        for box in (self.given_filter, self.predicted_filter):
            box.currentIndexChanged.connect(lambda *_: self._apply_filters())
        self.min_score.valueChanged.connect(lambda *_: self._apply_filters())
        self.suspect_list = QListWidget()
        self.suspect_list.currentRowChanged.connect(self._on_row_selected)
        self.counter = PlainLabel("")

        self.face_views = [PlainLabel() for _ in range(3)]
        self.face_captions = [PlainLabel() for _ in range(3)]
        self.decision_label = PlainLabel("")
        self.help_label = PlainLabel("Keys: 1-8 class · 0/Del unusable · Space keep · ←/→ move · Ctrl+Z undo")
        self.help_label.setStyleSheet("color: #555;")
        self.export_button = QPushButton("E&xport cleaned labels…")
        self.export_button.clicked.connect(self._on_export_clicked)
        self.export_button.setEnabled(False)

        setup = QFormLayout()
        setup.addRow("Format", self.dataset)
        setup.addRow("Dataset", self.data_root)
        setup.addRow("Model", self.checkpoint)
        setup.addRow("Score", self.score)
        setup.addRow("Network", self.model_choice)
        setup.addRow("Cross-validate", self.folds)
        buttons = QHBoxLayout()
        buttons.addWidget(self.score_button)
        buttons.addWidget(self.cancel_button)
        setup.addRow(buttons)
        setup.addRow(self.progress)
        setup.addRow(self.progress_label)
        filters = QFormLayout()
        filters.addRow("Given class", self.given_filter)
        filters.addRow("Predicted class", self.predicted_filter)
        filters.addRow("Score at least", self.min_score)
        left = QVBoxLayout()
        left.addLayout(setup)
        left.addLayout(filters)
        left.addWidget(self.suspect_list, 1)
        left.addWidget(self.counter)
        left.addWidget(self.export_button)
        faces = QGridLayout()
        for i, (view, caption) in enumerate(zip(self.face_views, self.face_captions, strict=True)):
            view.setAlignment(Qt.AlignmentFlag.AlignCenter)
            view.setMinimumSize(150, 150)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            faces.addWidget(view, 0, i)
            faces.addWidget(caption, 1, i)
        right = QVBoxLayout()
        right.addLayout(faces)
        right.addWidget(self.decision_label)
        right.addWidget(self.help_label)
        right.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 2)
        layout.addLayout(right, 3)
        self._make_shortcuts()
        self._restore_settings()

        self.worker = ReviewWorker()
        self.thread: QThread = start_worker(self.worker, "review-worker")
        self._score_requested.connect(self.worker.score)
        self._render_requested.connect(self.worker.render)
        self._export_requested.connect(self.worker.export)
        self.worker.exported.connect(self._on_exported)
        self.worker.render_failed.connect(self._on_render_failed)
        self.worker.progress.connect(self._on_progress)
        self.worker.scored.connect(self._on_scored)
        self.worker.rendered.connect(self._on_rendered)
        self.worker.errored.connect(self._on_errored)
        self.worker.cancelled.connect(self._on_failed)

    # --- keys -------------------------------------------------------------------------------------

    def _make_shortcuts(self) -> None:
        """Tab-wide shortcuts, so a key does the same whichever control has focus (a focused
        button would otherwise take Space)."""
        def add(key: str | QKeySequence.StandardKey, slot) -> QShortcut:
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
            return shortcut

        keys = [add(str(number), lambda n=number: self.decide_class(n - 1)) for number in range(1, 9)]
        keys += [add(key, self.decide_unusable) for key in ("0", "Delete")]
        keys += [add("Space", self.decide_keep), add("Right", lambda: self.move(1)),
                 add("Left", lambda: self.move(-1))]
        # the decision keys act while a suspect is shown; before, Space presses the focused
        # button as everywhere (the buttons also have Alt+letter keys)
        self._decision_keys = keys
        self._arm_decision_keys()
        add(QKeySequence.StandardKey.Undo, self.undo)

    def _arm_decision_keys(self) -> None:
        for shortcut in self._decision_keys:
            shortcut.setEnabled(self.run is not None and bool(self.rows))

    # --- scoring ----------------------------------------------------------------------------------

    def start_scoring(self) -> None:
        root, checkpoint = self.data_root.text(), self.checkpoint.text()
        if not root or not Path(root).is_dir():
            self.data_root.set_error("Choose the dataset's folder.")
            return
        if not checkpoint or not Path(checkpoint).is_file():
            self.checkpoint.set_error("Choose a trained model (a run's last.pt).")
            return
        self.score_button.setEnabled(False)
        self.export_button.setEnabled(False)  # (the review on screen is about to be replaced)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress_label.setText("Scoring the training faces…")
        folds = self.folds.value() if self.folds.value() > 1 else 0
        self._score_requested.emit(ScoreRequest(Path(checkpoint), self.dataset.currentText(),
                                                Path(root), self.score.currentData(),
                                                self.model_choice.currentText(), folds))

    def cancel(self) -> None:
        self.worker.request_stop()

    @Slot(int, int, float)
    def _on_progress(self, done: int, total: int, seconds: float) -> None:
        self.progress.setMaximum(total)
        self.progress.setValue(done)
        eta = seconds / max(done, 1) * (total - done)
        self.progress_label.setText(f"Scoring: batch {done}/{total}, about {eta:.0f} s left")

    @Slot(str)
    @Slot(object, str)
    def _on_errored(self, exc: BaseException, task: str) -> None:
        if task == "export":  # the review stays; the dialog names the folder or the label line
            self._export_done(f"Export failed: {describe(exc)}")
            report_failure(self, "Cannot export the cleaned dataset", exc)
            self.export_ended.emit()
            return
        self._on_failed(f"{task[0].upper()}{task[1:]} failed: {describe(exc)}")

    def _restore_settings(self) -> None:
        """The dataset and model of the last review scored (those still there)."""
        dataset = read_setting("review/dataset", "", str)
        if self.dataset.findText(dataset) >= 0:
            self.dataset.setCurrentText(dataset)
        root = existing_folder(read_setting("review/data_root", "", str))
        checkpoint = existing_file(read_setting("review/checkpoint", "", str))
        if root is not None:
            self.data_root.edit.setText(str(root))
        if checkpoint is not None:
            self.checkpoint.edit.setText(str(checkpoint))

    def _on_failed(self, message: str) -> None:
        if self.run is not None:  # the form may name another dataset or model now
            request = self.run.request
            message += (f". The review on screen is still that of {request.checkpoint.name} on "
                        f"{request.data_root}")
        self.score_button.setEnabled(not self._exporting)
        self.export_button.setEnabled(self.run is not None and not self._exporting)
        self.cancel_button.setEnabled(False)
        self.progress_label.setText(message)
        self.status_message.emit(message)

    @Slot(object)
    def _on_scored(self, run: ScoredRun) -> None:
        try:  # before anything changes: a log that cannot be read keeps the review on screen
            log = ReviewLog(review_log_path(run.request.checkpoint),
                            dataset=(run.request.dataset, run.request.data_root))
        except (OSError, UsageError) as exc:
            self._on_failed(f"Cannot open the review log: {describe(exc)}")
            return
        self.run, self.log = run, log
        settings = QSettings()
        settings.setValue("review/dataset", run.request.dataset)
        settings.setValue("review/data_root", str(run.request.data_root))
        settings.setValue("review/checkpoint", str(run.request.checkpoint))
        self.score_button.setEnabled(not self._exporting)
        self.cancel_button.setEnabled(False)
        classes = run.scores.split.classes
        for box in (self.given_filter, self.predicted_filter):
            box.blockSignals(True)
            box.clear()
            box.addItem("all", None)
            for i, name in enumerate(classes):
                box.addItem(name, i)
            box.blockSignals(False)
        flagged = run.suspects.cut
        known = "" if run.scores.flips is None else f"; {len(run.scores.flips)} labels known to be noisy"
        source = (f"Out-of-sample predictions ({run.request.folds}-fold cross-validation)."
                  if run.request.folds > 1 else
                  "In-sample predictions: the run's own model has seen these labels (less "
                  "trustworthy; Cross-validate gives out-of-sample ones).")
        cut = (f" {log.path.name}: {len(log.cut_lines)} damaged line(s) (from line "
               f"{log.cut_lines[0]}; cut short when the app was killed?) were skipped."
               if log.cut_lines else "")
        self.progress_label.setText(
            f"{len(run.scores.given)} faces scored in {run.seconds:.0f} s; {flagged} flagged{known}. "
            + source + cut)
        self.export_button.setEnabled(not self._exporting)
        self.help_label.setText("Keys: " + " · ".join(f"{i + 1} {c}" for i, c in enumerate(classes))
                                + "\n0 or Del unusable · Space keep the label · ←/→ move · Ctrl+Z undo")
        self._apply_filters(show=False)  # the first face not yet decided is shown below
        decided = self.log.decisions()
        keys = [self._key(r) for r in self.rows]
        self.position = next((i for i, k in enumerate(keys) if k not in decided), 0)
        self._show_position()
        self.suspect_list.setFocus()  # the keys decide now, not the Score button that had it

    # --- the list ---------------------------------------------------------------------------------

    def _key(self, row: int) -> str:
        scores = self.run.scores
        return scores.split.samples[scores.indices[row]].key

    def _apply_filters(self, show: bool = True) -> None:
        if self.run is None:
            return
        s = self.run
        shown = self.rows[self.position] if self.position < len(self.rows) else None
        given_class, predicted_class = self.given_filter.currentData(), self.predicted_filter.currentData()
        self.rows = [int(r) for r in s.suspects.order
                     if (given_class is None or s.scores.given[r] == given_class)
                     and (predicted_class is None or s.suspects.predicted[r] == predicted_class)
                     and s.suspects.score[r] >= self.min_score.value()]
        self.suspect_list.blockSignals(True)
        self.suspect_list.clear()
        for rank, row in enumerate(self.rows, start=1):
            self.suspect_list.addItem(QListWidgetItem(self._item_text(rank, row)))
        self.suspect_list.blockSignals(False)
        # the face on screen stays if it is still listed, else the first listed: the next key
        # decides the face shown (the position pointed at another face under a new filter)
        self.position = self.rows.index(shown) if shown in self.rows else 0
        self._update_counter()
        self._arm_decision_keys()
        if show:
            self._show_position()

    def _item_text(self, rank: int, row: int) -> str:
        s = self.run
        classes = s.scores.split.classes
        given, predicted = classes[s.scores.given[row]], classes[s.suspects.predicted[row]]
        decision = self.log.decisions().get(self._key(row)) if self.log else None
        mark = ""
        if decision is not None:
            mark = {"keep": "  ✓ kept", "unusable": "  ✗ unusable"}.get(decision.action,
                                                                       f"  → {decision.label}")
        # listed worst first by the suspect score (what "Score at least" filters)
        return (f"{rank:5d}. {self._key(row)}: {given} → {predicted} "
                f"{s.scores.probs[row][s.suspects.predicted[row]]:.0%}, "
                f"score {s.suspects.score[row]:.2f}{mark}")

    def _update_counter(self) -> None:
        if self.log is None:
            return
        decided = self.log.decisions().values()
        changed = sum(d.action != "keep" for d in decided)
        suspects = self.run.suspects
        cut = set(suspects.order[: suspects.cut].tolist())
        flagged = sum(r in cut for r in self.rows)
        self.counter.setText(f"{len(self.rows)} listed, worst first ({flagged} flagged) · reviewed "
                             f"{len(decided)} · changed {changed}")

    @Slot(int)
    def _on_row_selected(self, index: int) -> None:
        if 0 <= index < len(self.rows) and index != self.position:
            self.position = index
            self._show_position()

    def _show_position(self) -> None:
        if not self.rows:
            self.decision_label.setText("No suspects with these filters.")
            for caption in self.face_captions:
                caption.setText("")
            for view in self.face_views:
                view.setText("")
            return
        self.suspect_list.blockSignals(True)
        self.suspect_list.setCurrentRow(self.position)
        self.suspect_list.blockSignals(False)
        row = self.rows[self.position]
        classes = self.run.scores.split.classes
        probs = self.run.scores.probs[row]
        given, predicted = int(self.run.scores.given[row]), int(self.run.suspects.predicted[row])
        self.face_captions[0].setText(f"{self._key(row)}\nsuspect {self.position + 1} of {len(self.rows)}")
        self.face_captions[1].setText(f"given: {classes[given]} ({probs[given]:.0%})" + (
            "\nput there by the run's label noise (the file has another)" if self._injected(row) else ""))
        most_likely = predicted == int(probs.argmax())  # else the confident-learning scores' other class
        self.face_captions[2].setText(f"{'model' if most_likely else 'most likely other class'}: "
                                      f"{classes[predicted]} ({probs[predicted]:.0%})")
        decision = self.log.decisions().get(self._key(row))
        self.decision_label.setText("Not reviewed yet." if decision is None else
                                    f"Decided: {decision.action} {decision.label}".strip())
        for view in self.face_views:  # the previous suspect's pictures never stand under these captions
            view.setText("drawing…")
        self._render_requested.emit(self.run, row)

    @Slot(object, int, str)
    def _on_render_failed(self, run: ScoredRun, row: int, message: str) -> None:
        if run is self.run and self.rows and row == self.rows[self.position]:
            self.face_views[0].setText(f"Cannot show this face: {message}")
            for view in self.face_views[1:]:
                view.setText("")

    @Slot(object)
    def _on_rendered(self, face: RenderedFace) -> None:
        if face.run is not self.run or not self.rows or face.row != self.rows[self.position]:
            return  # the user has moved on (or scored again)
        for view, image in zip(self.face_views, (face.face, face.cam_given, face.cam_predicted),
                               strict=True):
            view.setPixmap(QPixmap.fromImage(rgb_to_qimage(image)))

    # --- decisions --------------------------------------------------------------------------------

    def _current(self) -> tuple[str, float] | None:
        if self.run is None or not self.rows:
            return None
        row = self.rows[self.position]
        return self._key(row), float(self.run.suspects.score[row])

    def _decided(self) -> None:
        self.suspect_list.item(self.position).setText(self._item_text(self.position + 1,
                                                                      self.rows[self.position]))
        self._update_counter()
        self.move(1)

    def _written(self, write: Callable[[], T]) -> tuple[bool, T | None]:
        """Write to the review log; one that cannot be written is a dialog naming it and what
        to do, and the review stays where it is."""
        try:
            return True, write()
        except OSError as exc:
            report_failure(self, "Cannot record the decision", OSError(
                f"{self.log.path}: {exc.strerror or exc}. Decisions are kept beside the checkpoint: "
                "copy the checkpoint to a folder you can write to and score it from there"))
        except UsageError as exc:
            report_failure(self, "Cannot record the decision", exc)
        return False, None

    def decide_class(self, index: int) -> None:
        current = self._current()
        classes = self.run.scores.split.classes if self.run else ()
        if current is None or index >= len(classes):
            return
        if self._written(lambda: self.log.set_label(current[0], classes[index], current[1]))[0]:
            self._decided()

    def decide_unusable(self) -> None:
        current = self._current()
        if current is not None and self._written(lambda: self.log.unusable(*current))[0]:
            self._decided()

    def decide_keep(self) -> None:
        """The label shown is right. On a label the run's own noise injected it is not the
        file's, so it is recorded as that class: the export writes the label the person saw."""
        current = self._current()
        if current is None:
            return
        row = self.rows[self.position]
        if self._injected(row):
            label = self.run.scores.split.classes[int(self.run.scores.given[row])]
            done = self._written(lambda: self.log.set_label(current[0], label, current[1]))[0]
        else:
            done = self._written(lambda: self.log.keep(*current))[0]
        if done:
            self._decided()

    def _injected(self, row: int) -> bool:
        """Whether the given label of ``row`` is one the run's label noise put in its place."""
        flips = self.run.scores.flips
        return bool(flips) and int(self.run.scores.indices[row]) in flips

    def undo(self) -> None:
        if self.log is None:
            return
        _, last = self._written(self.log.undo)
        if last is None:
            return
        keys = [self._key(r) for r in self.rows]
        if last.key in keys:
            self.position = keys.index(last.key)
            self.suspect_list.item(self.position).setText(self._item_text(self.position + 1,
                                                                          self.rows[self.position]))
        self._update_counter()
        self._show_position()
        self.status_message.emit(f"Undid the decision on {last.key}")

    def move(self, step: int) -> None:
        if self.rows:
            self.position = max(0, min(len(self.rows) - 1, self.position + step))
            self._show_position()

    # --- export -----------------------------------------------------------------------------------

    def export(self, out: Path) -> bool:
        """Write the cleaned copy of the dataset in ``out`` (a new or empty folder) in the worker
        thread; ``export_ended`` follows, after a message or a dialog. False when nothing is
        reviewed yet or an export is being written. Scoring waits meanwhile (one worker)."""
        if self.run is None or self.log is None or self._exporting:
            return False
        request = self.run.request
        self._exporting = True
        self.export_button.setEnabled(False)
        self.score_button.setEnabled(False)
        self.progress_label.setText(f"Writing the cleaned dataset to {out}…")
        self._export_requested.emit(ExportRequest(request.dataset, Path(request.data_root),
                                                  self.log.decisions(), out, self.log.path))
        return True

    @Slot()
    def _on_export_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "New folder for the cleaned dataset")
        if folder:
            self.export(Path(folder))

    def is_exporting(self) -> bool:
        return self._exporting

    def _export_done(self, message: str) -> None:
        self._exporting = False
        self.export_button.setEnabled(self.run is not None)
        self.score_button.setEnabled(True)
        self.progress_label.setText(message)

    @Slot(object, object)
    def _on_exported(self, request: ExportRequest, result: RelabelResult) -> None:
        message = f"Wrote the cleaned dataset to {result.root} (changes in changes.csv)"
        if not result.changed and not result.removed:  # e.g. the decisions were made with another model
            message = (f"Wrote the cleaned dataset to {result.root} with no face changed: this review "
                       f"({self.log.path}) holds no change. Each model keeps its own review beside it")
        if result.unmatched:
            message += (f"; {len(result.unmatched)} decisions name no face of this dataset and "
                        f"were not applied (the first: {result.unmatched[0][:80]})")
        self._export_done(message)
        self.status_message.emit(message)
        self.train_on.emit(request.dataset, str(result.root))  # the format of what was exported
        self.export_ended.emit()

    def shutdown(self) -> None:
        self.worker.request_stop()
        stop_thread(self.thread)
