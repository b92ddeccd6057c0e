"""Confident learning and the audit score on cases worked by hand and on simulated noise."""

import numpy as np
import pytest

from gsmc_core.review.label_issues import (
    confident_joint,
    estimated_joint,
    per_class_thresholds,
    precision_recall,
    prune_by_noise_rate,
    rank_suspects,
)


def test_thresholds_and_confident_joint_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3], [0.3, 0.7]])
    given = np.array([0, 0, 1, 1, 1])
    t = per_class_thresholds(probs, given)
    assert t == pytest.approx([0.75, 0.6])  # mean p0 over labelled 0; mean p1 over labelled 1
    # sample 0: only p0 0.9 >= 0.75 -> (0, 0); sample 1: none above -> not counted;
    # sample 2: p1 0.8 -> (1, 1); sample 3: none (0.7 < 0.75, 0.3 < 0.6); sample 4: p1 -> (1, 1)
    assert confident_joint(probs, given).tolist() == [[1, 0], [0, 2]]
    # calibrated to the class counts (2 and 3), normalised
    assert estimated_joint(probs, given) == pytest.approx(np.array([[2, 0], [0, 3]]) / 5)


def test_a_clear_flip_is_found_by_every_score():
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.1, 0.9], [0.05, 0.95], [0.97, 0.03]])
    given = np.array([0, 0, 1, 1, 1])  # the last one is labelled 1 but looks like 0
    for score in ("audit", "self_confidence", "normalized_margin"):
        suspects = rank_suspects(probs, given, score)
        assert suspects.order[0] == 4 and suspects.predicted[4] == 0, score
    assert prune_by_noise_rate(probs, given).tolist() == [False, False, False, False, True]


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(0)
    n, m = 4000, 6
    true = rng.integers(0, m, n)
    given = true.copy()
    flip = rng.random(n) < 0.3
    given[flip] = (true[flip] + rng.integers(1, m, flip.sum())) % m
    logits = 2.5 * np.eye(m)[true] + rng.normal(0, 1.0, (n, m))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, given, given != true


@pytest.mark.parametrize("score", ["audit", "self_confidence", "normalized_margin"])
def test_scores_find_simulated_noise(simulated, score):
    probs, given, wrong = simulated
    suspects = rank_suspects(probs, given, score)
    figures = precision_recall(suspects, wrong)
    assert figures["p100"] > 0.95 and figures["p500"] > 0.9
    assert figures["p_at_cut"] > 0.75 and figures["recall_at_cut"] > 0.6
    assert suspects.cut == (int(prune_by_noise_rate(probs, given).sum()) if score != "audit"
                            else int(((probs.argmax(1) != given) & (probs.max(1) >= 0.5)).sum()))


def test_the_estimated_joint_recovers_the_noise_rate(simulated):
    probs, given, wrong = simulated
    q = estimated_joint(probs, given)
    assert 1 - np.trace(q) == pytest.approx(wrong.mean(), abs=0.05)


def test_cross_validated_probabilities_come_from_runs_that_never_saw_the_face(ferplus_root, tmp_path):
    import csv

    from gsmc_core.review.cross_val import cross_validated_scores
    from gsmc_core.training.config import TrainConfig
    from gsmc_core.training.loop import fold_of

    base = TrainConfig(method="ce", dataset="ferplus", data_root=str(ferplus_root), input_size=33,
                       output_stride=16, epochs=1, batch_size=16, limit_train=60, limit_eval=16,
                       workers=0, preload=True, noise_rate=0.3, noise_seed=2)
    scores = cross_validated_scores(base, 3, tmp_path / "cv")
    assert len(scores.indices) == 60 and scores.probs.shape == (60, 8)
    assert np.allclose(scores.probs.sum(1), 1, atol=1e-4)
    assert len(scores.flips) == 18  # the run's 30 % noise, known
    fold = fold_of(60, 3, base.seed)
    assert sorted(np.bincount(fold).tolist()) == [20, 20, 20]
    for k in range(3):  # each fold's model trained on the other two folds only
        with open(tmp_path / "cv" / f"fold{k}" / "train_labels.csv", newline="") as f:
            trained_on = {r["key"] for r in csv.DictReader(f)}
        held_out = {scores.split.samples[i].key for i in np.flatnonzero(fold == k)}
        assert len(trained_on) == 40 and not trained_on & held_out
    stamps = [(tmp_path / "cv" / f"fold{k}" / "last.pt").stat().st_mtime for k in range(3)]
    again = cross_validated_scores(base, 3, tmp_path / "cv")  # done before: nothing retrained
    assert np.array_equal(again.probs, scores.probs)
    assert stamps == [(tmp_path / "cv" / f"fold{k}" / "last.pt").stat().st_mtime for k in range(3)]
    # another job in the same folder (more epochs, or another fold count) does not take them
    import dataclasses

    from gsmc_core.training.config import TrainingError

    with pytest.raises(TrainingError, match=r"fold0 was scored by another cross-validation \(epochs 1, "):
        cross_validated_scores(dataclasses.replace(base, epochs=5), 3, tmp_path / "cv")
    with pytest.raises(TrainingError, match=r"folds 3, here 2"):
        cross_validated_scores(base, 2, tmp_path / "cv")


