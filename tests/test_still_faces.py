"""Reusing a still face's network output (FramePipeline(reuse=True)): it saves the network only
while nothing changes, and a change reaches the result on the frame it happens."""

import cv2
import numpy as np
import pytest

from gsmc_core.frames.detection import Face
from gsmc_core.frames.pipeline import FramePipeline
from gsmc_core.frames.predictor import Predictor
from gsmc_core.frames.still_faces import StillFaces


@pytest.fixture
def classified(predictor, monkeypatch) -> list[int]:
    """The number of crops each call of the network got."""
    calls: list[int] = []
    real_predict = predictor.predict

    def counting_predict(crops, **kwargs):
        calls.append(len(crops))
        return real_predict(crops, **kwargs)

    monkeypatch.setattr(predictor, "predict", counting_predict)
    return calls


def webcam_frames(astronaut_rgb, count: int, seed: int = 0) -> list[np.ndarray]:
    """A face that does not move, with a sensor's noise (sigma 2 grey levels) on every frame."""
    rng = np.random.default_rng(seed)
    still = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR).astype(np.float32)
    return [np.clip(still + rng.normal(0, 2, still.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def face_part_greyed(frame: np.ndarray, box, top: float) -> np.ndarray:
    """The frame with the face box's rows from ``top`` (a fraction) down set to grey: a hand
    over the mouth, an expression change the network must see."""
    x, y, w, h = box
    out = frame.copy()
    out[y + round(h * top):y + h, x:x + w] = 128
    return out


def test_a_still_face_is_classified_once_and_a_change_at_once(predictor, detector, astronaut_rgb,
                                                              classified):
    frames = webcam_frames(astronaut_rgb, 8)
    pipeline = FramePipeline(predictor, detector, reuse=True)
    results = [pipeline.process(f, timestamp=i / 30) for i, f in enumerate(frames)]
    assert classified == [1] + [0] * 7
    assert [r.faces[0].reused for r in results] == [False] + [True] * 7
    for result in results[1:]:
        np.testing.assert_array_equal(result.faces[0].probabilities, results[0].faces[0].probabilities)
        x, y, w, h = result.faces[0].box
        assert result.faces[0].heatmap.shape == (h, w)  # the kept CAM fits this frame's box

    changed = face_part_greyed(frames[-1], results[-1].faces[0].box, 0.55)
    after = pipeline.process(changed, timestamp=8 / 30)
    assert classified[-1] == 1 and not after.faces[0].reused
    fresh = FramePipeline(predictor, detector).process(changed)
    np.testing.assert_allclose(after.faces[0].probabilities, fresh.faces[0].probabilities, atol=1e-6)
    assert not np.allclose(after.faces[0].probabilities, results[0].faces[0].probabilities, atol=1e-3)


def test_without_reuse_every_frame_runs_the_network(predictor, detector, astronaut_rgb, classified):
    pipeline = FramePipeline(predictor, detector)
    results = [pipeline.process(f) for f in webcam_frames(astronaut_rgb, 4)]
    assert classified == [1, 1, 1, 1] and not any(r.faces[0].reused for r in results)


def test_one_output_serves_at_most_max_age_frames(predictor, detector, astronaut_rgb, classified):
    pipeline = FramePipeline(predictor, detector, reuse=True)
    pipeline.still.max_age = 3
    for frame in webcam_frames(astronaut_rgb, 9):
        pipeline.process(frame)
    assert classified == [1, 0, 0, 0, 1, 0, 0, 0, 1]


def test_a_moving_face_is_classified_every_frame(predictor, detector, astronaut_rgb, classified):
    still = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR)
    pipeline = FramePipeline(predictor, detector, reuse=True)
    for k in range(4):  # 12 px further right each frame: box and crop change
        pipeline.process(np.roll(still, 12 * k, axis=1))
    assert classified == [1, 1, 1, 1]


def test_reset_and_a_new_cam_scale_forget_kept_outputs(predictor, detector, astronaut_rgb, classified):
    frames = webcam_frames(astronaut_rgb, 4)
    pipeline = FramePipeline(predictor, detector, reuse=True)
    pipeline.process(frames[0])
    pipeline.reset()
    pipeline.process(frames[1])
    pipeline.configure(heatmaps=True, cam_class=None, cam_scale="face", half_life=None)
    pipeline.process(frames[2])
    pipeline.process(frames[3])
    assert classified == [1, 1, 1, 0]


def crop_from(image: np.ndarray):
    def crop_at(face: Face) -> np.ndarray:
        x, y, w, h = face.box
        return image[y:y + h, x:x + w]
    return crop_at


def test_still_faces_compares_the_picture_where_the_face_was_classified():
    """A slow drift adds up: each frame 1 grey level brighter passes once, not for ever; a box
    that jitters by a pixel does not count, a box that moved does."""
    still = StillFaces(tolerance=2.0, min_iou=0.9, max_age=100)
    face = Face((10, 10, 40, 40), 0.9, ())
    frame = np.full((80, 80, 3), 100, np.uint8)
    frame[20:40, 20:40] = 200  # something to see inside the box
    still.classified(1, face, crop_from(frame)(face), prediction="kept")
    jittered = Face((11, 10, 40, 40), 0.9, ())  # IoU 0.95, the picture under the old box unchanged
    assert still.reusable(1, jittered, crop_from(frame)) == "kept"
    assert still.reusable(1, face, crop_from(frame + 1)) == "kept"
    assert still.reusable(1, face, crop_from(frame + 2)) is None  # 2 levels from the classified crop
    assert still.reusable(1, Face((14, 10, 40, 40), 0.9, ()), crop_from(frame)) is None  # IoU 0.82
    assert still.reusable(2, face, crop_from(frame)) is None  # another face
    still.retain({2})
    assert still.reusable(1, face, crop_from(frame)) is None  # the tracker dropped it


def test_another_predictor_for_the_same_model_gives_its_own_output_at_once(predictor, detector,
                                                                          astronaut_rgb):
    # the app's device change or mirror toggle: a still face, even on the same frame with the same
    # timestamp (a paused video redrawn), shows the new predictor's output, not the kept or
    # smoothed one; the face keeps its ID
    frame = webcam_frames(astronaut_rgb, 1)[0]
    pipeline = FramePipeline(predictor, detector, reuse=True, half_life=1.0, half_life_unit="seconds")
    before = pipeline.process(frame, timestamp=0.0).faces[0]
    mirrored = Predictor(predictor.runtime, predictor.meta, tta=True)
    pipeline.set_predictor(mirrored)
    after = pipeline.process(frame, timestamp=0.0).faces[0]
    assert after.id == before.id and not after.reused
    fresh = FramePipeline(mirrored, detector).process(frame).faces[0]
    np.testing.assert_allclose(after.probabilities, fresh.probabilities, atol=1e-6)
    np.testing.assert_allclose(after.smoothed, fresh.probabilities, atol=1e-6)
    assert not np.allclose(after.probabilities, before.probabilities, atol=1e-4)
