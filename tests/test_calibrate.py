"""Logit adjustment: τ chosen on validation within the allowed accuracy drop, folded into the
classifier bias (CAMs unchanged), and the checkpoint it writes loads safely."""

import numpy as np
import pytest
import torch

from gsmc_core.checkpoint import load_checkpoint, save_checkpoint
from gsmc_core.cli import main
from gsmc_core.training.calibrate import (
    Adjustment,
    Features,
    adjusted_checkpoint,
    choose_tau,
    class_prior,
    pooled_features,
    refit_classifier,
    refitted_checkpoint,
    unadjusted_checkpoint,
)
from gsmc_core.training.evaluate import classification_metrics

CLASSES = ("neutral", "happiness", "fear")


def test_a_rare_class_swallowed_by_a_frequent_one_is_recovered():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 800 + [1] * 150 + [2] * 50)
    logits = rng.normal(0, 1, (1000, 3)).astype(np.float32)
    logits[np.arange(1000), labels] += 1.5
    logits[:, 0] += 1.2  # a model biased towards the frequent class, as on FERPlus
    prior = np.array([0.8, 0.15, 0.05])
    choice = choose_tau(logits, labels, prior, CLASSES, max_drop=0.02)
    first = choice.table[0]
    chosen = next(r for r in choice.table if r["tau"] == choice.tau)
    assert choice.tau > 0 and chosen["mean_class_accuracy"] > first["mean_class_accuracy"] + 0.05
    assert chosen["accuracy"] >= first["accuracy"] - 0.02
    # the offsets favour rare classes
    assert choice.offsets[2] > choice.offsets[1] > choice.offsets[0]


def test_adjustment_lives_in_the_bias_and_keeps_the_cams(random_checkpoint, tmp_path, astronaut_rgb):
    from gsmc_core.frames.predictor import Predictor

    ckpt = load_checkpoint(random_checkpoint)
    choice = choose_tau(np.zeros((4, 8), np.float32), np.array([0, 1, 2, 3]),
                        np.full(8, 1 / 8), ckpt.meta.classes)
    offsets = np.linspace(-1, 1, 8).astype(np.float32)
    adjusted = adjusted_checkpoint(ckpt, type(choice)(0.5, offsets, choice.table))
    path = save_checkpoint(adjusted, tmp_path / "adjusted.pt")
    loaded = load_checkpoint(path)  # a safe load: numbers are plain Python numbers
    assert loaded.metrics["logit_adjustment_tau"] == 0.5
    torch.testing.assert_close(loaded.state_dict["fc.bias"] - ckpt.state_dict["fc.bias"],
                               torch.from_numpy(offsets))
    crop = astronaut_rgb[60:300, 150:360]
    before = Predictor.from_checkpoint(random_checkpoint, device="cpu", backend="torch").predict([crop])[0]
    after = Predictor.from_checkpoint(path, device="cpu", backend="torch").predict([crop])[0]
    np.testing.assert_allclose(before.cams, after.cams, atol=1e-5)
    assert not np.allclose(before.probabilities, after.probabilities)


def test_a_second_calibration_replaces_the_first_instead_of_adding_to_it(random_checkpoint, ferplus_root):
    from gsmc_core.training.data.readers import read_split

    ckpt = load_checkpoint(random_checkpoint)
    bias = ckpt.state_dict["fc.bias"]
    table = [{"tau": 0.5, "accuracy": 0.8, "mean_class_accuracy": 0.6}]
    offsets = np.linspace(-1, 1, 8).astype(np.float32)
    adjusted = adjusted_checkpoint(ckpt, Adjustment(0.5, offsets, table))
    train = read_split("ferplus", ferplus_root, "train")
    plain = unadjusted_checkpoint(adjusted, train)  # the recorded offsets come out again
    torch.testing.assert_close(plain.state_dict["fc.bias"], bias)
    gone = {"logit_adjustment_tau", "logit_adjustment_offsets", "val_acc_calibrated"}
    assert not gone & plain.metrics.keys()
    # calibrated by a version that recorded τ only (model 0.5): −τ·log(prior) of its training split
    old = adjusted_checkpoint(ckpt, Adjustment(0.5, (-0.5 * np.log(class_prior(train))).astype(np.float32),
                                               table))
    old.metrics.pop("logit_adjustment_offsets")
    torch.testing.assert_close(unadjusted_checkpoint(old, train).state_dict["fc.bias"], bias)
    assert unadjusted_checkpoint(ckpt, train) is ckpt  # nothing to take out


