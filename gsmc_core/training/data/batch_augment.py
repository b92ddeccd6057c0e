"""Training augmentation on whole batches of uint8 images held in memory (``preload``).

The per-image transforms (``transforms``) decode and augment one picture at a time in loader
workers; on a 2-core CPU those workers compete with the model. Here a batch of N x S x S x 3
uint8 images already at the model's size is augmented with a few tensor operations, drawn from
a ``torch.Generator`` the trainer seeds per batch (so a resumed run sees the same augmentations).
"""

import math

import cv2
import torch
import torch.nn.functional as F

from gsmc_core.checkpoint import ModelMeta

# The published GSMC/CE recipe (METHOD.md; transforms.train_transform per image): a random
# mirror; with p 0.2 a rotation of up to ±20° and a random crop with 32 px padding at 224 px.
PUBLISHED_P = 0.2
PUBLISHED_ROTATION_DEG = 20.0
PUBLISHED_PAD_AT_224 = 32
# The webcam recipe of the shipped model's stages 2-3 (not the published one): always-on
# rotation, zoom, shift, brightness and contrast.
ROTATION_DEG = 15.0
SCALE = 0.1  # zoom 0.9-1.1
SHIFT = 0.08  # of the side
BRIGHTNESS = 0.25  # additive, on 0-1 pixels
CONTRAST = 0.25  # factor 0.75-1.25
ERASE_P = 0.5
ERASE_AREA = (0.02, 0.25)
ERASE_RATIO = (0.3, 3.3)
EAC_NOISE_STD = 30.0 ** 0.5 / 255  # EAC's Gaussian pixel noise (variance 30 on 0-255 pixels)
# The robust recipe (issue 28): the webcam one widened to the shifts `gsmc eval --shifts`
# measures — looser and tighter crops, gamma, blur, JPEG, the lower or upper face hidden.
ROBUST_SCALE = 0.15  # zoom 0.85-1.15: crops 15 % tighter or looser
ROBUST_GAMMA = (0.6, 1.6)
ROBUST_GAMMA_P = 0.5
ROBUST_BLUR_P = 0.3
ROBUST_BLUR_SIGMA_AT_48 = 1.2  # the strongest blur, in pixels of a 48 px face
ROBUST_JPEG_P = 0.3
ROBUST_JPEG_QUALITY = (20, 70)
ROBUST_HIDE_P = 0.15  # the lower or the upper 40 % of the face set to mid grey
ROBUST_HIDE = 0.4
OCCLUDED_HIDE_P = 0.4  # `occluded`: the robust recipe with the face hidden this often


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """N x S x S x 3 uint8 -> N x 3 x S x S float in 0-1."""
    return images.permute(0, 3, 1, 2).float().div_(255)


def normalize(x: torch.Tensor, meta: ModelMeta) -> torch.Tensor:
    mean = torch.tensor(meta.mean).view(1, 3, 1, 1)
    std = torch.tensor(meta.std).view(1, 3, 1, 1)
    return (x - mean) / std


def random_erase(x: torch.Tensor, gen: torch.Generator, p: float = ERASE_P) -> torch.Tensor:
    """torchvision's RandomErasing (value 0) per image, as one masked fill over the batch."""
    n, _, h, w = x.shape
    area = _uniform(n, *ERASE_AREA, gen) * h * w
    ratio = torch.exp(_uniform(n, math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]), gen))
    eh = (area * ratio).sqrt().round().clamp(1, h).long()
    ew = (area / ratio).sqrt().round().clamp(1, w).long()
    top = (torch.rand(n, generator=gen) * (h - eh + 1)).long()
    left = (torch.rand(n, generator=gen) * (w - ew + 1)).long()
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
              & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))
    chosen = (torch.rand(n, generator=gen) < p).view(n, 1, 1)
    return x.masked_fill((inside & chosen).unsqueeze(1), 0.0)


