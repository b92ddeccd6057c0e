"""CPU inference in ONNX Runtime: the exported graph agrees with torch on real faces, carries
its metadata, is cached, and bad files get clear errors."""

import os
import re

import numpy as np
import onnx
import pytest

from gsmc_core.checkpoint import CheckpointError, load_checkpoint
from gsmc_core.frames.onnx_export import META_KEY, cached_onnx, export_onnx, read_onnx_meta
from gsmc_core.frames.predictor import Predictor
from gsmc_core.resources import DEFAULT_CHECKPOINT
from gsmc_core.training.data.readers import read_split
from gsmc_core.training.data.samples import load_image


@pytest.fixture(scope="module")
def real_faces(astronaut_rgb, ferplus_root) -> list[np.ndarray]:
    split = read_split("ferplus", ferplus_root, "test").subset(24, seed=3)
    faces = [load_image(s) for s in split.samples]
    return [astronaut_rgb[60:300, 150:360], *faces]


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(DEFAULT_CHECKPOINT)


def test_onnx_matches_torch_on_real_faces(shipped, real_faces):
    torch_p = Predictor.for_checkpoint(shipped, "cpu", backend="torch")
    onnx_p = Predictor.for_checkpoint(shipped, "cpu", backend="onnx", precision="fp32")
    assert (torch_p.backend, onnx_p.backend) == ("torch", "onnx")
    batch = torch_p.preprocess(real_faces)
    logits_t, cams_t = torch_p.runtime.run(batch)
    logits_o, cams_o = onnx_p.runtime.run(batch)
    assert cams_o.shape == cams_t.shape == (len(real_faces), 8, 5, 5)  # 65 px at stride 16
    np.testing.assert_allclose(logits_o, logits_t, atol=1e-4, rtol=0)
    np.testing.assert_allclose(cams_o, cams_t, atol=1e-4, rtol=0)
    preds_t, preds_o = torch_p.predict(real_faces), onnx_p.predict(real_faces)
    assert [p.label for p in preds_o] == [p.label for p in preds_t]
    # the faces are not all one class: the comparison covers more than one decision
    assert len({p.label for p in preds_t}) >= 3
    for a, b in zip(preds_o, preds_t, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-3)


def test_cpu_default_is_onnx_and_cached(shipped, onnx_cache):
    predictor = Predictor.for_checkpoint(shipped, "cpu")
    assert predictor.backend == "onnx"
    path = cached_onnx(shipped)
    assert path.parent == onnx_cache
    inode = path.stat().st_ino  # an export writes a new file (an atomic rename)
    again = cached_onnx(load_checkpoint(DEFAULT_CHECKPOINT))  # same weights, new load: no re-export
    assert again == path and again.stat().st_ino == inode


def test_export_carries_metadata(shipped, tmp_path, real_faces):
    out = export_onnx(shipped, tmp_path / "model.onnx")
    props = {p.key: p.value for p in onnx.load_model(str(out)).metadata_props}
    assert META_KEY in props
    assert read_onnx_meta(out) == shipped.meta
    from_file = Predictor.from_checkpoint(out, device="cpu")
    reference = Predictor.for_checkpoint(shipped, "cpu", backend="torch")
    assert from_file.classes == shipped.meta.classes
    labels = [p.label for p in from_file.predict(real_faces)]
    assert labels == [p.label for p in reference.predict(real_faces)]
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_onnx_files_name_the_file(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match="junk.onnx"):
        read_onnx_meta(junk)
    bare = tmp_path / "bare.onnx"
    onnx.save_model(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), str(bare))
    with pytest.raises(CheckpointError, match="without GSMC metadata"):
        read_onnx_meta(bare)


@pytest.mark.slow
def test_unwritable_cache_falls_back_to_torch(shipped, tmp_path, monkeypatch, caplog, real_faces):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("GSMC_CACHE_DIR", str(blocker / "onnx"))
    predictor = Predictor.for_checkpoint(shipped, "cpu", precision="fp32")
    assert predictor.backend == "torch"
    assert "ONNX export or session failed" in caplog.text
    assert len(predictor.predict(real_faces[:2])) == 2
    with pytest.raises(OSError):  # asked for explicitly: the error is the user's to see
        Predictor.for_checkpoint(shipped, "cpu", backend="onnx", precision="fp32")


@pytest.mark.slow
def test_corrupt_cache_entry_is_exported_again(shipped, tmp_path, monkeypatch):
    monkeypatch.setenv("GSMC_CACHE_DIR", str(tmp_path / "cache"))
    path = cached_onnx(shipped)
    path.write_bytes(path.read_bytes()[:1000])  # truncated, as by a full disk
    predictor = Predictor.for_checkpoint(shipped, "cpu", precision="fp32")
    assert predictor.backend == "onnx" and path.stat().st_size > 1_000_000


