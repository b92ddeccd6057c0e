"""The loss terms of GSMC and EAC."""

import torch
import torch.nn.functional as F


def flip_cam(cams: torch.Tensor) -> torch.Tensor:
    """Mirror CAMs left-right (the published grid_sample on a negated x-grid does exactly this)."""
    return cams.flip(-1)


def flip_consistency_loss(cams: torch.Tensor, cams_of_flipped: torch.Tensor) -> torch.Tensor:
    """MSE between the CAMs of x and the flipped-back CAMs of flip(x): 0 when consistent."""
    return F.mse_loss(cams, flip_cam(cams_of_flipped))


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_teacher || p_student), batch mean, computed in log space (no log(softmax) NaNs)."""
    return F.kl_div(
        F.log_softmax(student_logits, dim=1),
        F.log_softmax(teacher_logits.detach(), dim=1),
        reduction="batchmean",
        log_target=True,
    )


def ema_alpha(step: int, alpha_max: float) -> float:
    """The teacher's averaging weight at optimiser step ``step`` (0-based): min(1 - 1/(t+1), α)."""
    return min(1.0 - 1.0 / (step + 1), alpha_max)