@pytest.mark.slow
def test_cli_calibrate_on_ferplus(capsys, tmp_path):
    from conftest import shared_path

    from gsmc_core.resources import DEFAULT_CHECKPOINT
    from gsmc_core.training.data.readers import read_split

    out = tmp_path / "calibrated.pt"
    assert main(["calibrate", "--checkpoint", str(DEFAULT_CHECKPOINT), "--data-root",
                 str(shared_path("data", "ferplus")), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "<- chosen" in printed and "tau 0.00: validation accuracy" in printed
    assert "taking out the earlier adjustment (tau 0.2): the offsets it recorded" in printed  # 0.6 has them
    written = load_checkpoint(out)
    metrics = written.metrics
    assert metrics["logit_adjustment_tau"] >= 0 and 0 < metrics["val_acc_calibrated"] <= 1
    # the shipped model is calibrated already (τ 0.2): its adjustment is replaced, not added to
    shipped = load_checkpoint(DEFAULT_CHECKPOINT)
    train = read_split("ferplus", shared_path("data", "ferplus"), "train")
    offsets = torch.tensor(metrics["logit_adjustment_offsets"])
    torch.testing.assert_close(written.state_dict["fc.bias"].float() - offsets,  # (fp16 weights)
                               unadjusted_checkpoint(shipped, train).state_dict["fc.bias"].float(),
                               atol=2e-3, rtol=0)


def _features(n_per_class: list[int], seed: int) -> Features:
    """Pooled features of two well-separated frequent classes and a rare one that sits close to
    class 0, as on FERPlus (contempt next to neutral)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.4, 0.0, 1.0]])
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    plain = centres[labels] + 0.5 * torch.randn(len(labels), 3, generator=gen)
    targets = torch.nn.functional.one_hot(labels, 3).float()
    return Features(plain, plain + 0.05 * torch.randn(plain.shape, generator=gen), labels, targets)


def test_refit_with_class_weights_recovers_a_rare_class():
    train, val = _features([900, 900, 60], 0), _features([300, 300, 100], 1)
    weight = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # never predicts class 2
    bias = torch.zeros(3)
    rare_recall = {}
    for power in (0.0, 1.0):
        refit = refit_classifier(weight, bias, train, val, CLASSES, power=power, epochs=15)
        logits = (val.plain @ refit.weight.T + refit.bias).numpy()
        m = classification_metrics(logits, val.labels.numpy(), CLASSES)
        rare_recall[power] = m["per_class"]["fear"]
        chosen = refit.table[refit.epoch - 1]
        assert chosen["accuracy"] + chosen["mean_class_accuracy"] == max(
            r["accuracy"] + r["mean_class_accuracy"] for r in refit.table)
        assert m["accuracy"] == pytest.approx(chosen["accuracy"])
    assert rare_recall[1.0] > rare_recall[0.0] + 0.15
    assert not torch.equal(refit.weight, weight)


@pytest.mark.slow
def test_refitted_checkpoint_on_real_faces(random_checkpoint, ferplus_root):
    from gsmc_core.training.data.readers import read_split

    ckpt = load_checkpoint(random_checkpoint)
    train = read_split("ferplus", ferplus_root, "train").subset(48, seed=0)
    val = read_split("ferplus", ferplus_root, "val").subset(24, seed=0)
    feats = pooled_features(ckpt, train, torch.device("cpu"))
    assert feats.plain.shape == (48, 512) and feats.mirrored.shape == (48, 512)
    assert not torch.allclose(feats.plain, feats.mirrored)  # real faces are not symmetric
    torch.testing.assert_close(feats.targets, train.soft_targets())  # FERPlus: the vote shares
    refitted, refit = refitted_checkpoint(ckpt, train, val, torch.device("cpu"), epochs=3)
    assert refitted.metrics["classifier_refit"] == {"power": 0.25, "epochs": 3, "chosen_epoch": refit.epoch}
    assert refitted.metrics["val_acc_calibrated"] == refit.table[refit.epoch - 1]["accuracy"]
    assert not torch.equal(refitted.state_dict["fc.weight"], ckpt.state_dict["fc.weight"])
    key = "backbone.layer4.1.conv2.weight"  # the backbone is untouched
    torch.testing.assert_close(refitted.state_dict[key], ckpt.state_dict[key])


def test_a_noisy_runs_calibration_uses_the_labels_it_trained_on(random_checkpoint, small_ferplus, tmp_path,
                                                                capsys):
    import dataclasses

    from gsmc_core.cli.training import _trained_on
    from gsmc_core.training.config import TrainConfig
    from gsmc_core.training.data.readers import read_split
    from gsmc_core.training.loop import training_split

    recipe = TrainConfig(dataset="ferplus", data_root=str(small_ferplus), noise_rate=0.5, noise_seed=3,
                         limit_train=30, seed=2)
    cfg = dataclasses.asdict(recipe)
    trained, clean = training_split(recipe)
    own = read_split("ferplus", small_ferplus, "train", 8, 0.1, 2, "shuffle")
    rebuilt = _trained_on(own, cfg)
    assert [s.key for s in rebuilt.samples] == [s.key for s in trained.samples]
    assert rebuilt.labels() == trained.labels() != clean  # the noisy ones, not the dataset's


@pytest.mark.slow
def test_cli_calibrate_of_a_noisy_run_says_which_labels_it_uses(random_checkpoint, small_ferplus, tmp_path,
                                                                capsys):
    import dataclasses

    from gsmc_core.checkpoint import save_checkpoint
    from gsmc_core.training.config import TrainConfig

    cfg = dataclasses.asdict(TrainConfig(dataset="ferplus", data_root=str(small_ferplus), noise_rate=0.5))
    model = tmp_path / "noisy.pt"
    save_checkpoint(dataclasses.replace(load_checkpoint(random_checkpoint), train_config=cfg), model)
    assert main(["calibrate", "--checkpoint", str(model), "--data-root", str(small_ferplus),
                 "--out", str(tmp_path / "out.pt"), "--device", "cpu"]) == 0
    assert "the run trained on noisy labels (symmetric, rate 0.5)" in capsys.readouterr().out
