"""Long runs that stop and resume (issue 24): no metrics row lost to a kill between last.pt and
metrics.csv, no run shortened by a resume, the audit rebuilding a run's noise however its data
folder is spelt, and one annotator's vote as real human label noise."""

import csv
import dataclasses
import os

import numpy as np
import pytest
import yaml

from gsmc_core.checkpoint import load_checkpoint
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


def test_a_damaged_metrics_csv_is_repaired_on_resume_and_kept_as_it_was(ferplus_root, tmp_path):
    run = tmp_path / "run"
    train(_config(ferplus_root, run))
    rows = _rows(run)
    text = (run / "metrics.csv").read_text()
    damaged = text[:text.index("\n2,") + 12]  # epoch 2's row cut short, then an edit by hand
    damaged += "\n3x,1.0\n\xff\n"
    (run / "metrics.csv").write_text(damaged, encoding="latin-1")
    events = []
    train(_config(ferplus_root, run, epochs=3, resume=True), on_event=events.append)
    resumed = _rows(run)
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"]
    assert float(resumed[1]["val_acc"]) == pytest.approx(float(rows[1]["val_acc"]))  # from last.pt
    assert (run / "metrics.csv.damaged").read_bytes() == damaged.encode("latin-1")
    said = " ".join(getattr(e, "message", "") for e in events)
    assert "metrics.csv is damaged (byte" in said and "line 3: 2 columns, 17 expected" in said
    assert "kept as it was in metrics.csv.damaged" in said


