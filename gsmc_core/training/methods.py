"""The training methods behind one interface: each gives its training augmentation, its loss for
a batch, what it updates after an optimiser step, and the models it offers for export.

- ``CrossEntropy``: CE(x).
- ``EAC``: CE(x) + λ·MSE(CAM(x), flip(CAM(x′))), x′ the mirror of the raw image (without the
  first view's Gaussian noise), with EAC's own augmentation (two independently erased views).
- ``GSMC``: CE(x) + λ_kl·KL(teacher(flip x) ‖ student(x)) + λ_ac·MSE(CAM(x), flip(CAM(flip x)))
  with an EMA teacher that runs in eval mode, so its predictions do not depend on the batch (the
  reference code runs it in train mode). Its parameters are an EMA of the student's; its
  BatchNorm statistics are averaged with the student's at every step too
  (``AveragedModel(use_buffers=True)``), but an average of running statistics is not the
  statistics of the averaged weights (over the first ~1,000 steps α_t makes the teacher a plain
  average of every iterate since step 0). So at the end of every epoch ``end_epoch`` recomputes
  them for the teacher's own weights on the last ~1,000 images it saw
  (``torch.optim.swa_utils.update_bn``); the trainer records the teacher's validation accuracy
  with the averaged statistics beside it (``val_acc_teacher_avg_bn``).

With ``teachers`` (trained checkpoints) any of them is wrapped in ``Distilled``: + λ·KL(mean
of the teachers' predictions ‖ student), an ensemble distilled into one network.
"""

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from gsmc_core.checkpoint import ModelMeta, load_checkpoint
from gsmc_core.training.config import TrainConfig, TrainingError, teacher_paths
from gsmc_core.training.data.batch_augment import BATCH_AUGMENTS, eac_augment
from gsmc_core.training.data.transforms import EacPairTransform, train_transform
from gsmc_core.training.losses import distillation_kl, ema_alpha, flip_consistency_loss

Losses = tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]
"""The total loss, its named terms, and the student's logits for the batch's first view."""


def make_teacher(model: nn.Module, alpha_max: float) -> AveragedModel:
    """An EMA copy of ``model`` with α_t = min(1 − 1/(t+1), alpha_max) per update, in eval mode.

    One fused ``_foreach_lerp_`` over all floating tensors per step (a Python call per tensor
    cost ~9 % of a CPU step); integer buffers (BatchNorm's batch count) are copied."""

    def multi_avg_fn(averaged: list[torch.Tensor], current: list[torch.Tensor],
                     n_averaged: torch.Tensor) -> None:
        a = ema_alpha(int(n_averaged), alpha_max)
        pairs = [(p, q) for p, q in zip(averaged, current, strict=True) if p.is_floating_point()]
        if pairs:
            torch._foreach_lerp_([p for p, _ in pairs], [q for _, q in pairs], 1.0 - a)
        for p, q in zip(averaged, current, strict=True):
            if not p.is_floating_point():
                p.copy_(q)

    teacher = AveragedModel(model, multi_avg_fn=multi_avg_fn, use_buffers=True)
    teacher.update_parameters(model)  # step 0: the teacher starts as a copy
    return teacher.eval()


