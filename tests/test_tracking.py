import numpy as np
import pytest

from gsmc_core.frames.tracking import FaceTracker, ProbabilitySmoother, iou


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_ids_survive_small_motion_and_order_changes():
    tracker = FaceTracker()
    a, b = (100, 100, 80, 80), (400, 120, 90, 90)
    first = tracker.update([a, b])
    assert first == [1, 2]
    for step in range(1, 30):
        a2 = (100 + 3 * step, 100 + step, 80, 80)
        b2 = (400 - 2 * step, 120, 90 + step % 3, 90)
        # detections come in any order
        assert tracker.update([b2, a2]) == [2, 1]


def test_fast_motion_without_overlap_keeps_the_id():
    tracker = FaceTracker(max_shift=0.5)
    tracker.update([(100, 100, 80, 80)])
    # moved 35 px (0.44 box): IoU ~ 0.4 is still ok, 60 px more has no useful overlap
    assert tracker.update([(135, 100, 80, 80)]) == [1]
    assert tracker.update([(170, 110, 80, 80)]) == [1]
    assert tracker.update([(400, 100, 80, 80)]) == [2]  # too far: a different face


def test_crossing_faces_do_not_swap():
    # two faces cross horizontally, one above the other; their boxes never touch
    tracker = FaceTracker()
    for t in range(40):
        top = (50 + 15 * t, 50, 80, 80)
        bottom = (650 - 15 * t, 200, 80, 80)
        ids = tracker.update([top, bottom])
        assert ids == [1, 2], f"frame {t}"


def test_missed_frames_and_timeout():
    tracker = FaceTracker(max_missed=3)
    face = (100, 100, 80, 80)
    assert tracker.update([face]) == [1]
    for _ in range(3):  # missed 3 frames: still remembered
        assert tracker.update([]) == []
    assert tracker.update([face]) == [1]
    for _ in range(4):  # missed 4 > max_missed: forgotten
        tracker.update([])
    assert tracker.active_ids == set()
    assert tracker.update([face]) == [2]  # the same face back later gets a new ID


def test_new_face_does_not_steal_an_existing_id():
    tracker = FaceTracker()
    tracker.update([(100, 100, 80, 80)])
    ids = tracker.update([(500, 300, 80, 80), (102, 101, 80, 80)])
    assert ids == [2, 1]
    assert tracker.active_ids == {1, 2}


def test_smoothing_off_returns_raw_values():
    for half_life in (None, 0):
        s = ProbabilitySmoother(half_life)
        s.update(1, [1.0, 0.0], 0)
        np.testing.assert_array_equal(s.update(1, [0.0, 1.0], 1), [0.0, 1.0])


def test_half_life_in_frames():
    s = ProbabilitySmoother(half_life=2, unit="frames")
    np.testing.assert_allclose(s.update(7, [1.0, 0.0], 0), [1.0, 0.0])  # first value as is
    # after 2 frames (one half-life) the old value weighs 1/2
    np.testing.assert_allclose(s.update(7, [0.0, 1.0], 2), [0.5, 0.5], atol=1e-6)
    # one frame later: weight 2**-0.5 on the previous state
    w = 0.5**0.5
    np.testing.assert_allclose(s.update(7, [0.0, 1.0], 3), [0.5 * w, 1 - 0.5 * w], atol=1e-6)


def test_half_life_in_seconds_is_frame_rate_independent():
    fast, slow = ProbabilitySmoother(0.5, "seconds"), ProbabilitySmoother(0.5, "seconds")
    fast.update(1, [1.0, 0.0], 0.0)
    slow.update(1, [1.0, 0.0], 0.0)
    for k in range(1, 31):  # 30 fps for one second
        a = fast.update(1, [0.0, 1.0], k / 30)
    for k in range(1, 6):  # 5 fps for one second
        b = slow.update(1, [0.0, 1.0], k / 5)
    np.testing.assert_allclose(a, [0.25, 0.75], atol=1e-5)  # two half-lives
    np.testing.assert_allclose(b, a, atol=1e-5)


def test_smoother_state_is_per_face_and_forgotten():
    s = ProbabilitySmoother(half_life=1)
    s.update(1, [1.0, 0.0], 0)
    s.update(2, [0.0, 1.0], 0)
    np.testing.assert_allclose(s.update(1, [0.0, 1.0], 1), [0.5, 0.5])
    s.retain([1])
    np.testing.assert_allclose(s.update(2, [1.0, 0.0], 1), [1.0, 0.0])  # fresh start for face 2
    with pytest.raises(ValueError, match="unit"):
        ProbabilitySmoother(1, unit="minutes")


def _pan(boxes, dx):
    return [(x + dx, y, w, h) for x, y, w, h in boxes]


def test_missed_face_follows_a_camera_pan_and_keeps_its_id():
    # three faces pan left at 12 px/frame; the middle one is not detected for 20 frames, during
    # which the picture moves 240 px (three box widths): it must come back with its own ID
    tracker = FaceTracker()
    faces = [(100, 100, 80, 80), (300, 110, 80, 80), (500, 90, 80, 80)]
    assert tracker.update(faces, (640, 360)) == [1, 2, 3]
    for t in range(1, 21):
        moved = _pan(faces, -12 * t)
        # the first face leaves the frame on the left after a while: only what is in view
        shown = [b for i, b in enumerate(moved) if i != 1 and b[0] + b[2] > 0]
        tracker.update(shown, (640, 360))
    back = _pan(faces, -12 * 21)[1]
    assert tracker.update([back, _pan(faces, -12 * 21)[2]], (640, 360)) == [2, 3]


def test_face_panned_out_of_view_keeps_its_id_when_the_camera_returns():
    tracker = FaceTracker(max_missed=5, max_missed_outside=100)
    left, right = (20, 100, 80, 80), (400, 100, 80, 80)
    assert tracker.update([left, right], (640, 360)) == [1, 2]
    path = list(range(1, 31)) + list(range(29, -1, -1))  # pan 30 steps and back
    for k in path:
        shift = -6 * k
        shown = [b for b in _pan([left, right], shift) if b[0] >= 0]  # the left face leaves
        ids = tracker.update(shown, (640, 360))
    assert ids == [1, 2]  # 60 frames later, 30 of them out of view: same IDs
    assert tracker._next_id == 3


def test_a_face_missed_in_view_is_still_forgotten():
    tracker = FaceTracker(max_missed=3, max_missed_outside=100)
    assert tracker.update([(100, 100, 80, 80)], (640, 360)) == [1]
    for _ in range(4):
        tracker.update([], (640, 360))
    assert tracker.update([(100, 100, 80, 80)], (640, 360)) == [2]


def test_a_lone_face_leaving_the_frame_keeps_its_id_for_a_while():
    # one face walks out on the right (its boxes are clipped to the frame) and back 2 s later
    tracker = FaceTracker(max_missed=30, max_missed_outside=300)
    for x in range(400, 600, 20):  # the last boxes touch the right edge
        assert tracker.update([(x, 100, min(80, 640 - x), 80)], (640, 360)) == [1]
    for _ in range(60):
        tracker.update([], (640, 360))
    assert tracker.update([(560, 100, 80, 80)], (640, 360)) == [1]
