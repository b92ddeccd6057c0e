import csv
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml

import gsmc_core.training.methods as methods_module
from gsmc_core.checkpoint import load_checkpoint
from gsmc_core.cli import main
from gsmc_core.frames.predictor import Predictor
from gsmc_core.review.audit import audit
from gsmc_core.training.config import TrainConfig, TrainingError
from gsmc_core.training.events import BatchEvent, EpochEvent
from gsmc_core.training.loop import train


def _config(ferplus_root, out, **kw) -> TrainConfig:
    base = dict(method="gsmc", dataset="ferplus", data_root=str(ferplus_root), input_size=32,
                output_stride=8, epochs=1, batch_size=16, limit_train=64, limit_eval=32,
                workers=0, out=str(out), scheduler="step", lr_step=1, lr_gamma=0.5)
    base.update(kw)
    return TrainConfig(**base)


def test_run_folder_events_and_metrics(ferplus_root, tmp_path):
    events = []
    result = train(_config(ferplus_root, tmp_path / "run", noise_rate=0.25, noise_seed=1),
                   on_event=events.append)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"config.yaml", "metrics.csv", "last.pt", "best.pt",
                                               "train_labels.csv", ".gsmc-run.lock"}
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["lr"] == 1e-3 and config["lambda_kl"] == 0.9 and config["color"] == "gray"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 1
    for column in ("loss", "ce", "kl", "ac", "train_acc", "val_acc", "val_loss", "lr", "seconds"):
        assert rows[0][column] != "", column
    with open(run / "train_labels.csv") as f:
        labels = list(csv.DictReader(f))
    assert len(labels) == 64 and sum(int(r["flipped"]) for r in labels) == 16
    batches = [e for e in events if isinstance(e, BatchEvent)]
    assert [e.batch for e in batches] == [1, 2, 3, 4] and batches[-1].batches == 4
    assert set(batches[-1].losses) == {"loss", "ce", "kl", "ac"}
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert len(epochs) == 1 and epochs[0].is_best
    best = load_checkpoint(result.best)
    assert best.meta.input_size == 32 and best.meta.color == "gray"
    assert best.meta.face_crop.margin == 0.1
    assert best.train_config["noise_rate"] == 0.25
    assert best.training_state is None and load_checkpoint(result.last).training_state is not None
    with pytest.raises(TrainingError, match="already holds a run"):
        train(_config(ferplus_root, tmp_path / "run"))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_kill_matches_uninterrupted_run(ferplus_root, tmp_path, workers):
    # with loader workers too: each sample's augmentation is seeded by (seed, epoch, index), not
    # by worker random state that the checkpoint cannot hold
    full = train(_config(ferplus_root, tmp_path / "full", epochs=2, workers=workers))

    def kill_after_first_epoch(event):
        if isinstance(event, EpochEvent) and event.epoch == 1:
            raise KeyboardInterrupt  # as if the process died right after epoch 1 was saved

    with pytest.raises(KeyboardInterrupt):
        train(_config(ferplus_root, tmp_path / "killed", epochs=2, workers=workers),
              on_event=kill_after_first_epoch)
    assert load_checkpoint(tmp_path / "killed" / "last.pt").training_state["epoch"] == 1
    resumed = train(_config(ferplus_root, tmp_path / "killed", epochs=2, resume=True, workers=workers))
    assert resumed.epochs_completed == 2
    a = load_checkpoint(full.last).training_state
    b = load_checkpoint(resumed.last).training_state
    for key in ("student", "teacher"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key} {name}"
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]
    rows = list(csv.DictReader(open(tmp_path / "killed" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]


def test_stop_request_is_honoured_within_a_batch_and_leaves_a_usable_model(ferplus_root, tmp_path):
    seen = []

    def on_event(event):
        seen.append(event)

    result = train(_config(ferplus_root, tmp_path / "run", method="eac"), on_event=on_event,
                   should_stop=lambda: sum(isinstance(e, BatchEvent) for e in seen) >= 2)
    assert result.stopped
    assert sum(isinstance(e, BatchEvent) for e in seen) == 2
    last = load_checkpoint(result.last)
    assert last.training_state["epoch"] == 0
    predictor = Predictor.from_checkpoint(result.last, device="cpu")
    assert len(predictor.predict([torch.zeros(40, 40, 3, dtype=torch.uint8).numpy()])) == 1


def test_non_finite_loss_stops_with_message_and_keeps_last_good(ferplus_root, tmp_path, monkeypatch):
    train(_config(ferplus_root, tmp_path / "run", method="eac", epochs=1))
    good = (tmp_path / "run" / "last.pt").read_bytes()
    real = methods_module.flip_consistency_loss
    monkeypatch.setattr(methods_module, "flip_consistency_loss",
                        lambda a, b: real(a, b) * float("nan"))
    with pytest.raises(TrainingError, match=r"non-finite \(loss, ac\) at epoch 2, batch 1"):
        train(_config(ferplus_root, tmp_path / "run", method="eac", epochs=2, resume=True))
    assert (tmp_path / "run" / "last.pt").read_bytes() == good


@pytest.mark.slow
def test_cli_train_eval_json_and_audit(ferplus_root, tmp_path, capsys):
    out = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"method": "ce", "input_size": 32, "output_stride": 8,
                                      "batch_size": 16, "workers": 0}))
    rc = main(["train", "--config", str(config), "--dataset", "ferplus", "--data-root",
               str(ferplus_root), "--epochs", "1", "--limit-train", "64", "--limit-eval", "32",
               "--noise-rate", "0.5", "--out", str(out)])
    assert rc == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["method"] == "ce"
    capsys.readouterr()
    rc = main(["eval", "--checkpoint", str(out / "best.pt"), "--dataset", "ferplus", "--data-root",
               str(ferplus_root), "--split", "test", "--limit", "50", "--workers", "0", "--json"])
    assert rc == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"accuracy", "mean_class_accuracy", "per_class", "confusion_matrix",
                           "classes", "n"}
    assert result["n"] == 50 and sum(map(sum, result["confusion_matrix"])) == 50
    cm = result["confusion_matrix"]  # rows: true class; the diagonal holds the correct answers
    assert result["accuracy"] == pytest.approx(sum(cm[i][i] for i in range(len(cm))) / 50)
    report = audit(out / "best.pt", "ferplus", str(ferplus_root), threshold=0.0)
    assert report.n == 64 and report.known_flips == 32
    assert all(f.injected_flip is not None for f in report.flagged)
    assert report.precision == pytest.approx(
        sum(f.injected_flip for f in report.flagged) / max(len(report.flagged), 1))
    # --tta: each face's logits averaged with its mirror image's, row for row
    from gsmc_core.review.audit import score_training_set
    from gsmc_core.training.data.samples import ExpressionDataset
    from gsmc_core.training.data.transforms import eval_transform

    mirrored = score_training_set(out / "best.pt", "ferplus", str(ferplus_root), "cpu", tta=True)
    ckpt = load_checkpoint(out / "best.pt")
    net = ckpt.build_model().eval()
    data = ExpressionDataset(mirrored.split, eval_transform(ckpt.meta))
    images = torch.stack([data[int(i)][0] for i in mirrored.indices])
    with torch.no_grad():
        expected = torch.softmax((net(images)[0] + net(images.flip(-1))[0]) / 2, 1).numpy()
        plain = torch.softmax(net(images)[0], 1).numpy()
    np.testing.assert_allclose(mirrored.probs, expected, atol=1e-5)
    assert not np.allclose(mirrored.probs, plain, atol=1e-3)
    rc = main(["train", "--dataset", "ferplus", "--data-root", str(tmp_path / "missing"),
               "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "missing: data root not found" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_cpu_processes_end_identical(ferplus_root, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gsmc_core.cli", "train", "--method", "gsmc", "--dataset", "ferplus",
           "--data-root", str(ferplus_root), "--epochs", "1", "--batch-size", "8",
           "--input-size", "32", "--output-stride", "8", "--limit-train", "64", "--limit-eval",
           "16", "--workers", "0", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    digests = dict(re.findall(r"rank (\d)/2: final weights digest ([0-9a-f]{16})", proc.stdout))
    assert set(digests) == {"0", "1"}, proc.stdout
    assert digests["0"] == digests["1"]
    assert "device cpu, 2 processes" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]
    assert {p.name for p in out.iterdir()} == {"config.yaml", "metrics.csv", "last.pt", "best.pt",
                                               ".gsmc-run.lock"}  # the OS lock's file (rank 0)
    assert len(list(csv.DictReader(open(out / "metrics.csv")))) == 1


def _folder_torchrun(tmp_path, train_count: int, brightness, *options: str,
                     timeout: int) -> subprocess.CompletedProcess:
    """Two CPU torchrun processes training CE on an image folder (happy, neutral) whose
    train/happy/3.png is not an image; the run folder is tmp_path/ddp."""
    for split, count in (("train", train_count), ("val", 2)):
        for cls in ("happy", "neutral"):
            for i in range(count):
                path = tmp_path / "data" / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                if split == "train" and cls == "happy" and i == 3:
                    path.write_bytes(b"not an image")
                else:
                    cv2.imwrite(str(path), np.full((48, 48, 3), brightness(cls, i), np.uint8))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gsmc_core.cli", "train", "--method", "ce", "--dataset", "folder",
           "--data-root", str(tmp_path / "data"), *options, "--input-size", "32",
           "--output-stride", "8", "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_torchrun_survives_a_rank_whose_whole_batch_is_undecodable(tmp_path):
    # batches of one image and one broken image among 16: exactly one rank meets an empty batch
    proc = _folder_torchrun(tmp_path, 8, lambda cls, i: 20 * i, "--epochs", "1", "--batch-size", "1",
                            timeout=180)
    digests = dict(re.findall(r"rank (\d)/2: final weights digest ([0-9a-f]{16})", proc.stdout))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]
    row = next(csv.DictReader(open(tmp_path / "ddp" / "metrics.csv")))
    assert int(row["skipped"]) >= 1  # the broken image was met, counted, and survived
    # listed whichever rank met it (rank 1's were left out)
    listed = list(csv.DictReader(open(tmp_path / "ddp" / "unreadable.csv")))
    assert [r["image"] for r in listed] == ["happy/3.png"], listed


