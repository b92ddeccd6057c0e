"""The main window: the three tabs, menus, status bar and saved settings."""

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QInputDialog,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QWidget,
)

from gsmc_core import __version__
from gsmc_core.checkpoint import CheckpointError
from gsmc_core.devices import DeviceUnavailableError, available_devices
from gsmc_core.frames.sources import list_cameras
from gsmc_core.import_weights import FORMATS, import_weights
from gsmc_core.outputs import refuse_overwriting_inputs
from gsmc_core.resources import asset_path
from gsmc_desktop.app import log
from gsmc_desktop.document_viewer import DocumentViewer
from gsmc_desktop.images.tab import ImagesTab
from gsmc_desktop.live.tab import LiveTab
from gsmc_desktop.model_handle import ModelHandle, default_checkpoint, load_model, model_card
from gsmc_desktop.review.tab import ReviewTab
from gsmc_desktop.settings import existing_file, existing_folder, read_setting
from gsmc_desktop.training.tab import TrainingTab
from gsmc_desktop.widgets.messages import ask, inform, warn
from gsmc_desktop.widgets.plain_text import PlainLabel, plain_tooltip

CHECKPOINT_FILTER = "GSMC checkpoints (*.pt);;All files (*)"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v")
VIDEO_FILTER = f"Videos ({' '.join('*' + s for s in VIDEO_SUFFIXES)});;All files (*)"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp);;All files (*)"
OPENING_KEY = "model/opening"  # the model being opened at start, until the window is shown
OPENING_CLEAR_MS = 3000
RECENT_FILES = 10
MODEL_CARD = asset_path("model_card", "model-card.md")
USER_GUIDE = asset_path("user_guide", "user-guide.md")
NO_MODEL = ("No model loaded: use File ▸ Open checkpoint…, or train one in the Training tab")


