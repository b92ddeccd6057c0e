"""Checkpoints that used to give wrong answers with exit 0, or ask for terabytes (issue 25):
refused at load with a message naming the file and the problem."""

import zipfile

import pytest
import torch

from gsmc_core.checkpoint import CheckpointError, load_checkpoint


@pytest.fixture
def payload(random_checkpoint):
    return torch.load(random_checkpoint, map_location="cpu", weights_only=True)


def _save(payload, tmp_path, name="bad.pt"):
    path = tmp_path / name
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("dtype", [torch.complex64, torch.int64, torch.uint8, torch.bool,
                                   torch.float8_e4m3fn])
def test_weights_that_are_not_floating_point_are_refused(payload, tmp_path, dtype):
    payload["state_dict"]["fc.weight"] = payload["state_dict"]["fc.weight"].to(dtype)
    with pytest.raises(CheckpointError, match=f"fc.weight has dtype {dtype}"):
        load_checkpoint(_save(payload, tmp_path))


def test_a_negative_batchnorm_variance_is_refused(payload, tmp_path):
    payload["state_dict"]["backbone.bn1.running_var"][0] = -1.0
    with pytest.raises(CheckpointError, match="bn1.running_var: a BatchNorm variance is negative"):
        load_checkpoint(_save(payload, tmp_path))


@pytest.mark.parametrize(("version", "says"), [(0, "not valid"), (-1, "not valid"), (True, "not valid"),
                                               ("1", "not valid"), (None, "not valid"),
                                               (99, "newer than this program")])
def test_format_versions_say_what_is_wrong(payload, tmp_path, version, says):
    payload["format_version"] = version
    with pytest.raises(CheckpointError, match=says):
        load_checkpoint(_save(payload, tmp_path))


def test_an_expanded_view_declaring_terabytes_is_refused_before_allocating(payload, tmp_path):
    payload["state_dict"]["backbone.conv1.weight"] = torch.zeros(1).expand(10**6, 10**6)
    with pytest.raises(CheckpointError, match=r"backbone.conv1.weight has shape \(1000000, 1000000\)"):
        load_checkpoint(_save(payload, tmp_path))
    payload["state_dict"]["extra"] = torch.zeros(1).expand(10**6, 10**6)
    payload["state_dict"]["backbone.conv1.weight"] = torch.zeros(64, 3, 7, 7)
    with pytest.raises(CheckpointError, match="declares 1,000,000,000,000 values"):
        load_checkpoint(_save(payload, tmp_path))


def test_a_deflate_bomb_is_refused_before_reading(random_checkpoint, tmp_path):
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(random_checkpoint) as source, \
            zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        target.writestr("bomb/data/huge", b"\0" * 300_000_000)  # ~300 kB compressed
    assert bomb.stat().st_size < 60_000_000
    with pytest.raises(CheckpointError, match="MB uncompressed in a"):
        load_checkpoint(bomb)


def test_a_training_record_that_is_not_a_mapping_is_dropped(payload, tmp_path):
    payload["train_config"], payload["metrics"] = ["a", "list"], "text"
    ckpt = load_checkpoint(_save(payload, tmp_path))
    assert ckpt.train_config == {} and ckpt.metrics == {}


