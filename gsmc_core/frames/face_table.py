"""Per-face results in one schema, for every file the app and the CLI write: `gsmc predict
--csv/--json`, Images ▸ Export, `gsmc video --csv` and Live ▸ Record (``recording.Recorder``).

A row is where the face is — a stream's ``frame, time_s, face_id`` or an image's ``image, face``
— then ``x, y, w, h, score, expression, p_<class>...``: the box, the detector's score, the label
and the probabilities it follows (the smoothed ones; for still images they are the network's
own). Image tables add ``model`` (which checkpoint), ``runtime`` (how it ran, e.g. ``cpu · int8``:
the int8 graph's probabilities differ from fp32's by a few points) and ``error`` (why an image has
no result). An image without a face is one row with the face columns empty. JSON holds one entry
per image: ``{"image", "model", "runtime", "faces": [{"id", "box", "score", "expression",
"probabilities"}], "error"}``.
CSV writes scores with 4 decimals, probabilities with 5 and times in milliseconds (``0.100``);
JSON the same values rounded.
"""

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gsmc_core.atomic import write_atomic, write_text_atomic
from gsmc_core.frames.results import FaceResult, FrameResult

FACE_COLUMNS = ("x", "y", "w", "h", "score", "expression")
STREAM_KEYS = ("frame", "time_s", "face_id")
IMAGE_KEYS = ("image", "face")
IMAGE_EXTRAS = ("model", "runtime", "error")


def probability_columns(classes: Sequence[str]) -> list[str]:
    return [f"p_{c}" for c in classes]


def _face_values(face: FaceResult) -> list:
    """The face columns as CSV writes them: fixed decimals (4 for the score, 5 for probabilities)."""
    return [*face.box, f"{face.score:.4f}", face.label, *(f"{p:.5f}" for p in face.smoothed)]


def stream_header(classes: Sequence[str]) -> list[str]:
    return [*STREAM_KEYS, *FACE_COLUMNS, *probability_columns(classes)]


def stream_rows(frame_index: int, timestamp: float, result: FrameResult) -> Iterator[list]:
    """One row per face of a frame (a frame without faces has none)."""
    for face in result.faces:
        yield [frame_index, f"{timestamp:.3f}", face.id, *_face_values(face)]


@dataclass(frozen=True)
class ImageFaces:
    """One image's outcome: its faces (``result``), or why there are none (``error``)."""

    image: str
    result: FrameResult | None
    model: str = ""
    error: str | None = None
    runtime: str = ""  # ``Predictor.summary``: where and in which precision the model ran

    @property
    def faces(self) -> int:
        return len(self.result.faces) if self.result is not None else 0


def image_entry(item: ImageFaces) -> dict:
    """The JSON entry of one image."""
    faces = [] if item.result is None else [
        {"id": face.id, "box": list(face.box), "score": round(face.score, 4), "expression": face.label,
         "probabilities": {c: round(float(p), 5) for c, p in zip(item.result.classes, face.smoothed,
                                                                 strict=True)}}
        for face in item.result.faces
    ]
    return {"image": item.image, "model": item.model, "runtime": item.runtime, "faces": faces,
            "error": item.error}


def image_header(items: Sequence[ImageFaces]) -> list[str]:
    """The columns of an image table; the probability columns of every model in it, in order."""
    classes = dict.fromkeys(c for item in items if item.result is not None for c in item.result.classes)
    return [*IMAGE_KEYS, *FACE_COLUMNS, *probability_columns(classes), *IMAGE_EXTRAS]


def image_rows(item: ImageFaces) -> list[dict]:
    """The rows of one image: one per face, or one with the face columns empty."""
    base = {"image": item.image, "model": item.model, "runtime": item.runtime, "error": item.error or ""}
    if item.result is None or not item.result.faces:
        return [base]
    columns = [*FACE_COLUMNS, *probability_columns(item.result.classes)]
    return [{**base, "face": face.id, **dict(zip(columns, _face_values(face), strict=True))}
            for face in item.result.faces]


def write_image_table(path: str | Path, items: Sequence[ImageFaces]) -> Path:
    """Every image's faces to ``path``: JSON for .json, else CSV; written whole or not at all
    (an existing file stays as it was if writing fails)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return write_text_atomic(path, json.dumps([image_entry(item) for item in items], indent=1) + "\n")

    def write(f) -> None:
        writer = csv.DictWriter(f, fieldnames=image_header(items), restval="")
        writer.writeheader()
        for item in items:
            writer.writerows(image_rows(item))

    return write_atomic(path, write)