@pytest.mark.slow
def test_torchrun_ranks_stop_together_when_rank_0_cannot_save(ferplus_root, tmp_path):
    # rank 0 alone validates and saves: when that fails (here a full disk), rank 1 waited at the
    # epoch's barrier for the collective timeout (30 min) instead of stopping with it
    script = tmp_path / "full_disk.py"
    script.write_text(
        "import errno, os, sys\n"
        "import gsmc_core.training.loop as loop\n"
        "def full(*_a, **_k):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "if os.environ['RANK'] == '0':\n"
        "    loop.save_checkpoint = full\n"
        "from gsmc_core.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), "train", "--method", "ce", "--dataset", "ferplus",
           "--data-root", str(ferplus_root), "--epochs", "2", "--batch-size", "8",
           "--input-size", "32", "--output-stride", "8", "--limit-train", "32", "--limit-eval",
           "16", "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "No space left on device" in output, output[-3000:]
    assert "rank 0 failed while validating or saving epoch 1" in output, output[-3000:]
    assert "epoch 2/2" not in output  # neither rank went on


def test_a_new_run_never_overwrites_another_runs_files(ferplus_root, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"the only copy of a model")  # last.pt deleted by the user
    with pytest.raises(TrainingError, match=r"already holds a run \(best.pt\); nothing was overwritten"):
        train(_config(ferplus_root, run))
    assert (run / "best.pt").read_bytes() == b"the only copy of a model"
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.csv").write_text("epoch\n1\n")
    with pytest.raises(TrainingError, match=r"metrics.csv"):
        train(_config(ferplus_root, other))
    assert (other / "metrics.csv").read_text() == "epoch\n1\n"


def test_stale_temporary_checkpoint_is_removed_at_the_next_start(ferplus_root, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".last.pt.k1ll3d.tmp").write_bytes(b"")  # a kill during a save
    events = []
    train(_config(ferplus_root, run), on_event=events.append)
    assert not list(run.glob("*.tmp")) and (run / "last.pt").is_file()
    assert any("left by a save that was cut short" in getattr(e, "message", "") for e in events)


@pytest.mark.slow
def test_torchrun_metrics_count_every_ranks_faces_once(tmp_path):
    # preloaded: every rank holds the list of undecodable images, one reports it
    proc = _folder_torchrun(tmp_path, 16, lambda cls, i: 8 * i + (100 if cls == "happy" else 0),
                            "--epochs", "2", "--batch-size", "4", "--preload", timeout=300)
    out = tmp_path / "ddp"
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["skipped"]) for r in rows] == [1, 1]  # once an epoch, not once per rank
    printed = re.findall(r"epoch (\d)/2: loss \S+ train acc (\S+)", proc.stdout)
    by_epoch = {}
    for epoch, acc in printed:  # each rank prints the epoch: the same figure, of all 30 faces
        by_epoch.setdefault(epoch, set()).add(acc)
    assert len(printed) == 4 and all(len(v) == 1 for v in by_epoch.values()), printed
    assert [f"{float(r['train_acc']):.4f}" for r in rows] == [by_epoch["1"].pop(), by_epoch["2"].pop()]