def test_gsmc_crossval_command_reports_against_the_runs_noise(ferplus_root, tmp_path, capsys):
    from gsmc_core.cli import main

    run = tmp_path / "run"
    assert main(["train", "--method", "ce", "--dataset", "ferplus", "--data-root", str(ferplus_root),
                 "--input-size", "33", "--epochs", "1", "--batch-size", "16", "--limit-train", "40",
                 "--limit-eval", "16", "--workers", "0", "--noise-rate", "0.25", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["crossval", "--run", str(run), "--folds", "2", "--out", str(tmp_path / "cv"),
                 "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "out-of-sample predictions, cross-validated" in out and "against the 10 noisy labels" in out


def test_a_folds_scores_cut_short_by_a_full_disk_leave_no_file_marking_it_done(tmp_path, monkeypatch):
    from gsmc_core.review import cross_val

    def disk_full(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    path = tmp_path / "fold0" / cross_val.HELDOUT
    path.parent.mkdir()
    monkeypatch.setattr(cross_val.np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        cross_val.write_heldout(path, np.arange(3), np.ones((3, 8), np.float32))
    assert list(path.parent.iterdir()) == []  # the fold is trained again on the next run
    monkeypatch.undo()
    cross_val.write_heldout(path, np.arange(3), np.ones((3, 8), np.float32))
    with np.load(path) as held:
        assert held["indices"].tolist() == [0, 1, 2] and held["probs"].shape == (3, 8)


def test_folds_scored_on_another_dataset_are_refused_not_given_to_other_faces(small_ferplus, tmp_path,
                                                                            capsys):
    # the Review tab cross-validates into the model's own folder whatever dataset it is given:
    # another dataset's folds handed each face its neighbour's probabilities (or an IndexError)
    import dataclasses
    import shutil

    from gsmc_core.cli import main
    from gsmc_core.review.cross_val import cross_validated_scores
    from gsmc_core.training.config import TrainConfig, TrainingError

    other = tmp_path / "other"
    shutil.copytree(small_ferplus, other, symlinks=True)
    labels = other / "FER2013Train" / "label.csv"
    labels.write_text("\n".join(labels.read_text().splitlines()[:-10]) + "\n")  # 10 faces fewer
    base = TrainConfig(method="ce", dataset="ferplus", data_root=str(small_ferplus), input_size=33,
                       output_stride=16, epochs=1, batch_size=16, workers=0, preload=True)
    cross_validated_scores(base, 2, tmp_path / "cv")
    with pytest.raises(TrainingError, match=r"fold0 was scored on other faces or labels than .*other"):
        cross_validated_scores(dataclasses.replace(base, data_root=str(other)), 2, tmp_path / "cv")
    assert main(["crossval", "--run", str(tmp_path / "cv" / "fold0"), "--folds", "1",
                 "--out", str(tmp_path / "cv1")]) == 2  # one "fold" is in-sample
    assert "--folds must be at least 2" in capsys.readouterr().err