def published_augment(images: torch.Tensor, meta: ModelMeta, gen: torch.Generator) -> torch.Tensor:
    """The published GSMC/CE training view on a batch, as ``transforms.train_transform`` does it
    per image: a random mirror; with p 0.2 a rotation of up to ±20° (nearest pixel, zero fill,
    as torchvision's RandomRotation) followed by a random crop of the image padded by
    32 px × size/224 (a whole-pixel shift of up to that padding in each direction);
    normalisation and random erasing. Returns N x 3 x S x S."""
    x = to_float(images)
    n, _, h, w = x.shape
    pad = max(1, round(PUBLISHED_PAD_AT_224 * w / 224))
    mirror = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    applied = torch.rand(n, generator=gen) < PUBLISHED_P
    angle = _uniform(n, -PUBLISHED_ROTATION_DEG, PUBLISHED_ROTATION_DEG, gen) * math.pi / 180
    shift = torch.randint(-pad, pad + 1, (n, 2), generator=gen).float()
    angle = torch.where(applied, angle, 0.0)
    shift = torch.where(applied.view(n, 1), shift, 0.0)
    # output pixel u reads the input at mirror · R⁻¹ (u + shift), in normalised coordinates
    dx, dy = 2 * shift[:, 0] / w, 2 * shift[:, 1] / h
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos * mirror, sin * mirror, (cos * dx + sin * dy) * mirror], dim=1),
        torch.stack([-sin, cos, -sin * dx + cos * dy], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return random_erase(normalize(x, meta), gen)


def webcam_augment(images: torch.Tensor, meta: ModelMeta, gen: torch.Generator) -> torch.Tensor:
    """The webcam training view of the shipped model's stages 2-3 (not the published recipe):
    brightness and contrast, a random mirror, always-on rotation (±15°), zoom and shift (zero
    padding), normalisation and random erasing. Returns N x 3 x S x S."""
    return random_erase(normalize(_webcam_view(to_float(images), gen, SCALE), meta), gen)


def _webcam_view(x: torch.Tensor, gen: torch.Generator, zoom: float) -> torch.Tensor:
    """Brightness and contrast, a mirror, rotation, zoom (1 ± ``zoom``) and shift, on 0-1 pixels."""
    n = len(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _uniform(n, 1 - CONTRAST, 1 + CONTRAST, gen).view(n, 1, 1, 1)
    brightness = _uniform(n, -BRIGHTNESS, BRIGHTNESS, gen).view(n, 1, 1, 1)
    x = ((x - mean) * contrast + mean + brightness).clamp_(0, 1)
    angle = _uniform(n, -ROTATION_DEG, ROTATION_DEG, gen) * math.pi / 180
    scale = _uniform(n, 1 - zoom, 1 + zoom, gen)
    mirror = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos * mirror, -sin, _uniform(n, -2 * SHIFT, 2 * SHIFT, gen)], dim=1),
        torch.stack([sin * mirror, cos, _uniform(n, -2 * SHIFT, 2 * SHIFT, gen)], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _jpeg(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random ``ROBUST_JPEG_P`` of the uint8 images encoded and decoded as JPEG at a quality
    drawn from ``ROBUST_JPEG_QUALITY`` (a webcam's MJPEG stream)."""
    n = len(images)
    chosen = torch.rand(n, generator=gen) < ROBUST_JPEG_P
    quality = torch.randint(ROBUST_JPEG_QUALITY[0], ROBUST_JPEG_QUALITY[1] + 1, (n,), generator=gen)
    if not chosen.any():
        return images
    out = images.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        ok, data = cv2.imencode(".jpg", images[i].numpy(), [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
        if ok:
            out[i] = torch.from_numpy(cv2.imdecode(data, cv2.IMREAD_COLOR).reshape(images[i].shape))
    return out


def _gaussian_matrix(size: int, sigma: float) -> torch.Tensor:
    """A size x size matrix that blurs a vector with a Gaussian of ``sigma`` (edges replicated):
    two matrix products blur a batch much faster than a depthwise convolution on a CPU."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    taps = taps / taps.sum()
    matrix = torch.zeros(size, size)
    rows = torch.arange(size).view(size, 1)
    matrix.index_put_((rows.expand(size, len(offsets)), (rows + offsets).clamp(0, size - 1)),
                      taps.expand(size, len(offsets)), accumulate=True)
    return matrix


def _blur(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random ``ROBUST_BLUR_P`` of the images blurred, each by its own amount: a mix of the
    image and its Gaussian blur at the strongest sigma (scaled from a 48 px face)."""
    n, _, h, w = x.shape
    sigma = ROBUST_BLUR_SIGMA_AT_48 * h / 48
    blurred = _gaussian_matrix(h, sigma) @ x @ _gaussian_matrix(w, sigma).T
    amount = (_uniform(n, 0, 1, gen) * (torch.rand(n, generator=gen) < ROBUST_BLUR_P)).view(n, 1, 1, 1)
    return x + amount * (blurred - x)


def _robust_view(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """JPEG, gamma, the webcam view with the wider zoom and blur, on 0-1 pixels."""
    x = to_float(_jpeg(images, gen))
    n = len(x)
    gamma = torch.where(torch.rand(n, generator=gen) < ROBUST_GAMMA_P,
                        _uniform(n, *ROBUST_GAMMA, gen), torch.ones(n)).view(n, 1, 1, 1)
    x = x.clamp(0, 1) ** gamma
    return _blur(_webcam_view(x, gen, ROBUST_SCALE), gen)


def _hide(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """The lower or the upper ``ROBUST_HIDE`` of a random ``p`` of the faces set to mid grey."""
    n, _, h, _ = x.shape
    hide = torch.rand(n, generator=gen) < p
    lower = torch.rand(n, generator=gen) < 0.5
    rows = torch.arange(h).view(1, h)
    band = torch.where(lower.view(n, 1), rows >= round(h * (1 - ROBUST_HIDE)), rows < round(h * ROBUST_HIDE))
    return x.masked_fill((band & hide.view(n, 1)).view(n, 1, h, 1), 0.5)


def robust_augment(images: torch.Tensor, meta: ModelMeta, gen: torch.Generator) -> torch.Tensor:
    """The webcam view widened to the shifts `gsmc eval --shifts` measures (issue 28): JPEG at
    quality 20-70 (p 0.3), gamma 0.6-1.6 (p 0.5), the webcam view with zoom 0.85-1.15, blur of up
    to sigma 1.2 px on a 48 px face (p 0.3), the lower or the upper 40 % of the face set to grey
    (p 0.15), normalisation and random erasing. Not the published recipe. Returns N x 3 x S x S."""
    x = _hide(_robust_view(images, gen), gen, ROBUST_HIDE_P)
    return random_erase(normalize(x, meta), gen)


def occluded_augment(images: torch.Tensor, meta: ModelMeta, gen: torch.Generator) -> torch.Tensor:
    """The robust recipe with the lower or upper face hidden on ``OCCLUDED_HIDE_P`` of the faces,
    as a pair for distillation from teachers that see the whole face (Georgescu & Ionescu,
    "Teacher-student training and triplet loss for facial expression recognition under
    occlusion", ICPR 2020): N x 2 x 3 x S x S, [:, 0] the student's view (hidden, erased),
    [:, 1] the same view before hiding and erasing, for the teachers."""
    x = _robust_view(images, gen)
    student = random_erase(normalize(_hide(x, gen, OCCLUDED_HIDE_P), meta), gen)
    return torch.stack([student, normalize(x, meta)], dim=1)


def eac_augment(images: torch.Tensor, meta: ModelMeta, gen: torch.Generator) -> torch.Tensor:
    """EAC's published augmentation (``transforms.EacPairTransform``) on a batch: two views, the
    image with Gaussian pixel noise on half of them and the mirror of the raw image (no noise),
    each normalised and erased on its own. Returns N x 2 x 3 x S x S."""
    raw = to_float(images)
    n = len(raw)
    noisy = (torch.rand(n, generator=gen) < 0.5).view(n, 1, 1, 1)
    noise = torch.randn(raw.shape, generator=gen) * EAC_NOISE_STD
    x = torch.where(noisy, (raw + noise).clamp(0, 1), raw)
    x = (x * 255).round() / 255  # EAC adds the noise to uint8 images
    views = [random_erase(normalize(v, meta), gen) for v in (x, raw.flip(-1))]
    return torch.stack(views, dim=1)


BATCH_AUGMENTS = {"published": published_augment, "webcam": webcam_augment, "robust": robust_augment,
                  "occluded": occluded_augment}