def test_a_config_yaml_edited_between_runs_is_refused_and_a_lost_one_is_rebuilt(ferplus_root, tmp_path,
                                                                                capsys):
    from gsmc_core.cli import main

    run = tmp_path / "run"
    train(_config(ferplus_root, run))
    recipe = (run / "config.yaml").read_text()
    edited = yaml.safe_load(recipe)
    edited.update(input_size=65, lambda_kl=5.0, epochs=3)  # epochs: a resume may change it
    (run / "config.yaml").write_text(yaml.safe_dump(edited))
    before = (run / "last.pt").read_bytes()
    # it trained epoch 3 at 65 px and config.yaml then claimed 65 px for the whole run
    assert main(["train", "--resume", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "differs from the recipe the run was trained with" in err
    assert "input_size 33 in last.pt, 65 in config.yaml" in err and "lambda_kl" in err
    assert "epochs" not in err.split("trained with:")[1].split(". A run")[0]
    assert (run / "last.pt").read_bytes() == before
    # without config.yaml the run was neither resumable nor replaceable: last.pt holds the recipe
    (run / "config.yaml").unlink()
    assert main(["train", "--resume", "--out", str(run), "--epochs", "3"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["input_size"] == 33
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3"]


def test_a_resume_without_best_pt_writes_it_again_and_a_damaged_last_pt_points_to_best(
        ferplus_root, tmp_path):
    run = tmp_path / "run"
    train(_config(ferplus_root, run))
    (run / "best.pt").unlink()  # said "best.pt and last.pt written", and none was ever written
    events = []
    result = train(_config(ferplus_root, run, epochs=3, resume=True), on_event=events.append)
    assert any("best.pt is missing, so the best model so far" in getattr(e, "message", "") for e in events)
    assert result.best is not None and result.best.is_file()
    assert load_checkpoint(result.best).metrics["epoch"] == 3
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])  # cut short by a full disk
    with pytest.raises(TrainingError, match=r"cannot be resumed from it; its best.pt is intact: use "
                                            r"it, or continue training from its weights .*--init"):
        train(_config(ferplus_root, run, epochs=4, resume=True))
    early = tmp_path / "early"  # stopped in its first epoch: there never was a best.pt to lose
    train(_config(ferplus_root, early), should_stop=lambda: True)
    events = []
    train(_config(ferplus_root, early, resume=True), on_event=events.append)
    assert not any("best.pt is missing" in getattr(e, "message", "") for e in events)


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


# --- stop and resume exactly; a resumed run keeps its recipe however it is asked for ------------

def _same_state(a_path, b_path) -> None:
    import torch

    from gsmc_core.checkpoint import load_checkpoint

    a, b = load_checkpoint(a_path).training_state, load_checkpoint(b_path).training_state
    assert a["epoch"] == b["epoch"] and a["global_step"] == b["global_step"]
    for key in ("student", "teacher"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key} {name}"
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]


@pytest.mark.parametrize("stop_after", [1, 2])  # a batch into the epoch; its last batch
@pytest.mark.slow
def test_a_stop_mid_epoch_resumes_at_the_next_batch_as_if_never_stopped(ferplus_root, tmp_path, stop_after):
    from gsmc_core.training.events import BatchEvent

    kw = dict(method="gsmc", preload=True, augment="robust", limit_train=32, batch_size=16)
    train(_config(ferplus_root, tmp_path / "whole", **kw))
    events = []
    stopped = train(_config(ferplus_root, tmp_path / "cut", **kw), on_event=events.append,
                    should_stop=lambda: sum(isinstance(e, BatchEvent) for e in events) == 2 + stop_after)
    assert stopped.stopped and stopped.stopped_mid_epoch and stopped.epochs_completed == 1  # in epoch 2
    resumed_batches = []
    train(_config(ferplus_root, tmp_path / "cut", resume=True, **kw),
          on_event=lambda e: resumed_batches.append(e.batch) if isinstance(e, BatchEvent) else None)
    assert resumed_batches == [2][: 2 - stop_after]  # none trained twice
    _same_state(tmp_path / "whole" / "last.pt", tmp_path / "cut" / "last.pt")
    whole, cut = _rows(tmp_path / "whole"), _rows(tmp_path / "cut")
    for column in ("loss", "ce", "kl", "ac", "train_acc", "val_acc", "val_acc_teacher", "skipped"):
        assert [r[column] for r in whole] == [r[column] for r in cut], column


def test_a_stop_while_the_data_is_loaded_ends_the_run_there_and_leaves_nothing_behind(ferplus_root,
                                                                                     tmp_path):
    # a large dataset decodes for minutes: Stop (Ctrl+C, the tabs' Stop and close) is heard there
    asked = []
    kw = dict(preload=True, augment="webcam", limit_train=200, epochs=1)
    result = train(_config(ferplus_root, tmp_path / "run", **kw),
                   should_stop=lambda: asked.append(1) or len(asked) >= 3)
    assert result.stopped and result.stopped_loading and not result.stopped_mid_epoch
    assert len(asked) == 3  # at images 0, 64 and 128 of the training split: it stopped there
    assert result.last is None and result.best is None and result.epochs_completed == 0
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name != ".gsmc-run.lock"]  # nothing written
    again = train(_config(ferplus_root, tmp_path / "run", **kw))  # a new run in the same folder
    assert not again.stopped and again.epochs_completed == 1 and (tmp_path / "run" / "last.pt").exists()
    before = (tmp_path / "run" / "last.pt").read_bytes()
    asked.clear()  # resumed, then stopped while loading: its checkpoints are still offered, unchanged
    resumed = train(_config(ferplus_root, tmp_path / "run", resume=True, **{**kw, "epochs": 2}),
                    should_stop=lambda: asked.append(1) or len(asked) >= 2)
    assert resumed.stopped_loading and resumed.last == tmp_path / "run" / "last.pt"
    assert resumed.best == tmp_path / "run" / "best.pt"
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_a_stop_while_an_epoch_is_validated_ends_the_run_before_another_batch(ferplus_root, tmp_path,
                                                                              monkeypatch):
    from gsmc_core.training import loop
    from gsmc_core.training.events import BatchEvent, EpochEvent

    stop = []
    validate = loop.Trainer._validate

    def validate_then_stop(self):
        result = validate(self)
        stop.append(True)  # Stop pressed while the first epoch was validated
        return result

    monkeypatch.setattr(loop.Trainer, "_validate", validate_then_stop)
    events, saved = [], {}

    def on_event(event):
        events.append(event)
        if isinstance(event, EpochEvent):
            saved["last"] = (tmp_path / "run" / "last.pt").read_bytes()

    result = train(_config(ferplus_root, tmp_path / "run", method="gsmc"), on_event=on_event,
                   should_stop=lambda: bool(stop))
    assert result.stopped and not result.stopped_mid_epoch and result.epochs_completed == 1
    assert [e.epoch for e in events if isinstance(e, BatchEvent)] == [1, 1]  # none of epoch 2
    assert (tmp_path / "run" / "last.pt").read_bytes() == saved["last"]  # the finished epoch's


