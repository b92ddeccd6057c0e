"""Overlays drawn on images: heatmaps, face boxes, labels. Pure functions on numpy arrays."""

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from gsmc_core.frames.results import FaceResult, FrameResult

CAM_SCALES = ("map", "face")
"""How a heatmap's colours are scaled. "map": each class map stretched to its own range (the
shape of the evidence for one class, but a class at 5 % glows as red as the winner). "face":
every class map of a face divided by the strongest value of any of its class maps, negatives
clipped, so colours compare across the classes of a face and a weak class stays dark."""


def normalize_cam(cam: npt.NDArray[np.float32], size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Upsample one low-resolution CAM to ``size`` (width, height) and scale it to [0, 1]."""
    up = cv2.resize(cam.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    lo, hi = float(up.min()), float(up.max())
    if hi - lo < 1e-12:
        return np.zeros_like(up)
    return (up - lo) / (hi - lo)


def scale_cam(cams: npt.NDArray[np.float32], index: int, size: tuple[int, int],
              scale: str = "map") -> npt.NDArray[np.float32]:
    """The heatmap of class ``index`` from a face's CAMs (C x h x w), upsampled to ``size``
    (width, height), in [0, 1] as ``scale`` (one of ``CAM_SCALES``) says."""
    if scale == "map":
        return normalize_cam(cams[index], size)
    if scale != "face":
        raise ValueError(f"unknown heatmap scale {scale!r}; choose one of {CAM_SCALES}")
    top = float(cams.max())
    up = cv2.resize(cams[index].astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    if top <= 1e-12:
        return np.zeros_like(up)
    return np.clip(up / top, 0.0, 1.0)


def colorize_heatmap(heatmap: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """A [0, 1] heatmap as an RGB image with the JET colour map."""
    scaled = np.clip(heatmap, 0.0, 1.0) * 255.0
    bgr = cv2.applyColorMap(scaled.astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay_heatmap(
    image: npt.NDArray[np.uint8], heatmap: npt.NDArray[np.floating], alpha: float = 0.5
) -> npt.NDArray[np.uint8]:
    """Blend a [0, 1] heatmap (resized to the image if needed) over an RGB uint8 image.

    ``alpha`` is the heatmap's weight: 0 returns the image, 1 the coloured heatmap.
    The input is not modified.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if heatmap.shape != (h, w):
        heatmap = cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colored = colorize_heatmap(heatmap)
    return cv2.addWeighted(colored, alpha, image, 1.0 - alpha, 0.0)


@dataclass(frozen=True)
class RenderOptions:
    """What ``draw_frame`` draws. ``alpha`` is the heatmap's weight inside each face box."""

    heatmaps: bool = True
    alpha: float = 0.45
    boxes: bool = True
    labels: bool = True
    ids: bool = True


BOX_COLOR_RGB = (40, 220, 90)
TEXT_COLOR_RGB = (255, 255, 255)


def face_caption(face: "FaceResult", ids: bool = True, classes: tuple[str, ...] = (),
                 heatmap: bool = False) -> str:
    """The text drawn above a face: ``#id label 87%``, and ``| map: class`` when the heatmap
    shown is of another class than the predicted one (``classes`` names it)."""
    text = f"{face.label} {face.confidence:.0%}"
    if heatmap and classes and face.cam_class != face.index:
        text += f" | map: {classes[face.cam_class]}"
    return f"#{face.id} {text}" if ids else text


def draw_frame(
    image: npt.NDArray[np.uint8],
    result: "FrameResult",
    options: RenderOptions = RenderOptions(),
    bgr: bool = True,
) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` (H x W x 3, BGR unless ``bgr=False``) with the faces of ``result``
    drawn: heatmaps inside the face boxes, boxes, and captions with label, confidence and ID.
    Nothing outside the boxes changes except where captions are written."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {image.dtype} {image.shape}")
    out = image.copy()
    if options.heatmaps:
        for face in result.faces:
            if face.heatmap is not None:
                _blend_heatmap(out, face.box, face.heatmap, options.alpha, bgr)
    box_color = BOX_COLOR_RGB[::-1] if bgr else BOX_COLOR_RGB
    # line and text size follow the frame size so captions stay readable on photos and webcams
    scale = max(0.4, min(out.shape[:2]) / 900)
    thickness = max(1, round(scale * 2))
    for face in result.faces:
        x, y, w, h = face.box
        if options.boxes:
            cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), box_color, thickness, cv2.LINE_AA)
    if options.labels:
        taken: list[tuple[int, int, int, int]] = []
        for face in sorted(result.faces, key=lambda f: (f.box[1], f.box[0])):
            text = face_caption(face, options.ids, result.classes,
                                options.heatmaps and face.heatmap is not None)
            taken.append(_caption(out, text, face.box, scale, thickness, box_color, taken))
    return out


def _blend_heatmap(
    image: npt.NDArray[np.uint8], box: tuple[int, int, int, int], heatmap: npt.NDArray[np.floating],
    alpha: float, bgr: bool,
) -> None:
    x, y, w, h = box
    roi = image[y : y + h, x : x + w]
    if roi.size == 0:
        return
    rgb = cv2.cvtColor(roi, cv2.COLOR_BGR2RGB) if bgr else roi
    blended = overlay_heatmap(rgb, heatmap, alpha)
    roi[...] = cv2.cvtColor(blended, cv2.COLOR_RGB2BGR) if bgr else blended


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _caption(
    image: npt.NDArray[np.uint8], text: str, box: tuple[int, int, int, int], scale: float,
    thickness: int, color: tuple[int, int, int], taken: list[tuple[int, int, int, int]],
) -> tuple[int, int, int, int]:
    """Write ``text`` on a filled label at the face ``box`` where it stays readable: shrunk to
    fit the image's width, kept inside the image, above the box (inside its top edge at the
    top of the image), moved below the box, or further down, when it would cover a label
    already written (``taken``). Returns the label's rectangle (x, y, w, h)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    height, width = image.shape[:2]
    pad = 3
    (tw, th), baseline = cv2.getTextSize(text, font, scale, thickness)
    if tw + 2 * pad > width:  # a narrow image: smaller text rather than a label cut off
        scale *= (width - 2 * pad) / (tw + 2 * pad)
        (tw, th), baseline = cv2.getTextSize(text, font, scale, thickness)
    lw, lh = tw + 2 * pad, th + baseline + 2 * pad
    x, y, _, h = box
    left = int(min(max(x, 0), max(width - lw, 0)))
    above = y - lh if y - lh >= 0 else y
    candidates = [above, y + h, *range(above + lh, height - lh + 1, lh)]
    top = next((t for t in candidates if 0 <= t <= height - lh
                and not any(_overlaps((left, t, lw, lh), r) for r in taken)), above)
    top = int(min(max(top, 0), max(height - lh, 0)))
    cv2.rectangle(image, (left, top), (left + lw, top + lh), color, cv2.FILLED)
    cv2.putText(image, text, (left + pad, top + pad + th), font, scale, TEXT_COLOR_RGB, thickness,
                cv2.LINE_AA)
    return left, top, lw, lh
