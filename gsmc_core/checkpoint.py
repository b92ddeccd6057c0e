"""Self-describing checkpoints: weights plus everything needed to use them.

One format for every file the project writes (trained models, run folders' last/best, imported
initialisations). Writes are atomic; loading never unpickles code (``weights_only=True``).
"""

import datetime
import math
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from gsmc_core import __version__
from gsmc_core.atomic import write_atomic
from gsmc_core.errors import GsmcError
from gsmc_core.model import BACKBONES, OUTPUT_STRIDES, GSMCNet

FORMAT_NAME = "gsmc-checkpoint"
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CheckpointError(GsmcError, ValueError):
    """A checkpoint file is missing, unreadable or does not fit what was asked of it."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class MetaError(GsmcError, ValueError):
    """A metadata field of a checkpoint is missing, of the wrong type or out of range."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"metadata field {field_name}: {problem}")


def _checked(d: dict, name: str, kind: type, low: float | None = None, high: float | None = None,
             where: str = ""):
    value = d.get(name)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise MetaError(where + name, f"expected {kind.__name__}, got {value!r:.40}")
    if kind is float and not math.isfinite(value):
        raise MetaError(where + name, f"not a finite number ({value})")
    if low is not None and not low <= value <= high:
        raise MetaError(where + name, f"{value} is outside {low:g}-{high:g}")
    return value


def _triple(d: dict, name: str, low: float, high: float) -> tuple[float, float, float]:
    value = d.get(name)
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise MetaError(name, f"expected 3 numbers (one per channel), got {value!r:.40}")
    return tuple(_checked({name: v}, name, float, low, high) for v in value)


@dataclass(frozen=True)
class FaceCrop:
    """How faces were framed for training, so inference crops look the same.

    ``margin`` is added on every side as a fraction of the detected box's size; ``square``
    expands the box to a square around its centre; ``align`` rotates so the eyes are level.
    """

    # 0.1: a MediaPipe box grown by 10 % per side matches the FER2013/FERPlus 48x48 crops
    # (measured: crop side / short-range box side, median 1.17-1.20 over 300 FERPlus faces)
    margin: float = 0.1
    square: bool = True
    align: bool = False


