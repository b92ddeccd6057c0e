"""A GSMC model as an ONNX graph (logits and CAMs as outputs) for CPU inference in ONNX Runtime.

The checkpoint's metadata travels inside the file as the ONNX metadata property ``gsmc_meta``
(JSON of ``ModelMeta``), so an exported file describes itself like a checkpoint does. The
runtime exports on first use into a per-user cache keyed by a digest of the weights and
metadata, so users never have to run ``gsmc export`` themselves.
"""

import hashlib
import json
import os
import re
import threading
import warnings
from pathlib import Path

import onnx
import platformdirs
import torch

from gsmc_core.atomic import write_atomic
from gsmc_core.checkpoint import Checkpoint, CheckpointError, ModelMeta

META_KEY = "gsmc_meta"
SOURCE_KEY = "gsmc_source_digest"
# bump when the exported graph changes (names, opset, outputs): old cache entries are then unused
EXPORT_VERSION = "1"
OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "cams")


def cache_dir() -> Path:
    """Where exported graphs are cached (``GSMC_CACHE_DIR`` overrides the per-user default)."""
    override = os.environ.get("GSMC_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("GSMC", "GSMC")) / "onnx"


def checkpoint_digest(ckpt: Checkpoint) -> str:
    """SHA-256 over the metadata, the weights (names, dtypes, shapes, bytes) and the export
    version: equal for the same model whatever file it was loaded from."""
    h = hashlib.sha256()
    h.update(f"export {EXPORT_VERSION}\n".encode())
    h.update(json.dumps(ckpt.meta.to_dict(), sort_keys=True).encode())
    for name in sorted(ckpt.state_dict):
        tensor = ckpt.state_dict[name].detach().cpu().contiguous()
        h.update(f"\n{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def export_onnx(ckpt: Checkpoint, out: str | os.PathLike) -> Path:
    """Write ``ckpt``'s network to ``out`` as ONNX (input ``image`` N x 3 x S x S float32,
    outputs ``logits`` N x C and ``cams`` N x C x h x w, batch size free). The file appears
    complete or not at all."""
    if ckpt.kind != "model":
        raise CheckpointError(ckpt.path or "checkpoint", "an initialisation checkpoint has no classifier "
                              "to export; train a model from it first")
    out = Path(out)
    model = ckpt.build_model()
    size = ckpt.meta.input_size
    example = torch.zeros(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter about its own internals
        program = torch.onnx.export(
            model, (example,), dynamo=True, verbose=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False,
        )
    graph = program.model_proto
    onnx.helper.set_model_props(graph, {
        META_KEY: json.dumps(ckpt.meta.to_dict()),
        SOURCE_KEY: checkpoint_digest(ckpt),
        "gsmc_source_file": str(ckpt.path or ""),
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    # flushed to disk before the rename: after a power cut the file is whole or absent
    return write_atomic(out, lambda f: f.write(graph.SerializeToString()), binary=True)


_export_lock = threading.Lock()


CACHE_KEEP = 6  # exported models kept (about 45 MB each for ResNet-18); older ones are removed
INT8_KEEP = 20  # int8 graphs kept (about 11 MB each): calibrated on a dataset, not remade on the fly


CACHE_NAME = re.compile(r"[0-9a-f]{32}(\.int8)?\.onnx")


def _cache_path(ckpt: Checkpoint) -> Path:
    return cache_dir() / f"{checkpoint_digest(ckpt)[:32]}.onnx"


def onnx_cached(ckpt: Checkpoint) -> bool:
    """Whether ``ckpt``'s graph is in the cache already (else the first use exports it)."""
    return _cache_path(ckpt).is_file()


def cached_onnx(ckpt: Checkpoint) -> Path:
    """The exported graph of ``ckpt`` from the cache, exporting it there first if missing.
    Threads of one process export one model once (the app's Live and Images workers load the
    same model at start); other processes may race, and the atomic write keeps that safe. The
    cache keeps the ``CACHE_KEEP`` most recently used graphs."""
    path = _cache_path(ckpt)
    with _export_lock:
        if not path.is_file():
            export_onnx(ckpt, path)
            _prune(path.parent)
        else:
            path.touch()  # recently used: kept by the pruning
    return path


def _prune(folder: Path) -> None:
    """Remove all but the ``CACHE_KEEP`` most recently used exports and, apart from them, the
    ``INT8_KEEP`` most recently used int8 graphs (``gsmc quantize``, "Use this model")."""
    # only the names the cache gives (a 32-digit digest): GSMC_CACHE_DIR may be a folder that
    # holds a person's own exports too
    graphs = sorted((p for p in folder.glob("*.onnx") if CACHE_NAME.fullmatch(p.name)),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    int8 = [p for p in graphs if p.name.endswith(".int8.onnx")]
    exports = [p for p in graphs if not p.name.endswith(".int8.onnx")]
    for old in (*exports[CACHE_KEEP:], *int8[INT8_KEEP:]):
        old.unlink(missing_ok=True)


def read_onnx_meta(path: str | os.PathLike) -> ModelMeta:
    """The ``ModelMeta`` stored in an exported file; CheckpointError if it has none."""
    if not Path(path).is_file():
        raise CheckpointError(path, "file not found")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # missing file, not protobuf, truncated: all unreadable
        raise CheckpointError(path, f"cannot be read as an ONNX model ({type(exc).__name__})") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise CheckpointError(path, "is an ONNX model without GSMC metadata; export it with `gsmc export`")
    try:
        meta = ModelMeta.from_dict(json.loads(props[META_KEY]))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CheckpointError(path, f"its GSMC metadata is invalid ({str(exc)[:200]})") from exc
    _check_graph_fits_meta(path, model, meta)
    return meta


def _check_graph_fits_meta(path: str | os.PathLike, model: onnx.ModelProto, meta: ModelMeta) -> None:
    """The graph's input size and number of classes are the ones its metadata names (a file
    whose metadata says 112 px on a 64-px graph, or 3 classes on an 8-class one, is refused)."""
    def dims(value) -> list[int | None]:
        return [d.dim_value if d.HasField("dim_value") else None
                for d in value.type.tensor_type.shape.dim]

    inputs = {i.name: dims(i) for i in model.graph.input}
    outputs = {o.name: dims(o) for o in model.graph.output}
    image, logits = inputs.get(INPUT_NAME), outputs.get(OUTPUT_NAMES[0])
    if image is None or logits is None or OUTPUT_NAMES[1] not in outputs:
        raise CheckpointError(path, f"is not a GSMC graph (needs input {INPUT_NAME!r} and outputs "
                                    f"{', '.join(OUTPUT_NAMES)})")
    size = meta.input_size
    if len(image) != 4 or image[2:] not in ([size, size], [None, None]):
        raise CheckpointError(path, f"its metadata says {size} px input, but the graph takes "
                                    f"{image[2:]}")
    if len(logits) != 2 or logits[1] not in (len(meta.classes), None):
        raise CheckpointError(path, f"its metadata names {len(meta.classes)} classes, but the graph "
                                    f"has {logits[1:]} outputs")