@pytest.mark.slow
def test_a_config_that_says_resume_keeps_the_runs_own_recipe(ferplus_root, tmp_path, capsys):
    from gsmc_core.cli import main

    run = tmp_path / "run"
    train(_config(ferplus_root, run, epochs=1))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert "resume" not in saved  # the recipe, not what was done with it
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump({**saved, "resume": True, "method": "gsmc", "epochs": 2}))
    assert main(["train", "--config", str(edited)]) == 2
    assert "method 'ce' -> 'gsmc'" in capsys.readouterr().err
    assert len(_rows(run)) == 1 and yaml.safe_load((run / "config.yaml").read_text()) == saved
    with pytest.raises(TrainingError, match=r"method 'ce' -> 'gsmc'"):  # the same through the API
        train(_config(ferplus_root, run, method="gsmc", resume=True))
    edited.write_text(yaml.safe_dump({**saved, "resume": True, "out": str(tmp_path / "new")}))
    assert main(["train", "--config", str(edited)]) == 2
    assert "says resume: true, but" in capsys.readouterr().err
    template = tmp_path / "template.yaml"  # a run's config.yaml as the template of a new run
    template.write_text((run / "config.yaml").read_text())
    assert main(["train", "--config", str(template), "--out", str(tmp_path / "second")]) == 0
    assert len(_rows(tmp_path / "second")) == 1


@pytest.mark.slow
def test_a_resumed_run_needs_neither_its_init_file_nor_its_data_where_they_were(ferplus_root, tmp_path):
    import shutil

    train(_config(ferplus_root, tmp_path / "first", epochs=1))
    init = tmp_path / "init.pt"
    shutil.copy(tmp_path / "first" / "best.pt", init)
    run = tmp_path / "run"
    events = []
    train(_config(ferplus_root, run, init=str(init), epochs=3), on_event=events.append,
          should_stop=lambda: len([e for e in events if type(e).__name__ == "EpochEvent"]) >= 1)
    init.unlink()  # the imported weights moved away
    moved = tmp_path / "data"
    moved.symlink_to(ferplus_root, target_is_directory=True)  # the dataset moved
    train(_config(ferplus_root, run, init=str(init), epochs=3, resume=True, data_root=str(moved)))
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3"]


def test_seeds_out_of_numpys_range_and_settings_files_are_named(tmp_path):
    from gsmc_core.errors import UsageError

    for name in ("seed", "noise_seed"):
        with pytest.raises(UsageError, match=rf"setting {name}: -1 is outside \[0, 2147483647\]"):
            TrainConfig(data_root="x", **{name: -1}).resolved()
    path = tmp_path / "run.yaml"
    path.write_text("lr: 1e-4\nepochs: 3\n")  # YAML 1.1 would read 1e-4 as text
    assert TrainConfig.from_yaml(path).lr == pytest.approx(1e-4)
    path.write_text("epochs: 0\n")
    with pytest.raises(UsageError, match=r"run.yaml: setting epochs: 0 is outside"):
        TrainConfig.from_yaml(path)


def test_a_run_saved_where_more_gpus_were_visible_resumes_where_fewer_are(monkeypatch):
    import torch

    from gsmc_core.training import distributed

    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append(device))

    def all_gpus(states):  # torch indexes a generator per saved state: past the count it fails
        raise IndexError("list index out of range")

    monkeypatch.setattr(torch.cuda, "set_rng_state_all", all_gpus)
    state = {**distributed.rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8)] * 4}
    distributed.set_rng_state(state)
    assert restored == [0]