@dataclass(frozen=True)
class ModelMeta:
    """Everything about a model that is not its weights."""

    arch: str
    classes: tuple[str, ...]
    input_size: int
    output_stride: int
    color: str = "rgb"  # "rgb" or "gray" (grayscale replicated to 3 channels)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    face_crop: FaceCrop = field(default_factory=FaceCrop)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelMeta":
        """The metadata a checkpoint holds, every field checked: MetaError names the field."""
        if not isinstance(d, dict):
            raise MetaError("meta", f"expected a mapping, got {type(d).__name__}")
        for name in ("arch", "classes", "input_size", "output_stride", "color", "mean", "std",
                     "face_crop"):
            if name not in d:
                raise MetaError(name, "missing")
        classes = d["classes"]
        if not isinstance(classes, list | tuple) or not all(isinstance(c, str) and c for c in classes):
            raise MetaError("classes", f"expected a list of class names, got {classes!r:.80}")
        if len(set(classes)) != len(classes):
            raise MetaError("classes", f"names repeat: {classes}")
        crop = d["face_crop"]
        if not isinstance(crop, dict) or set(crop) - {"margin", "square", "align"}:
            raise MetaError("face_crop", f"expected margin, square and align, got {crop!r:.80}")
        meta = cls(
            arch=_checked(d, "arch", str),
            classes=tuple(classes),
            input_size=_checked(d, "input_size", int, low=16, high=1024),
            output_stride=_checked(d, "output_stride", int),
            color=_checked(d, "color", str),
            mean=_triple(d, "mean", low=0.0, high=1.0),
            std=_triple(d, "std", low=1e-3, high=10.0),
            face_crop=FaceCrop(
                margin=_checked(crop, "margin", float, low=0.0, high=2.0, where="face_crop."),
                square=_checked(crop, "square", bool, where="face_crop."),
                align=_checked(crop, "align", bool, where="face_crop."),
            ) if crop else FaceCrop(),
        )
        if meta.color not in ("rgb", "gray"):
            raise MetaError("color", f"must be rgb or gray, not {meta.color!r:.40}")
        return meta

    def build_model(self) -> GSMCNet:
        # an "init" checkpoint names no classes yet: give it a 1-class head that is never loaded
        num_classes = max(len(self.classes), 1)
        return GSMCNet(num_classes, arch=self.arch, output_stride=self.output_stride)


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``kind`` is "model" (a full classifier) or "init" (backbone only)."""

    meta: ModelMeta
    state_dict: dict[str, torch.Tensor]
    kind: str = "model"
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] | None = None
    created: str = ""
    package_version: str = __version__
    path: Path | None = None

    def build_model(self) -> GSMCNet:
        """A GSMCNet with these weights in float32, in eval mode."""
        model = self.meta.build_model()
        state = {k: v.float() if v.is_floating_point() else v for k, v in self.state_dict.items()}
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # tensor shapes of another architecture
            raise CheckpointError(
                self.path or "checkpoint",
                f"weights do not fit a {self.meta.arch} ({str(exc).splitlines()[1].strip()})",
            ) from exc
        if self.kind == "init":  # an initialisation has no classifier yet
            missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise CheckpointError(
                self.path or "checkpoint",
                f"weights do not fit a {self.meta.arch} with {len(self.meta.classes)} classes "
                f"(missing {len(missing)} keys, e.g. {missing[:2]}; "
                f"unexpected {len(unexpected)}, e.g. {unexpected[:2]})",
            )
        return model.eval()


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays made Python numbers and lists, which a safe
    (weights-only) load accepts; it refuses numpy objects."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if hasattr(value, "tolist") and not isinstance(value, torch.Tensor):  # numpy scalar or array
        return value.tolist()
    return value


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike, half: bool = False) -> Path:
    """Write atomically: a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
        for k, v in ckpt.state_dict.items()
    }
    payload: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": ckpt.kind,
        "meta": ckpt.meta.to_dict(),
        "train_config": _plain(ckpt.train_config),
        "metrics": _plain(ckpt.metrics),
        "created": ckpt.created or datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "package_version": __version__,
        "state_dict": state,
    }
    if ckpt.training_state is not None:
        payload["training_state"] = ckpt.training_state
    return write_atomic(path, lambda f: torch.save(payload, f), binary=True)


WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) and all(isinstance(k, str) for k in value) else {}


