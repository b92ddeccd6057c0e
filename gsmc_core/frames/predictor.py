"""Predictor: face crops in, expression probabilities and CAM heatmaps out.

The preprocessing comes from the checkpoint's metadata (input size, colour mode, mean/std):
it is the only copy of the inference preprocessing in the project. The network runs in one of
two runtimes: the exported graph in ONNX Runtime on the CPU (about twice as fast as torch eager
per face, and one thread that does not spin, so a busy neighbour costs it little), or torch on
a GPU.
"""

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from gsmc_core.checkpoint import Checkpoint, CheckpointError, ModelMeta, load_checkpoint
from gsmc_core.devices import resolve_device
from gsmc_core.errors import UsageError
from gsmc_core.frames.onnx_export import INPUT_NAME, OUTPUT_NAMES, cached_onnx, onnx_cached, read_onnx_meta
from gsmc_core.frames.quantize import PRECISIONS, graph_precision, int8_graph
from gsmc_core.frames.render import scale_cam
from gsmc_core.model import GSMCNet
from gsmc_core.preprocess import prepare_image
from gsmc_core.resources import DEFAULT_CHECKPOINT

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "torch")
DEFAULT_THREADS = 1  # see docs/performance.md: two threads collapse when another program is busy


class Runtime(Protocol):
    """Runs the network: a normalised N x 3 x S x S float32 batch to (logits, cams) arrays."""

    name: str
    device: torch.device

    def run(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        ...


class TorchRuntime:
    """The network in torch (GPUs, and the CPU when asked), under ``inference_mode``."""

    name = "torch"

    def __init__(self, model: GSMCNet, device: torch.device) -> None:
        self.device = device
        self._memory_format = torch.channels_last if device.type == "cpu" else torch.preserve_format
        self.model = model.to(device, memory_format=self._memory_format).eval()

    def run(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=self._memory_format)
        with torch.inference_mode():
            logits, cams = self.model(x)
            return logits.float().cpu().numpy(), cams.float().cpu().numpy()


class OnnxRuntime:
    """The exported graph in ONNX Runtime on the CPU with ``threads`` threads that sleep rather
    than spin when idle (spinning threads fight any other busy program for the cores)."""

    name = "onnx"
    device = torch.device("cpu")

    def __init__(self, path: str | os.PathLike, threads: int = DEFAULT_THREADS,
                 precision: str = "fp32") -> None:
        if threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        self.path = Path(path)
        self.threads = threads
        self.precision = precision  # "fp32", or "int8" for a quantised graph
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        logits, cams = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return logits, cams


def make_runtime(ckpt: Checkpoint, device: str | torch.device = "auto", backend: str = "auto",
                 threads: int = DEFAULT_THREADS, precision: str = "auto") -> Runtime:
    """The runtime for ``ckpt``: "auto" is ONNX Runtime on the CPU and torch elsewhere; on the
    CPU, precision "auto" runs the model's int8 graph when it has one (``quantize.int8_graph``)
    and the fp32 export otherwise."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if threads < 1:  # checked here: an argument error must not look like a damaged cache entry
        raise UsageError(f"threads must be >= 1, got {threads}")
    if device == "auto" and (backend == "onnx" or precision == "int8"):
        device = "cpu"  # what was asked for runs on the CPU only (also on a GPU machine)
    dev = resolve_device(device) if isinstance(device, str) else device
    if backend == "onnx" and dev.type != "cpu":
        raise UsageError(f"the onnx backend runs on the CPU only, not on {dev}; "
                         "use --device cpu or --backend torch")
    if precision == "int8" and (backend == "torch" or dev.type != "cpu"):
        raise UsageError("int8 runs in ONNX Runtime on the CPU: use --device cpu and the onnx "
                         "backend, or --precision fp32")
    if backend == "onnx" or precision == "int8":
        return _onnx_runtime(ckpt, threads, precision)
    if backend == "auto" and dev.type == "cpu":
        try:
            return _onnx_runtime(ckpt, threads, precision)
        except Exception as exc:  # ONNX Runtime is a speed-up: a model it cannot take still runs
            log.warning("running %s in torch: the ONNX export or session failed (%s: %s)",
                        ckpt.path or "the model", type(exc).__name__, exc)
    return TorchRuntime(ckpt.build_model(), dev)


def ready_without_export(ckpt: Checkpoint) -> bool:
    """Whether a CPU predictor for ``ckpt`` starts at once: it has an int8 graph or a cached
    fp32 export (else the first one exports the model, seconds)."""
    return int8_graph(ckpt) is not None or onnx_cached(ckpt)


def _onnx_runtime(ckpt: Checkpoint, threads: int, precision: str) -> "OnnxRuntime":
    """The int8 graph when asked for or (``auto``) when there is one, else the fp32 export."""
    if precision != "fp32":
        path = int8_graph(ckpt)
        if path is not None:
            try:
                return OnnxRuntime(path, threads, precision="int8")
            except Exception as exc:
                if precision == "int8":
                    raise CheckpointError(path, f"ONNX Runtime cannot load this int8 graph "
                                          f"({type(exc).__name__}); make it again with `gsmc "
                                          "quantize`") from exc
                log.warning("%s: cannot be loaded (%s); running fp32", path, type(exc).__name__)
        elif precision == "int8":
            raise UsageError(f"{ckpt.path or 'this model'} has no int8 graph yet: make one with "
                             "`gsmc quantize --checkpoint CKPT --dataset NAME --data-root DIR` "
                             "(calibrated on that dataset's validation faces)")
    return _cached_runtime(ckpt, threads)


def _cached_runtime(ckpt: Checkpoint, threads: int) -> OnnxRuntime:
    """ONNX Runtime on the cached export. The cache is not trusted as it is: a file the session
    cannot read (truncated by a full disk) or whose outputs differ from the checkpoint's own
    network on a probe batch (a damaged or altered graph that still loads) is exported again."""
    path = cached_onnx(ckpt)
    try:
        runtime = OnnxRuntime(path, threads)
        problem = _differs_from_checkpoint(runtime, ckpt)
    except Exception as exc:
        problem = f"cannot be loaded ({type(exc).__name__})"
    if problem is None:
        return runtime
    log.warning("%s: %s; exporting it again", path, problem)
    path.unlink(missing_ok=True)
    return OnnxRuntime(cached_onnx(ckpt), threads)


def _differs_from_checkpoint(runtime: OnnxRuntime, ckpt: Checkpoint) -> str | None:
    """Why the graph does not compute the checkpoint's network, or None when it does (logits
    and CAMs of a fixed random batch of two, to float tolerance)."""
    size = ckpt.meta.input_size
    probe = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.inference_mode():
        want_logits, want_cams = ckpt.build_model()(torch.from_numpy(probe))
    logits, cams = runtime.run(probe)
    for name, got, want in (("logits", logits, want_logits), ("CAMs", cams, want_cams)):
        want = want.numpy()
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max()):
            return f"its {name} differ from the checkpoint's network"
    return None


@dataclass(frozen=True)
class Prediction:
    """One face: probabilities over ``classes``, the winning label and a CAM heatmap.

    ``heatmap`` is the CAM of ``cam_class`` upsampled to the crop size, scaled to [0, 1];
    ``cams`` are the raw low-resolution CAMs of every class (C x h x w) for CAM grids.
    """

    probabilities: npt.NDArray[np.float32]
    index: int
    label: str
    cam_class: int
    heatmap: npt.NDArray[np.float32]
    cams: npt.NDArray[np.float32]

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.index])


def softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Row-wise softmax in float32, stable for large logits."""
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Predictor:
    """Classifies face crops with a ``Runtime``, batched; preprocessing from ``meta``.
    ``tta``: each crop is also run mirrored, and logits and CAMs (flipped back) averaged."""

    def __init__(self, runtime: Runtime, meta: ModelMeta, tta: bool = False) -> None:
        self.runtime = runtime
        self.meta = meta
        self.tta = tta
        self.classes = meta.classes
        self._mean = (np.asarray(meta.mean, np.float32) * 255.0).reshape(1, 3, 1, 1)
        self._inv_std = 1.0 / (np.asarray(meta.std, np.float32) * 255.0).reshape(1, 3, 1, 1)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def backend(self) -> str:
        return self.runtime.name

    @property
    def precision(self) -> str:
        """"int8" for a quantised graph in ONNX Runtime, else "fp32"."""
        return getattr(self.runtime, "precision", "fp32")

    @property
    def summary(self) -> str:
        """Where and how the model runs, as the app's status bar says it: "cpu · int8", and
        "cpu · int8 · mirror-averaged" with ``tta``."""
        return f"{self.device.type} · {self.precision}{' · mirror-averaged' if self.tta else ''}"

    @classmethod
    def for_checkpoint(cls, ckpt: Checkpoint, device: str | torch.device = "auto", backend: str = "auto",
                       threads: int = DEFAULT_THREADS, precision: str = "auto") -> "Predictor":
        """A predictor for a loaded checkpoint (CPU: its int8 graph when it has one, else
        exported to ONNX once, then cached)."""
        return cls(make_runtime(ckpt, device, backend, threads, precision), ckpt.meta)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, device: str = "auto",
                        backend: str = "auto", threads: int = DEFAULT_THREADS,
                        precision: str = "auto") -> "Predictor":
        """A predictor for a checkpoint file (None: the shipped default model), or for an ONNX
        file written by `gsmc export`."""
        path = DEFAULT_CHECKPOINT if path is None else path
        if Path(path).suffix.lower() == ".onnx":
            # "auto" means the CPU here: ONNX Runtime runs the file (a GPU machine included)
            if backend == "torch" or (device != "auto" and resolve_device(device).type != "cpu"):
                raise UsageError(f"{path}: an ONNX model runs on the CPU in ONNX Runtime; "
                                 "give the .pt checkpoint for torch or a GPU")
            meta = read_onnx_meta(path)  # names the file when it is missing or not a GSMC export
            held = graph_precision(path)
            if precision not in ("auto", held):  # the file's weights are what they are
                raise UsageError(f"{path}: this ONNX file holds the {held} model, not {precision}; "
                                 "give --precision auto, or the .pt checkpoint for another precision")
            try:
                runtime = OnnxRuntime(path, threads, held)
            except Exception as exc:  # onnxruntime's own errors carry no hint of what to do
                raise CheckpointError(path, f"ONNX Runtime cannot load it ({type(exc).__name__}); "
                                      "export it again with `gsmc export`") from exc
            return cls(runtime, meta)
        return cls.for_checkpoint(load_checkpoint(path), device, backend, threads, precision)

    def preprocess(
        self, crops: Sequence[npt.NDArray[np.uint8]], bgr: bool = False
    ) -> npt.NDArray[np.float32]:
        """uint8 crops (H x W x 3, or H x W grayscale) to a normalised N x 3 x S x S batch."""
        size = self.meta.input_size
        batch = np.empty((len(crops), size, size, 3), dtype=np.uint8)
        for i, crop in enumerate(crops):
            if bgr and crop.ndim == 3:
                crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
            batch[i] = prepare_image(crop, self.meta)
        x = batch.transpose(0, 3, 1, 2).astype(np.float32)
        return np.ascontiguousarray((x - self._mean) * self._inv_std)

    def predict(
        self,
        crops: Sequence[npt.NDArray[np.uint8]],
        bgr: bool = False,
        cam_class: int | str | None = None,
        cam_scale: str = "map",
    ) -> list[Prediction]:
        """Classify face crops (RGB by default; ``bgr=True`` for OpenCV frames).

        ``cam_class``: the class whose heatmap is returned (index or name); None = predicted.
        ``cam_scale``: how the heatmap is scaled (``render.CAM_SCALES``).
        """
        if len(crops) == 0:
            return []
        for i, crop in enumerate(crops):
            if crop.dtype != np.uint8 or crop.ndim not in (2, 3) or min(crop.shape[:2]) < 1:
                raise ValueError(
                    f"crop {i}: expected a non-empty uint8 image, got {crop.dtype} {crop.shape}"
                )
        wanted = self.class_index(cam_class)
        batch = self.preprocess(crops, bgr)
        if self.tta:
            n = len(batch)
            logits, cams_np = self.runtime.run(np.concatenate([batch, batch[..., ::-1]]))
            logits = (logits[:n] + logits[n:]) / 2
            cams_np = (cams_np[:n] + cams_np[n:, :, :, ::-1]) / 2
        else:
            logits, cams_np = self.runtime.run(batch)
        probs = softmax(logits)
        if not np.isfinite(probs).all():  # never "nan %" on screen or in a file
            raise ValueError("the model gave no valid probabilities for these faces (NaN or "
                             "infinite outputs): its weights or ONNX graph are damaged; open the "
                             "checkpoint again or export it again")
        results = []
        for crop, p, cam in zip(crops, probs, cams_np, strict=True):
            index = int(p.argmax())
            c = index if wanted is None else wanted
            results.append(
                Prediction(
                    probabilities=p,
                    index=index,
                    label=self.classes[index],
                    cam_class=c,
                    heatmap=scale_cam(cam, c, (crop.shape[1], crop.shape[0]), cam_scale),
                    cams=cam,
                )
            )
        return results

    def class_index(self, cam_class: int | str | None) -> int | None:
        """The index of a class given by name or index, checked against the model's classes
        (UsageError names them); None stays None (each face's own prediction)."""
        if cam_class is None:
            return None
        if isinstance(cam_class, str):
            if cam_class not in self.classes:
                raise UsageError(f"unknown class {cam_class!r}; classes: {', '.join(self.classes)}")
            return self.classes.index(cam_class)
        if not 0 <= cam_class < len(self.classes):
            raise UsageError(f"class index {cam_class} out of range 0..{len(self.classes) - 1}")
        return int(cam_class)