def test_a_stop_resumed_by_another_number_of_processes_trains_the_epoch_again(ferplus_root, tmp_path):
    from gsmc_core.checkpoint import load_checkpoint, save_checkpoint
    from gsmc_core.training.events import BatchEvent, LogEvent

    kw = dict(preload=True, augment="webcam", limit_train=48, batch_size=16, epochs=1)
    events = []
    train(_config(ferplus_root, tmp_path / "run", **kw), on_event=events.append,
          should_stop=lambda: sum(isinstance(e, BatchEvent) for e in events) == 2)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last.training_state["partial"]["batch"] == 2
    last.training_state["partial"]["world_size"] = 2  # as if two torchrun processes had stopped
    save_checkpoint(last, tmp_path / "run" / "last.pt")
    resumed = []
    train(_config(ferplus_root, tmp_path / "run", resume=True, **kw), on_event=resumed.append)
    assert [e.batch for e in resumed if isinstance(e, BatchEvent)] == [1, 2, 3]  # their shares differ
    assert any("that epoch starts again" in e.message for e in resumed if isinstance(e, LogEvent))


def test_an_earlier_folder_run_resumes_with_its_own_classes_and_held_out_faces(tmp_path):
    import cv2

    from gsmc_core.training.config import config_for_resume

    for name in ("happy", "sad", "neutral"):  # no contempt: read as 7 classes since this round
        for i in range(12):
            path = tmp_path / "data" / "train" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.full((40, 40, 3), 20 * i, np.uint8))
    run = tmp_path / "run"
    config = TrainConfig(method="ce", dataset="folder", data_root=str(tmp_path / "data"), num_classes=8,
                         input_size=33, output_stride=16, epochs=2, batch_size=8, workers=0,
                         val_fraction=0.25, out=str(run), holdout="shuffle")
    train(config, should_stop=lambda: True)  # stopped after its first batch
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["num_classes"] = None  # as runs saved it when folders read as 8 classes
    del saved["holdout"]  # and before the hash holdout
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    resumed = config_for_resume(run, {})
    assert resumed.holdout == "shuffle"
    result = train(resumed)
    assert result.epochs_completed == 2 and len(_rows(run)) == 2  # 8 classes, as it was trained


def _totals_in_rank(rank: int, store: str, saved: dict, results) -> None:
    import torch
    import torch.distributed as dist

    from gsmc_core.training.distributed import Distributed
    from gsmc_core.training.loop import resumed_progress

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        world = Distributed(rank, 2)
        progress = resumed_progress(saved, world)
        progress.seen += 3  # each rank trains a batch of 3 after the resume, one right
        progress.correct += 1
        progress.sums = {k: v + 0.5 * 3 for k, v in progress.sums.items()}
        total = progress.totals(world, torch.device("cpu"))
        results.put((rank, total.batch, total.seen, total.correct, total.sums))
    finally:
        dist.destroy_process_group()


def test_torchrun_ranks_resume_a_stopped_epoch_with_one_set_of_counts(tmp_path):
    """Rank 0 saved every rank's counts of the stopped epoch; resumed, the ranks' sums have the
    same keys (gloo aborted on tensors of two lengths) and add up to the epoch's whole."""
    import torch.multiprocessing as mp

    from gsmc_core.training.distributed import Distributed
    from gsmc_core.training.loop import EpochProgress, resumed_progress

    saved = dataclasses.asdict(EpochProgress(world_size=2, batch=4, steps=4, seen=24, correct=10,
                                             sums={"loss": 12.0, "ce": 9.0}))
    assert resumed_progress(saved, Distributed(0, 4)) is None  # another number of processes
    assert resumed_progress(saved, Distributed(1, 2)).sums == {"loss": 0.0, "ce": 0.0}
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_totals_in_rank, args=(r, str(tmp_path / "store"), saved, results))
                 for r in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0]
    got = sorted(results.get(timeout=5) for _ in range(2))
    for rank, batch, seen, correct, sums in got:
        assert (batch, seen, correct) == (4, 30, 12)  # 24 + 3 + 3 seen, 10 + 1 + 1 right
        assert sums == {"ce": 12.0, "loss": 15.0}, rank
