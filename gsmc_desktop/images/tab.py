"""The Images tab: open or drop images, see their faces, probabilities and a CAM per class."""

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from gsmc_core.frames.face_table import ImageFaces, write_image_table
from gsmc_core.frames.render import RenderOptions, draw_frame
from gsmc_core.frames.sources import IMAGE_EXTENSIONS, SourceError, image_files, read_image
from gsmc_core.outputs import refuse_overwriting_inputs, write_image
from gsmc_desktop.images.cam_grid import CamGrid
from gsmc_desktop.images.worker import TILE_SIZE, ImageJob, ImageResult, ImagesWorker, Wanted, file_stamp
from gsmc_desktop.model_handle import ModelHandle
from gsmc_desktop.settings import read_setting
from gsmc_desktop.threads import describe, start_worker, stop_thread
from gsmc_desktop.widgets.color_bar import ColorBar, scale_combo
from gsmc_desktop.widgets.frame_view import FrameView
from gsmc_desktop.widgets.messages import ask, report_failure
from gsmc_desktop.widgets.plain_text import PlainLabel, plain_tooltip
from gsmc_desktop.widgets.plots import ProbabilityChart

IMAGE_FILTER = f"Images ({' '.join('*' + e for e in IMAGE_EXTENSIONS)});;All files (*)"
DETECTORS = (("Full range (photos)", "full"), ("Short range (close-ups)", "short"),
             ("None: each image is a face crop", "whole"))  # as `gsmc predict --no-detect`
ERROR_COLOR = QColor(190, 30, 30)


