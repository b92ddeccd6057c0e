"""Live face detection and tracking on group footage made from real photos.

A group "photo" is laid out from five real faces (the NASA astronaut portrait, two FERPlus test
faces, and two frames of the Carphone talking head, one mirrored), each at its own size as
people at different distances; a virtual camera pans across it, zooms in and zooms out (640x360, 30 fps). Each
face's true box is known in every frame, so for each live detector setting this prints the
share of visible faces found, false detections, boxes spanning two people, and how many track
IDs each person got (ID switches) through the live pipeline's tracker.

    python scripts/group_footage.py [--data-root ../shared/data/ferplus] [--write runs/group.mp4]
"""

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gsmc_core.frames.detection import FaceDetector, make_live_detector  # noqa: E402
from gsmc_core.frames.tracking import FaceTracker  # noqa: E402
from gsmc_core.frames.workloads import read_clip  # noqa: E402
from gsmc_core.resources import asset_path  # noqa: E402

CANVAS = (2200, 900)  # width, height
OUT = (640, 360)
FERPLUS_FACES = ("fer0032276.png", "fer0032274.png")  # found by both detectors at 300 px


def _people(data_root: Path) -> list[tuple[np.ndarray, int]]:
    """(photo, width on the canvas) of the five people, left to right."""
    astronaut = cv2.imread(str(REPO.parent / "shared" / "images" / "astronaut.png"))
    carphone = read_clip(str(asset_path("videos", "carphone_qcif.mp4")))
    fer = [_padded(cv2.imread(str(data_root / "FER2013Test" / name), cv2.IMREAD_GRAYSCALE))
           for name in FERPLUS_FACES]
    # astronaut, a FERPlus face, the Carphone man, another FERPlus face, the Carphone man mirrored
    # at another moment: five faces at five sizes (distances)
    return [(astronaut[0:420, 40:472], 420), (fer[0], 330), (carphone[0], 560), (fer[1], 360),
            (carphone[60][:, ::-1].copy(), 300)]


def _padded(face: np.ndarray) -> np.ndarray:
    """A 48x48 FERPlus face (a tight crop) with room around it, as a head has in a photo:
    detectors need the context a tight crop lacks."""
    side = face.shape[0]
    photo = np.full((side * 2, round(side * 1.8)), 90, np.uint8)
    top, left = side // 2, (photo.shape[1] - side) // 2
    photo[top : top + side, left : left + side] = face
    return cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR)


