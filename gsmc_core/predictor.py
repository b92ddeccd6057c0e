"""Predictor: face crops in, expression probabilities and CAM heatmaps out.

The preprocessing comes from the checkpoint's metadata (input size, colour mode, mean/std):
it is the only copy of the inference preprocessing in the project.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from gsmc_core.checkpoint import Checkpoint, ModelMeta, load_checkpoint
from gsmc_core.devices import resolve_device
from gsmc_core.model import GSMCNet
from gsmc_core.preprocess import prepare_image


@dataclass(frozen=True)
class Prediction:
    """One face: probabilities over ``classes``, the winning label and a CAM heatmap.

    ``heatmap`` is the CAM of ``cam_class`` upsampled to the crop size, scaled to [0, 1];
    ``cams`` are the raw low-resolution CAMs of every class (C x h x w) for CAM grids.
    """

    probabilities: npt.NDArray[np.float32]
    index: int
    label: str
    cam_class: int
    heatmap: npt.NDArray[np.float32]
    cams: npt.NDArray[np.float32]

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.index])


def normalize_cam(cam: npt.NDArray[np.float32], size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Upsample one low-resolution CAM to ``size`` (width, height) and scale it to [0, 1]."""
    up = cv2.resize(cam.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    lo, hi = float(up.min()), float(up.max())
    if hi - lo < 1e-12:
        return np.zeros_like(up)
    return (up - lo) / (hi - lo)


class Predictor:
    """Runs a GSMC model on face crops, batched, under ``torch.inference_mode``."""

    def __init__(self, model: GSMCNet, meta: ModelMeta, device: str | torch.device = "auto"):
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.meta = meta
        self.classes = meta.classes
        memory_format = torch.channels_last if self.device.type == "cpu" else torch.preserve_format
        self.model = model.to(self.device, memory_format=memory_format).eval()
        self._memory_format = memory_format
        self._mean = torch.tensor(meta.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(meta.std, device=self.device).view(1, 3, 1, 1) * 255.0
        self.checkpoint: Checkpoint | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "auto") -> "Predictor":
        ckpt = load_checkpoint(path)
        predictor = cls(ckpt.build_model(), ckpt.meta, device)
        predictor.checkpoint = ckpt
        return predictor

    def preprocess(
        self, crops: Sequence[npt.NDArray[np.uint8]], bgr: bool = False
    ) -> torch.Tensor:
        """uint8 crops (H x W x 3, or H x W grayscale) to a normalised N x 3 x S x S batch."""
        size = self.meta.input_size
        batch = np.empty((len(crops), size, size, 3), dtype=np.uint8)
        for i, crop in enumerate(crops):
            if bgr and crop.ndim == 3:
                crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
            batch[i] = prepare_image(crop, self.meta)
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
        x = (x - self._mean) / self._std
        return x.contiguous(memory_format=self._memory_format)

    def predict(
        self,
        crops: Sequence[npt.NDArray[np.uint8]],
        bgr: bool = False,
        cam_class: int | str | None = None,
    ) -> list[Prediction]:
        """Classify face crops (RGB by default; ``bgr=True`` for OpenCV frames).

        ``cam_class``: the class whose heatmap is returned (index or name); None = predicted.
        """
        if len(crops) == 0:
            return []
        for i, crop in enumerate(crops):
            if crop.dtype != np.uint8 or crop.ndim not in (2, 3) or min(crop.shape[:2]) < 1:
                raise ValueError(
                    f"crop {i}: expected a non-empty uint8 image, got {crop.dtype} {crop.shape}"
                )
        wanted = self._class_index(cam_class)
        with torch.inference_mode():
            logits, cams = self.model(self.preprocess(crops, bgr))
            probs = F.softmax(logits.float(), dim=1).cpu().numpy()
            cams_np = cams.float().cpu().numpy()
        results = []
        for crop, p, cam in zip(crops, probs, cams_np, strict=True):
            index = int(p.argmax())
            c = index if wanted is None else wanted
            results.append(
                Prediction(
                    probabilities=p,
                    index=index,
                    label=self.classes[index],
                    cam_class=c,
                    heatmap=normalize_cam(cam[c], (crop.shape[1], crop.shape[0])),
                    cams=cam,
                )
            )
        return results

    def _class_index(self, cam_class: int | str | None) -> int | None:
        if cam_class is None:
            return None
        if isinstance(cam_class, str):
            if cam_class not in self.classes:
                raise ValueError(f"unknown class {cam_class!r}; classes: {', '.join(self.classes)}")
            return self.classes.index(cam_class)
        if not 0 <= cam_class < len(self.classes):
            raise ValueError(f"class index {cam_class} out of range 0..{len(self.classes) - 1}")
        return int(cam_class)
