"""The Review tab's worker thread: scores a run's training faces and renders a suspect's face
with the CAMs of its given and its predicted class. Qt-free work from the core; only signals
cross to the GUI thread, which never runs the model."""

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PySide6.QtCore import Signal, Slot

from gsmc_core.frames.predictor import Predictor
from gsmc_core.frames.render import overlay_heatmap
from gsmc_core.review.audit import TrainingScores, score_training_set
from gsmc_core.review.cross_val import cross_validated_scores
from gsmc_core.review.label_issues import Suspects, rank_suspects
from gsmc_core.review.relabel import relabel
from gsmc_core.review.review_log import Decision
from gsmc_core.training.config import TrainConfig, config_for_resume
from gsmc_core.training.data.samples import load_image
from gsmc_core.training.events import BatchEvent
from gsmc_desktop.threads import Worker, describe

FACE_SIZE = 192  # pixels of each face and CAM on screen: FERPlus's 48 px faces, 4x


class Cancelled(Exception):
    """The user cancelled the scoring."""


@dataclass(frozen=True)
class ScoreRequest:
    checkpoint: Path
    dataset: str
    data_root: Path
    score: str  # label_issues.SCORES
    model: str  # auto, teacher, student, exported
    folds: int = 0  # > 1: out-of-sample scores by k-fold cross-validation of the run's recipe


@dataclass(frozen=True)
class ScoredRun:
    request: ScoreRequest
    scores: TrainingScores
    suspects: Suspects
    seconds: float


@dataclass(frozen=True)
class ExportRequest:
    """A review's decisions, to be applied to a cleaned copy of the dataset in ``out``."""

    dataset: str
    data_root: Path
    decisions: dict[str, Decision]
    out: Path
    log: Path  # the review log the decisions come from (named in changes.csv)


@dataclass(frozen=True)
class RenderedFace:
    run: "ScoredRun"  # the review it was drawn for
    row: int  # the suspect's row in ScoredRun.scores
    face: npt.NDArray[np.uint8]  # RGB, FACE_SIZE square
    cam_given: npt.NDArray[np.uint8]
    cam_predicted: npt.NDArray[np.uint8]


class ReviewWorker(Worker):
    """Scores a run's training faces (``score``: request_stop cancels after the batch in
    progress) and renders one suspect with its CAMs (``render``); ``errored`` says what broke,
    ``cancelled`` that the user stopped the scoring."""

    progress = Signal(int, int, float)  # batches done, total, seconds so far
    scored = Signal(object)  # ScoredRun
    rendered = Signal(object)  # RenderedFace
    render_failed = Signal(object, int, str)  # run, row, why its face cannot be shown
    cancelled = Signal(str)
    exported = Signal(object, object)  # ExportRequest, RelabelResult

    def __init__(self) -> None:
        super().__init__()
        self._predictor: Predictor | None = None
        self._predictor_path: Path | None = None

    @Slot(object)
    def score(self, request: ScoreRequest) -> None:
        self._stop.clear()
        start = time.perf_counter()

        def on_batch(done: int, total: int) -> None:
            if self._stop.is_set():
                raise Cancelled
            self.progress.emit(done, total, time.perf_counter() - start)

        def on_event(event) -> None:  # cross-validation: the folds' training progress
            if isinstance(event, BatchEvent):
                fold_done = (event.epoch - 1) * event.batches + event.batch
                self.progress.emit(fold_done, event.epochs * event.batches, time.perf_counter() - start)

        try:
            if request.folds > 1:
                scores = cross_validated_scores(self._recipe(request), request.folds,
                                                request.checkpoint.parent / "crossval", on_event,
                                                self._stop.is_set)
                if scores is None:
                    raise Cancelled
            else:
                scores = score_training_set(request.checkpoint, request.dataset, request.data_root,
                                            "cpu", model=request.model, on_batch=on_batch)
            suspects = rank_suspects(scores.probs, scores.given, request.score)
        except Cancelled:
            self.cancelled.emit("Scoring cancelled (cross-validation continues where it stopped "
                                "next time)." if request.folds > 1 else "Scoring cancelled.")
            return
        except Exception as exc:  # a bad dataset or checkpoint: said in the tab, the app goes on
            self.fail(exc, "scoring")
            return
        self.scored.emit(ScoredRun(request, scores, suspects, time.perf_counter() - start))

    @staticmethod
    def _recipe(request: ScoreRequest) -> TrainConfig:
        """The run's own recipe (its config.yaml), on the dataset folder chosen in the tab."""
        config = config_for_resume(request.checkpoint.parent, {})
        return replace(config, resume=False, data_root=str(request.data_root), device="auto")

    @Slot(object)
    def export(self, request: ExportRequest) -> None:
        """Write the cleaned copy of the dataset (``relabel``): FER2013's whole CSV or AffectNet's
        images copied where links cannot be made take minutes, so not on the GUI thread."""
        try:
            result = relabel(request.dataset, request.data_root, request.decisions, request.out,
                             decided_in=request.log)
        except Exception as exc:  # names the folder or label line; nothing is left half-written
            self.fail(exc, "export")
            return
        self.exported.emit(request, result)

    @Slot(object, int)
    def render(self, run: ScoredRun, row: int) -> None:
        """The face of ``row`` of ``run`` (the review the tab shows, which may not be the one
        scored last: a re-score the tab refused) large, with its given and predicted classes' CAMs."""
        try:
            if self._predictor_path != run.request.checkpoint:
                self._predictor = Predictor.from_checkpoint(run.request.checkpoint, device="cpu")
                self._predictor_path = run.request.checkpoint
            sample = run.scores.split.samples[run.scores.indices[row]]
            face = load_image(sample)
            given = int(run.scores.given[row])
            predicted = int(run.suspects.predicted[row])
            shown = np.ascontiguousarray(_resize(face))
            maps = [self._predictor.predict([face], cam_class=c)[0].heatmap for c in (given, predicted)]
            cams = [overlay_heatmap(shown, m, 0.5) for m in maps]
        except Exception as exc:  # said in the face's place (scoring is not affected)
            logging.getLogger("gsmc_desktop").warning("cannot show suspect row %d", row, exc_info=exc)
            self.render_failed.emit(run, row, describe(exc))
            return
        self.rendered.emit(RenderedFace(run, row, shown, *cams))


def _resize(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return cv2.resize(rgb, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_CUBIC)
