import cv2
import numpy as np
import pytest

from gsmc_core.errors import UsageError
from gsmc_core.frames.bench import synthetic_frames
from gsmc_core.frames.detection import crop_face
from gsmc_core.frames.pipeline import FramePipeline, overlapped
from gsmc_core.frames.render import RenderOptions, draw_frame, face_caption
from gsmc_core.labels import CANONICAL_CLASSES


@pytest.fixture(scope="module")
def four_face_frames(astronaut_rgb):
    return list(synthetic_frames(cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR), faces=4, count=6))


def test_all_faces_of_a_frame_in_one_batch(predictor, detector, four_face_frames, monkeypatch):
    calls = []
    real_predict = predictor.predict

    def counting_predict(crops, bgr=False, cam_class=None, cam_scale="map"):
        calls.append((len(crops), bgr))
        return real_predict(crops, bgr=bgr, cam_class=cam_class, cam_scale=cam_scale)

    monkeypatch.setattr(predictor, "predict", counting_predict)
    pipeline = FramePipeline(predictor, detector)
    results = [pipeline.process(f, timestamp=i / 30) for i, f in enumerate(four_face_frames)]
    assert calls == [(4, True)] * len(four_face_frames)
    first = results[0]
    assert first.size == (640, 480) and first.classes == CANONICAL_CLASSES
    assert sorted(f.id for f in first.faces) == [1, 2, 3, 4]
    # the faces move a little: IDs stay with their quadrant
    for result in results:
        quadrant = {f.id: (f.box[0] >= 320, f.box[1] >= 240) for f in result.faces}
        assert quadrant == {f.id: (f.box[0] >= 320, f.box[1] >= 240) for f in first.faces}
    for face in first.faces:
        x, y, w, h = face.box
        assert face.heatmap.shape == (h, w)
        assert 0.0 <= face.heatmap.min() and face.heatmap.max() <= 1.0 + 1e-6
        assert face.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_array_equal(face.smoothed, face.probabilities)  # smoothing off
        assert face.label == CANONICAL_CLASSES[face.index] and face.cam_class == face.index
        assert 0.5 < face.score <= 1.0
    assert set(first.timings) == {"detect", "classify", "track", "cam", "total"}
    assert first.timings["total"] >= first.timings["detect"] + first.timings["classify"]
    assert first.annotated is None


def test_same_result_as_the_predictor_on_the_crop(predictor, detector, astronaut_rgb):
    bgr = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR)
    result = FramePipeline(predictor, detector).process(bgr)
    face = detector.detect(bgr)[0]
    direct = predictor.predict([crop_face(astronaut_rgb, face, predictor.meta.face_crop)])[0]
    np.testing.assert_allclose(result.faces[0].probabilities, direct.probabilities, atol=1e-5)


def test_all_cams_come_with_the_result_from_the_same_pass(predictor, detector, four_face_frames,
                                                         monkeypatch):
    """The Images tab's grid of every class's CAM needs no second network pass."""
    calls = []
    real_predict = predictor.predict

    def counting_predict(crops, **kwargs):
        calls.append(len(crops))
        return real_predict(crops, **kwargs)

    monkeypatch.setattr(predictor, "predict", counting_predict)
    frame = four_face_frames[0]
    result = FramePipeline(predictor, detector, all_cams=True).process(frame)
    assert calls == [4]
    faces = detector.detect(frame, color="bgr")
    direct = real_predict([crop_face(frame, f, predictor.meta.face_crop) for f in faces], bgr=True)
    by_box = {f.box: p for f, p in zip(faces, direct, strict=True)}
    for face in result.faces:
        assert face.cams.shape == by_box[face.box].cams.shape and face.cams.shape[0] == 8
        np.testing.assert_allclose(face.cams, by_box[face.box].cams, atol=1e-4)
    assert all(f.cams is None for f in FramePipeline(predictor, detector).process(frame).faces)


def test_chosen_cam_class_and_smoothing(predictor, detector, four_face_frames):
    pipeline = FramePipeline(predictor, detector, half_life=2, cam_class="fear")
    results = [pipeline.process(f, timestamp=i / 30) for i, f in enumerate(four_face_frames)]
    fear = CANONICAL_CLASSES.index("fear")
    assert all(f.cam_class == fear for r in results for f in r.faces)
    # smoothed = running EMA of the raw values per face (half-life 2 frames)
    by_id = {}
    for r in results:
        for f in r.faces:
            prev = by_id.get(f.id)
            expected = f.probabilities if prev is None else prev + (1 - 0.5**0.5) * (f.probabilities - prev)
            np.testing.assert_allclose(f.smoothed, expected, atol=1e-5)
            by_id[f.id] = f.smoothed
    with pytest.raises(UsageError, match="unknown class 'joy'"):
        pipeline.cam_class = "joy"
    # configure: every option at once between frames, the tracks and their smoothing kept
    pipeline.configure(heatmaps=False, cam_class="anger", cam_scale="face", half_life=None)
    after = pipeline.process(four_face_frames[-1], timestamp=1.0)
    assert {f.id for f in after.faces} == {f.id for f in results[-1].faces}
    anger = CANONICAL_CLASSES.index("anger")
    assert all(f.cam_class == anger and f.heatmap is None for f in after.faces)
    assert all(np.array_equal(f.smoothed, f.probabilities) for f in after.faces)  # raw now
    with pytest.raises(UsageError, match="out of range"):
        pipeline.configure(True, 8, "map", 2.0)


