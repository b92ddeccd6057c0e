"""The training recipe wired into the trainer as METHOD.md says, each test killing breakages the
unit tests of the method let through: the student trained in eval mode, the teacher's BatchNorm
recompute not called (or called after validation), the sampler's epoch never set, the vote
shares not reaching the loss, best.pt holding another candidate's weights than the one
selected, the EMA cap not the configured one, a distilled run whose own teacher is never
updated, and a noisy run trained on the clean labels."""

import csv
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from gsmc_core.checkpoint import load_checkpoint
from gsmc_core.model import GSMCNet
from gsmc_core.training import loop
from gsmc_core.training.config import TrainConfig
from gsmc_core.training.losses import ema_alpha
from gsmc_core.training.methods import GSMC, Distilled, classification_loss, make_method


@pytest.fixture(scope="module")
def spied_run(ferplus_root, tmp_path_factory):
    """One real GSMC epoch on FERPlus's vote shares, what the trainer did recorded."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _spied_run(ferplus_root, tmp_path_factory.mktemp("wiring"), monkeypatch)


def _spied_run(ferplus_root, tmp_path, monkeypatch):
    seen: list = []
    losses, end_epoch, validate = GSMC.losses, GSMC.end_epoch, loop.Trainer._validate
    set_epoch = []

    def spy_losses(self, model, images, labels, soft=None):
        seen.append(("step", model.training, None if soft is None else soft.clone()))
        return losses(self, model, images, labels, soft)

    def spy_end_epoch(self):
        seen.append(("end_epoch",))
        return end_epoch(self)

    def spy_validate(self, *args, **kwargs):
        seen.append(("validate",))
        return validate(self, *args, **kwargs)

    monkeypatch.setattr(GSMC, "losses", spy_losses)
    monkeypatch.setattr(GSMC, "end_epoch", spy_end_epoch)
    monkeypatch.setattr(loop.Trainer, "_validate", spy_validate)
    real_loader = loop.Trainer._loader

    def spy_loader(self, split, training):
        made = real_loader(self, split, training)
        if training:
            real = made.sampler.set_epoch
            made.sampler.set_epoch = lambda epoch: (set_epoch.append(epoch), real(epoch))
        return made

    monkeypatch.setattr(loop.Trainer, "_loader", spy_loader)
    config = TrainConfig(method="gsmc", dataset="ferplus", data_root=str(ferplus_root), input_size=33,
                         output_stride=8, epochs=1, batch_size=16, limit_train=48, limit_eval=32,
                         workers=0, soft_labels=True, out=str(tmp_path / "run"))
    result = loop.train(config)
    return seen, set_epoch, result


def test_the_student_trains_in_train_mode_on_vote_shares_and_the_epoch_is_set(spied_run):
    seen, set_epoch, _ = spied_run
    steps = [s for s in seen if s[0] == "step"]
    assert len(steps) == 3 and all(training for _, training, _ in steps)
    soft = torch.cat([s for _, _, s in steps])
    assert torch.allclose(soft.sum(1), torch.ones(len(soft)))  # vote shares, not one-hot labels
    assert ((soft > 0) & (soft < 1)).any()
    assert set_epoch == [0]


def test_the_teachers_statistics_are_recomputed_before_it_is_validated(spied_run):
    seen, _, _ = spied_run
    order = [s[0] for s in seen if s[0] != "step"]
    assert order == ["end_epoch", "validate"]


def test_best_pt_holds_the_weights_of_the_candidate_selected(spied_run):
    _, _, result = spied_run
    row = next(csv.DictReader(open(result.run_dir / "metrics.csv")))
    state = load_checkpoint(result.last).training_state
    if row["selected"] == "teacher":
        chosen = {k.removeprefix("module."): v for k, v in state["teacher"].items() if k != "n_averaged"}
        other = state["student"]
    else:
        chosen, other = state["student"], {k.removeprefix("module."): v for k, v in state["teacher"].items()}
    best = load_checkpoint(result.best).state_dict
    for name, value in best.items():
        torch.testing.assert_close(value.float(), chosen[name].float(), atol=1e-3, rtol=1e-3)
    assert any(not torch.allclose(best[n].float(), other[n].float(), atol=1e-3) for n in best
               if best[n].is_floating_point())  # the two candidates differ: the test can tell


def test_the_teachers_ema_is_capped_at_the_configured_alpha():
    torch.manual_seed(0)
    model = GSMCNet(4, output_stride=8)
    gsmc = make_method(TrainConfig(method="gsmc", data_root="unused", ema_alpha=0.6), model)
    teacher = gsmc.teacher.module.fc.bias.detach().clone()
    for step in (1, 2, 3):  # alpha 0.5, then min(2/3, 0.6), then min(3/4, 0.6)
        with torch.no_grad():
            model.fc.bias.add_(1.0)
        gsmc.after_step(model)
        a = ema_alpha(step, 0.6)
        teacher = a * teacher + (1 - a) * model.fc.bias.detach()
        torch.testing.assert_close(gsmc.teacher.module.fc.bias, teacher)
    assert ema_alpha(3, 0.6) == 0.6


def test_a_distilled_gsmc_run_still_updates_its_own_teacher():
    torch.manual_seed(0)
    model = GSMCNet(4, output_stride=8)
    gsmc = make_method(TrainConfig(method="gsmc", data_root="unused"), model)
    distilled = Distilled(gsmc, [GSMCNet(4, output_stride=8).eval()], 1.0)
    before = gsmc.teacher.module.fc.bias.detach().clone()
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    distilled.after_step(model)
    torch.testing.assert_close(gsmc.teacher.module.fc.bias, before + 0.5)  # the mean of two
    assert int(gsmc.teacher.n_averaged) == 2


def test_vote_shares_change_the_loss_from_the_majority_label():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    labels = torch.tensor([0, 2])
    soft = torch.tensor([[0.6, 0.4, 0.0], [0.0, 0.3, 0.7]])
    by_hand = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(classification_loss(logits, labels, soft), by_hand)
    assert not torch.isclose(classification_loss(logits, labels, None), by_hand)


def test_a_noisy_run_trains_on_its_noisy_labels(ferplus_root):
    config = TrainConfig(dataset="ferplus", data_root=str(ferplus_root), limit_train=200, noise_rate=0.3,
                         noise_seed=4)
    train, clean = loop.training_split(config)
    flipped = sum(a != b for a, b in zip(train.labels(), clean, strict=True))
    assert flipped == 60
    again, _ = loop.training_split(dataclasses.replace(config, noise_seed=5))
    assert again.labels() != train.labels()  # the seed decides which
