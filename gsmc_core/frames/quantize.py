"""int8 inference on the CPU: a model's exported graph quantised with ONNX Runtime's own static
quantisation (QDQ format, int8 weights per output channel, uint8 activations whose ranges are
calibrated on real faces of a dataset's validation split: each tensor's range is the mean of its
per-batch minima and maxima, not the extremes of one batch, so a few outlying faces do not
coarsen the steps every face is rounded to).

An int8 graph carries its checkpoint's metadata and digest like the fp32 export, and lives in
the same per-user cache (``<digest>.int8.onnx``); the shipped default model comes with its own
(``assets/models/gsmc_default.int8.onnx``, built by ``gsmc quantize`` on FERPlus validation
faces). Calibration needs faces, so a graph is made only when asked for (``gsmc quantize``):
predictors use it when it exists (``precision="auto"``) and fp32 otherwise. Accuracy, agreement
with fp32 and CAM correlation are in docs/performance.md.
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx

from gsmc_core.atomic import write_atomic
from gsmc_core.checkpoint import Checkpoint
from gsmc_core.frames.onnx_export import (
    INPUT_NAME,
    META_KEY,
    SOURCE_KEY,
    cache_dir,
    cached_onnx,
    checkpoint_digest,
)
from gsmc_core.resources import asset_path

PRECISIONS = ("auto", "fp32", "int8")
PRECISION_KEY = "gsmc_precision"
CALIBRATION_KEY = "gsmc_calibration"  # how the activation ranges were set, and on how many faces
RANGES = "mean of per-batch min/max"  # ONNX Runtime's CalibMovingAverage
SHIPPED_INT8 = asset_path("models", "gsmc_default.int8.onnx")


def int8_cache_path(ckpt: Checkpoint) -> Path:
    return cache_dir() / f"{checkpoint_digest(ckpt)[:32]}.int8.onnx"


def _props(path: str | os.PathLike) -> dict[str, str]:
    model = onnx.load_model(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def source_digest(path: str | os.PathLike) -> str | None:
    """The checkpoint digest an exported graph was made from (None if it names none)."""
    return _props(path).get(SOURCE_KEY)


def graph_precision(path: str | os.PathLike) -> str:
    """"int8" for a graph ``quantize_int8`` wrote, "fp32" for any other export."""
    return _props(path).get(PRECISION_KEY, "fp32")


def graph_calibration(path: str | os.PathLike) -> dict | None:
    """How an int8 graph's activation ranges were calibrated (None for graphs that do not say)."""
    value = _props(path).get(CALIBRATION_KEY)
    return json.loads(value) if value else None


def int8_graph(ckpt: Checkpoint) -> Path | None:
    """``ckpt``'s int8 graph: in the cache, or shipped with the default model; None when there
    is none (``gsmc quantize`` makes one)."""
    cached = int8_cache_path(ckpt)
    if cached.is_file():
        with contextlib.suppress(OSError):  # a read-only cache is still used
            cached.touch()  # recently used: kept by the cache's pruning
        return cached
    if SHIPPED_INT8.is_file() and source_digest(SHIPPED_INT8) == checkpoint_digest(ckpt):
        return SHIPPED_INT8
    return None


def quantize_int8(ckpt: Checkpoint, calibration: list[npt.NDArray[np.float32]],
                  out: str | os.PathLike | None = None) -> Path:
    """Write ``ckpt``'s int8 graph to ``out`` (default: the cache, where predictors find it),
    calibrated on ``calibration`` batches (``training.data.preload.calibration_faces`` gives a
    dataset's); the file appears complete or not at all."""
    # imported here, not with the module: inference never needs it, and in a PyInstaller bundle
    # it cannot be imported (onnxruntime.transformers puts its own folder on sys.path)
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration)

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    out = Path(out) if out is not None else int8_cache_path(ckpt)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize.") as tmp:
        prepared, quantized = Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        quant_pre_process(str(cached_onnx(ckpt)), str(prepared))  # shapes and folding first
        quantize_static(str(prepared), str(quantized), Batches(),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        extra_options={"CalibMovingAverage": True})
        graph = onnx.load_model(str(quantized))
        onnx.helper.set_model_props(graph, {META_KEY: json.dumps(ckpt.meta.to_dict()),
                                            SOURCE_KEY: checkpoint_digest(ckpt),
                                            PRECISION_KEY: "int8",
                                            CALIBRATION_KEY: json.dumps({
                                                "ranges": RANGES, "faces": sum(len(b) for b in calibration)}),
                                            "gsmc_source_file": str(ckpt.path or "")})
        # flushed to disk before the rename: after a power cut the file is whole or absent
        return write_atomic(out, lambda f: f.write(graph.SerializeToString()), binary=True)
