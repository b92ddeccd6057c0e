"""int8 inference: the shipped default model's int8 graph against its fp32 export on real FERPlus
test faces, quantising a model into the cache, and how a predictor picks its precision."""

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch

from gsmc_core.checkpoint import load_checkpoint
from gsmc_core.cli import main
from gsmc_core.errors import UsageError
from gsmc_core.frames import predictor as predictor_module
from gsmc_core.frames.onnx_export import INPUT_NAME, checkpoint_digest, read_onnx_meta
from gsmc_core.frames.predictor import OnnxRuntime, Predictor
from gsmc_core.frames.quantize import (
    RANGES,
    SHIPPED_INT8,
    graph_calibration,
    graph_precision,
    int8_graph,
    quantize_int8,
    source_digest,
)
from gsmc_core.resources import DEFAULT_CHECKPOINT
from gsmc_core.training.data.preload import CALIBRATION_FACES, MemoryLoader, calibration_faces, preload_split
from gsmc_core.training.data.readers import read_split


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GSMC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_shipped_int8_graph_matches_fp32_on_real_test_faces(cache, ferplus_root):
    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    assert source_digest(SHIPPED_INT8) == checkpoint_digest(ckpt)  # made from the shipped weights
    assert int8_graph(ckpt) == SHIPPED_INT8 and graph_precision(SHIPPED_INT8) == "int8"
    # built as `gsmc quantize` builds today, on as many faces (docs/performance.md: the parity)
    assert graph_calibration(SHIPPED_INT8) == {"ranges": RANGES, "faces": CALIBRATION_FACES}
    int8 = Predictor.for_checkpoint(ckpt, device="cpu")  # auto: the int8 graph
    fp32 = Predictor.for_checkpoint(ckpt, device="cpu", precision="fp32")
    assert (int8.precision, fp32.precision) == ("int8", "fp32")
    split = read_split("ferplus", ferplus_root, "test").subset(400, 0)
    logits, cams, labels = {}, {}, []
    for batch in MemoryLoader(preload_split(split, ckpt.meta), ckpt.meta, 100):
        labels.append(batch.labels.numpy())
        for name, predictor in (("int8", int8), ("fp32", fp32)):
            out = predictor.runtime.run(batch.images.numpy())
            logits.setdefault(name, []).append(out[0])
            cams.setdefault(name, []).append(out[1])
    labels = np.concatenate(labels)
    a, b = (np.concatenate(logits[n]) for n in ("fp32", "int8"))
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.98
    # 400 faces: a few of them either way (the full test set: docs/performance.md)
    assert abs((a.argmax(1) == labels).mean() - (b.argmax(1) == labels).mean()) <= 0.015
    predicted = a.argmax(1)
    ca, cb = (np.concatenate(cams[n])[np.arange(len(predicted)), predicted].reshape(len(predicted), -1)
              for n in ("fp32", "int8"))
    correlation = [np.corrcoef(x, y)[0, 1] for x, y in zip(ca, cb, strict=True)]
    assert min(correlation) >= 0.95 and np.mean(correlation) >= 0.99


@pytest.mark.slow
def test_a_quantised_model_goes_to_the_cache_and_is_used_by_default(cache, ferplus_root, random_checkpoint):
    ckpt = load_checkpoint(random_checkpoint)
    assert int8_graph(ckpt) is None
    assert Predictor.for_checkpoint(ckpt, device="cpu").precision == "fp32"  # nothing to use yet
    with pytest.raises(UsageError, match="gsmc quantize"):
        Predictor.for_checkpoint(ckpt, device="cpu", precision="int8")
    with pytest.raises(UsageError, match="int8 runs in ONNX Runtime on the CPU"):
        Predictor.for_checkpoint(ckpt, device="cpu", backend="torch", precision="int8")
    calibration = calibration_faces(ckpt, "ferplus", ferplus_root, faces=40)
    assert sum(len(b) for b in calibration) == 40 and calibration[0].shape[1:] == (3, 112, 112)
    path = quantize_int8(ckpt, calibration)
    assert path.parent == cache and int8_graph(ckpt) == path
    assert read_onnx_meta(path) == ckpt.meta and graph_precision(path) == "int8"
    assert graph_calibration(path) == {"ranges": RANGES, "faces": 40}
    assert not list(cache.glob(".quantize.*"))  # no leftovers
    predictor = Predictor.for_checkpoint(ckpt, device="cpu")
    assert predictor.precision == "int8" and isinstance(predictor.runtime, OnnxRuntime)
    assert predictor.runtime.path == path
    faces = [np.full((80, 80, 3), v, np.uint8) for v in (40, 200)]
    assert len(predictor.predict(faces)) == 2
    # an exported file given directly says its own precision
    assert Predictor.from_checkpoint(path, device="cpu").precision == "int8"


