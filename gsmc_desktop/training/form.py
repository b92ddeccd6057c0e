"""The training settings form: the recipe's defaults, and errors shown next to their field."""

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gsmc_core.checkpoint import read_run_record
from gsmc_core.devices import available_devices
from gsmc_core.errors import GsmcError
from gsmc_core.model import OUTPUT_STRIDES
from gsmc_core.training.config import (
    METHOD_DEFAULTS,
    METHODS,
    RECOMMENDED_SCHEDULER,
    TrainConfig,
    config_for_resume,
    setting_info,
)
from gsmc_core.training.data.readers import DATASETS
from gsmc_core.training.data.samples import DataError
from gsmc_core.training.run_folder import RunFolder
from gsmc_desktop.widgets.plain_text import PlainLabel, breakable

SCHEDULER_LABELS = {
    "cosine": "cosine over the run",
    "step": "step ×0.1 every 10 epochs (published GSMC)",
    "exp": "exponential ×0.9 per epoch (published EAC)",
}
METHOD_HELP = {
    "gsmc": "GSMC: flip attention consistency + self-distillation from an EMA teacher",
    "eac": "EAC baseline: cross-entropy + flip attention consistency",
    "ce": "Plain cross-entropy baseline",
}


class PathField(QWidget):
    """A line edit with a Browse… button (folder or file) and an error line under it."""

    def __init__(self, folder: bool, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder = folder
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.error = PlainLabel()
        self.error.setStyleSheet("color: #b41e1e;")
        self.error.setWordWrap(True)
        self.error.hide()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.error)
        self.edit.textChanged.connect(lambda *_: self.set_error(""))

    def _browse(self) -> None:
        if self.folder:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", self.text())
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint", self.text(),
                                                  "Checkpoints (*.pt *.pth);;All files (*)")
        if path:
            self.edit.setText(path)

    def text(self) -> str:
        return self.edit.text().strip()

    def set_error(self, message: str) -> None:
        self.error.setText(breakable(message))
        self.error.setVisible(bool(message))


