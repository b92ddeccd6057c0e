"""The per-face CSV of `gsmc video --csv` and the desktop app's recordings:
``frame,time_s,face_id,x,y,w,h,score,expression,p_<class>...``, one row per face per frame."""

from collections.abc import Iterator

from gsmc_core.frames.results import FrameResult

BASE_COLUMNS = ("frame", "time_s", "face_id", "x", "y", "w", "h", "score", "expression")


def csv_header(classes: tuple[str, ...]) -> list[str]:
    return [*BASE_COLUMNS, *(f"p_{c}" for c in classes)]


def csv_rows(frame_index: int, timestamp: float, result: FrameResult) -> Iterator[list]:
    """One row per face; probabilities are the smoothed ones the labels follow."""
    for f in result.faces:
        yield [frame_index, f"{timestamp:.3f}", f.id, *f.box, f"{f.score:.4f}", f.label,
               *(f"{p:.5f}" for p in f.smoothed)]