def refuse_decompression_bomb(path: Path) -> None:
    """torch.save writes its records uncompressed; a zip whose records would expand far beyond
    the file (a 22 MB file holding 4 GB) is refused before anything is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip (an old torch format, or garbage that torch.load refuses)
    limit = 2 * path.stat().st_size + (1 << 20)
    if declared > limit:
        raise CheckpointError(path, f"its records declare {declared / 1e6:.0f} MB uncompressed in a "
                                    f"{path.stat().st_size / 1e6:.0f} MB file; refused (a damaged or "
                                    "hostile file)")


def check_tensors(path: Path, meta: ModelMeta, state: dict[str, torch.Tensor]) -> None:
    """Before any tensor is used (or materialised): floating-point weights of the architecture's
    own shapes (an expanded view declaring 10^12 elements is refused here, not allocated), and
    BatchNorm variances that are not negative."""
    expected = {k: v.shape for k, v in meta.build_model().state_dict().items()}
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        if tensor.dtype not in WEIGHT_DTYPES:
            raise CheckpointError(path, f"tensor {name[:80]} has dtype {tensor.dtype}; weights must "
                                        "be floating point (float16/32/64 or bfloat16)")
        want = expected.get(name)
        if name in ("fc.weight", "fc.bias"):  # the classifier: any number of classes, up to 1000
            want = (min(tensor.shape[0], 1000) if tensor.dim() else -1, *want[1:])
        if want is not None and tuple(tensor.shape) != tuple(want):
            raise CheckpointError(path, f"tensor {name} has shape {tuple(tensor.shape)}, but a "
                                        f"{meta.arch} needs {tuple(want)}")
        if want is None and tensor.numel() > 50_000_000:
            raise CheckpointError(path, f"tensor {name[:80]} declares {tensor.numel():,} values, "
                                        "more than any layer of the supported networks")
        if name.endswith("running_var") and bool((tensor < 0).any()):
            raise CheckpointError(path, f"{name}: a BatchNorm variance is negative; the model "
                                        "would predict NaN")


def read_run_record(path: str | os.PathLike) -> tuple[dict[str, Any], int | None]:
    """A run's last.pt's recipe (``train_config``) and the epochs it holds, read without
    loading its tensors (memory-mapped); ``({}, None)`` when the file cannot be read that way
    (``load_checkpoint`` then says why)."""
    try:
        refuse_decompression_bomb(Path(path))
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # damaged, cut short, or not a zip-format checkpoint
        return {}, None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        return {}, None
    state = payload.get("training_state")
    epoch = state.get("epoch") if isinstance(state, dict) else None
    return _mapping(payload.get("train_config")), epoch if isinstance(epoch, int) else None


def _is_onnx_graph(path: Path) -> bool:
    """Whether ``path`` parses as an ONNX model (only asked of files torch cannot load)."""
    import onnx  # only here: a failed load is rare, and onnx is slow to import

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # any failure means "not a graph"
        return False
    return len(model.graph.node) > 0


def load_checkpoint(
    path: str | os.PathLike,
    expect_classes: int | None = None,
    kind: str | None = "model",
) -> Checkpoint:
    """Load and validate a checkpoint; every problem raises CheckpointError naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "file not found")
    if not path.is_file():
        raise CheckpointError(path, "is not a file")
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        raise CheckpointError(path, "is a web page, not a model: the download saved the page "
                                    "instead of the file. Download the file itself again")
    refuse_decompression_bomb(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        if _is_onnx_graph(path):
            raise CheckpointError(path, "is an ONNX graph (made by `gsmc export` or `gsmc quantize`), "
                                        "not a checkpoint: give the .pt checkpoint it was made from "
                                        "(`gsmc predict` and the app also run the graph)") from exc
        raise CheckpointError(
            path, "cannot be opened as a model: the file is damaged or cut short, is not a "
            "PyTorch file, or holds program code besides weights (refused for your safety) "
            f"[{type(exc).__name__}]"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(
            path,
            "is not a GSMC checkpoint; third-party weights must first be converted with "
            "`gsmc import-weights`",
        )
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(path, f"format version {str(version)[:40]!r} is not valid (a whole "
                                    f"number from 1 to {FORMAT_VERSION} is expected): damaged file?")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            path, f"format version {version} is newer than this program supports ({FORMAT_VERSION})"
        )
    try:
        meta = ModelMeta.from_dict(payload.get("meta"))
    except MetaError as exc:
        raise CheckpointError(path, str(exc)) from exc
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(path, "state_dict is not a mapping of names to tensors")
    if meta.arch not in BACKBONES:
        raise CheckpointError(
            path, f"unknown architecture {meta.arch!r} (known: {', '.join(BACKBONES)})"
        )
    if meta.output_stride not in OUTPUT_STRIDES:
        raise CheckpointError(path, f"unsupported output stride {meta.output_stride}")
    check_tensors(path, meta, state)
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise CheckpointError(path, f"weights hold NaN or infinite values ({len(broken)} tensors, "
                                    f"e.g. {broken[0]}); the model is unusable")
    ckpt_kind = payload.get("kind", "model")
    if kind is not None and ckpt_kind != kind:
        raise CheckpointError(path, f"is a {ckpt_kind!r} checkpoint, but a {kind!r} one is needed")
    if ckpt_kind == "model":
        fc = state.get("fc.weight")
        if fc is None or fc.shape[0] != len(meta.classes):
            rows = None if fc is None else fc.shape[0]
            raise CheckpointError(
                path,
                f"classifier has {rows} outputs but the metadata names {len(meta.classes)} classes",
            )
        if expect_classes is not None and len(meta.classes) != expect_classes:
            raise CheckpointError(
                path, f"has {len(meta.classes)} classes, but {expect_classes} are needed here"
            )
    ckpt = Checkpoint(
        meta=meta,
        state_dict=state,
        kind=ckpt_kind,
        # informative records: anything but a mapping is dropped rather than trusted
        train_config=_mapping(payload.get("train_config")),
        metrics=_mapping(payload.get("metrics")),
        training_state=payload.get("training_state"),
        created=payload.get("created", ""),
        package_version=payload.get("package_version", ""),
        path=path,
    )
    ckpt.build_model()  # validates that the weights fit the architecture
    return ckpt
