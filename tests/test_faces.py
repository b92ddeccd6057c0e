import math

import cv2
import numpy as np
import pytest
from conftest import shared_path

from gsmc_core.checkpoint import FaceCrop
from gsmc_core.frames.detection import Face, FaceDetector, crop_face, crop_transform, heatmap_in_box

# where MediaPipe puts the astronaut's face in the 512x512 portrait (both models agree within ~15 px)
ASTRONAUT_FACE_CENTRE = (225, 125)
# FERPlus test faces the detector finds when upscaled and padded (FER2013's tight, low-resolution
# crops are found about half the time in composites; see docs/performance.md)
FER_FACES = ("fer0032230.png", "fer0032231.png", "fer0032232.png")


@pytest.fixture(scope="module")
def full_detector():
    with FaceDetector("full") as d:
        yield d


@pytest.fixture(scope="module")
def short_detector():
    with FaceDetector("short") as d:
        yield d


def _centre(box):
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def _assert_astronaut(faces, scale=1.0):
    assert len(faces) == 1
    face = faces[0]
    cx, cy = _centre(face.box)
    assert abs(cx - ASTRONAUT_FACE_CENTRE[0] * scale) < 20 * scale
    assert abs(cy - ASTRONAUT_FACE_CENTRE[1] * scale) < 20 * scale
    assert 80 * scale < face.box[2] < 130 * scale and 80 * scale < face.box[3] < 130 * scale
    assert face.score > 0.8
    assert len(face.keypoints) == 6
    (rx, ry), (lx, ly) = face.keypoints[:2]
    # the person's right eye is on the image's left, both eyes in the upper half of the box
    assert rx < lx and face.box[1] < ry < cy and face.box[1] < ly < cy


@pytest.mark.parametrize("model", ["short", "full"])
def test_finds_the_astronaut(model, astronaut_rgb, full_detector, short_detector):
    detector = full_detector if model == "full" else short_detector
    _assert_astronaut(detector.detect(astronaut_rgb, color="rgb"))


def test_colour_layouts_agree(astronaut_rgb, short_detector):
    bgr = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR)
    reference = short_detector.detect(bgr)[0].box
    variants = {
        "rgb": short_detector.detect(astronaut_rgb, color="rgb"),
        "rgba": short_detector.detect(cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2RGBA), color="rgb"),
        "bgra": short_detector.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)),
        "gray": short_detector.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)),
        "gray1": short_detector.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[..., None]),
    }
    for name, faces in variants.items():
        assert len(faces) == 1, name
        assert np.abs(np.subtract(faces[0].box, reference)).max() <= 6, name
    # channel order matters: treating RGB as BGR is a different image
    assert short_detector.detect(astronaut_rgb, color="rgb")[0].box == reference


def test_huge_image_is_scaled_and_boxes_mapped_back(astronaut_rgb, full_detector):
    big = cv2.resize(astronaut_rgb, (4096, 4096), interpolation=cv2.INTER_LINEAR)
    faces = full_detector.detect(big, color="rgb")
    _assert_astronaut(faces, scale=8.0)
    x, y, w, h = faces[0].box
    assert x + w <= 4096 and y + h <= 4096


def test_boxes_are_clipped_to_the_image(astronaut_rgb, short_detector):
    # a face cut by the left edge: the box starts at 0 and stays inside
    shifted = np.ascontiguousarray(astronaut_rgb[:, 200:])
    faces = short_detector.detect(shifted, color="rgb")
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert x == 0 and w > 0 and x + w <= shifted.shape[1] and y + h <= shifted.shape[0]


def test_rejects_bad_input(short_detector):
    with pytest.raises(ValueError, match="uint8"):
        short_detector.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        short_detector.detect(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ValueError, match="unknown detector 'medium'"):
        FaceDetector("medium")