class MainWindow(QMainWindow):
    """Live, Images and Training tabs sharing one model. ``checkpoint`` overrides the model
    remembered from the last session (else the shipped default model is used);
    ``camera_lister`` finds the cameras offered in the Live tab."""

    def __init__(self, checkpoint: Path | None = None,
                 camera_lister: Callable[[], list[int]] = list_cameras) -> None:
        super().__init__()
        self.setWindowTitle("GSMC — facial expressions and attention maps")
        self.setAcceptDrops(True)
        self.model: ModelHandle | None = None
        self._device = read_setting("model/device", "auto", str)
        if self._device not in ("auto", *available_devices()):
            self._device = "auto"
        self._mirror = read_setting("model/mirror", False, bool)

        self.live = LiveTab(camera_lister)
        self.images = ImagesTab()
        self.training = TrainingTab()
        self.review = ReviewTab()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.live, "Live")
        self.tabs.addTab(self.images, "Images")
        self.tabs.addTab(self.training, "Training")
        self.tabs.addTab(self.review, "Review")
        self.setCentralWidget(self.tabs)
        self._message_from: QWidget | None = None  # the tab whose message the status bar shows
        for tab in (self.live, self.images, self.training, self.review):
            tab.status_message.connect(lambda message, tab=tab: self._tab_message(tab, message))
        self.review.train_on.connect(self._train_on_cleaned)
        self.images.opened.connect(lambda paths: [self._remember_recent(p) for p in paths])
        self.live.video_played.connect(self._remember_recent)  # not a file that cannot be played
        self.training.use_model.connect(self._on_use_trained_model)
        # "Stop it and quit", or an export being written: the window stays live, then closes
        self._close_after_run = False
        self.training.run_ended.connect(self._on_run_ended)
        self.review.export_ended.connect(lambda: self._close_after_run and self.close())

        self.model_label = PlainLabel()
        self.device_label = PlainLabel()
        self.fps_label = PlainLabel("– fps")
        self.live.rate_changed.connect(self.fps_label.setText)
        for tab in (self.live, self.images):
            tab.runtime_changed.connect(lambda runtime: self.device_label.setText(f"Device: {runtime}"))
        for label in (self.model_label, self.device_label, self.fps_label):
            self.statusBar().addPermanentWidget(label)
        self._build_menus()

        geometry = read_setting("window/geometry", None, QByteArray)
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 800)
        self.tabs.setCurrentIndex(read_setting("window/tab", 0, int, lambda i: 0 <= i < self.tabs.count()))
        self.tabs.currentChanged.connect(lambda i: QSettings().setValue("window/tab", i))
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self._on_tab_changed(self.tabs.currentIndex())

        self.startup_problem: str | None = None  # a requested model that failed, shown once visible
        self._bad_file = False  # the last model that failed to open is itself unusable
        self._open_at_start(checkpoint, read_setting("model/checkpoint", "", str))

    # --- menus ----------------------------------------------------------------------------------

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction("Open &images…").triggered.connect(self._on_open_images)
        file_menu.addAction("Open &video…").triggered.connect(self._on_open_video)
        self.recent_menu = file_menu.addMenu("&Recent files")
        self._fill_recent_menu()
        file_menu.addSeparator()
        open_action = file_menu.addAction("&Open checkpoint…")
        open_action.setShortcut("Ctrl+O")
        open_action.triggered.connect(self._on_open_checkpoint)
        file_menu.addAction("&Import weights…").triggered.connect(self._on_import_weights)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        quit_action.setShortcut("Ctrl+Q")
        quit_action.triggered.connect(self.close)

        device_menu = self.menuBar().addMenu("&Device")
        self.device_actions = QActionGroup(self)
        for name in ("auto", *available_devices()):  # only devices present on this machine
            action = QAction(name.upper() if name != "auto" else "Auto", self, checkable=True)
            action.setData(name)
            action.setChecked(name == self._device)
            self.device_actions.addAction(action)
            device_menu.addAction(action)
        self.device_actions.triggered.connect(lambda a: self.set_device(a.data()))
        device_menu.addSeparator()
        self.mirror_action = device_menu.addAction("&Average each face with its mirror image")
        self.mirror_action.setCheckable(True)
        self.mirror_action.setChecked(self._mirror)
        self.mirror_action.setStatusTip("Flip test-time augmentation: about half a point more "
                                        "accurate on FERPlus, at twice the model's time a face")
        self.mirror_action.toggled.connect(self.set_mirror)

        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("&Model card…").triggered.connect(self.show_model_card)
        help_menu.addAction("&User guide…").triggered.connect(self.show_documentation)
        help_menu.addAction("&About GSMC…").triggered.connect(self.show_about)

    # --- files ----------------------------------------------------------------------------------

    def open_images(self, paths: list[Path]) -> int:
        """Analyse images (or folders of them) in the Images tab; returns how many were added."""
        added = self.images.add_paths(paths)  # remembered in File ▸ Recent through ``opened``
        if added:
            self.tabs.setCurrentWidget(self.images)
            self.images.image_list.setFocus()  # ↑/↓ go through the images, Delete removes one
        return added

    def open_video(self, path: Path) -> None:
        """Play a video file in the Live tab."""
        self.tabs.setCurrentWidget(self.live)
        self.live.set_video(path)
        self.live.start()

    @Slot()
    def _on_open_images(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", "", IMAGE_FILTER)
        if paths:
            self.open_images([Path(p) for p in paths])

    @Slot()
    def _on_open_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a video", "", VIDEO_FILTER)
        if path:
            self.open_video(Path(path))

    def recent_files(self) -> list[Path]:
        return [Path(p) for p in read_setting("files/recent", [], list)]

    def _remember_recent(self, path: Path) -> None:
        entries = [str(path.resolve()), *(str(p) for p in self.recent_files() if p != path.resolve())]
        QSettings().setValue("files/recent", entries[:RECENT_FILES])
        self._fill_recent_menu()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        # images, videos and folders of images (each opened folder took a slot: after ten,
        # the menu was empty)
        recent = [p for p in self.recent_files() if existing_file(str(p)) or existing_folder(str(p))]
        for path in recent:
            action = self.recent_menu.addAction(f"{path.name}/" if path.is_dir() else path.name)
            action.setToolTip(plain_tooltip(str(path)))
            action.triggered.connect(lambda _=False, p=path: self.open_recent(p))
        self.recent_menu.setEnabled(bool(recent))

    def open_recent(self, path: Path) -> None:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            self.open_video(path)
        else:
            self.open_images([path])

    # --- help -----------------------------------------------------------------------------------

    @Slot()
    def show_model_card(self) -> DocumentViewer | None:
        """The shipped model's card, rendered, with its per-class figures and limits."""
        if not MODEL_CARD.is_file():
            warn(self, "Model card", f"{MODEL_CARD} is missing; reinstall GSMC")
            return None
        viewer = DocumentViewer(MODEL_CARD, "Model card: the default model", self)
        viewer.show()
        return viewer

    @Slot()
    def show_documentation(self) -> DocumentViewer | None:
        """The user guide, shipped with the app, rendered."""
        if not USER_GUIDE.is_file():
            warn(self, "User guide", f"{USER_GUIDE} is missing; reinstall GSMC")
            return None
        viewer = DocumentViewer(USER_GUIDE, "GSMC user guide", self)
        viewer.show()
        return viewer

    # --- the model ------------------------------------------------------------------------------

    def open_checkpoint(self, path: Path, remember: bool = True) -> bool:
        """Load ``path`` for the Live and Images tabs; on failure explain and keep the old one."""
        try:
            model = load_model(path, self._device, self._mirror)
        except (CheckpointError, DeviceUnavailableError, OSError) as exc:
            log.warning("cannot load %s: %s", path, exc)
            self._bad_file = isinstance(exc, CheckpointError)  # not a drive away or a device
            self._refuse_checkpoint(path, str(exc))
            return False
        except Exception as exc:  # a checkpoint nobody foresaw must not take the app down
            log.exception("cannot load %s", path)
            self._bad_file = True
            self._refuse_checkpoint(path, f"{path}: cannot be used ({type(exc).__name__}: {exc})")
            return False
        self.set_model(model)
        if remember:
            QSettings().setValue("model/checkpoint", str(path))
        self.show_message(f"Loaded {path}")
        return True

    def _refuse_checkpoint(self, path: Path, reason: str) -> None:
        self.show_message(reason if str(path) in reason else f"Cannot use {path}: {reason}")
        if self.isVisible():
            warn(self, "Cannot open checkpoint", reason)

    def _open_at_start(self, requested: Path | None, saved: str) -> None:
        """The model given on the command line, else the last one used, else the shipped one;
        one that fails falls back to the shipped default model and says so. A remembered model
        that the app did not survive opening last time (its marker is still set) is not opened
        again: the default is, and the user is told."""
        crashed = read_setting(OPENING_KEY, "", str)
        if not requested and saved and crashed == saved:
            QSettings().remove("model/checkpoint")
            self.startup_problem = (f"GSMC stopped while showing the model {saved} last time, so "
                                    "it was not opened again; the default model is used. Open it "
                                    "with File ▸ Open checkpoint… if you trust it.")
            saved = ""
        gone = not requested and saved and existing_file(saved) is None
        path = requested or existing_file(saved) or default_checkpoint()
        if path is not None:
            settings = QSettings()
            settings.setValue(OPENING_KEY, str(path))  # cleared once the window has been shown
            settings.sync()
            QTimer.singleShot(OPENING_CLEAR_MS, lambda: QSettings().remove(OPENING_KEY))
        if path is not None and self.open_checkpoint(path, remember=requested is not None):
            if gone:  # said, not silently swapped: the user may think their model runs
                self.show_message(f"The last model used, {saved}, is no longer there (moved or "
                                  f"deleted); using {path.name}")
            return
        default = default_checkpoint()
        forget = path is not None and not requested and saved and self._bad_file
        if forget:  # a remembered file that is no model now: said once, not at every start
            QSettings().remove("model/checkpoint")
        if path is not None and default is not None and path != default:
            failed = self.statusBar().currentMessage()
            if self.open_checkpoint(default, remember=False):
                forgotten = " (it is no longer remembered)" if forget else ""
                self.startup_problem = (f"{failed.rstrip('.')}{forgotten}. The default model "
                                        f"{default.name} is used instead.")
                self.show_message(self.startup_problem)
                return
        self.set_model(None)

    def set_model(self, model: ModelHandle | None) -> None:
        self.model = model
        self.live.set_model(model)
        self.images.set_model(model)
        if model is None:
            self.model_label.setText("No model")
            self.device_label.setText(f"Device: {self._device}")
            self.show_message(NO_MODEL)
            self.live.view.set_message(NO_MODEL)
            self.images.view.set_message(NO_MODEL)
            return
        self.model_label.setText(f"Model: {model.name}")
        self.model_label.setToolTip(plain_tooltip(str(model.path)))
        self.device_label.setText(f"Device: {model.device}{' · mirror-averaged' if model.mirror else ''}")

    def set_device(self, name: str) -> None:
        """Run the model on ``name`` ("auto", "cpu", "cuda", "mps") from now on."""
        self._device = name
        QSettings().setValue("model/device", name)
        if self.model is not None:
            try:
                moved = self.model.with_device(name)
            except DeviceUnavailableError as exc:
                self.show_message(str(exc))
                return
            if moved.device != self.model.device:  # "auto" is often the device already in use
                self.set_model(moved)
        else:
            self.device_label.setText(f"Device: {name}")

    def set_mirror(self, on: bool) -> None:
        """Average each face with its mirror image from now on (or stop): the Live tab goes on
        with its faces and recording, the photos are analysed again."""
        self._mirror = on
        QSettings().setValue("model/mirror", on)
        self.mirror_action.setChecked(on)
        if self.model is not None and self.model.mirror != on:
            self.set_model(replace(self.model, mirror=on))

    @Slot()
    def _on_open_checkpoint(self) -> None:
        start = str(self.model.path.parent) if self.model is not None else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open a GSMC checkpoint", start, CHECKPOINT_FILTER)
        if path:
            self.open_checkpoint(Path(path))

    @Slot(Path)
    def _on_use_trained_model(self, path: Path) -> None:
        if self._close_after_run:  # the window was closed while the model was being prepared
            self._close_after_run = False
            self.close()
            return
        if self.open_checkpoint(path):
            self.tabs.setCurrentWidget(self.live)

    @Slot()
    def _on_import_weights(self) -> None:
        src, _ = QFileDialog.getOpenFileName(self, "Third-party backbone weights", "",
                                             "Weights (*.pth *.pt *.pth.tar);;All files (*)")
        if not src:
            return
        fmt, ok = QInputDialog.getItem(self, "Import weights", "Format of the file:", list(FORMATS), 0, False)
        if not ok:
            return
        out, _ = QFileDialog.getSaveFileName(self, "Save the initialisation checkpoint",
                                             str(Path(src).with_name(Path(src).stem + "_init.pt")),
                                             CHECKPOINT_FILTER)
        if not out:
            return
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            refuse_overwriting_inputs({"The initialisation checkpoint": out}, [src])
            path = import_weights(src, fmt, out)
        except (CheckpointError, ValueError, OSError) as exc:
            QApplication.restoreOverrideCursor()
            warn(self, "Cannot import weights", str(exc))
            return
        QApplication.restoreOverrideCursor()
        self.training.form.init.edit.setText(str(path))
        inform(
            self, "Weights imported",
            f"Wrote {path}.\n\nIt holds a backbone without an expression classifier, so it "
            "starts a training run (set as “Init weights” in the Training tab) rather than "
            "running in the Live tab.")

    @Slot()
    def show_about(self) -> None:
        card = model_card(self.model) if self.model is not None else f"<p>{NO_MODEL}</p>"
        QMessageBox.about(
            self, "About GSMC",
            f"<h3>GSMC {__version__}</h3><p>Facial expression recognition with class activation "
            "maps, trained with flip attention consistency and self-distillation (Huang, Liu, "
            f"Zhou, CGI 2024).</p><p>Help ▸ Model card has the default model's figures by class, "
            f"its CAM examples and its limits.</p><h4>Loaded model</h4>{card}")

    # --- status bar -----------------------------------------------------------------------------

    @Slot(str)
    def show_message(self, message: str) -> None:
        self._message_from = None
        self.statusBar().showMessage(message, 15_000)

    def _tab_message(self, tab: QWidget, message: str) -> None:
        """A tab's message; one from a tab not in view names it, an empty one clears only that
        tab's own message."""
        if not message:
            if self._message_from is tab:
                self.statusBar().clearMessage()
            return
        if self.tabs.currentWidget() is not tab:
            message = f"{self.tabs.tabText(self.tabs.indexOf(tab))}: {message}"
        self.show_message(message)
        self._message_from = tab

    @Slot(int)
    def _on_tab_changed(self, _index: int) -> None:
        # another tab's message would read as about the tab now in view
        if self._message_from is not None and self._message_from is not self.tabs.currentWidget():
            self.statusBar().clearMessage()
            self._message_from = None
        self.fps_label.setHidden(self.tabs.currentWidget() is not self.live)  # a Live figure


    # --- drops and closing ----------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if len(paths) == 1 and paths[0].suffix.lower() in VIDEO_SUFFIXES:
            self.open_video(paths[0])
            event.acceptProposedAction()
        elif paths and self.open_images(paths):
            event.acceptProposedAction()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.training.is_running() and not self._close_after_run:
            if not ask(self, "Training is running", "A training run is in progress. Stop it and "
                       "quit? Its last.pt is saved and the run can be resumed later."):
                event.ignore()
                return
            self.training.stop()  # (nothing to do if it ended during the question)
        # a run stops at its next batch or after its validation, an export writes its last
        # files: minutes, perhaps; the window is not frozen meanwhile and closes after them
        busy = ("Stopping the training run: the window closes once its last.pt is saved"
                if self.training.is_running() else
                "Writing the cleaned dataset: the window closes once it is written"
                if self.review.is_exporting() else
                "Preparing the trained model (int8): the window closes once it is done"
                if self.training.is_preparing() else "")
        if busy:
            self._close_after_run = True
            self.show_message(busy)
            event.ignore()
            return
        self.shutdown()
        settings = QSettings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.remove(OPENING_KEY)  # this start showed its model and closed normally
        event.accept()

    def _on_run_ended(self, result: object) -> None:
        """After "Stop it and quit": close once the run has saved; a run that failed instead
        keeps the window open, with its error in the Training tab."""
        if not self._close_after_run:
            return
        self._close_after_run = False
        if result is None:
            self.tabs.setCurrentWidget(self.training)
            self.show_message("The training run failed while stopping (see its log); the window "
                              "stays open")
            return
        self.close()

    @Slot(str, str)
    def _train_on_cleaned(self, dataset: str, root: str) -> None:
        """After a review's export: the Training tab, set to train on the cleaned labels."""
        self.training.form.dataset.setCurrentText(dataset)
        self.training.form.data_root.edit.setText(root)
        self.tabs.setCurrentWidget(self.training)

    def shutdown(self) -> None:
        """Stop every worker thread (training saves its last.pt first)."""
        for tab in (self.live, self.images, self.training, self.review):
            tab.shutdown()