def test_command_arguments_that_used_to_give_tracebacks_or_bad_files(tmp_path, capsys, random_checkpoint,
                                                                    ferplus_root):
    from gsmc_core.cli import main

    assert main(["eval", "--checkpoint", str(random_checkpoint), "--dataset", "ferplus",
                 "--data-root", str(ferplus_root), "--limit", "-1"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err
    assert main(["calibrate", "--checkpoint", str(random_checkpoint), "--data-root", str(ferplus_root),
                 "--max-drop", "nan", "--out", str(tmp_path / "c.pt")]) == 2
    assert "--max-drop must be a fraction" in capsys.readouterr().err
    source = tmp_path / "tv.pth"
    from torchvision.models import resnet18

    torch.save(resnet18().state_dict(), source)
    for size in ("0", "99999999"):
        assert main(["import-weights", str(source), "--format", "torchvision", "--input-size", size,
                     "--out", str(tmp_path / "init.pt")]) == 2
        assert "input size must be 16 to 1024" in capsys.readouterr().err
    state = resnet18().state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, source)
    assert main(["import-weights", str(source), "--format", "torchvision",
                 "--out", str(tmp_path / "init.pt")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err and not (tmp_path / "init.pt").exists()


def test_non_finite_outputs_are_an_error_never_nan_percent(random_checkpoint, astronaut_rgb):
    import numpy as np

    from gsmc_core.frames.predictor import Predictor

    predictor = Predictor.from_checkpoint(random_checkpoint, device="cpu", backend="torch")
    real_run = predictor.runtime.run
    predictor.runtime.run = lambda batch: (np.full_like(real_run(batch)[0], np.nan), real_run(batch)[1])
    with pytest.raises(ValueError, match="no valid probabilities"):
        predictor.predict([astronaut_rgb[100:300, 150:350]])


def _peak_virtual_mb(argv, limit_mb=None):
    """Run ``gsmc argv`` (under an address-space limit when given); (exit status, stderr, peak
    virtual size in MB seen in /proc)."""
    import resource
    import subprocess
    import sys
    import time
    from pathlib import Path

    def limit():
        if limit_mb is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    proc = subprocess.Popen([sys.executable, "-m", "gsmc_core.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    peak = 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = max(peak, int(status.split("VmPeak:")[1].split()[0]) >> 10)
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.02)
    return proc.returncode, proc.stderr.read(), peak


@pytest.mark.slow
def test_bad_inputs_are_refused_within_1_gb_of_normal_use(payload, tmp_path, random_checkpoint):
    import PIL.Image

    _, _, normal = _peak_virtual_mb(["info", str(random_checkpoint)])
    payload["state_dict"]["backbone.conv1.weight"] = torch.zeros(1).expand(10**6, 10**6)
    expanded = _save(payload, tmp_path, "expanded.pt")
    code, err, _ = _peak_virtual_mb(["info", str(expanded)], limit_mb=normal + 1024)
    assert code == 2 and "has shape (1000000, 1000000)" in err and "Traceback" not in err
    tiff = tmp_path / "bomb.tif"
    PIL.Image.new("1", (30000, 30000)).save(tiff, compression="group4")
    good = tmp_path / "good.png"
    PIL.Image.new("RGB", (64, 64)).save(good)
    model = ["--checkpoint", str(random_checkpoint), "--device", "cpu", "--no-detect"]
    _, _, normal = _peak_virtual_mb(["predict", str(good), *model])
    code, err, _ = _peak_virtual_mb(["predict", str(tiff), *model], limit_mb=normal + 1024)
    assert code == 1 and "more than 200 MP" in err and "Traceback" not in err


def test_an_onnx_graph_given_as_a_checkpoint_is_named_as_such(tmp_path, capsys):
    from gsmc_core.cli import main
    from gsmc_core.import_weights import import_weights
    from gsmc_core.resources import DEFAULT_CHECKPOINT

    graph = DEFAULT_CHECKPOINT.with_suffix(".int8.onnx")
    renamed = tmp_path / "exported.pt"  # a graph under a checkpoint's name
    renamed.write_bytes(graph.read_bytes())
    for path in (graph, renamed):  # was "damaged ... or holds program code"
        with pytest.raises(CheckpointError, match="is an ONNX graph .* not a checkpoint: give the .pt"):
            load_checkpoint(path)
    assert main(["info", str(renamed)]) == 2 and "is an ONNX graph" in capsys.readouterr().err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x08\x01" * 100)
    with pytest.raises(CheckpointError, match="cannot be opened as a model"):
        load_checkpoint(garbage)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"cut short or empty; EOFError\)"):  # was "()"
        import_weights(empty, "torchvision", tmp_path / "init.pt")