@pytest.mark.slow
def test_activation_ranges_are_the_mean_of_each_batchs_range_not_the_extremes(cache, random_checkpoint):
    """One outlying batch must not set the range alone (global MinMax would make the input's step
    6/255 here; the mean of the two batches' ranges, 4/255): with the extremes, the clip's
    predictions differed from fp32 on 1.7 % of faces (docs/performance.md)."""
    ckpt = load_checkpoint(random_checkpoint)
    rng = np.random.default_rng(0)
    batches = []
    for extreme in (1.0, 3.0):
        batch = rng.uniform(-extreme, extreme, (4, 3, 112, 112)).astype(np.float32)
        batch[0, 0, 0, :2] = (-extreme, extreme)  # the batch's exact minimum and maximum
        batches.append(batch)
    graph = onnx.load_model(str(quantize_int8(ckpt, batches)))
    scales = {i.name: onnx.numpy_helper.to_array(i) for i in graph.graph.initializer}
    (node,) = [n for n in graph.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == INPUT_NAME]
    assert float(scales[node.input[1]]) == pytest.approx(4 / 255, rel=1e-4)


@pytest.mark.slow
def test_cli_quantize_writes_the_file_and_keeps_the_checkpoint(tmp_path, cache, ferplus_root,
                                                               random_checkpoint, capsys):
    out = tmp_path / "model.int8.onnx"
    assert main(["quantize", "--checkpoint", str(random_checkpoint), "--dataset", "ferplus", "--data-root",
                 str(ferplus_root), "--faces", "16", "--out", str(out)]) == 0
    assert "16 ferplus validation faces" in capsys.readouterr().out and graph_precision(out) == "int8"
    before = random_checkpoint.read_bytes()
    assert main(["quantize", "--checkpoint", str(random_checkpoint), "--dataset", "ferplus", "--data-root",
                 str(ferplus_root), "--out", str(random_checkpoint)]) == 2
    assert "would destroy it" in capsys.readouterr().err and random_checkpoint.read_bytes() == before
    assert main(["quantize", "--checkpoint", str(random_checkpoint), "--dataset", "ferplus", "--data-root",
                 str(ferplus_root), "--faces", "0", "--out", str(out)]) == 2
    assert "--faces must be at least 1" in capsys.readouterr().err


def test_inference_does_not_import_the_quantiser():
    """A PyInstaller bundle cannot import onnxruntime.quantization (its transformers package puts
    its own folder on sys.path): the app must start and predict without it."""
    import subprocess
    import sys

    code = ("import sys, gsmc_core.frames.predictor, gsmc_desktop.main_window; "
            "print('onnxruntime.quantization' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_onnx_and_int8_run_on_the_cpu_of_a_gpu_machine_by_default(cache, random_checkpoint, monkeypatch):
    # `gsmc predict --precision int8` with the default --device auto stopped on a CUDA machine
    real = predictor_module.resolve_device
    monkeypatch.setattr(predictor_module, "resolve_device",
                        lambda name: torch.device("cuda") if name == "auto" else real(name))
    ckpt = load_checkpoint(random_checkpoint)
    assert isinstance(Predictor.for_checkpoint(ckpt, backend="onnx").runtime, OnnxRuntime)
    with pytest.raises(UsageError, match="gsmc quantize"):  # asked for int8: the CPU's question
        Predictor.for_checkpoint(ckpt, precision="int8")