def test_a_run_ended_by_an_exception_ends_its_loader_workers(ferplus_root, tmp_path):
    # they ignore SIGTERM, and the exception's traceback keeps the trainer (and its persistent
    # workers) alive: at exit, Python terminated them with SIGTERM and waited forever (pytest hung)
    import multiprocessing

    before = set(multiprocessing.active_children())

    def killed_in_epoch_2(event):
        if isinstance(event, BatchEvent) and event.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as killed:
        train(_config(ferplus_root, tmp_path / "run", epochs=2, workers=2), on_event=killed_in_epoch_2)
    assert killed.traceback  # the run's frames are still held
    assert set(multiprocessing.active_children()) <= before


@pytest.mark.slow
def test_a_resume_on_other_faces_or_labels_is_refused_a_moved_copy_is_not(small_ferplus, tmp_path):
    import dataclasses
    import shutil

    config = _config(small_ferplus, tmp_path / "run", method="ce", limit_train=None, limit_eval=16)
    train(config)
    moved = tmp_path / "moved"  # the same dataset elsewhere: data_root may change on resume
    shutil.copytree(small_ferplus, moved, symlinks=True)
    labels = small_ferplus / "FER2013Train" / "label.csv"
    with open(labels, newline="") as f:
        rows = list(csv.reader(f))
    # a face with a clear majority (in the split before and after): only its label changes
    first = next(i for i, r in enumerate(rows) if max(float(v) for v in r[2:10]) >= 7)
    votes = [float(v) for v in rows[first][2:]]
    top = max(range(len(votes)), key=votes.__getitem__)
    rows[first][2:] = ["10" if i == (top + 1) % 8 else "0" for i in range(len(votes))]  # relabelled
    with open(labels, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    again = dataclasses.replace(config, epochs=2, resume=True)
    with pytest.raises(TrainingError, match="does not hold the faces and labels this run trained on"):
        train(again)
    assert len(list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))) == 1  # nothing changed
    assert train(dataclasses.replace(again, data_root=str(moved))).epochs_completed == 2