def test_cli_names_a_missing_or_broken_onnx_file(tmp_path, capsys):
    from gsmc_core.cli import main

    assert main(["predict", str(tmp_path / "x.jpg"), "--checkpoint", str(tmp_path / "missing.onnx")]) == 2
    assert "missing.onnx: file not found" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    assert main(["predict", str(tmp_path / "x.jpg"), "--checkpoint", str(tmp_path / "junk.onnx")]) == 2
    err = capsys.readouterr().err
    assert "junk.onnx: cannot be read as an ONNX model" in err and "Traceback" not in err


@pytest.mark.slow
def test_an_altered_cache_entry_that_still_loads_is_not_trusted(shipped, tmp_path, monkeypatch, real_faces):
    from onnx import numpy_helper

    monkeypatch.setenv("GSMC_CACHE_DIR", str(tmp_path / "cache"))
    path = cached_onnx(shipped)
    graph = onnx.load_model(str(path))
    n = len(shipped.meta.classes)
    fc = next(t for t in graph.graph.initializer if sorted(t.dims) == sorted([n, 512]))
    weights = numpy_helper.to_array(fc).copy()
    axis = list(fc.dims).index(n)
    weights = np.swapaxes(weights, 0, axis)
    weights[[0, 1]] = weights[[1, 0]]  # neutral and happiness swapped: still a valid graph
    fc.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(np.swapaxes(weights, 0, axis)), fc.name))
    onnx.save_model(graph, str(path))
    torch_p = Predictor.for_checkpoint(shipped, "cpu", backend="torch")
    onnx_p = Predictor.for_checkpoint(shipped, "cpu", backend="onnx", precision="fp32")  # exported again
    for a, b in zip(onnx_p.predict(real_faces[:4]), torch_p.predict(real_faces[:4]), strict=True):
        assert a.label == b.label and np.allclose(a.probabilities, b.probabilities, atol=1e-3)


@pytest.mark.slow
def test_an_argument_error_keeps_the_cache_and_the_cache_is_bounded(shipped, tmp_path, monkeypatch):
    import dataclasses

    import gsmc_core.frames.onnx_export as onnx_export

    monkeypatch.setenv("GSMC_CACHE_DIR", str(tmp_path / "cache"))
    path = cached_onnx(shipped)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Predictor.for_checkpoint(shipped, "cpu", threads=0)
    assert path.is_file()
    int8 = path.with_name(path.name.replace(".onnx", ".int8.onnx"))  # as `gsmc quantize` names it
    int8.write_bytes(b"an int8 graph")
    os.utime(int8, (1, 1))  # older than every export
    older = path.with_name("0" * 32 + ".int8.onnx")
    older.write_bytes(b"an older int8 graph")
    os.utime(older, (0, 0))
    mine = path.with_name("my model.onnx")  # a person's own export in GSMC_CACHE_DIR: not the cache's
    mine.write_bytes(b"my export")
    os.utime(mine, (0, 0))
    monkeypatch.setattr(onnx_export, "CACHE_KEEP", 2)
    monkeypatch.setattr(onnx_export, "INT8_KEEP", 1)
    for k in range(3):  # three other models: the oldest entries go
        other = dataclasses.replace(shipped, state_dict={**shipped.state_dict,
                                                         "fc.bias": shipped.state_dict["fc.bias"] + k + 1})
        cached_onnx(other)
    assert len(list(path.parent.glob("*.onnx"))) == 4 and not path.exists()
    assert mine.read_bytes() == b"my export"
    assert int8.read_bytes() == b"an int8 graph" and not older.exists()  # int8 graphs: a limit of their own


def test_onnx_metadata_that_does_not_fit_its_graph_is_refused(shipped, tmp_path):
    import json

    out = export_onnx(shipped, tmp_path / "model.onnx")
    meta = shipped.meta.to_dict()
    for change, says in (({"input_size": 112}, "says 112 px input, but the graph takes [65, 65]"),
                         ({"classes": list(meta["classes"])[:3]}, "names 3 classes, but the graph has [8]"),
                         ({"classes": [f"c{i}" for i in range(20)]}, "names 20 classes")):
        graph = onnx.load_model(str(out))
        onnx.helper.set_model_props(graph, {META_KEY: json.dumps({**meta, **change})})
        bad = tmp_path / "bad.onnx"
        onnx.save_model(graph, str(bad))
        with pytest.raises(CheckpointError, match=re.escape(says)):
            read_onnx_meta(bad)
    graph = onnx.load_model(str(out))
    onnx.helper.set_model_props(graph, {META_KEY: "[" * 100_000 + "]" * 100_000})
    onnx.save_model(graph, str(tmp_path / "nested.onnx"))
    with pytest.raises(CheckpointError, match="metadata is invalid"):
        read_onnx_meta(tmp_path / "nested.onnx")
