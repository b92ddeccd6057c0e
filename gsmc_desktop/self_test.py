"""`gsmc-desktop --self-test`: prove a build works end to end without a screen.

Starts Qt offscreen, checks that Qt calls keep Python's reference counts (a broken PySide6
release drains them), builds the main window (Qt plugins, pyqtgraph), loads the model as the app
does (its int8 graph in ONNX Runtime when it has one, as the shipped model does) and its fp32
ONNX export (exported here when not cached), detects and classifies the faces in the bundled
sample photo with MediaPipe with both (they must agree), computes each face's CAM, quantises the
model to int8 as "Use this model" does (calibrated on the sample's faces; its probabilities must
be within 0.1 of fp32's), prints a JSON summary and returns 0; any failure prints the step and the error and
returns 1.
"""

import json
import os
import sys
import time
import traceback
from pathlib import Path

from gsmc_desktop.widgets.plain_text import PlainLabel

SAMPLE_IMAGE = ("images", "astronaut.jpg")


def _check(summary: dict, checkpoint: Path | None) -> None:
    seconds = summary["seconds"]
    t0 = time.perf_counter()

    def done(step: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        seconds[step] = round(now - t0, 3)
        t0 = now

    summary["step"] = "start Qt"
    from gsmc_desktop.app import create_application
    from gsmc_desktop.main_window import MainWindow

    app = create_application(sys.argv[:1])
    app.setApplicationName("GSMC self-test")  # its own QSettings: the user's are left alone
    summary["qt_platform"] = app.platformName()
    import PySide6

    summary["pyside6"] = PySide6.__version__
    _check_reference_counts()
    done("qt")

    summary["step"] = "load model"
    import torch

    from gsmc_core.frames.detection import FaceDetector
    from gsmc_core.frames.pipeline import FramePipeline
    from gsmc_core.frames.predictor import Predictor
    from gsmc_core.frames.sources import read_image
    from gsmc_core.resources import DEFAULT_CHECKPOINT, asset_path

    checkpoint = checkpoint or DEFAULT_CHECKPOINT
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    summary["checkpoint"] = str(checkpoint)
    summary["backend"] = predictor.backend
    summary["precision"] = predictor.precision  # int8 for the shipped model
    summary["onnx_file"] = str(getattr(predictor.runtime, "path", ""))
    # the fp32 path too (any model without an int8 graph): exported to ONNX here if not cached
    fp32 = Predictor.from_checkpoint(checkpoint, device="cpu", precision="fp32")
    summary["fp32_onnx_file"] = str(getattr(fp32.runtime, "path", ""))
    summary["torch"] = torch.__version__
    done("model")

    summary["step"] = "build the main window"
    window = MainWindow(checkpoint=checkpoint, camera_lister=list)
    window.resize(1280, 800)
    window.show()
    app.processEvents()
    if window.model is None:
        raise RuntimeError(f"the main window did not load {checkpoint}")
    window.shutdown()
    done("window")

    summary["step"] = "detect and classify faces"
    image_path = asset_path(*SAMPLE_IMAGE)
    image = read_image(image_path)
    with FaceDetector("full") as detector:
        result = FramePipeline(predictor, detector).process(image)
        reference = FramePipeline(fp32, detector).process(image)
    if not result.faces:
        raise RuntimeError(f"no face found in {image_path}")
    if [f.label for f in result.faces] != [f.label for f in reference.faces]:
        raise RuntimeError(f"{summary['precision']} and fp32 disagree on {image_path}: "
                           f"{[f.label for f in result.faces]} vs {[f.label for f in reference.faces]}")
    summary["image"] = str(image_path)
    summary["faces"] = []
    for face in result.faces:
        heat = face.heatmap
        if heat is None or not (0.0 <= float(heat.min()) and float(heat.max()) <= 1.0):
            raise RuntimeError(f"face {face.id}: CAM heatmap missing or outside [0, 1]")
        summary["faces"].append({
            "box": [round(v) for v in face.box],
            "score": round(face.score, 3),
            "expression": face.label,
            "confidence": round(face.confidence, 3),
            "cam_shape": list(heat.shape),
            "cam_peak": [int(v) for v in divmod(int(heat.argmax()), heat.shape[1])][::-1],
        })
    done("faces")

    summary["step"] = "quantize"  # the Training tab's "Use this model" makes an int8 graph
    import tempfile

    from gsmc_core.checkpoint import load_checkpoint
    from gsmc_core.frames.detection import crop_face
    from gsmc_core.frames.quantize import quantize_int8

    crops = [crop_face(image, face, predictor.meta.face_crop) for face in result.faces]
    calibration = [fp32.preprocess(crops, bgr=True), fp32.preprocess([c[:, ::-1] for c in crops], bgr=True)]
    with tempfile.TemporaryDirectory(prefix="gsmc-self-test-") as tmp:
        graph = quantize_int8(load_checkpoint(checkpoint), calibration, Path(tmp, "int8.onnx"))
        quantized = Predictor.from_checkpoint(graph, device="cpu").predict(crops, bgr=True)
    error = max(float(abs(q.probabilities - f.probabilities).max())
                for q, f in zip(quantized, fp32.predict(crops, bgr=True), strict=True))
    summary["quantized_here"] = {"labels": [q.label for q in quantized], "max_prob_diff": round(error, 4)}
    if error > 0.1:  # a near-tie may flip a label; a broken quantiser moves everything
        raise RuntimeError(f"the int8 graph made here is {error:.3f} from fp32's probabilities")
    done("quantize")
    summary["step"] = "done"


def _check_reference_counts(calls: int = 300) -> None:
    """Qt calls that return nothing must not drain the reference count of None (PySide6
    6.12.0 on Python 3.11 does, and the app then aborts within a minute of live video)."""
    from PySide6.QtWidgets import QApplication

    label = PlainLabel()
    before = sys.getrefcount(None)
    for _ in range(calls):
        label.setText("self-test")
        QApplication.processEvents()
    lost = before - sys.getrefcount(None)
    if lost > calls // 10:
        raise RuntimeError(f"this Qt binding lost {lost} references to None in {2 * calls} calls: it "
                           "corrupts reference counts (PySide6 6.12.0 on Python 3.11); build with another")


def run_self_test(checkpoint: Path | None = None) -> int:
    """Run the checks offscreen, print the JSON summary; 0 when every step passed."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    summary: dict = {"ok": False, "frozen": bool(getattr(sys, "frozen", False)), "seconds": {}}
    try:
        _check(summary, checkpoint)
        summary["ok"] = True
    except Exception as exc:  # report whatever broke, with the step it broke in
        summary["error"] = f"{type(exc).__name__}: {exc}"
        print(traceback.format_exc(), file=sys.stderr)
        print(f"self-test FAILED at step '{summary['step']}': {summary['error']}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1
