import numpy as np
import pytest

from gsmc_core.frames.render import overlay_heatmap


def test_overlay_alpha_extremes_and_purity():
    image = np.full((20, 30, 3), 100, np.uint8)
    keep = image.copy()
    heat = np.zeros((20, 30), np.float32)
    heat[:, 15:] = 1.0
    assert np.array_equal(overlay_heatmap(image, heat, 0.0), image)
    full = overlay_heatmap(image, heat, 1.0)
    # JET: 0 is dark blue, 1 is dark red (RGB)
    assert full[0, 0, 2] > 100 and full[0, 0, 0] < 50
    assert full[0, 29, 0] > 100 and full[0, 29, 2] < 50
    half = overlay_heatmap(image, heat, 0.5)
    assert np.abs(half.astype(int) - (full.astype(int) + 100) / 2).max() <= 1
    assert np.array_equal(image, keep)


def test_overlay_resizes_small_heatmap():
    image = np.zeros((64, 48, 3), np.uint8)
    heat = np.linspace(0, 1, 49, dtype=np.float32).reshape(7, 7)
    out = overlay_heatmap(image, heat, 0.6)
    assert out.shape == image.shape
    assert out[-1, -1, 0] > out[0, 0, 0]  # the hot corner is redder


def test_overlay_rejects_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        overlay_heatmap(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4)), 1.5)
    with pytest.raises(ValueError, match="uint8"):
        overlay_heatmap(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4)), 0.5)


def _face(box, cam_class=0, index=0, heat=True):
    import numpy as np

    from gsmc_core.frames.results import FaceResult
    p = np.full(8, 0.1, np.float32)
    return FaceResult(id=1, box=box, score=0.9, keypoints=(), probabilities=p, smoothed=p,
                      index=index, label="neutral", cam_class=cam_class,
                      heatmap=np.ones((box[3], box[2]), np.float32) if heat else None)


def test_labels_name_the_heatmap_class_stay_inside_and_do_not_overlap():
    import numpy as np

    from gsmc_core.frames.render import draw_frame, face_caption
    from gsmc_core.frames.results import FrameResult
    from gsmc_core.labels import CANONICAL_CLASSES
    fear = CANONICAL_CLASSES.index("fear")
    face = _face((5, 0, 40, 40), cam_class=fear)
    assert face_caption(face, classes=CANONICAL_CLASSES, heatmap=True).endswith("| map: fear")
    assert "map:" not in face_caption(_face((5, 0, 40, 40)), classes=CANONICAL_CLASSES, heatmap=True)
    # two faces side by side near the right edge of a narrow image: both labels readable
    image = np.zeros((200, 160, 3), np.uint8)
    faces = (_face((100, 60, 50, 50)), _face((110, 70, 45, 45)))
    result = FrameResult(faces, 0.0, (160, 200), CANONICAL_CLASSES, {})
    out = draw_frame(image, result)
    green = (out[..., 1] > 150) & (out[..., 0] < 150)
    rows = np.where(green.any(axis=1))[0]
    label_rows = [r for r in rows if green[r].sum() > 60]  # filled label rows, not box lines
    assert label_rows, "no label drawn"
    # label fills end inside the image and two separate label bands exist
    bands = np.split(np.array(label_rows), np.where(np.diff(label_rows) > 1)[0] + 1)
    assert len(bands) >= 2
    assert not green[:, -1].all()
