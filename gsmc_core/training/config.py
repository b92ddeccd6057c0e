"""Every setting of a training run (``TrainConfig``), each method's published defaults, and
what a resumed run may change."""

import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gsmc_core.checkpoint import read_run_record
from gsmc_core.devices import DEVICE_CHOICES
from gsmc_core.errors import GsmcError, UsageError
from gsmc_core.model import BACKBONES, OUTPUT_STRIDES
from gsmc_core.training.data.noise import NOISE_KINDS
from gsmc_core.training.data.readers import DATASETS, HOLDOUTS
from gsmc_core.training.run_folder import RunFolder

METHODS = ("gsmc", "eac", "ce")
GRAY_DATASETS = ("ferplus", "fer2013")
# How each dataset's images frame the face, as a margin around a MediaPipe face box: the crop
# metadata lets live faces be cut like training faces. FER2013/FERPlus: measured on 300 faces.
DATASET_FACE_MARGIN = {"ferplus": 0.1, "fer2013": 0.1}
# The published recipes (METHOD.md): GSMC/CE with Adam 1e-3, StepLR(10, 0.1), batch 128;
# EAC with Adam 2e-4 (ResNet-18), weight decay 1e-4, ExponentialLR(0.9), batch 32.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "gsmc": {"lr": 1e-3, "weight_decay": 0.0, "batch_size": 128, "scheduler": "step", "lr_gamma": 0.1},
    "ce": {"lr": 1e-3, "weight_decay": 0.0, "batch_size": 128, "scheduler": "step", "lr_gamma": 0.1},
    "eac": {"lr": 2e-4, "weight_decay": 1e-4, "batch_size": 32, "scheduler": "exp", "lr_gamma": 0.9},
}
SCHEDULERS = ("step", "exp", "cosine")
# The Training tab's schedule for each method: a cosine over the run for GSMC and CE (the
# published StepLR(10) leaves a run longer than 30 epochs at 1e-6 and under), EAC's own.
RECOMMENDED_SCHEDULER = {"gsmc": "cosine", "ce": "cosine", "eac": "exp"}
# GSMC/CE training augmentation: the published one, the webcam one of the shipped model's
# stages 2-3, that widened to the robustness shifts, or that with the face hidden more often and
# the whole face shown to the teachers (all batched only, so they need preload). EAC always uses
# its own published one.
AUGMENTS = ("published", "webcam", "robust", "occluded")
PRECISIONS = ("auto", "bf16", "fp32")

class TrainingError(GsmcError, RuntimeError):
    """Training cannot go on (diverged, run folder taken, nothing to resume...)."""


MAX_CONFIG_BYTES = 1_000_000  # a run's settings are a few hundred bytes
MAX_SEED = 2**31 - 1  # numpy takes seeds below 2**32; the run derives others (seed + 7919)


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about bad input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a 1 kB 'billion laughs' document expands to gigabytes,
    and no settings file needs them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in "
                                              "settings files", event.start_mark)
        return super().compose_node(parent, index)


# YAML 1.2 floats: PyYAML (YAML 1.1) reads ``lr: 1e-4`` (no dot) as the text "1e-4"
_NoAliasLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_yaml(path: Path) -> Any:
    """A settings file's YAML (at most 1 MB, no aliases); ValueError names the file."""
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UsageError(f"{path}: {path.stat().st_size} bytes is too large for a settings file")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:300]})") from exc


def _type_error(name: str, value: Any, expected: type) -> UsageError:
    words = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
    return UsageError(f"setting {name}: expected {words[expected]}, got {shown(value)}")