def _spin(lo: int, hi: int, value: int, step: int = 1, special: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    if special:
        box.setSpecialValueText(special)
    return box


def _dspin(lo: float, hi: float, value: float, step: float, decimals: int) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    return box


def _setting_box(name: str, value: float, special: str = "") -> QSpinBox | QDoubleSpinBox:
    """The spin box of a ``TrainConfig`` setting: bounds, step and decimals from its schema
    (``train_config.setting``), its help as the tooltip."""
    info = setting_info(name)
    lo, hi, step, *decimals = info["form"]
    box = (_dspin(lo, hi, value, step, decimals[0]) if decimals
           else _spin(int(lo), int(hi), int(value), int(step), special))
    box.setToolTip(info["help"][:1].upper() + info["help"][1:])
    return box


class WheelOnlyWhenFocused(QObject):
    """An event filter for spin and combo boxes in a scrolling form: the mouse wheel changes a
    field only once the user has clicked or tabbed into it; otherwise the wheel scrolls the form
    (Qt passes an ignored wheel event on to the parents)."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            event.ignore()
            return True
        return super().eventFilter(watched, event)


class TrainingForm(QWidget):
    """Every setting of a run. ``config`` validates the input and returns a TrainConfig, or
    None after showing each problem beside its field."""

    method_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        d = TrainConfig()
        self.dataset = QComboBox()
        self.dataset.addItems(DATASETS)
        self.data_root = PathField(folder=True, placeholder="dataset folder")
        self.noise_rate = _setting_box("noise_rate", d.noise_rate)
        self.noise_seed = _setting_box("noise_seed", d.noise_seed)

        self.method = QComboBox()
        self.method.addItems(METHODS)
        self.method.currentTextChanged.connect(self._apply_method_defaults)
        self.method_help = PlainLabel()
        self.method_help.setWordWrap(True)
        self.method_help.setStyleSheet("color: #555;")
        self.epochs = _setting_box("epochs", d.epochs)
        self.batch_size = _setting_box("batch_size", 128)
        self.lr = _setting_box("lr", 1e-3)
        self.weight_decay = _setting_box("weight_decay", 0.0)
        self.scheduler = QComboBox()
        for name, label in SCHEDULER_LABELS.items():
            self.scheduler.addItem(label, name)
        self.lambda_kl = _setting_box("lambda_kl", d.lambda_kl)
        self.lambda_ac = _setting_box("lambda_ac", d.lambda_ac)
        self.ema_alpha = _setting_box("ema_alpha", d.ema_alpha)
        self.eac_lambda = _setting_box("eac_lambda", d.eac_lambda)

        self.input_size = _setting_box("input_size", d.input_size)
        self.output_stride = QComboBox()
        for stride in OUTPUT_STRIDES:
            self.output_stride.addItem(str(stride), stride)
        self.output_stride.setCurrentIndex(self.output_stride.findData(d.output_stride))
        self.init = PathField(folder=False, placeholder="optional: imported backbone weights")
        self.device = QComboBox()
        self.device.addItems(["auto", *available_devices()])
        self.workers = _setting_box("workers", d.workers)
        self.limit_train = _setting_box("limit_train", 0, special="all")
        self.limit_eval = _setting_box("limit_eval", 0, special="all")
        self.out = PathField(folder=True, placeholder="run folder (config, metrics, last.pt, best.pt)")
        self.out.edit.setText(d.out)
        self.error = PlainLabel()
        self.error.setStyleSheet("color: #b41e1e;")
        self.error.setWordWrap(True)
        self.error.hide()

        data = QFormLayout()
        data.addRow("Format", self.dataset)
        data.addRow("Root", self.data_root)
        data.addRow("Label noise", self.noise_rate)
        data.addRow("Noise seed", self.noise_seed)
        recipe = QFormLayout()
        recipe.addRow("Method", self.method)
        recipe.addRow(self.method_help)
        recipe.addRow("Epochs", self.epochs)
        recipe.addRow("Batch size", self.batch_size)
        recipe.addRow("Learning rate", self.lr)
        recipe.addRow("Weight decay", self.weight_decay)
        recipe.addRow("Schedule", self.scheduler)
        recipe.addRow("λ KL (distillation)", self.lambda_kl)
        recipe.addRow("λ AC (attention)", self.lambda_ac)
        recipe.addRow("EMA α (teacher)", self.ema_alpha)
        recipe.addRow("EAC λ", self.eac_lambda)
        self._recipe = recipe
        run = QFormLayout()
        run.addRow("Input size", self.input_size)
        run.addRow("Output stride", self.output_stride)
        run.addRow("Init weights", self.init)
        run.addRow("Device", self.device)
        run.addRow("Loader workers", self.workers)
        run.addRow("Limit train", self.limit_train)
        run.addRow("Limit validation", self.limit_eval)
        run.addRow("Output folder", self.out)

        layout = QVBoxLayout(self)
        for title, form in (("Dataset", data), ("Method", recipe), ("Model and run", run)):
            group = QGroupBox(title)
            group.setLayout(form)
            layout.addWidget(group)
        layout.addWidget(self.error)
        layout.addStretch(1)
        self._wheel_guard = WheelOnlyWhenFocused(self)
        for box in self.findChildren(QAbstractSpinBox) + self.findChildren(QComboBox):
            box.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # not focused by the wheel itself
            box.installEventFilter(self._wheel_guard)
        self._apply_method_defaults(self.method.currentText())

    def _apply_method_defaults(self, method: str) -> None:
        """Fill in the published recipe's settings for ``method`` (METHOD_DEFAULTS)."""
        defaults = METHOD_DEFAULTS[method]
        self.lr.setValue(defaults["lr"])
        self.weight_decay.setValue(defaults["weight_decay"])
        self.batch_size.setValue(defaults["batch_size"])
        self.scheduler.setCurrentIndex(self.scheduler.findData(RECOMMENDED_SCHEDULER[method]))
        self.method_help.setText(METHOD_HELP[method])
        for widget, used in ((self.lambda_kl, method == "gsmc"), (self.lambda_ac, method == "gsmc"),
                             (self.ema_alpha, method == "gsmc"), (self.eac_lambda, method == "eac")):
            self._recipe.setRowVisible(widget, used)
        self.method_changed.emit(method)

    def load_config(self, config: TrainConfig) -> None:
        """Show ``config``'s settings (e.g. a run folder's config.yaml, for Resume)."""
        self.dataset.setCurrentText(config.dataset)
        self.data_root.edit.setText(config.data_root)
        self.noise_rate.setValue(config.noise_rate)
        self.noise_seed.setValue(config.noise_seed)
        self.method.setCurrentText(config.method)  # fills the method's defaults, overridden below
        self.epochs.setValue(config.epochs)
        for name in ("batch_size", "lr", "weight_decay"):
            value = getattr(config, name)
            if value is not None:
                getattr(self, name).setValue(value)
        scheduler = config.scheduler or METHOD_DEFAULTS[config.method]["scheduler"]
        self.scheduler.setCurrentIndex(max(0, self.scheduler.findData(scheduler)))
        self.lambda_kl.setValue(config.lambda_kl)
        self.lambda_ac.setValue(config.lambda_ac)
        self.ema_alpha.setValue(config.ema_alpha)
        self.eac_lambda.setValue(config.eac_lambda)
        self.input_size.setValue(config.input_size)
        self.output_stride.setCurrentIndex(max(0, self.output_stride.findData(config.output_stride)))
        self.init.edit.setText(config.init or "")
        if self.device.findText(config.device) >= 0:
            self.device.setCurrentText(config.device)
        self.workers.setValue(config.workers)
        self.limit_train.setValue(config.limit_train or 0)
        self.limit_eval.setValue(config.limit_eval or 0)
        self.out.edit.setText(config.out)

    def _set_error(self, message: str) -> None:
        self.error.setText(breakable(message))
        self.error.setVisible(bool(message))

    def first_error_field(self) -> QWidget | None:
        """The first field (top to bottom) showing a problem, to scroll to and focus."""
        for field in (self.data_root, self.init, self.out):
            if field.error.isVisibleTo(self):
                return field
        return self.error if self.error.isVisibleTo(self) else None

    def clear_errors(self) -> None:
        for field in (self.data_root, self.init, self.out):
            field.set_error("")
        self._set_error("")

    @staticmethod
    def config_of_run(folder: Path) -> TrainConfig | None:
        """The settings a run folder was trained with (its config.yaml), None if unreadable."""
        try:
            return TrainConfig.from_yaml(RunFolder(folder).config_file)
        except (ValueError, TypeError, OSError):
            return None

    def resume_config(self) -> TrainConfig | None:
        """The output folder's saved run settings (config.yaml) with ``resume`` set, this
        form's device and loader workers; None (and the problem shown) if there is no run.

        Every other setting comes from the run itself: resuming with another scheduler or
        model would not fit the saved optimiser and weights. A run that has trained all its
        epochs goes on to this form's Epochs when they are more (as `--resume --epochs`).
        """
        self.clear_errors()
        folder = RunFolder(self.out.text())
        if not self.out.text() or not folder.can_resume():
            self.out.set_error(f"Nothing to resume: {folder.path} holds no run's last.pt.")
            return None
        wanted = self.epochs.value()  # before the run's own settings are shown
        done = read_run_record(folder.last)[1]
        requested: dict[str, object] = {"device": self.device.currentText(), "workers": self.workers.value()}
        try:  # as `gsmc train --resume` does: the run's own settings, this form's device and workers
            config = config_for_resume(folder.path, requested)
            if done is not None and done >= config.epochs and wanted > done:  # a finished run, longer
                config = config_for_resume(folder.path, {**requested, "epochs": wanted})
        except (GsmcError, OSError) as exc:
            self.out.set_error(f"Cannot resume: {exc}")
            return None
        self.load_config(config)
        if done is not None and done >= config.epochs:
            self.out.set_error(f"The run in {folder.path} has trained all its {done} epochs. To train "
                               f"it further, set Epochs above {done} and press Resume again.")
            return None
        return config

    def show_data_error(self, dataset: str, root: str, exc: BaseException) -> None:
        """Training labels that cannot be used (``TrainingWorker.check``): said beside the
        dataset's folder."""
        if isinstance(exc, DataError):  # names the file and what is wrong in it
            self.data_root.set_error(f"Not a {dataset} dataset: {exc}")
        else:  # unreadable, or not text
            self.data_root.set_error(f"Cannot read the {dataset} training labels in {root}: {exc}")

    def config(self) -> TrainConfig | None:
        """The settings of a new run as a TrainConfig, or None when something is wrong (each
        problem is shown beside its field). The dataset's labels are read by the run, in the
        worker thread (FER2013's pixel rows take seconds); what is wrong in them is shown
        beside the dataset's folder too (``show_data_error``)."""
        self.clear_errors()
        ok = True
        root, out, init = self.data_root.text(), self.out.text(), self.init.text()
        if not root:
            self.data_root.set_error("Choose the dataset's folder.")
            ok = False
        elif not Path(root).is_dir():
            self.data_root.set_error(f"{root}: folder not found.")
            ok = False
        problem = RunFolder(out).problem_for_new_run() if out else "Choose a folder for the run."
        if problem:
            self.out.set_error(problem)
            ok = False
        if init and not Path(init).is_file():
            self.init.set_error(f"{init}: file not found.")
            ok = False
        if not ok:
            return None
        config = TrainConfig(
            method=self.method.currentText(), dataset=self.dataset.currentText(), data_root=root,
            input_size=self.input_size.value(), output_stride=self.output_stride.currentData(),
            epochs=self.epochs.value(), batch_size=self.batch_size.value(), lr=self.lr.value(),
            weight_decay=self.weight_decay.value(), scheduler=self.scheduler.currentData(),
            lambda_kl=self.lambda_kl.value(),
            lambda_ac=self.lambda_ac.value(), ema_alpha=self.ema_alpha.value(),
            eac_lambda=self.eac_lambda.value(), noise_rate=self.noise_rate.value(),
            noise_seed=self.noise_seed.value(), init=init or None, device=self.device.currentText(),
            workers=self.workers.value(), out=out,
            limit_train=self.limit_train.value() or None, limit_eval=self.limit_eval.value() or None,
        )
        try:
            config.resolved()
        except ValueError as exc:
            self._set_error(str(exc))
            return None
        return config