def classification_loss(logits: torch.Tensor, labels: torch.Tensor,
                        soft: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy with the labels, or with the annotators' vote shares when given."""
    logits = logits.float()
    if soft is None:
        return F.cross_entropy(logits, labels)
    return -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()


def _both_views(model: nn.Module, images: torch.Tensor, mirrored: torch.Tensor):
    """Logits of ``images`` and CAMs of both views in one pass (one BatchNorm statistic and one
    DDP forward per step)."""
    n = len(images)
    logits_all, cams_all = model(torch.cat([images, mirrored]))
    return logits_all[:n], cams_all[:n], cams_all[n:]


class CrossEntropy:
    name = "ce"

    def __init__(self, augment: str = "published") -> None:
        self.augment = augment  # a key of BATCH_AUGMENTS; per image only "published" exists

    def train_transform(self, meta: ModelMeta) -> Callable:
        return train_transform(meta)

    @property
    def batch_augment(self) -> Callable:
        """The same recipe on preloaded batches (``preload``)."""
        return BATCH_AUGMENTS[self.augment]

    def losses(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
               soft: torch.Tensor | None = None) -> Losses:
        logits, _ = model(images)
        ce = classification_loss(logits, labels, soft)
        return ce, {"ce": ce}, logits

    def after_step(self, model: nn.Module) -> None:
        """Nothing to update beyond the optimiser's step."""

    def end_epoch(self) -> None:
        """Nothing to update at the end of an epoch."""

    def candidates(self, model: nn.Module) -> dict[str, nn.Module]:
        """The models whose validation accuracy decides what is exported."""
        return {"student": model}

    def state_dict(self) -> dict[str, Any] | None:
        return None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Nothing of its own to restore."""

    def epoch_state(self) -> list[torch.Tensor]:
        """What the method has gathered in the epoch so far (saved by a stop mid-epoch)."""
        return []

    def load_epoch_state(self, state: list[torch.Tensor]) -> None:
        """Nothing gathered to restore."""


class EAC(CrossEntropy):
    name = "eac"

    def __init__(self, lam: float) -> None:
        super().__init__()
        self.lam = lam

    def train_transform(self, meta: ModelMeta) -> Callable:
        return EacPairTransform(meta)  # its own published augmentation: two views

    @property
    def batch_augment(self) -> Callable:
        return eac_augment

    def losses(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
               soft: torch.Tensor | None = None) -> Losses:
        if images.dim() == 5:  # pairs: the image and its mirror, each erased on its own
            images, mirrored = images[:, 0], images[:, 1]
        else:
            mirrored = images.flip(-1)
        logits, cams, cams_mirrored = _both_views(model, images, mirrored)
        ce = classification_loss(logits, labels, soft)
        ac = flip_consistency_loss(cams.float(), cams_mirrored.float())
        return ce + self.lam * ac, {"ce": ce, "ac": ac}, logits


class GSMC(CrossEntropy):
    name = "gsmc"

    BN_IMAGES = 1024  # the teacher's recent inputs kept to recompute its BatchNorm statistics

    def __init__(self, model: nn.Module, lambda_kl: float, lambda_ac: float, ema_alpha_max: float,
                 augment: str = "published") -> None:
        super().__init__(augment)
        self.lambda_kl = lambda_kl
        self.lambda_ac = lambda_ac
        self.teacher = make_teacher(model, ema_alpha_max)
        self.recent: deque[torch.Tensor] = deque()

    def losses(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
               soft: torch.Tensor | None = None) -> Losses:
        mirrored = images.flip(-1)  # the mirror of the augmented batch, what the teacher sees too
        zero = images.new_zeros(())
        if self.lambda_ac > 0:
            logits, cams, cams_mirrored = _both_views(model, images, mirrored)
            ac = flip_consistency_loss(cams.float(), cams_mirrored.float())
        else:  # an ablation without the consistency: the mirror needs no student pass
            (logits, _), ac = model(images), zero
        ce = classification_loss(logits, labels, soft)
        self._remember(mirrored)
        if self.lambda_kl > 0:
            with torch.no_grad():
                teacher_logits, _ = self.teacher(mirrored)
            kl = distillation_kl(logits.float(), teacher_logits.float())
        else:  # an ablation without the teacher's targets (it is still averaged and offered)
            kl = zero
        total = ce + self.lambda_kl * kl + self.lambda_ac * ac
        return total, {"ce": ce, "kl": kl, "ac": ac}, logits

    def _remember(self, images: torch.Tensor) -> None:
        self.recent.append(images.detach().half())  # half: 300 MB at 224 px
        while sum(len(x) for x in self.recent) - len(self.recent[0]) >= self.BN_IMAGES:
            self.recent.popleft()

    def after_step(self, model: nn.Module) -> None:
        self.teacher.update_parameters(model)

    def end_epoch(self) -> None:
        """Recompute the teacher's BatchNorm statistics for its own weights on its recent inputs."""
        if self.recent:
            update_bn([x.float() for x in self.recent], self.teacher.module)
            self.recent.clear()

    def candidates(self, model: nn.Module) -> dict[str, nn.Module]:
        return {"student": model, "teacher": self.teacher.module}

    def state_dict(self) -> dict[str, Any]:
        return self.teacher.state_dict()

    def epoch_state(self) -> list[torch.Tensor]:
        """The teacher's recent inputs (its BatchNorm statistics at the end of the epoch)."""
        return list(self.recent)

    def load_epoch_state(self, state: list[torch.Tensor]) -> None:
        self.recent = deque(state)

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is None:
            raise ValueError("the checkpoint was not a gsmc run (it has no teacher)")
        self.teacher.load_state_dict(state)


def load_teachers(teachers: str | None, meta: ModelMeta, device: torch.device) -> list[nn.Module]:
    """The trained networks ``teachers`` names, frozen and in eval mode on ``device``. Each must
    take the student's input as it is (size, colour, normalisation) and name its classes."""
    models = []
    for path in teacher_paths(teachers):
        ckpt = load_checkpoint(path, expect_classes=len(meta.classes))
        for name in ("classes", "input_size", "color", "mean", "std"):
            theirs, ours = getattr(ckpt.meta, name), getattr(meta, name)
            if theirs != ours:
                raise TrainingError(f"{path}: a teacher's {name} must be the student's ({ours}), "
                                    f"not {theirs}: it sees the student's training images as they are")
        model = ckpt.build_model().to(device).eval()
        models.append(model.requires_grad_(False))
    return models


class Distilled(CrossEntropy):
    """A method plus λ·KL(p ‖ student), p the mean of the teachers' softmax on the student's
    (augmented) batch: an ensemble of trained networks taught to one (Hinton et al., "Distilling
    the knowledge in a neural network", 2015). With the occluded augmentation the teachers see
    the face whole where the student sees it half hidden. The teachers stay fixed and in eval mode;
    everything else (augmentation, the method's own teacher, what is exported) is the method's."""

    def __init__(self, method: CrossEntropy, teachers: list[nn.Module], lam: float) -> None:
        super().__init__(method.augment)
        self.method = method
        self.name = method.name
        self.teachers = teachers
        self.lam = lam

    def train_transform(self, meta: ModelMeta) -> Callable:
        return self.method.train_transform(meta)

    @property
    def batch_augment(self) -> Callable:
        return self.method.batch_augment

    @torch.no_grad()
    def teachers_log_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """log of the mean of the teachers' softmax, computed in log space."""
        logs = torch.stack([F.log_softmax(t(images)[0].float(), 1) for t in self.teachers])
        return torch.logsumexp(logs, 0) - math.log(len(self.teachers))

    def losses(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
               soft: torch.Tensor | None = None) -> Losses:
        if self.method.augment == "occluded":  # the student's view, and the teachers' whole face
            images, seen = images[:, 0], images[:, 1]
        else:
            seen = images[:, 0] if images.dim() == 5 else images  # EAC's pairs: the first view
        total, terms, logits = self.method.losses(model, images, labels, soft)
        # a log-probability vector is its own log_softmax: the KL GSMC's teacher term uses
        kd = distillation_kl(logits.float(), self.teachers_log_probabilities(seen))
        return total + self.lam * kd, {**terms, "kd": kd}, logits

    def after_step(self, model: nn.Module) -> None:
        self.method.after_step(model)

    def end_epoch(self) -> None:
        self.method.end_epoch()

    def candidates(self, model: nn.Module) -> dict[str, nn.Module]:
        return self.method.candidates(model)

    def state_dict(self) -> dict[str, Any] | None:
        return self.method.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.method.load_state_dict(state)

    def epoch_state(self) -> list[torch.Tensor]:
        return self.method.epoch_state()

    def load_epoch_state(self, state: list[torch.Tensor]) -> None:
        self.method.load_epoch_state(state)


def make_method(config: TrainConfig, model: nn.Module, meta: ModelMeta | None = None) -> CrossEntropy:
    """The method ``config.method`` names, with its settings (``model`` seeds GSMC's teacher);
    with ``config.teachers``, wrapped in ``Distilled`` (``meta``: the student's, which the
    teachers must match)."""
    if config.method == "gsmc":
        method = GSMC(model, config.lambda_kl, config.lambda_ac, config.ema_alpha, config.augment)
    elif config.method == "eac":
        method = EAC(config.eac_lambda)
    else:
        method = CrossEntropy(config.augment)
    if not config.teachers:
        return method
    if meta is None:
        raise ValueError("distilling needs the student's ModelMeta")
    device = next(model.parameters()).device
    return Distilled(method, load_teachers(config.teachers, meta, device), config.lambda_teachers)