def check_types_and_ranges(config: "TrainConfig") -> None:
    """Every setting has its field's type (``epochs: "ten"``, ``epochs: 1.7`` and ``strict: "no"``
    are refused, not misread) and lies in its range (``RANGES``); ValueError names the setting."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kinds = [t for t in typing.get_args(hints[f.name]) if t is not type(None)] or [hints[f.name]]
        if value is None and type(None) in typing.get_args(hints[f.name]):
            continue
        expected = kinds[0]
        ok = (isinstance(value, bool) if expected is bool
              else isinstance(value, int) and not isinstance(value, bool) if expected is int
              else isinstance(value, int | float) and not isinstance(value, bool) if expected is float
              else isinstance(value, expected))
        if not ok:
            raise _type_error(f.name, value, expected)
        if f.name in RANGES:
            low, high, inclusive = RANGES[f.name]
            inside = low <= value <= high if inclusive else low < value < high
            if not inside or (isinstance(value, float) and not math.isfinite(value)):
                brackets = "[]" if inclusive else "()"
                raise UsageError(f"setting {f.name}: {shown(value)} is outside "
                                 f"{brackets[0]}{_bound(low)}, {_bound(high)}{brackets[1]}")


def _bound(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def setting(default: Any, help: str = "", range: tuple[float, float, bool] | None = None,
            choices: tuple | None = None, form: tuple[float, ...] | None = None,
            flag: bool = True) -> Any:
    """A ``TrainConfig`` field with what the CLI, the validation and the Training tab need to know
    of it: ``help``; ``range`` (lowest, highest, whether the ends are allowed) for numbers;
    ``choices``; ``form``, the Training tab's spin box (lowest, highest, step[, decimals]) where
    it has one (finite, inside ``range``; 0 may stand for "none" where the setting takes None);
    ``flag``: offered as ``gsmc train --<name>`` (cross-validation folds are `gsmc crossval`'s)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "range": range, "choices": choices, "form": form, "flag": flag})


INF = math.inf


@dataclass
class TrainConfig:
    """Every setting of a run; None means "the method's published default" (``METHOD_DEFAULTS``).
    Each field's metadata (``setting``) is the one place its help, range and choices are written."""

    method: str = setting("gsmc", "training method: gsmc, or a baseline (eac, ce)", choices=METHODS)
    dataset: str = setting("ferplus", "dataset format", choices=DATASETS)
    data_root: str = setting("", "dataset folder")
    num_classes: int | None = setting(None, "7 or 8 classes (default: the dataset's)", (7, 8, True),
                                      choices=(7, 8))
    arch: str = setting("resnet18", "backbone", choices=tuple(BACKBONES))
    input_size: int = setting(113, "input size in pixels; 16k + 1 (65, 113...) keeps the flip "
                              "consistency exact (model.mirror_exact)", (16, 1024, True), form=(33, 449, 16))
    output_stride: int = setting(16, "the backbone's output stride (16: 2x larger CAMs than 32)",
                                 choices=OUTPUT_STRIDES)
    color: str = setting("auto", "auto: gray for FERPlus/FER2013, rgb otherwise",
                         choices=("auto", "rgb", "gray"))
    epochs: int = setting(60, "epochs to train", (1, INF, True), form=(1, 1000, 1))
    batch_size: int | None = setting(None, "images per step, per process under torchrun",
                                     (1, INF, True), form=(1, 4096, 1))
    lr: float | None = setting(None, "learning rate", (0, INF, False), form=(1e-6, 1.0, 1e-4, 6))
    weight_decay: float | None = setting(None, "Adam weight decay", (0, INF, True), form=(0, 1.0, 1e-5, 6))
    scheduler: str | None = setting(None, "learning-rate schedule", choices=SCHEDULERS)
    lr_step: int = setting(10, "epochs between StepLR decays", (1, INF, True))
    lr_gamma: float | None = setting(None, "StepLR / ExponentialLR decay factor", (0, 1, True))
    lambda_kl: float = setting(0.9, "self-distillation weight", (0, INF, True), form=(0, 10.0, 0.1, 2))
    lambda_ac: float = setting(0.2, "attention consistency weight", (0, INF, True), form=(0, 10.0, 0.1, 2))
    ema_alpha: float = setting(0.999, "teacher EMA ceiling", (0, 1, True), form=(0, 0.99999, 0.001, 5))
    eac_lambda: float = setting(5.0, "EAC consistency weight", (0, INF, True), form=(0, 50.0, 0.5, 2))
    noise_rate: float = setting(0.0, "fraction of training labels flipped to another class at random",
                                (0, 1, True), form=(0, 0.9, 0.05, 2))
    noise_kind: str = setting("symmetric", "symmetric (the noise rate) or annotator: each face "
                              "labelled by one of its annotators drawn at random (FERPlus votes; "
                              "real human noise)", choices=NOISE_KINDS)
    noise_seed: int = setting(0, "seed of the label noise", (0, MAX_SEED, True), form=(0, 1_000_000, 1))
    noise_file: str | None = setting(None, "RAF-style 'name label' file of noisy labels")
    noisy_validation: bool = setting(False, "give the validation labels the same kind of noise "
                                     "(no clean oracle)")
    folds: int = setting(0, "cross-validation: with folds > 1 the run trains without fold `fold`",
                         (0, 20, True), flag=False)
    fold: int = setting(0, "the held-out fold", (0, 19, True), flag=False)
    init: str | None = setting(None, "initialisation checkpoint (see import-weights)")
    teachers: str | None = setting(None, "distil from these trained checkpoints (paths separated by "
                                   "commas): the student also learns their averaged predictions on "
                                   "each training batch, so an ensemble becomes one network")
    lambda_teachers: float = setting(1.0, "weight of the teachers' averaged predictions",
                                     (0, INF, True))
    device: str = setting("auto", "where to train", choices=DEVICE_CHOICES)
    precision: str = setting("auto", "auto: bf16 autocast on CUDA and on CPUs with native bf16, "
                             "else fp32", choices=PRECISIONS)
    threads: int | None = setting(None, "CPU threads of the training process (default: all cores)",
                                  (1, 1024, True))
    workers: int = setting(2, "data-loading processes (0: load in the training thread)", (0, 256, True),
                           form=(0, 64, 1))
    preload: bool = setting(False, "decode the images once into memory and augment whole batches "
                            "there (fast on small CPUs; FERPlus at 64 px takes 350 MB)")
    soft_labels: bool = setting(False, "train on the annotators' vote shares (FERPlus) instead of "
                                "one label")
    augment: str = setting("published", "published; webcam (always-on rotation/zoom/shift/light); or "
                           "robust (webcam + JPEG, gamma, blur, wider zoom, half the face hidden); or "
                           "occluded (robust, the face hidden more often, the teachers shown it "
                           "whole); all but published need preload", choices=AUGMENTS)
    out: str = setting("runs/run", "run folder (config, metrics, last.pt, best.pt)")
    resume: bool = setting(False, "continue the run in the run folder")
    limit_train: int | None = setting(None, "train on this many images only", (1, INF, True),
                                      form=(0, 10_000_000, 100))
    limit_eval: int | None = setting(None, "validate on this many images only", (1, INF, True),
                                     form=(0, 10_000_000, 100))
    val_fraction: float = setting(0.1, "share of the training data held out for validation where the "
                                  "dataset has no validation split", (0, 1, False))
    holdout: str = setting("hash", "how those faces are chosen: hash (by file name, so a relabelled "
                           "face moves no others) or shuffle (runs before 2026-12-01)",
                           choices=HOLDOUTS, flag=False)
    seed: int = setting(0, "seed of the run (initialisation, order, augmentation)", (0, MAX_SEED, True))
    strict: bool = setting(False, "stop on an undecodable image instead of skipping it")
    face_margin: float | None = setting(None, "margin around a detected face box when cropping "
                                        "(default: how the dataset's own crops are framed)", (0, 2, True))

    @property
    def label_noise(self) -> bool:
        """Whether the run trains on labels other than the dataset's own."""
        return self.noise_rate > 0 or bool(self.noise_file) or self.noise_kind == "annotator"

    def resolved(self) -> "TrainConfig":
        """A copy with the method defaults and the colour mode filled in, validated."""
        check_types_and_ranges(self)
        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        defaults = METHOD_DEFAULTS[self.method]
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.color == "auto":
            filled["color"] = "gray" if self.dataset in GRAY_DATASETS else "rgb"
        cfg = dataclasses.replace(self, **filled)
        if cfg.scheduler not in SCHEDULERS:
            raise UsageError(f"unknown scheduler {cfg.scheduler!r}; choose one of {SCHEDULERS}")
        if cfg.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {cfg.precision!r}; choose one of {PRECISIONS}")
        if cfg.noise_kind not in NOISE_KINDS:
            raise UsageError(f"unknown noise kind {cfg.noise_kind!r}; choose one of {', '.join(NOISE_KINDS)}")
        if cfg.noise_kind == "annotator" and (cfg.noise_rate > 0 or cfg.noise_file):
            raise UsageError("annotator noise has its own rate (how often one annotator disagrees "
                             "with the majority): leave the noise rate at 0 and give no noise file")
        if cfg.noisy_validation and not cfg.label_noise:
            raise UsageError("noisy validation gives the validation labels the run's label noise, "
                             "and this run has none: set a noise rate, kind or file, or leave it off")
        if cfg.soft_labels and cfg.label_noise:
            raise UsageError("soft labels (annotator votes) and injected label noise exclude each "
                             "other: the votes would contradict the noisy labels")
        if cfg.augment not in AUGMENTS:
            raise UsageError(f"unknown augmentation {cfg.augment!r}; choose one of {', '.join(AUGMENTS)}")
        if cfg.augment != "published" and not cfg.preload:
            raise UsageError(f"the {cfg.augment} augmentation works on preloaded batches: add preload "
                             "(--preload), or use the published augmentation")
        if cfg.teachers is not None and not teacher_paths(cfg.teachers):
            raise UsageError("teachers: give the paths of one or more checkpoints, separated by commas")
        if cfg.augment == "occluded" and (cfg.teachers is None or cfg.lambda_teachers == 0
                                          or cfg.method == "eac"):
            raise UsageError("the occluded augmentation shows the teachers the whole face that the "
                             "student sees half hidden: give teachers with a weight above 0 (and a "
                             "gsmc or ce method), or use the robust augmentation")
        if cfg.folds > 1 and not 0 <= cfg.fold < cfg.folds:
            raise UsageError(f"fold must be 0 to {cfg.folds - 1}, got {cfg.fold}")
        if cfg.color not in ("rgb", "gray"):
            raise UsageError(f"colour mode must be auto, rgb or gray, not {cfg.color!r}")
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise UsageError("epochs and batch size must be at least 1")
        if not cfg.data_root:
            raise UsageError("no dataset folder given")
        return cfg

    @classmethod
    def settings_from_yaml(cls, path: str | Path) -> dict[str, Any]:
        """The settings a YAML file gives (keys as the dataclass fields), checked by name."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a mapping of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(shown(k, 40) for k in set(data) - known)
        if unknown:
            raise UsageError(f"{path}: unknown settings {unknown}")
        return data

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """Settings from a YAML file (keys as the dataclass fields), then ``overrides``; a
        setting of the wrong type or out of range is an error naming the file."""
        settings = cls.settings_from_yaml(path)
        try:
            check_types_and_ranges(cls(**settings))
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from None
        return cls(**{**settings, **overrides})


def teacher_paths(teachers: str | None) -> list[str]:
    """The checkpoint paths a ``teachers`` setting names (commas between them)."""
    return [p.strip() for p in (teachers or "").split(",") if p.strip()]


def setting_info(name: str) -> dict[str, Any]:
    """A setting's help, range, choices and form bounds (``setting``)."""
    return dict(next(f.metadata for f in dataclasses.fields(TrainConfig) if f.name == name))


RANGES: dict[str, tuple[float, float, bool]] = {
    f.name: f.metadata["range"] for f in dataclasses.fields(TrainConfig) if f.metadata["range"]}
"""The allowed range of each numeric setting: (lowest, highest, whether the ends are allowed)."""


RESUMABLE_SETTINGS = ("epochs", "device", "workers", "lr", "threads", "data_root")
"""What a resumed run may change; everything else is the run's own (its config.yaml)."""


def _with_old_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    # runs saved before `augment` existed used the webcam augmentation on preloaded batches
    saved.setdefault("augment", "webcam" if saved.get("preload") else "published")
    saved.setdefault("holdout", "shuffle")  # and held out their validation faces by a shuffle
    return saved


def _refuse_an_edited_recipe(path: Path, saved: dict[str, Any], trained: dict[str, Any]) -> None:
    """TrainingError naming each setting of config.yaml that differs from the recipe last.pt
    was trained with (an edit between runs would change the recipe half-way and the record
    would claim it for the whole run); the settings a resume may change are free."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    free = {*RESUMABLE_SETTINGS, "out", "resume"}
    try:
        theirs = TrainConfig(**{k: v for k, v in trained.items() if k in known}).resolved()
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"{path.with_name('last.pt')}: its recipe is not valid ({exc}); the run "
                            "cannot be resumed (start a new run in another folder)") from exc
    try:
        mine = TrainConfig(**{k: v for k, v in saved.items() if k in known}).resolved()
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"{path}: {exc}; restore it, or delete it (it is rebuilt from "
                            "last.pt)") from exc
    # num_classes None (the dataset's own, as runs once saved it): a resume takes last.pt's classes
    same = {"num_classes"} if None in (mine.num_classes, theirs.num_classes) else set()
    differ = [f"{name} {getattr(theirs, name)!r} in last.pt, {getattr(mine, name)!r} in {path.name}"
              for name in sorted(known - free - same) if getattr(mine, name) != getattr(theirs, name)]
    if differ:
        raise TrainingError(
            f"{path} differs from the recipe the run was trained with: {'; '.join(differ)}. A run "
            f"continues its own recipe: restore {path.name} (or delete it: it is rebuilt from "
            "last.pt), or start a new run in another folder for new settings")


def config_for_resume(out: str | Path, requested: dict[str, Any]) -> TrainConfig:
    """The config that continues the run in ``out``: its own saved settings, with the settings
    in ``requested`` (those the user gave explicitly) applied where a resumed run may change
    them. Any other requested setting that differs from the run's raises TrainingError naming
    it, so a resumed run never drifts into another recipe, dataset or architecture."""
    folder = RunFolder(out)
    path = folder.config_file
    trained = read_run_record(folder.last)[0] if folder.last.is_file() else {}
    if path.is_file():
        try:
            saved = read_yaml(path) or {}
        except (ValueError, OSError) as exc:
            raise TrainingError(f"{exc}; the run's settings cannot be read, so it cannot be resumed "
                                f"(delete {path.name}: it is rebuilt from last.pt)") from exc
        if not saved or not isinstance(saved, dict) or not all(isinstance(k, str) for k in saved):
            raise TrainingError(f"{path}: empty or not a mapping of settings, so the run cannot be "
                                f"resumed (delete {path.name}: it is rebuilt from last.pt)")
    elif trained:  # the recipe last.pt was trained with (config.yaml is written from it)
        saved = dict(trained)
    else:
        raise TrainingError(f"{path} not found; nothing to resume in {out}")
    saved = _with_old_defaults(saved)
    if trained and path.is_file():
        _refuse_an_edited_recipe(path, saved, _with_old_defaults(dict(trained)))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    ignored = {"out", "resume"}
    changed = {k: v for k, v in requested.items()
               if k in known and k not in ignored and saved.get(k) != v}
    refused = [k for k in changed if k not in RESUMABLE_SETTINGS]
    if refused:
        differences = ", ".join(f"{k} {saved.get(k)!r} -> {changed[k]!r}" for k in refused)
        raise TrainingError(
            f"Resuming continues the run in {out} with its own settings, and these differ from "
            f"it: {differences}. A resumed run may change only {', '.join(RESUMABLE_SETTINGS)}; "
            "start a new run (another output folder) for other settings")
    settings = {k: v for k, v in saved.items() if k in known}
    return TrainConfig(**{**settings, **changed, "out": str(out), "resume": True})