def test_render_option_draws_and_times(predictor, detector, four_face_frames):
    result = FramePipeline(predictor, detector).process(four_face_frames[0], render=RenderOptions())
    assert result.annotated is not None and result.annotated.shape == four_face_frames[0].shape
    assert result.timings["render"] > 0
    assert not np.array_equal(result.annotated, four_face_frames[0])


def test_draw_frame_changes_only_the_face_boxes(predictor, detector, four_face_frames):
    frame = four_face_frames[0]
    result = FramePipeline(predictor, detector).process(frame)
    inside = np.zeros(frame.shape[:2], bool)
    for f in result.faces:
        x, y, w, h = f.box
        inside[y : y + h, x : x + w] = True
    heat_only = draw_frame(frame, result, RenderOptions(boxes=False, labels=False))
    changed = (heat_only != frame).any(axis=2)
    assert not changed[~inside].any()  # nothing outside the boxes
    assert changed[inside].mean() > 0.5  # most box pixels are tinted by the heatmap
    assert np.array_equal(frame, four_face_frames[0])  # the input is not modified
    # alpha 0 leaves the face as it was
    np.testing.assert_array_equal(
        draw_frame(frame, result, RenderOptions(alpha=0.0, boxes=False, labels=False)), frame
    )
    boxes_only = draw_frame(frame, result, RenderOptions(heatmaps=False, labels=False))
    x, y, w, h = result.faces[0].box
    assert (boxes_only[y, x : x + w] != frame[y, x : x + w]).any()  # the box's top edge is drawn
    assert np.array_equal(boxes_only[y + h // 2, x + 5 : x + w - 5], frame[y + h // 2, x + 5 : x + w - 5])


def test_captions(predictor, detector, four_face_frames):
    result = FramePipeline(predictor, detector).process(four_face_frames[0])
    face = result.faces[0]
    caption = face_caption(face)
    assert caption == f"#{face.id} {face.label} {round(face.confidence * 100)}%"
    assert face_caption(face, ids=False) == f"{face.label} {round(face.confidence * 100)}%"
    labelled = draw_frame(four_face_frames[0], result, RenderOptions(heatmaps=False, boxes=False))
    x, y, w, h = face.box
    band = (labelled != four_face_frames[0]).any(axis=2)[max(0, y - 30) : y + 30, x : x + w]
    assert band.any()  # the caption is written at the box's top edge


def test_two_stages_in_flight_give_the_same_results_in_order(predictor, detector, four_face_frames):
    import threading

    frames = [(f, i / 30) for i, f in enumerate(four_face_frames)]
    sequential = FramePipeline(predictor, detector, half_life=2)
    expected = [sequential.process(f, timestamp=t) for f, t in frames]
    pipeline = FramePipeline(predictor, detector, half_life=2)
    pipeline.reset()  # the detector's schedule from the start, as for the sequential run
    threads = set()
    detect = pipeline.detect

    def detect_recording_thread(frame, timestamp):
        threads.add(threading.current_thread().name)
        return detect(frame, timestamp)

    pipeline.detect = detect_recording_thread
    got = list(overlapped(pipeline, frames))
    assert [r.timestamp for r in got] == [t for _, t in frames]  # every frame, in order
    for a, b in zip(got, expected, strict=True):
        assert [f.id for f in a.faces] == [f.id for f in b.faces]  # the tracker saw them in order
        for fa, fb in zip(a.faces, b.faces, strict=True):
            assert fa.box == fb.box and fa.label == fb.label
            np.testing.assert_allclose(fa.smoothed, fb.smoothed, atol=1e-5)
    assert all(name.startswith("gsmc-detect") for name in threads)  # detection ran beside


def test_opencv_runs_on_the_calling_thread(predictor, detector, four_face_frames):
    """OpenCV's pool spins its idle workers (0.04-0.05 CPU-s/s at 30 fps for nothing): a
    pipeline keeps OpenCV on the thread that processes the frame."""
    cv2.setNumThreads(2)
    try:
        pipeline = FramePipeline(predictor, detector)
        pipeline.process(four_face_frames[0], render=RenderOptions())
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(1)