def _multi_face_image():
    """Real faces of many sizes: three astronaut heads (colour, grayscale, mirrored) and three
    FERPlus faces upscaled and padded onto a plain background."""
    astro = cv2.imread(str(shared_path("images", "astronaut.png")))
    head = astro[31:215, 138:322]  # 184 px head whose face box is ~95 px at (39, 51)
    variants = [head, cv2.cvtColor(cv2.cvtColor(head, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR), head[:, ::-1]]
    image = np.full((720, 960, 3), (60, 70, 80), np.uint8)
    truth = []
    for variant, (scale, x, y) in zip(variants, [(1.6, 20, 20), (1.2, 360, 60), (0.9, 700, 30)], strict=True):
        h = cv2.resize(variant, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        image[y : y + h.shape[0], x : x + h.shape[1]] = h
        truth.append((x + 39 * scale, y + 51 * scale, 95 * scale, 95 * scale))
    for k, name in enumerate(FER_FACES):
        face = cv2.imread(str(shared_path("data", "ferplus", "FER2013Test", name)))
        face = cv2.resize(face, (150, 150), interpolation=cv2.INTER_CUBIC)
        face = cv2.copyMakeBorder(face, 30, 30, 30, 30, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        x, y = 40 + k * 310, 420
        image[y : y + 210, x : x + 210] = face
        truth.append((x + 30, y + 30, 150, 150))
    return image, truth


def _found(faces, truth):
    return [
        any(abs(_centre(f.box)[0] - (x + w / 2)) < w / 2 and abs(_centre(f.box)[1] - (y + h / 2)) < h / 2
            for f in faces)
        for x, y, w, h in truth
    ]


def test_every_face_of_a_group_image_is_found():
    image, truth = _multi_face_image()
    with FaceDetector("full", tiles="auto") as detector:
        faces = detector.detect(image)
    assert _found(faces, truth) == [True] * 6
    assert len(faces) == 6  # and nothing else


def test_tiling_finds_small_faces():
    astro = cv2.imread(str(shared_path("images", "astronaut.png")))
    small = cv2.resize(astro, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # ~48 px faces
    image = np.full((1280, 1920, 3), 90, np.uint8)
    truth = []
    for r in range(4):
        for c in range(6):
            x, y = c * 320, r * 320
            image[y : y + 256, x : x + 256] = small
            truth.append((x + 88, y + 41, 48, 48))
    with FaceDetector("full", tiles=1) as plain, FaceDetector("full", tiles=4) as tiled:
        untiled_found = sum(_found(plain.detect(image), truth))
        tiled_faces = tiled.detect(image)
    assert untiled_found == 0  # whole image at 192 px: 5-px faces
    assert sum(_found(tiled_faces, truth)) == 24 and len(tiled_faces) == 24


def test_tiling_keeps_one_box_for_a_large_face(astronaut_rgb):
    big = cv2.resize(astronaut_rgb, (1536, 1536))
    with FaceDetector("full", tiles=3) as detector:
        _assert_astronaut(detector.detect(big, color="rgb"), scale=3.0)


def _face(box, keypoints=((0.0, 0.0), (1.0, 0.0))):
    return Face(box=box, score=1.0, keypoints=keypoints)


def test_crop_margin_and_square():
    image = np.arange(200 * 300, dtype=np.uint32).reshape(200, 300).astype(np.uint8)
    face = _face((100, 50, 40, 60))
    crop = crop_face(image, face, FaceCrop(margin=0.0, square=False))
    np.testing.assert_array_equal(crop, image[50:110, 100:140])
    crop = crop_face(image, face, FaceCrop(margin=0.25, square=True))
    # square side 60 around centre (120, 80), plus 15 px per side: 90 x 90 from (75, 35)
    assert crop.shape == (90, 90)
    np.testing.assert_array_equal(crop, image[35:125, 75:165])


def test_crop_outside_the_image_replicates_the_border():
    image = np.tile(np.arange(100, dtype=np.uint8), (80, 1))  # value = column
    image = np.dstack([image] * 3)
    crop = crop_face(image, _face((0, 0, 40, 40)), FaceCrop(margin=0.5, square=True))
    assert crop.shape == (80, 80, 3)
    np.testing.assert_array_equal(crop[:, :20, 0], 0)  # 20 columns left of the image: column 0
    np.testing.assert_array_equal(crop[30, 20:80, 0], np.arange(60))


def _eye_angle(face):
    (rx, ry), (lx, ly) = face.keypoints[:2]
    return math.degrees(math.atan2(ly - ry, lx - rx))


@pytest.mark.parametrize("rotation", [-25, 25])
def test_aligned_crop_levels_the_eyes(rotation, astronaut_rgb, short_detector):
    upright = _eye_angle(short_detector.detect(astronaut_rgb, color="rgb")[0])
    h, w = astronaut_rgb.shape[:2]
    turn = cv2.getRotationMatrix2D((225, 125), rotation, 1.0)
    tilted = cv2.warpAffine(astronaut_rgb, turn, (w, h), borderMode=cv2.BORDER_REFLECT)
    true_tilt = upright - rotation
    face = short_detector.detect(tilted, color="rgb")[0]
    framing = FaceCrop(margin=0.2, square=True, align=True)
    matrix, size = crop_transform(face, framing)
    eyes = cv2.transform(np.array([face.keypoints[:2]], np.float64), matrix)[0]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 0.5  # the detected eyes are level in the crop
    assert 0 < eyes[0, 0] < eyes[1, 0] < size[0]
    crop = crop_face(tilted, face, framing)
    assert crop.shape[:2] == (size[1], size[0])
    # detected again, the face is much closer to upright (MediaPipe's keypoints on tilted faces
    # lean towards upright, so one pass does not remove all of a 20-30 degree tilt)
    again = short_detector.detect(crop, color="rgb")
    assert len(again) == 1
    assert abs(_eye_angle(again[0])) < abs(true_tilt) / 2


def test_heatmap_maps_back_onto_the_box():
    face = _face((30, 20, 40, 40))
    framing = FaceCrop(margin=0.25, square=True)
    matrix, (cw, ch) = crop_transform(face, framing)
    assert (cw, ch) == (60, 60)
    # a heatmap whose value is the crop column: the box starts 10 crop columns in
    crop_heat = np.tile(np.arange(cw, dtype=np.float32), (ch, 1))
    box_heat = heatmap_in_box(crop_heat, face, framing)
    assert box_heat.shape == (40, 40)
    np.testing.assert_allclose(box_heat[5], np.arange(10, 50), atol=1e-4)


def _carphone_zoomed(zoom: float) -> list[np.ndarray]:
    """Frames of the real Carphone clip at 640x360 with the face ~200*zoom px wide."""
    from gsmc_core.frames.workloads import read_clip
    from gsmc_core.resources import asset_path

    frames = []
    for f in read_clip(str(asset_path("videos", "carphone_qcif.mp4")))[::12]:
        scale = 640 / 176 * zoom
        big = cv2.resize(f, None, fx=scale, fy=scale)
        x0, y0 = int(88 * scale) - 320, max(0, int(50 * scale) - 180)
        frames.append(np.ascontiguousarray(big[y0 : y0 + 360, max(0, x0) : max(0, x0) + 640]))
    return frames


def test_auto_detector_runs_the_far_model_when_it_adds_a_face(astronaut_rgb):
    from gsmc_core.frames.detection import make_live_detector

    close = _carphone_zoomed(1.0)  # one face at webcam distance: the short-range model finds it
    with make_live_detector("auto") as auto, make_live_detector("short") as short:
        assert auto.model == "auto"
        for frame in close:
            assert len(short.detect(frame)) == 1 and len(auto.detect(frame)) == 1  # merged: once
        assert auto.full_runs == -(-len(close) // 3)  # every third frame only
    # a distant face (50 px in 640x360): only the full-range model sees it, and then on every
    # frame, so its box does not flicker
    head = cv2.resize(cv2.cvtColor(astronaut_rgb[0:300, 100:400], cv2.COLOR_RGB2BGR), (100, 100))
    far = []
    for k in range(8):
        frame = np.full((360, 640, 3), 70, np.uint8)
        frame[120:220, 200 + 3 * k : 300 + 3 * k] = head
        far.append(frame)
    with make_live_detector("auto") as auto, make_live_detector("short") as short:
        for frame in far:
            assert short.detect(frame) == []
            assert len(auto.detect(frame)) == 1
        assert auto.full_runs == len(far)
    with pytest.raises(ValueError, match="unknown detector 'medium'"):
        make_live_detector("medium")


def test_a_panorama_is_tiled_by_each_side_and_a_thin_strip_is_no_crash():
    astro = cv2.imread(str(shared_path("images", "astronaut.png")))
    small = cv2.resize(astro, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # ~51 px face
    panorama = np.full((512, 4096, 3), 90, np.uint8)
    panorama[128:384, 1800:2056] = small
    with FaceDetector("full", tiles="auto") as detector:
        faces = detector.detect(panorama)  # an n x n grid cut it into tiles lower than the face
        assert _found(faces, [(1800 + 88, 128 + 41, 48, 48)]) == [True] and len(faces) == 1
        assert detector.detect(np.full((8, 100_000, 3), 90, np.uint8)) == []  # shrunk to 0 px before


def test_a_detector_nobody_closed_is_collected_without_freezing_the_thread(tmp_path):
    # MediaPipe's __del__ closed through a thread pool collected in the same cycle: it waited
    # forever (a Live worker froze inside an ONNX export, holding the export lock)
    import subprocess
    import sys

    script = tmp_path / "collect.py"
    script.write_text(
        "import gc\n"
        "import numpy as np\n"
        "from gsmc_core.frames.detection import FaceDetector\n"
        "d = FaceDetector('short')\n"
        "d.detect(np.zeros((64, 64, 3), np.uint8))\n"
        "cycle = [d]\n"
        "cycle.append(cycle)  # held by a reference cycle, as a pipeline in a traceback is\n"
        "del d, cycle  # never closed\n"
        "gc.collect()\n"
        "print('collected', flush=True)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "collected" in proc.stdout, proc.stderr[-2000:]
