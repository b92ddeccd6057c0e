"""Careless or hostile inputs get a one-line answer naming what is wrong, and nothing already
saved is lost: training data that cannot be read, settings of the wrong type, degenerate
checkpoints, signals during CLI training."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gsmc_core.checkpoint import CheckpointError, load_checkpoint
from gsmc_core.cli import main
from gsmc_core.resources import DEFAULT_CHECKPOINT
from gsmc_core.training.config import TrainConfig, TrainingError
from gsmc_core.training.data.readers import read_split
from gsmc_core.training.loop import train

FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid"}


def _mini_ferplus(ferplus_root: Path, root: Path, n: int = 48, missing: dict | None = None) -> Path:
    """The first ``n`` majority-labelled faces of each split copied to ``root``; ``missing``
    maps a split to how many of its images to leave out (named in label.csv, absent on disk)."""
    missing = missing or {}
    for split, folder in FOLDERS.items():
        (root / folder).mkdir(parents=True)
        rows = list(csv.reader(open(ferplus_root / folder / "label.csv")))[: n + 20]
        with open(root / folder / "label.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)
        for i, row in enumerate(rows):
            if i >= missing.get(split, 0):
                shutil.copy(ferplus_root / folder / row[0], root / folder / row[0])
    return root


def _config(root: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(**{**dict(method="ce", dataset="ferplus", data_root=str(root), input_size=32,
                                 output_stride=16, epochs=1, batch_size=16, workers=0, out=str(out)),
                          **kw})


@pytest.mark.parametrize("preload", [False, True])
def test_no_readable_training_image_is_an_error_before_anything_is_saved(ferplus_root, tmp_path, preload):
    root = _mini_ferplus(ferplus_root, tmp_path / "data", missing={"train": 10_000})
    with pytest.raises((TrainingError, ValueError), match="train images.*could be read.*not found"):
        train(_config(root, tmp_path / "run", preload=preload))
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "last.pt").exists()


def test_no_readable_validation_image_is_an_error(ferplus_root, tmp_path):
    root = _mini_ferplus(ferplus_root, tmp_path / "data", missing={"val": 10_000})
    with pytest.raises(TrainingError, match="val images tried could be read"):
        train(_config(root, tmp_path / "run"))
    assert not (tmp_path / "run" / "best.pt").exists()


def test_skipped_training_images_are_named_on_screen_and_in_the_run_folder(ferplus_root, tmp_path):
    root = _mini_ferplus(ferplus_root, tmp_path / "data", missing={"train": 5})
    logs = []
    gone = [s.key for s in read_split("ferplus", root, "train").samples if not s.path.exists()]
    assert len(gone) >= 2
    # one batch holds the whole split, so every image is tried
    result = train(_config(root, tmp_path / "run", batch_size=256),
                   on_event=lambda e: logs.append(str(e)))
    listed = list(csv.DictReader(open(tmp_path / "run" / "unreadable.csv")))
    assert sorted(r["image"] for r in listed) == sorted(gone)
    assert all("image file not found" in r["reason"] for r in listed)
    said = "\n".join(logs)
    assert f"{len(gone)} of " in said and listed[0]["image"] in said and "unreadable.csv" in said
    assert "without a majority vote" in said  # FERPlus rows the reader leaves out are counted
    assert result.history[0]["skipped"] == len(gone)


@pytest.mark.parametrize("setting, value, message", [
    ("epochs", "ten", "epochs: expected a whole number"),
    ("epochs", 1.7, "epochs: expected a whole number"),
    ("lr", "fast", "lr: expected a number"),
    ("input_size", -1, "input_size: -1 is outside"),
    ("strict", "no", "strict: expected true or false"),
    ("noise_rate", 1.5, "noise_rate: 1.5 is outside"),
])
def test_settings_of_the_wrong_type_or_range_are_refused_by_name(tmp_path, capsys, setting, value,
                                                                   message):
    config = tmp_path / "c.yaml"
    config.write_text(f"{setting}: {value!r}\n".replace("'", '"'))
    rc = main(["train", "--config", str(config), "--data-root", str(tmp_path), "--out",
               str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_invalid_yaml_and_file_system_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    assert main(["train", "--config", str(bad), "--data-root", "x"]) == 2
    assert "bad.yaml: not valid YAML" in capsys.readouterr().err
    label_dir = tmp_path / "fp" / "FER2013Train" / "label.csv"
    label_dir.mkdir(parents=True)
    assert main(["train", "--dataset", "ferplus", "--data-root", str(tmp_path / "fp"),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "label.csv" in err and "Traceback" not in err


def _degenerate(tmp_path: Path, change) -> Path:
    payload = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    change(payload)
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda p: p["state_dict"]["fc.weight"].__setitem__((0, 0), float("nan")), "NaN or infinite"),
    (lambda p: p["meta"].__setitem__("input_size", 0), "input_size: 0 is outside"),
    (lambda p: p["meta"].__setitem__("input_size", -64), "input_size: -64 is outside"),
    (lambda p: p["meta"].__setitem__("mean", [0.5]), "mean: expected 3 numbers"),
    (lambda p: p.__setitem__("state_dict", [1, 2]), "state_dict is not a mapping"),
    (lambda p: p["meta"].__setitem__("output_stride", "sixteen"), "output_stride: expected int"),
    (lambda p: p["meta"].__setitem__("color", "ultraviolet"), "color: must be rgb or gray"),
    (lambda p: p["meta"]["face_crop"].__setitem__("margin", float("inf")), "face_crop.margin"),
    (lambda p: p["meta"].__setitem__("classes", "neutral"), "classes: expected a list"),
])
def test_degenerate_checkpoints_are_refused_naming_file_and_field(tmp_path, change, message):
    path = _degenerate(tmp_path, change)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_cli_training_saves_last_pt_and_resume_continues(ferplus_root, tmp_path, sig):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gsmc_core.cli", "train", "--method", "ce", "--dataset", "ferplus",
           "--data-root", str(ferplus_root), "--input-size", "32", "--epochs", "2",
           "--limit-train", "4000", "--limit-eval", "32", "--batch-size", "16", "--workers", "0",
           "--threads", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "batch 20/" in line:  # training is under way
            break
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr[-2000:]
    assert f"{signal.Signals(sig).name}: stopping after this batch" in stderr
    assert "last.pt saved. Continue with: gsmc train --resume" in stdout
    state = load_checkpoint(out / "last.pt").training_state
    assert state["epoch"] == 0 and state["global_step"] == 0  # no epoch finished...
    assert state["partial"]["batch"] >= 20 and state["partial"]["steps"] == state["partial"]["batch"]
    assert not any(out.glob(".*.tmp"))