def group_canvas(data_root: Path) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The group image and each person's true face box on it (full-range detection on the
    photo alone, mapped onto the canvas)."""
    width, height = CANVAS
    y, x = np.mgrid[0:height, 0:width]
    canvas = np.dstack([60 + 40 * x / width, 70 + 30 * y / height, 80 + 20 * x / width]).astype(np.uint8)
    boxes = []
    people = _people(data_root)
    gap = (width - sum(w for _, w in people)) // (len(people) + 1)
    left = gap
    with FaceDetector("full", 0.5) as detector:
        for photo, w in people:
            h = round(photo.shape[0] * w / photo.shape[1])
            scaled = cv2.resize(photo, (w, h), interpolation=cv2.INTER_CUBIC)
            top = (height - h) // 2 + (60 if w < 250 else 0)
            canvas[top : top + h, left : left + w] = scaled
            faces = detector.detect(scaled)
            if not faces:
                raise RuntimeError("a photo of the group has no detectable face")
            bx, by, bw, bh = faces[0].box
            boxes.append((left + bx, top + by, bw, bh))
            left += w + gap
    return canvas, boxes


def camera_path(frames: int = 330) -> list[tuple[float, float, float]]:
    """(centre x, centre y, view width) on the canvas per frame, one continuous camera move:
    a pan left to right at a medium zoom, back to the middle while zooming in, a zoom out to
    the whole group."""
    width, height = CANVAS
    path = []
    third = frames // 3
    for k in range(third):  # pan
        u = k / (third - 1)
        path.append((450 + u * (width - 900), height / 2, 900.0))
    for k in range(third):  # pan back to the centre while zooming in to a 640 px view
        u = k / (third - 1)
        path.append((width - 450 + u * (450 - width / 2), height / 2, 900.0 - u * 260))
    for k in range(frames - 2 * third):  # zoom out to the whole width
        u = k / max(1, frames - 2 * third - 1)
        path.append((width / 2, height / 2, 640.0 + u * (width - 640)))
    return path


def render(canvas: np.ndarray, cx: float, cy: float, view_w: float) -> tuple[np.ndarray, float, float, float]:
    """The 640x360 camera frame and the canvas-to-frame map (scale, x0, y0)."""
    scale = OUT[0] / view_w
    x0, y0 = cx - view_w / 2, cy - view_w * OUT[1] / OUT[0] / 2
    matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float64)
    frame = cv2.warpAffine(canvas, matrix, OUT, flags=cv2.INTER_AREA, borderValue=(50, 50, 50))
    return frame, scale, x0, y0


def _centre(box):
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def _inside(point, box) -> bool:
    return box[0] <= point[0] <= box[0] + box[2] and box[1] <= point[1] <= box[1] + box[3]


def evaluate(setting: str, min_score: float, canvas, truth, path, write: Path | None = None) -> dict:
    tracker = FaceTracker()
    visible = found = false = spanning = 0
    ids: list[list[int]] = [[] for _ in truth]
    writer = None
    if write is not None:
        writer = cv2.VideoWriter(str(write), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, OUT)
    detector = make_live_detector(setting, min_score)
    try:
        for cx, cy, view_w in path:
            frame, scale, x0, y0 = render(canvas, cx, cy, view_w)
            if writer is not None:
                writer.write(frame)
            boxes_true = [((x - x0) * scale, (y - y0) * scale, w * scale, h * scale) for x, y, w, h in truth]
            in_view = [0 <= b[0] and 0 <= b[1] and b[0] + b[2] <= OUT[0] and b[1] + b[3] <= OUT[1]
                       for b in boxes_true]
            faces = detector.detect(frame)
            track_ids = tracker.update([f.box for f in faces], OUT)
            matched = set()
            for face, tid in zip(faces, track_ids, strict=True):
                people = [p for p, b in enumerate(boxes_true) if _inside(_centre(b), face.box)]
                owner = [p for p, b in enumerate(boxes_true) if _inside(_centre(face.box), b)]
                if len(people) > 1:
                    spanning += 1
                if owner:
                    p = owner[0]
                    if in_view[p] and p not in matched:
                        matched.add(p)
                        ids[p].append(tid)
                else:
                    false += 1
            visible += sum(in_view)
            found += len(matched)
    finally:
        detector.close()
        if writer is not None:
            writer.release()
    switches = sum(sum(1 for a, b in zip(seq, seq[1:], strict=False) if a != b) for seq in ids)
    return {
        "detector": setting,
        "min_score": min_score,
        "visible_face_frames": visible,
        "found": found,
        "recall": round(found / visible, 3) if visible else math.nan,
        "false_detections": false,
        "boxes_spanning_two_people": spanning,
        "id_switches": switches,
        "ids_per_person": [len(set(seq)) for seq in ids],
        "ids_issued": tracker._next_id - 1,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "ferplus"))
    parser.add_argument("--write", help="also write the footage to this .mp4")
    parser.add_argument("--settings", nargs="+", default=["short:0.5", "full:0.5", "auto:0.5"],
                        help="detector:min_score pairs to measure")
    args = parser.parse_args()
    canvas, truth = group_canvas(Path(args.data_root))
    path = camera_path()
    results = []
    for i, setting in enumerate(args.settings):
        name, score = setting.split(":")
        write = Path(args.write) if args.write and i == 0 else None
        results.append(evaluate(name, float(score), canvas, truth, path, write))
        print(json.dumps(results[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
