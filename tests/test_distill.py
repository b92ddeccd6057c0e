"""Distilling trained teachers into the student (``teachers``; methods.Distilled). Each test fails
on a plausible breakage: the target the mean of logits instead of probabilities, the teachers fed
another view than the student's, the KL reversed, the weight ignored, the student's logits
detached, the teachers trained or left in train mode, the method's own teacher lost, a teacher
that sees other inputs than the student accepted silently."""

import csv
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from gsmc_core.checkpoint import Checkpoint, CheckpointError, ModelMeta, save_checkpoint
from gsmc_core.errors import UsageError
from gsmc_core.model import GSMCNet
from gsmc_core.training.config import TrainConfig, TrainingError
from gsmc_core.training.loop import train
from gsmc_core.training.methods import Distilled, make_method

CLASSES = ("a", "b", "c", "d")
META = ModelMeta(arch="resnet18", classes=CLASSES, input_size=32, output_stride=8)
LAMBDA = 0.7


class Recording(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.inner(x)


def teacher_file(path, seed: int, meta: ModelMeta = META):
    torch.manual_seed(seed)
    weights = GSMCNet(len(meta.classes), output_stride=8).state_dict()
    save_checkpoint(Checkpoint(meta=meta, state_dict=weights), path)
    return path


def distilled(tmp_path, method: str = "ce", **kw) -> tuple[Distilled, GSMCNet]:
    a, b = teacher_file(tmp_path / "a.pt", 1), teacher_file(tmp_path / "b.pt", 2)
    config = TrainConfig(method=method, data_root="unused", input_size=32, output_stride=8,
                         teachers=f"{a}, {b}", lambda_teachers=LAMBDA, **kw).resolved()
    torch.manual_seed(0)
    student = GSMCNet(4, output_stride=8).eval()  # eval: each image's output is its own
    return make_method(config, student, META), student


@pytest.fixture
def batch():
    torch.manual_seed(3)
    return torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 0, 1])


def test_the_target_is_the_mean_of_the_teachers_probabilities_on_the_students_batch(tmp_path, batch):
    method, student = distilled(tmp_path)
    images, labels = batch
    method.teachers = [Recording(t) for t in method.teachers]
    total, terms, logits = method.losses(student, images, labels)
    for teacher in method.teachers:  # the very batch the student saw, not a mirror of it
        (seen,) = teacher.inputs
        assert torch.equal(seen, images)
    with torch.no_grad():
        probs = [F.softmax(t.inner(images)[0], 1) for t in method.teachers]
    target = (probs[0] + probs[1]) / 2
    by_hand = (target * (target.log() - F.log_softmax(logits, 1))).sum(1).mean()
    assert terms["kd"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert total.item() == pytest.approx((terms["ce"] + LAMBDA * by_hand).item(), rel=1e-5)
    # what the breakages would give instead
    logits_each = [t.inner(images)[0].detach() for t in method.teachers]
    mean_logits = F.softmax((logits_each[0] + logits_each[1]) / 2, 1)
    assert not torch.allclose(target, mean_logits, atol=1e-4)
    reversed_kl = (F.softmax(logits, 1) * (F.log_softmax(logits, 1) - target.log())).sum(1).mean()
    assert abs(reversed_kl.item() - by_hand.item()) > 1e-4


def test_only_the_student_learns_and_the_teachers_stay_in_eval_mode(tmp_path, batch):
    method, student = distilled(tmp_path)
    images, labels = batch
    student.train()  # as the trainer runs it
    _, terms, _ = method.losses(student, images, labels)
    terms["kd"].backward()  # the distillation term alone
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.fc.parameters())
    for teacher in method.teachers:
        assert not teacher.training
        assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    # eval mode: a face's target does not depend on the rest of the batch
    together = method.teachers_log_probabilities(images).exp()
    alone = method.teachers_log_probabilities(images[:2]).exp()
    assert torch.allclose(together[:2], alone, atol=1e-5)


