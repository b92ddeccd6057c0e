"""Long runs that stop and resume (issue 24): no metrics row lost to a kill between last.pt and
metrics.csv, no run shortened by a resume, the audit rebuilding a run's noise however its data
folder is spelt, and one annotator's vote as real human label noise."""

import csv
import os

import numpy as np
import pytest
import yaml

from gsmc_core.review.audit import audit
from gsmc_core.training.config import TrainConfig, TrainingError
from gsmc_core.training.data.noise import annotator_labels, given_labels
from gsmc_core.training.data.readers import read_split
from gsmc_core.training.data.samples import DataError, Sample, Split
from gsmc_core.training.loop import train


def _config(ferplus_root, out, **kw) -> TrainConfig:
    base = dict(method="ce", dataset="ferplus", data_root=str(ferplus_root), input_size=33,
                output_stride=16, epochs=2, batch_size=16, limit_train=32, limit_eval=16,
                workers=0, out=str(out))
    return TrainConfig(**{**base, **kw})


def _rows(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_kill_between_last_pt_and_metrics_csv_loses_no_row(ferplus_root, tmp_path):
    run = tmp_path / "run"
    train(_config(ferplus_root, run))
    rows = _rows(run)
    # as if killed after last.pt of epoch 2 was saved but before its row was written
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerow(rows[0])
    train(_config(ferplus_root, run, epochs=3, resume=True))
    resumed = _rows(run)
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"]
    assert float(resumed[1]["val_acc"]) == pytest.approx(float(rows[1]["val_acc"]))
    assert float(resumed[1]["train_acc"]) == pytest.approx(float(rows[1]["train_acc"]))


def test_a_row_of_an_epoch_never_saved_is_dropped_on_resume(ferplus_root, tmp_path):
    run = tmp_path / "run"
    train(_config(ferplus_root, run))
    rows = _rows(run)
    with open(run / "metrics.csv", "a", newline="") as f:  # an epoch 3 whose last.pt never came
        csv.DictWriter(f, fieldnames=list(rows[0])).writerow({**rows[1], "epoch": "3"})
    train(_config(ferplus_root, run, epochs=3, resume=True))
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3"]


def test_resume_with_fewer_epochs_than_done_is_refused_and_changes_nothing(ferplus_root, tmp_path):
    run = tmp_path / "run"
    train(_config(ferplus_root, run))
    before = {name: (run / name).read_bytes() for name in ("config.yaml", "metrics.csv", "last.pt")}
    with pytest.raises(TrainingError, match="has trained 2 epochs, more than the 1 asked for"):
        train(_config(ferplus_root, run, epochs=1, resume=True))
    for name, content in before.items():
        assert (run / name).read_bytes() == content, name
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 2


def test_audit_rebuilds_the_noise_of_a_run_whatever_the_spelling_of_its_data_folder(
        ferplus_root, tmp_path, monkeypatch):
    monkeypatch.chdir(ferplus_root.parent)
    relative = os.path.relpath(ferplus_root)
    run = tmp_path / "run"
    train(_config(relative, run, epochs=1, noise_rate=0.3, noise_seed=4))
    report = audit(run / "last.pt", "ferplus", str(ferplus_root.resolve()), device="cpu")
    assert report.known_flips == round(0.3 * 32) and report.note is None
    elsewhere = tmp_path / "copy" / "FER2013Train"  # another folder with 40 of its faces
    elsewhere.mkdir(parents=True)
    source = ferplus_root.resolve() / "FER2013Train"
    rows = (source / "label.csv").read_text().splitlines()[:40]
    (elsewhere / "label.csv").write_text("\n".join(rows) + "\n")
    for row in rows:
        name = row.split(",")[0]
        (elsewhere / name).symlink_to(source / name)
    elsewhere = elsewhere.parent
    other = audit(run / "last.pt", "ferplus", str(elsewhere), device="cpu")
    assert other.known_flips is None and "cannot be rebuilt" in other.note


def _split(votes: list[tuple[float, ...]]) -> Split:
    classes = ("neutral", "happiness", "surprise")
    return Split("ferplus", "train", classes,
                 [Sample(f"{i}.png", int(np.argmax(v)), votes=v) for i, v in enumerate(votes)])


def test_annotator_labels_draw_one_vote_in_proportion_seeded():
    split = _split([(10.0, 0.0, 0.0), (0.0, 0.0, 9.0)] + [(6.0, 4.0, 0.0)] * 4000)
    drawn = annotator_labels(split, seed=3)
    assert drawn[:2] == [0, 2]  # unanimous faces keep their label
    share = np.mean(np.array(drawn[2:]) == 1)
    assert abs(share - 0.4) < 0.03  # 4 of 10 annotators said happiness
    assert drawn == annotator_labels(split, seed=3) and drawn != annotator_labels(split, seed=4)
    assert given_labels(split, "annotator", 0.0, 3) == drawn


def test_annotator_noise_needs_votes_and_refuses_a_rate():
    with pytest.raises(DataError, match="needs each sample's annotator votes"):
        annotator_labels(Split("rafdb", "train", ("a", "b"), [Sample("x.jpg", 0)]), 0)
    with pytest.raises(ValueError, match="leave the noise rate at 0"):
        TrainConfig(data_root="x", noise_kind="annotator", noise_rate=0.2).resolved()


def test_annotator_noise_on_ferplus_is_real_disagreement(ferplus_root):
    split = read_split("ferplus", ferplus_root, "train").subset(3000, 0)
    clean = np.array(split.labels())
    drawn = np.array(annotator_labels(split, 0))
    rate = (clean != drawn).mean()
    assert 0.1 < rate < 0.45  # one of ten annotators often disagrees with the majority
    happy = clean == split.classes.index("happiness")
    fear = clean == split.classes.index("fear")
    assert (drawn[happy] != clean[happy]).mean() < (drawn[fear] != clean[fear]).mean()


def test_config_files_refuse_alias_bombs_and_keep_messages_short(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\nepochs: *a8\n")
    assert bomb.stat().st_size < 1500
    with pytest.raises(ValueError, match="aliases .* are not allowed"):
        TrainConfig.from_yaml(bomb)
    long_value = tmp_path / "long.yaml"
    long_value.write_text("epochs: " + "9" * 100_000 + "x\n")
    with pytest.raises(ValueError, match="characters\\)") as info:
        TrainConfig.from_yaml(long_value).resolved()
    assert len(str(info.value)) < 300
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("1: a\nb: 2\n")
    with pytest.raises(ValueError, match="unknown settings"):
        TrainConfig.from_yaml(mixed)


def test_a_damaged_run_config_is_a_message_not_a_traceback(tmp_path):
    from gsmc_core.training.config import config_for_resume

    for content in ("[1, 2]\n", "epochs: [\n", ""):
        (tmp_path / "config.yaml").write_text(content)
        with pytest.raises(TrainingError, match="config.yaml"):
            config_for_resume(tmp_path, {})


def test_dataset_rows_that_gave_tracebacks_name_file_and_line(tmp_path):
    fer = tmp_path / "fer2013.csv"
    good = "0," + " ".join(["7"] * 4) + ",Training"
    for bad, says in ((good.replace("7 7", "256 7", 1), "pixel values must be 0-255"),
                      (good.replace("7 7", "-1 7", 1), "pixel values must be 0-255"),
                      ("0,7 7 7 7", "the row is short")):
        fer.write_text(f"emotion,pixels,Usage\n{good}\n{bad}\n")
        with pytest.raises(DataError, match=f"fer2013.csv:3: .*{says}"):
            read_split("fer2013", tmp_path, "train", 7)
    affect = tmp_path / "affectnet"
    affect.mkdir()
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression"
    for box in ("inf,0,10,10", "0,0,-5,10", "x,0,10,10"):
        (affect / "training.csv").write_text(f"{header}\n1/a.jpg,{box},,1\n")
        with pytest.raises(DataError, match="training.csv:2: bad row"):
            read_split("affectnet", affect, "train", 8)


def test_a_last_pt_without_training_state_is_a_message(ferplus_root, tmp_path):
    import torch

    run = tmp_path / "run"
    train(_config(ferplus_root, run, epochs=1))
    payload = torch.load(run / "last.pt", weights_only=True)
    payload["training_state"] = {}
    torch.save(payload, run / "last.pt")
    with pytest.raises(TrainingError, match="no complete training state"):
        train(_config(ferplus_root, run, epochs=2, resume=True))
