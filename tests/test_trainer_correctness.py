"""Trainer correctness. The GSMC step as the trainer computes it, against the formula written out
by hand: each test fails on one plausible breakage of train.py (teacher fed the unflipped or
vertically flipped view, KL arguments swapped, loss weights swapped, BatchNorm buffers not
averaged); predict_loader's mode restore; `gsmc eval`'s held-out split."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsmc_core.model import GSMCNet
from gsmc_core.training.config import TrainConfig
from gsmc_core.training.losses import ema_alpha
from gsmc_core.training.methods import make_method

LAMBDA_KL, LAMBDA_AC = 0.9, 0.2


class Recording(nn.Module):
    """Runs ``inner`` and keeps a copy of every input it was given."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor):
        self.inputs.append(x.detach().clone())
        return self.inner(x)


@pytest.fixture
def step():
    """GSMC as the trainer builds it from a config, a student in eval mode (so each image's
    output does not depend on the rest of the batch), a teacher that differs from it, and an
    asymmetric batch."""
    torch.manual_seed(5)
    config = TrainConfig(method="gsmc", data_root="unused", lambda_kl=LAMBDA_KL, lambda_ac=LAMBDA_AC,
                         input_size=32, output_stride=8).resolved()
    model = GSMCNet(4, output_stride=8).eval()
    gsmc = make_method(config, model)
    with torch.no_grad():
        for p in gsmc.teacher.module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    images = torch.randn(6, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    return gsmc, model, gsmc.teacher, images, labels


def test_teacher_sees_the_horizontally_flipped_batch(step):
    gsmc, model, teacher, images, labels = step
    teacher.module = Recording(teacher.module)
    gsmc.losses(model, images, labels)
    (seen,) = teacher.module.inputs
    assert torch.equal(seen, images.flip(-1))  # width is the last axis of N x C x H x W
    assert not torch.equal(seen, images) and not torch.equal(seen, images.flip(-2))


def test_total_is_ce_plus_weighted_kl_and_flip_mse_by_hand(step):
    gsmc, model, teacher, images, labels = step
    total, terms, _ = gsmc.losses(model, images, labels)
    with torch.no_grad():
        logits, cams = model(images)
        _, cams_of_mirror = model(images.flip(3))
        teacher_logits, _ = teacher.module(images.flip(3))
        log_p_s = F.log_softmax(logits, 1)
        ce = -log_p_s[torch.arange(len(labels)), labels].mean()
        log_p_t = F.log_softmax(teacher_logits, 1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()  # KL(p_teacher || p_student)
        mse = ((cams - cams_of_mirror.flip(3)) ** 2).mean()  # the mirror's CAMs mirrored back
    torch.testing.assert_close(terms["ce"], ce, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(terms["kl"], kl, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(terms["ac"], mse, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(total, ce + LAMBDA_KL * kl + LAMBDA_AC * mse, rtol=1e-4, atol=1e-6)
    # the terms differ enough that swapped weights or a swapped KL direction would show
    assert abs((LAMBDA_KL - LAMBDA_AC) * (kl - mse)) > 1e-3
    kl_other_way = (log_p_s.exp() * (log_p_s - log_p_t)).sum(1).mean()
    assert abs(kl - kl_other_way) > 1e-4


def test_the_student_learns_from_the_kl_and_the_teacher_does_not(step):
    gsmc, model, teacher, images, labels = step
    _, terms, _ = gsmc.losses(model, images, labels)
    terms["kl"].backward()
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_teacher_averages_batchnorm_buffers():
    torch.manual_seed(6)
    config = TrainConfig(method="gsmc", data_root="unused").resolved()
    model = GSMCNet(4, output_stride=8)
    teacher = make_method(config, model).teacher
    bn_student = model.backbone.bn1 if hasattr(model, "backbone") else next(
        m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    name = next(n for n, m in model.named_modules() if m is bn_student)
    bn_teacher = dict(teacher.module.named_modules())[name]
    before = bn_teacher.running_mean.clone()
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32) * 3 + 1)  # moves the student's running statistics
    assert not torch.allclose(bn_student.running_mean, before)
    teacher.update_parameters(model)  # step 1: alpha 0.5
    a = ema_alpha(1, config.ema_alpha)
    torch.testing.assert_close(bn_teacher.running_mean, a * before + (1 - a) * bn_student.running_mean)


def test_predict_loader_restores_train_mode_when_a_batch_fails():
    from gsmc_core.training.data.samples import Batch
    from gsmc_core.training.evaluate import predict_loader

    def batches():
        yield Batch(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), torch.tensor([0, 1]), 0)
        raise OSError("the disk went away")

    model = GSMCNet(4, output_stride=8).train()
    with pytest.raises(OSError, match="disk went away"):
        predict_loader(model, batches(), torch.device("cpu"))
    assert model.training


def test_eval_scores_the_faces_the_run_held_out(tmp_path):
    """`gsmc eval --split val` on a dataset without a val split: the run's seed and fraction."""
    import cv2
    import numpy as np

    from gsmc_core.checkpoint import Checkpoint, ModelMeta
    from gsmc_core.labels import CANONICAL_CLASSES
    from gsmc_core.training.data.preload import calibration_faces
    from gsmc_core.training.data.readers import checkpoint_split, read_split

    for cls in ("happy", "neutral"):
        for i in range(20):
            path = tmp_path / "train" / cls / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.full((8, 8, 3), 10 * i, np.uint8))
    meta = ModelMeta(arch="resnet18", classes=CANONICAL_CLASSES, input_size=32, output_stride=16)
    ckpt = Checkpoint(meta=meta, state_dict={},
                      train_config={"dataset": "folder", "seed": 1, "val_fraction": 0.3, "holdout": "hash"})
    held_out = {s.key for s in read_split("folder", tmp_path, "val", 8, 0.3, 1).samples}
    trained_on = {s.key for s in read_split("folder", tmp_path, "train", 8, 0.3, 1).samples}
    scored = {s.key for s in checkpoint_split(ckpt, "folder", str(tmp_path), "val").samples}
    assert scored == held_out and not scored & trained_on and len(scored) == 12
    # `gsmc quantize` calibrates on the same held-out faces (it took the default 10 %, seed 0:
    # 4 faces, some of them trained on)
    assert sum(len(b) for b in calibration_faces(ckpt, "folder", tmp_path, faces=100)) == 12
    # a run made before the hash holdout (its config has no `holdout`) scores its own shuffled split
    older = Checkpoint(meta=meta, state_dict={},
                       train_config={"dataset": "folder", "seed": 1, "val_fraction": 0.3})
    shuffled = {s.key for s in read_split("folder", tmp_path, "val", 8, 0.3, 1, "shuffle").samples}
    older_scored = {s.key for s in checkpoint_split(older, "folder", str(tmp_path), "val").samples}
    assert older_scored == shuffled != scored
    # a checkpoint trained elsewhere gets the defaults (no run settings to honour)
    other = Checkpoint(meta=meta, state_dict={}, train_config={"dataset": "ferplus", "seed": 1})
    default = {s.key for s in read_split("folder", tmp_path, "val", 8).samples}
    assert {s.key for s in checkpoint_split(other, "folder", str(tmp_path), "val").samples} == default


@pytest.mark.slow
def test_resume_continues_the_runs_own_settings(ferplus_root, tmp_path, capsys):
    import yaml

    from gsmc_core.checkpoint import load_checkpoint
    from gsmc_core.cli import main

    out = tmp_path / "run"
    first = ["train", "--dataset", "ferplus", "--data-root", str(ferplus_root), "--method", "gsmc",
             "--noise-rate", "0.5", "--input-size", "32", "--output-stride", "8", "--batch-size", "16",
             "--epochs", "1", "--limit-train", "64", "--limit-eval", "32", "--workers", "0",
             "--lr", "0.001", "--out", str(out)]
    assert main(first) == 0
    saved = (out / "config.yaml").read_text()
    capsys.readouterr()
    # another recipe: refused, named, and nothing in the run folder changes
    assert main(["train", "--out", str(out), "--resume", "--method", "eac", "--noise-rate", "0",
                 "--arch", "resnet34"]) == 2
    err = capsys.readouterr().err
    assert "method 'gsmc' -> 'eac'" in err and "noise_rate 0.5 -> 0.0" in err and "arch" in err
    assert "Traceback" not in err and (out / "config.yaml").read_text() == saved
    # more epochs and a lower learning rate: the run's own input, batch and limits, the new lr used
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--lr", "0.0005"]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert (cfg["input_size"], cfg["batch_size"], cfg["limit_train"], cfg["noise_rate"]) == (32, 16, 64, 0.5)
    assert (cfg["epochs"], cfg["lr"]) == (2, 0.0005)
    state = load_checkpoint(out / "last.pt").training_state
    assert state["epoch"] == 2
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0005)
    # a finished run: nothing to do, and it says so
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_eac_views_are_the_image_and_its_mirror_erased_independently(astronaut_rgb):
    from gsmc_core.checkpoint import ModelMeta
    from gsmc_core.labels import CANONICAL_CLASSES
    from gsmc_core.training.data.transforms import EacPairTransform, eval_transform

    meta = ModelMeta(arch="resnet18", classes=CANONICAL_CLASSES, input_size=64, output_stride=16)
    transform = EacPairTransform(meta)
    clean = eval_transform(meta)(astronaut_rgb)
    different_erasures = noisy = 0
    for seed in range(12):
        torch.manual_seed(seed)
        pair = transform(astronaut_rgb)
        assert pair.shape == (2, 3, 64, 64)
        view, mirror = pair[0], pair[1].flip(-1)  # the mirror view, mirrored back
        kept = (mirror != 0).any(0)  # not erased
        assert kept.float().mean() > 0.7
        # the mirror of the raw image: no crop, rotation, flip or the first view's noise
        torch.testing.assert_close(mirror[:, kept], clean[:, kept], rtol=0, atol=1e-5)
        view_kept = (view != 0).any(0)
        noisy += bool(((view - clean).abs().amax(0)[view_kept] > 1e-4).float().mean() > 0.5)
        different_erasures += bool((kept != view_kept).any())  # erased in different places
    assert different_erasures >= 6  # each view is erased with p = 0.5: 9 of 12 expected
    assert 2 <= noisy <= 10  # Gaussian noise on the first view with p = 0.5


def test_eac_step_compares_the_first_view_with_the_second(step):
    _, model, _, images, labels = step
    config = TrainConfig(method="eac", data_root="unused").resolved()
    eac = make_method(config, model)
    second = torch.randn_like(images)  # a second view that is not the mirror of the first
    total, terms, _ = eac.losses(model, torch.stack([images, second], 1), labels)
    with torch.no_grad():
        logits, cams = model(images)
        _, cams_second = model(second)
        ce = F.cross_entropy(logits, labels)
        mse = ((cams - cams_second.flip(3)) ** 2).mean()
    torch.testing.assert_close(terms["ac"], mse, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(total, ce + config.eac_lambda * mse, rtol=1e-4, atol=1e-6)


def test_eval_of_nothing_is_an_error_not_nan(ferplus_root, tmp_path, capsys):
    from gsmc_core.cli import main
    from gsmc_core.resources import DEFAULT_CHECKPOINT

    rc = main(["eval", "--checkpoint", str(DEFAULT_CHECKPOINT), "--dataset", "ferplus", "--data-root",
               str(ferplus_root), "--split", "test", "--limit", "0", "--workers", "0", "--json"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert "--limit must be at least 1 face, got 0" in captured.err  # said before any work


def test_noisy_validation_takes_the_noise_file_and_needs_some_noise(tmp_path):
    """Selection without a clean oracle: the validation faces get the noise file's labels too
    (they were clean), and asking for it in a run without label noise is an error, not a no-op."""
    import dataclasses

    import cv2
    import numpy as np

    from gsmc_core.errors import UsageError
    from gsmc_core.labels import SEVEN_CLASSES
    from gsmc_core.training.config import TrainingError
    from gsmc_core.training.data.readers import read_split
    from gsmc_core.training.loop import Trainer

    lines = []
    for i in range(1, 41):
        lines.append(f"train_{i:05d}.jpg {i % 7 + 1}")
        path = tmp_path / "Image" / "aligned" / f"train_{i:05d}_aligned.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((8, 8, 3), 100, np.uint8))
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    noise = tmp_path / "noise.txt"
    noise.write_text("".join(f"train_{i:05d}.jpg 7\n" for i in range(1, 41)))  # all neutral
    cfg = TrainConfig(dataset="rafdb", data_root=str(tmp_path), noise_file=str(noise),
                      noisy_validation=True, val_fraction=0.25, out=str(tmp_path / "run"))
    train, val, _ = Trainer(cfg)._read_data()
    neutral = SEVEN_CLASSES.index("neutral")
    assert len(val.samples) >= 7 and set(val.labels()) == {neutral}
    assert len(set(read_split("rafdb", tmp_path, "val", 7, 0.25, 0).labels())) == 7  # clean: all seven
    train_only = tmp_path / "train_only.txt"  # names none of the held-out faces
    train_only.write_text("".join(f"{s.key} 7\n" for s in train.samples))
    with pytest.raises(TrainingError, match=r"noisy validation: .*train_only.txt names none"):
        Trainer(dataclasses.replace(cfg, noise_file=str(train_only)))._read_data()
    with_rate = Trainer(dataclasses.replace(cfg, noise_file=str(train_only), noise_rate=0.5))._read_data()[1]
    clean = read_split("rafdb", tmp_path, "val", 7, 0.25, 0).labels()
    flipped = sum(a != b for a, b in zip(with_rate.labels(), clean, strict=True))
    assert flipped == round(0.5 * len(val.samples))  # the noise rate's, as the train file gives none
    with pytest.raises(UsageError, match=r"noisy validation .* this run has none"):
        TrainConfig(dataset="rafdb", data_root=str(tmp_path), noisy_validation=True).resolved()
