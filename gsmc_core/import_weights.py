"""Convert third-party backbone weight files into GSMC initialisation checkpoints.

Formats (METHOD.md):
- ``torchvision``: a torchvision ResNet state dict (``conv1.weight``, ``layer1.0...``, ``fc``).
- ``eac-msceleb``: EAC's ``resnet18_msceleb.pth``, ``{"state_dict": <torchvision keys>}``.
- ``gsmc-dmue``: GSMC's ``mv_epoch_17.pt``, ``{"state_dict", "epoch", "batch_id"}`` with keys
  prefixed ``feat_net.`` and an unrelated ``loss_layer.weight``.
The classifier of the source (e.g. 1000 MS-Celeb identities) is dropped: training starts a new
one for the expression classes.
"""

import os
import pickle
from pathlib import Path

import torch

from gsmc_core.checkpoint import (
    Checkpoint,
    CheckpointError,
    ModelMeta,
    check_tensors,
    load_checkpoint,
    refuse_decompression_bomb,
    save_checkpoint,
)
from gsmc_core.errors import UsageError
from gsmc_core.labels import CANONICAL_CLASSES
from gsmc_core.model import DEFAULT_INPUT_SIZE, DEFAULT_OUTPUT_STRIDE, GSMCNet

FORMATS = ("torchvision", "eac-msceleb", "gsmc-dmue")


def _read(path: Path) -> object:
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    refuse_decompression_bomb(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's text advises weights_only=False: unsafe
        raise CheckpointError(path, "is not a torch weight file, or holds objects other than tensors "
                                    "and plain values (only those are loaded, for safety)") from exc
    except Exception as exc:
        raise CheckpointError(path, f"cannot be read as a torch weight file (damaged, cut short or "
                                    f"empty; {type(exc).__name__}{f': {exc}' if str(exc) else ''})") from exc


def _backbone_state(path: Path, fmt: str) -> dict[str, torch.Tensor]:
    raw = _read(path)
    if fmt == "torchvision":
        state = raw
    else:
        if not isinstance(raw, dict) or "state_dict" not in raw:
            raise CheckpointError(path, f"has no 'state_dict' entry, so it is not a {fmt} file")
        state = raw["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(path, f"does not hold a state dict of tensors ({fmt} format)")
    if fmt == "gsmc-dmue":
        prefix = "feat_net."
        if not any(k.startswith(prefix) for k in state):
            raise CheckpointError(path, f"no keys start with {prefix!r}; is it really {fmt}?")
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}


def import_weights(
    src: str | os.PathLike,
    fmt: str,
    out: str | os.PathLike,
    arch: str = "resnet18",
    input_size: int = DEFAULT_INPUT_SIZE,
    output_stride: int = DEFAULT_OUTPUT_STRIDE,
) -> Path:
    """Write an ``init`` checkpoint with the backbone weights of ``src``; returns its path."""
    src = Path(src)
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    state = _backbone_state(src, fmt)
    expected = {k for k in GSMCNet(len(CANONICAL_CLASSES), arch, output_stride).state_dict()
                if k.startswith("backbone.")}
    # weights saved before PyTorch 0.4.1 (torchvision's ImageNet ResNets among them) have no
    # BatchNorm step counters; torch's own loader starts them at 0, and so do we
    for key in expected - state.keys():
        if key.endswith(".num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - expected)
    if missing or unexpected:
        raise CheckpointError(
            src,
            f"keys do not match a {arch} backbone ({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})",
        )
    if not 16 <= input_size <= 1024:
        raise UsageError(f"input size must be 16 to 1024 pixels, got {input_size}")
    meta = ModelMeta(
        arch=arch, classes=(), input_size=input_size, output_stride=output_stride
    )
    # the checks a checkpoint gets when it is loaded, on the source, before anything is written:
    # dtypes, shapes (before any tensor is materialised), BatchNorm variances, finite values
    check_tensors(src, meta, state)
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise CheckpointError(src, f"weights hold NaN or infinite values ({len(broken)} tensors, "
                                   f"e.g. {broken[0]}); nothing was written")
    ckpt = Checkpoint(
        meta=meta,
        state_dict=state,
        kind="init",
        train_config={"imported_from": str(src), "import_format": fmt},
    )
    ckpt.path = src
    ckpt.build_model()  # raises CheckpointError naming src if tensor shapes do not fit
    path = save_checkpoint(ckpt, out)
    load_checkpoint(path, kind="init")  # what this program writes, it can read
    return path