class ChangedOnDisk(OSError):
    """An image file is no longer the one its result was made from."""


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given; folders replaced by the images directly inside them."""
    out: list[Path] = []
    for path in paths:
        out.extend(image_files(path) if path.is_dir() else [path])
    return out


class ImagesTab(QWidget):
    """A list of images analysed in a worker thread; the selected image with its faces, the
    selected face's probabilities and its CAM grid. ``all_done`` fires when every image
    sent to the worker is back."""

    status_message = Signal(str)
    all_done = Signal()
    opened = Signal(list)  # the paths just opened (for File ▸ Recent)
    runtime_changed = Signal(str)  # where and how the model ran, e.g. "cpu · int8"
    _job_requested = Signal(object)
    _close_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._model: ModelHandle | None = None
        self.results: dict[int, ImageResult] = {}
        self._items: dict[int, QListWidgetItem] = {}
        self._next_entry = 0
        self.pending = 0  # images sent to the worker and not back yet
        self._changed_on_disk: set[int] = set()  # entries analysed again for that (once each)
        self._shown: tuple[Path, npt.NDArray[np.uint8]] | None = None  # decoded image on screen
        self._face = 0

        self._jobs = 0  # numbers the jobs queued (``Wanted``)
        self.worker = ImagesWorker(Wanted())
        self.thread = start_worker(self.worker, "images-worker")
        self._job_requested.connect(self.worker.run)
        self._close_requested.connect(self.worker.close)
        self.worker.image_done.connect(self._on_image_done)
        self.worker.errored.connect(self._on_errored)
        self._build()
        self.setAcceptDrops(True)

    def _build(self) -> None:
        open_files = QPushButton("Open images…")
        open_files.clicked.connect(self._on_open_files)
        open_folder = QPushButton("Open folder…")
        open_folder.clicked.connect(self._on_open_folder)
        self.detector_combo = QComboBox()
        for label, name in DETECTORS:
            self.detector_combo.addItem(label, name)
        saved = read_setting("images/detector", "full", str)
        self.detector_combo.setCurrentIndex(max(0, self.detector_combo.findData(saved)))
        self.detector_combo.currentIndexChanged.connect(lambda *_: self._on_detector_changed())
        self.heatmap_check = QCheckBox("Heatmap")
        self.heatmap_check.setChecked(True)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(45)
        self.opacity_slider.setFixedWidth(110)
        self.scale_combo = scale_combo()
        self.scale_combo.setCurrentIndex(max(0, self.scale_combo.findData(
            read_setting("images/cam_scale", "map", str))))
        self.scale_combo.currentIndexChanged.connect(lambda *_: self._on_scale_changed())
        self.color_bar = ColorBar()
        self.color_bar.set_scale(self.scale_combo.currentData())
        self.heatmap_check.toggled.connect(lambda *_: self._show_selected())
        self.opacity_slider.valueChanged.connect(lambda *_: self._show_selected())
        self.save_button = QPushButton("Save annotated…")
        self.save_button.clicked.connect(self._on_save_clicked)
        self.save_button.setEnabled(False)
        self.export_button = QPushButton("Export results…")
        self.export_button.setToolTip("Faces, expressions and probabilities of every analysed image "
                                      "to a CSV or JSON file")
        self.export_button.clicked.connect(self._on_export_clicked)
        self.cams_button = QPushButton("Save CAMs…")
        self.cams_button.setToolTip("The selected face's attention map of every class, as PNGs")
        self.cams_button.clicked.connect(self._on_save_cams_clicked)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Take the selected image off the list (Delete); Shift: all")
        self.remove_button.clicked.connect(self._on_remove_clicked)
        self.remove_button.setEnabled(False)  # nothing to remove yet

        top = QHBoxLayout()  # files in and out
        top.addWidget(open_files)
        top.addWidget(open_folder)
        top.addWidget(PlainLabel("Detector:"))
        top.addWidget(self.detector_combo)
        top.addSpacing(12)
        top.addWidget(self.save_button)
        top.addWidget(self.export_button)
        top.addWidget(self.cams_button)
        top.addWidget(self.remove_button)
        top.addStretch(1)
        heat = QHBoxLayout()  # the heatmap
        heat.addWidget(self.heatmap_check)
        heat.addWidget(PlainLabel("Opacity"))
        heat.addWidget(self.opacity_slider)
        heat.addWidget(self.scale_combo)
        heat.addWidget(self.color_bar)
        heat.addStretch(1)

        self.image_list = QListWidget()
        self.image_list.setMinimumWidth(170)
        self.image_list.setWordWrap(True)  # errors are long; wrap them instead of cutting them off
        self.image_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.image_list.setSpacing(2)
        self.image_list.currentRowChanged.connect(lambda *_: self._on_image_selected())
        # Delete anywhere in the tab (it has no text fields): bound to the list only, it did
        # nothing until the user had clicked into the list
        remove = QShortcut(QKeySequence.StandardKey.Delete, self)
        remove.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        remove.activated.connect(lambda: self.remove_selected())
        self.view = FrameView()
        self.view.set_message("Open images or a folder, or drop them here.")
        self.view.clicked.connect(self._on_view_clicked)
        self.face_list = QListWidget()
        self.face_list.setMaximumHeight(70)
        self.face_list.currentRowChanged.connect(self._on_face_selected)
        self.chart = ProbabilityChart()
        self.chart.setMinimumHeight(150)
        self.cam_grid = CamGrid(columns=4)
        cams = QScrollArea()
        cams.setWidget(self.cam_grid)
        cams.setWidgetResizable(True)
        # one row of maps at least (they scroll in a small window); given more of the height than
        # the bar chart, so both rows of the 8 classes show at the default window size
        cams.setMinimumHeight(TILE_SIZE + 40)

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(PlainLabel("Faces"))
        side_layout.addWidget(self.face_list)
        side_layout.addWidget(self.chart, 2)
        side_layout.addWidget(PlainLabel("Attention map (CAM) of each class"))
        side_layout.addWidget(cams, 3)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.image_list)
        splitter.addWidget(self.view)
        splitter.addWidget(side)
        splitter.setStretchFactor(1, 3)
        splitter.setStretchFactor(2, 2)
        splitter.setSizes([180, 520, 4 * 128 + 60])

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(heat)
        layout.addWidget(splitter, 1)

    # --- model and input ------------------------------------------------------------------------

    def set_model(self, model: ModelHandle | None) -> None:
        """Use ``model``: the images already open are analysed again with it, so no result on
        screen comes from another model."""
        changed = model is not self._model
        self._model = model
        self.worker.set_model(model)
        self.chart.set_classes(model.classes if model is not None else ())
        if changed and model is not None:
            self._reanalyse(f"with {model.name}")
        self._show_selected()

    def _on_detector_changed(self) -> None:
        QSettings().setValue("images/detector", self.detector_combo.currentData())
        name = self.detector_combo.currentData()
        self._reanalyse("as face crops" if name == "whole" else
                        f"with the {self.detector_combo.currentText().split(' (')[0].lower()} detector")

    def _on_scale_changed(self) -> None:
        scale = self.scale_combo.currentData()
        QSettings().setValue("images/cam_scale", scale)
        self.color_bar.set_scale(scale)
        self._reanalyse("with the new heatmap scale")

    def _reanalyse(self, why: str) -> None:
        """Queue every open image again (its old result is dropped from view meanwhile)."""
        entries = []
        for entry, item in self._items.items():
            path = Path(item.data(Qt.ItemDataRole.UserRole + 1))
            self.results.pop(entry, None)
            item.setText(f"{path.name}\nanalysing {why}…")
            item.setForeground(QBrush())
            entries.append((entry, path))
        if not entries or self._model is None:
            return
        self._queue(entries)

    def _queue(self, entries: list[tuple[int, Path]]) -> None:
        """Send ``entries`` to the worker as one job, the one now wanted for each of them."""
        self._jobs += 1
        self.worker.wanted.set((entry for entry, _ in entries), self._jobs)
        self.pending += len(entries)
        self._job_requested.emit(ImageJob(tuple(entries), self.detector_combo.currentData(),
                                          self.scale_combo.currentData(), self._jobs))

    def add_paths(self, paths: Iterable[Path]) -> int:
        """Queue files and folders' images for analysis; returns how many images were added."""
        paths = list(paths)
        try:
            files = expand_paths(paths)
        except OSError as exc:  # a folder that cannot be listed (permissions, a lost drive)
            self.status_message.emit(f"Cannot open {exc.filename}: {exc.strerror or exc}")
            return 0
        if not files:
            names = ", ".join(str(p) for p in paths)
            self.status_message.emit(f"No images in {names} ({', '.join(IMAGE_EXTENSIONS)})")
            return 0
        if self._model is None:
            self.status_message.emit("No model loaded: use File ▸ Open checkpoint… first")
            return 0
        open_already = {Path(item.data(Qt.ItemDataRole.UserRole + 1)).resolve(): entry
                        for entry, item in self._items.items()}
        new = [p for p in dict.fromkeys(files) if p.resolve() not in open_already]
        if not new:  # the same files again: show them rather than list them twice
            self.image_list.setCurrentItem(self._items[open_already[files[0].resolve()]])
            self.status_message.emit(f"Already open: {files[0].name}")
            return 0
        entries = []
        for path in new:
            entry = self._next_entry
            self._next_entry += 1
            item = QListWidgetItem(f"{path.name}\nanalysing…")
            item.setToolTip(plain_tooltip(str(path)))
            item.setData(Qt.ItemDataRole.UserRole + 1, str(path))
            item.setData(Qt.ItemDataRole.UserRole, entry)
            self.image_list.addItem(item)
            self._items[entry] = item
            entries.append((entry, path))
        self._queue(entries)
        self.image_list.setCurrentItem(self._items[entries[0][0]])  # show what was just opened
        self.remove_button.setEnabled(True)
        self.opened.emit(list(paths))
        return len(entries)

    def remove_selected(self, everything: bool = False) -> None:
        """Take the selected image (or every image) off the list, with its results."""
        items = list(self._items.items()) if everything else [
            (e, i) for e, i in self._items.items() if i is self.image_list.currentItem()]
        for entry, item in items:
            self.image_list.takeItem(self.image_list.row(item))
            self._items.pop(entry)
            self.results.pop(entry, None)
        self.worker.wanted.drop(entry for entry, _ in items)
        self._on_image_selected()
        self._enable_export()
        self.remove_button.setEnabled(bool(self._items))

    @Slot()
    def _on_remove_clicked(self) -> None:
        shift = QApplication.keyboardModifiers() & Qt.KeyboardModifier.ShiftModifier
        self.remove_selected(everything=bool(shift))

    @Slot()
    def _on_open_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", self._last_dir(), IMAGE_FILTER)
        if paths:
            self._remember_dir(Path(paths[0]).parent)
            self.add_paths(Path(p) for p in paths)

    @Slot()
    def _on_open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", self._last_dir())
        if folder:
            self._remember_dir(Path(folder))
            self.add_paths([Path(folder)])

    def _last_dir(self) -> str:
        return read_setting("images/last_dir", "", str)

    def _remember_dir(self, folder: Path) -> None:
        QSettings().setValue("images/last_dir", str(folder))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.add_paths(paths)
            event.acceptProposedAction()

    # --- results ---------------------------------------------------------------------------------

    @Slot(object)
    def _on_image_done(self, image: ImageResult) -> None:
        self.pending -= 1
        # a result from before a model, scale or detector change (its redo is queued), or of
        # an image removed meanwhile, is dropped
        if not image.superseded and self.worker.wanted.wants(image.entry, image.job):
            self._show_result(image)
        if self.pending == 0:
            self._enable_export()
            self.all_done.emit()

    def _enable_export(self) -> None:
        """Export writes every image's result: not while some are still being analysed."""
        self.export_button.setEnabled(not self.pending and any(r.result is not None
                                                              for r in self.results.values()))

    def _show_result(self, image: ImageResult) -> None:
        self.results[image.entry] = image
        if image.runtime:  # said for every photo: the status bar then names what ran last
            self.runtime_changed.emit(image.runtime)
        item = self._items.get(image.entry)
        if item is not None:
            if image.error is not None:
                item.setText(f"{image.path.name}\nerror: {image.error.removeprefix(str(image.path) + ': ')}")
                item.setForeground(QBrush(ERROR_COLOR))
                item.setToolTip(plain_tooltip(image.error))
            else:
                n = len(image.result.faces)
                item.setText(f"{image.path.name}\n{n} face{'s' if n != 1 else ''}")
        if self._current_entry() == image.entry:
            self._on_image_selected()

    @Slot(str)
    def _on_errored(self, exc: BaseException, _task: str) -> None:
        # the job's images not analysed come back each as an error (``ImagesWorker.run``)
        message = describe(exc)
        self.status_message.emit(message)
        self.view.set_message(message)

    def _current_entry(self) -> int | None:
        item = self.image_list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def current_result(self) -> ImageResult | None:
        entry = self._current_entry()
        return None if entry is None else self.results.get(entry)

    def _on_image_selected(self) -> None:
        self._face = 0
        image = self.current_result()
        self.face_list.blockSignals(True)
        self.face_list.clear()
        if image is not None and image.result is not None:
            for f in image.result.faces:
                self.face_list.addItem(f"#{f.id}  {f.label} {f.confidence:.0%}  (detector {f.score:.2f})")
            if image.result.faces:
                self.face_list.setCurrentRow(0)
        self.face_list.blockSignals(False)
        self._show_selected()

    @Slot(int)
    def _on_face_selected(self, row: int) -> None:
        if row >= 0:
            self._face = row
            self._show_selected()

    @Slot(float, float)
    def _on_view_clicked(self, x: float, y: float) -> None:
        image = self.current_result()
        if image is None or image.result is None:
            return
        for i, face in enumerate(image.result.faces):
            bx, by, bw, bh = face.box
            if bx <= x <= bx + bw and by <= y <= by + bh:
                self.face_list.setCurrentRow(i)
                return

    def _render(self, image: ImageResult) -> npt.NDArray[np.uint8]:
        """The image with its overlays, BGR, full resolution (drawing only: no model here).
        ChangedOnDisk when the file is no longer the one analysed (its overlays would be drawn
        on other pixels)."""
        if self._shown is None or self._shown[0] != (image.path, image.stamp):
            pixels = read_image(image.path)
            if file_stamp(image.path) != image.stamp:
                raise ChangedOnDisk(f"{image.path} changed on disk since it was analysed")
            self._shown = ((image.path, image.stamp), pixels)
        elif file_stamp(image.path) != image.stamp:
            raise ChangedOnDisk(f"{image.path} changed on disk since it was analysed")
        options = RenderOptions(heatmaps=self.heatmap_check.isChecked(),
                                alpha=self.opacity_slider.value() / 100.0)
        return draw_frame(self._shown[1], image.result, options, bgr=True)

    def _show_selected(self) -> None:
        image = self.current_result()
        self.opacity_slider.setEnabled(self.heatmap_check.isChecked())
        self.save_button.setEnabled(image is not None and image.result is not None)
        self._enable_export()
        faces = image.result.faces if image is not None and image.result is not None else ()
        face = faces[self._face] if self._face < len(faces) else None
        if image is None:
            self.view.set_image(None)
            self.view.set_message("Analysing…" if self.pending else
                                  "Open images or a folder, or drop them here.")
        elif image.error is not None:
            self.view.set_image(None)
            self.view.set_message(f"{image.error}")
        else:
            try:
                self.view.set_image(cv2.cvtColor(self._render(image), cv2.COLOR_BGR2RGB))
                self.view.set_message("" if faces else "No face found in this image.")
            except ChangedOnDisk as exc:  # what is drawn must be what the model saw: again, once
                self.view.set_image(None)
                again = image.entry not in self._changed_on_disk and self._model is not None
                self.view.set_message(f"{exc}: analysing it again…" if again else
                                      f"{exc}, and again after that: it keeps changing (being "
                                      "written or synced?). Open it again once it is finished")
                if again:
                    self._changed_on_disk.add(image.entry)
                    self._reanalyse_one(image)
                return
            except (OSError, SourceError) as exc:  # gone or unreadable since it was analysed
                self.view.set_image(None)
                self.view.set_message(str(exc))
        self.view.set_highlight(face.box if face is not None and len(faces) > 1 else None)
        self.chart.set_probabilities(None if face is None else face.probabilities)
        self.chart.setTitle("No face selected" if face is None else
                            f"Face #{face.id}: {face.label} {face.confidence:.0%}")
        self.cams_button.setEnabled(face is not None)
        if face is None or image is None:
            self.cam_grid.set_tiles([], [])
            return
        classes = image.result.classes
        captions = [f"{c} {p:.0%}" for c, p in zip(classes, face.probabilities, strict=True)]
        self.cam_grid.set_tiles(image.cam_tiles[self._face], captions, highlight=face.index)

    def _reanalyse_one(self, image: ImageResult) -> None:
        item = self._items.get(image.entry)
        self.results.pop(image.entry, None)
        if item is None or self._model is None:
            return
        item.setText(f"{image.path.name}\nchanged on disk: analysing again…")
        item.setForeground(QBrush())
        self._queue([(image.entry, image.path)])
        self._enable_export()
        self.chart.set_probabilities(None)
        self.chart.setTitle("No face selected")
        self.cam_grid.set_tiles([], [])
        self.save_button.setEnabled(False)
        self.cams_button.setEnabled(False)

    def save_annotated(self, path: Path) -> None:
        """Write the selected image with its overlays at full resolution."""
        image = self.current_result()
        if image is None or image.result is None:
            raise ValueError("no analysed image is selected")
        refuse_overwriting_inputs({"The annotated image": path}, self._inputs())
        write_image(path, self._render(image))

    def _inputs(self) -> list[Path]:
        """The files this tab reads, which nothing it saves may replace: every open image
        (analysed or not yet), the model loaded and those that made the results shown."""
        models = {r.model.checkpoint.path for r in self.results.values()
                  if r.model is not None and r.model.checkpoint.path}
        if self._model is not None and self._model.checkpoint.path:
            models.add(self._model.checkpoint.path)
        images = [Path(item.data(Qt.ItemDataRole.UserRole + 1)) for item in self._items.values()]
        return images + sorted(models)

    @Slot()
    def _on_save_clicked(self) -> None:
        image = self.current_result()
        suggestion = f"{image.path.stem}_annotated.png" if image is not None else "annotated.png"
        path, _ = QFileDialog.getSaveFileName(self, "Save annotated image", suggestion,
                                              "PNG (*.png);;JPEG (*.jpg)")
        if not path:
            return
        try:
            self.save_annotated(Path(path))
        except (OSError, ValueError) as exc:
            report_failure(self, "Cannot save the annotated image", exc)
            return
        self.status_message.emit(f"Saved {path}")

    def export_results(self, path: Path) -> int:
        """Write every analysed image's faces to ``path`` (.json, else CSV; the columns of
        ``face_table``, as `gsmc predict` writes); returns the number of faces written. Images
        that could not be read are listed with their error."""
        refuse_overwriting_inputs({"The export": path}, self._inputs())
        if self.pending:  # the table would silently lack them
            raise ValueError(f"{self.pending} image(s) are still being analysed; export once "
                             "the list shows every result")
        items = [
            ImageFaces(str(image.path), image.result, image.model.name if image.model else "", image.error,
                       image.runtime)
            for image in (self.results[entry] for entry in sorted(self.results))
        ]
        write_image_table(path, items)
        return sum(item.faces for item in items)

    def cam_paths(self, folder: Path) -> list[Path]:
        """Where ``save_cams`` writes the selected face's CAM images in ``folder``."""
        image = self.current_result()
        if image is None or image.result is None or self._face >= len(image.cam_tiles):
            raise ValueError("no face is selected")
        face = image.result.faces[self._face]
        return [folder / f"{image.path.stem}_face{face.id}_{name}.png" for name in image.result.classes]

    def save_cams(self, folder: Path) -> list[Path]:
        """The selected face's CAM tiles (one per class) as PNGs in ``folder``."""
        image = self.current_result()
        names = self.cam_paths(folder)
        for path in names:
            refuse_overwriting_inputs({"A CAM image": path}, self._inputs())
        for path, tile in zip(names, image.cam_tiles[self._face], strict=True):
            write_image(path, cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
        return names

    @Slot()
    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export results", "results.csv",
                                              "CSV (*.csv);;JSON (*.json)")
        if not path:
            return
        try:
            faces = self.export_results(Path(path))
        except (OSError, ValueError) as exc:
            report_failure(self, "Cannot export the results", exc)
            return
        self.status_message.emit(f"Exported {faces} faces to {path}")

    @Slot()
    def _on_save_cams_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the CAM images", self._last_dir())
        if not folder:
            return
        try:
            existing = [p for p in self.cam_paths(Path(folder)) if p.exists()]
            # the names do not say which model made the maps: another model's would be lost
            if existing and not ask(self, "Replace the CAM images?",
                                    f"{len(existing)} of these CAM images already exist in {folder} "
                                    f"(e.g. {existing[0].name}), perhaps from another model. Replace them?"):
                return
            written = self.save_cams(Path(folder))
        except (OSError, ValueError) as exc:
            report_failure(self, "Cannot save the CAM images", exc)
            return
        self.status_message.emit(f"Saved {len(written)} CAM images in {folder}")

    def shutdown(self) -> None:
        """Abandon queued images and stop the worker thread."""
        self.worker.cancel()
        self._close_requested.emit()
        stop_thread(self.thread)