def test_gsmc_keeps_its_own_teacher_terms_and_export_candidates(tmp_path, batch):
    method, student = distilled(tmp_path, method="gsmc")
    images, labels = batch
    total, terms, _ = method.losses(student, images, labels)
    assert set(terms) == {"ce", "kl", "ac", "kd"}
    assert set(method.candidates(student)) == {"student", "teacher"}
    ema = method.method.teacher
    before = int(ema.n_averaged)
    method.after_step(student)
    assert int(ema.n_averaged) == before + 1  # the EMA teacher is still updated
    assert method.state_dict() is not None and method.name == "gsmc"


def test_a_teacher_must_see_what_the_student_sees(tmp_path):
    bigger = teacher_file(tmp_path / "big.pt", 1, dataclasses.replace(META, input_size=48))
    config = TrainConfig(method="ce", data_root="unused", input_size=32, output_stride=8,
                         teachers=str(bigger)).resolved()
    said = r"big\.pt: a teacher's input_size must be the student's \(32\), not 48"
    with pytest.raises(TrainingError, match=said):
        make_method(config, GSMCNet(4, output_stride=8), META)
    gray = teacher_file(tmp_path / "gray.pt", 1, dataclasses.replace(META, color="gray"))
    with pytest.raises(TrainingError, match="gray.pt: a teacher's color"):
        make_method(dataclasses.replace(config, teachers=str(gray)), GSMCNet(4, output_stride=8), META)
    with pytest.raises(CheckpointError, match="gone.pt.*file not found"):
        make_method(dataclasses.replace(config, teachers=str(tmp_path / "gone.pt")),
                    GSMCNet(4, output_stride=8), META)
    with pytest.raises(UsageError, match="teachers: give the paths"):
        TrainConfig(method="ce", data_root="unused", teachers=" , ").resolved()


def test_with_the_occluded_augmentation_the_teachers_see_the_whole_face_the_student_half_of_it(
        tmp_path, batch):
    method, student = distilled(tmp_path, augment="occluded", preload=True)
    images, labels = batch
    pair = torch.stack([images, images.flip(-2)], dim=1)  # [:, 0] the student's view, [:, 1] theirs
    method.teachers = [Recording(t) for t in method.teachers]
    recorded = Recording(student)
    total, terms, logits = method.losses(recorded, pair, labels)
    (shown,) = recorded.inputs
    assert torch.equal(shown, images)  # the student: its own view only
    for teacher in method.teachers:
        (seen,) = teacher.inputs
        assert torch.equal(seen, images.flip(-2))  # the teachers: the whole face, not the student's
    target = method.teachers_log_probabilities(images.flip(-2)).exp()
    by_hand = (target * (target.log() - F.log_softmax(logits, 1))).sum(1).mean()
    assert terms["kd"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert terms["ce"].item() == pytest.approx(F.cross_entropy(student(images)[0], labels).item(), rel=1e-5)
    for wrong in ({"teachers": None}, {"method": "eac"}, {"lambda_teachers": 0.0}):  # no one to show it
        config = {"method": "ce", "teachers": str(tmp_path / "a.pt"), **wrong}
        with pytest.raises(UsageError, match="occluded augmentation shows the teachers the whole face"):
            TrainConfig(data_root="unused", augment="occluded", preload=True, **config).resolved()


@pytest.mark.slow
def test_a_run_distils_logs_it_records_kd_and_resumes_with_its_teachers(ferplus_root, tmp_path):
    base = dict(method="ce", dataset="ferplus", data_root=str(ferplus_root), input_size=32,
                output_stride=8, batch_size=16, limit_train=64, limit_eval=32, workers=0)
    teacher = train(TrainConfig(**base, epochs=1, out=str(tmp_path / "teacher"))).best
    logs: list[str] = []

    def on_event(event):
        if hasattr(event, "message"):
            logs.append(event.message)

    student = TrainConfig(**base, epochs=1, out=str(tmp_path / "student"), teachers=str(teacher),
                          lambda_teachers=2.0)
    train(student, on_event=on_event)
    assert any(m == f"distilling from {teacher} (weight 2)" for m in logs)
    train(dataclasses.replace(student, epochs=2, resume=True))
    with open(tmp_path / "student" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(r["kd"]) > 0 for r in rows)
    first = {k: float(rows[0][k]) for k in ("loss", "ce", "kd")}
    assert first["loss"] == pytest.approx(first["ce"] + 2.0 * first["kd"], rel=1e-3)
