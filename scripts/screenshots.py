"""Render docs/screenshots/{live,images,training,small}.png from real runs of the desktop app.

    python scripts/screenshots.py [--checkpoint CKPT] [--data-root ../shared/data/ferplus]

Offscreen (no display needed): the window is drawn with ``QWidget.grab``. Real faces (the
shipped astronaut portrait moving in a generated clip, and the photo itself), the default
model (or ``--checkpoint``), and a real, tiny FERPlus training run. Without either model a
random-weights one stands in, with a note: the layout is right but labels and heatmaps are
meaningless. Settings go to a temporary folder, so the user's are untouched.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import cv2  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gsmc_core.checkpoint import Checkpoint, ModelMeta, save_checkpoint  # noqa: E402
from gsmc_core.frames.workloads import clip_frames, read_clip  # noqa: E402
from gsmc_core.labels import CANONICAL_CLASSES  # noqa: E402
from gsmc_core.model import GSMCNet  # noqa: E402
from gsmc_core.resources import DEFAULT_CHECKPOINT, asset_path  # noqa: E402
from gsmc_core.training.config import TrainConfig  # noqa: E402
from gsmc_core.training.run_folder import RunFolder
from gsmc_desktop.app import create_application  # noqa: E402
from gsmc_desktop.main_window import MainWindow  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WINDOW_SIZE = (1400, 860)


def wait_for(app: QApplication, done: Callable[[], bool], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > end:
            raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f} s")
        app.processEvents()
        time.sleep(0.01)
    app.processEvents()


def random_checkpoint(path: Path) -> Path:
    """A random-weights model with the default model's shapes and metadata."""
    meta = ModelMeta(arch="resnet18", classes=CANONICAL_CLASSES, input_size=64, output_stride=16,
                     color="gray")
    weights = GSMCNet(len(CANONICAL_CLASSES)).state_dict()
    return save_checkpoint(Checkpoint(meta=meta, state_dict=weights), path)


def review_shot(app: QApplication, window: MainWindow, args: argparse.Namespace, tmp_dir: Path) -> None:
    """The Review tab on the run's training faces, a few suspects decided with the keyboard."""
    run = tmp_dir / "review-run"
    run.mkdir()
    checkpoint = RunFolder(run).last
    shutil.copy2(RunFolder(args.review_run).last, checkpoint)  # decisions go beside the copy
    tab = window.review
    window.tabs.setCurrentWidget(tab)
    tab.data_root.edit.setText(str(args.data_root))
    tab.checkpoint.edit.setText(str(checkpoint))
    tab.score.setCurrentIndex(tab.score.findData("normalized_margin"))
    started = time.monotonic()
    tab.start_scoring()
    wait_for(app, lambda: tab.run is not None, 900, "the scoring")
    print(f"review: {len(tab.run.scores.given)} faces scored in {time.monotonic() - started:.0f} s")
    accept = lambda: tab.decide_class(int(tab.run.suspects.predicted[tab.rows[tab.position]]))  # noqa: E731
    for decide in (accept, tab.decide_keep, tab.decide_unusable):  # the model's class, kept, unusable
        decide()
        wait_for(app, lambda: True, 1, "")
    wait_for(app, lambda: tab.face_views[0].pixmap() is not None and not tab.face_views[0].pixmap().isNull(),
             60, "the face and its CAMs")
    time.sleep(0.5)
    app.processEvents()
    window.grab().save(str(args.out / "review.png"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help=f"model to show (default: {DEFAULT_CHECKPOINT})")
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data" / "ferplus")
    parser.add_argument("--image", type=Path, default=REPO.parent / "shared" / "images" / "astronaut.png")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--review-run", type=Path,
                        help="a run folder trained on noisy FERPlus labels (its last.pt is copied): "
                             "also render review.png")
    parser.add_argument("--only-review", action="store_true", help="render review.png only")
    args = parser.parse_args()
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    if args.checkpoint is not None and not checkpoint.is_file():
        print(f"{checkpoint}: no such file", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # a shared CPU: one thread is faster than two spinning against a job

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        if not checkpoint.is_file():
            print(f"NOTE: no default model at {checkpoint}; using RANDOM weights: the screenshots' "
                  "labels and heatmaps are meaningless. Pass --checkpoint for real ones.", file=sys.stderr)
            checkpoint = random_checkpoint(tmp_dir / "random.pt")
        app = create_application(sys.argv[:1])
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_dir / "settings"))
        window = MainWindow(checkpoint=checkpoint, camera_lister=lambda: [])
        window.resize(*WINDOW_SIZE)
        window.show()
        window.set_device("cpu")
        if args.review_run is not None:
            review_shot(app, window, args, tmp_dir)
            if args.only_review:
                window.close()
                return 0

        # Live: the real talking head (Carphone, 640x360, 30 fps) as a user plays a video; the
        # frame rate the status bar shows is read after 10 s, then the shot is taken paused
        clip = tmp_dir / "carphone_640x360.mp4"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
        for frame in clip_frames(read_clip(str(asset_path("videos", "carphone_qcif.mp4"))), 1, 600):
            writer.write(frame)
        writer.release()
        window.tabs.setCurrentWidget(window.live)
        window.live.smoothing_spin.setValue(0.5)
        window.live.whole_check.setChecked(True)
        window.open_video(clip)
        wait_for(app, lambda: window.live.frames_shown >= 30, 300, "30 live frames")
        started, shown = time.monotonic(), window.live.frames_shown
        wait_for(app, lambda: time.monotonic() - started > 10, 30, "10 s of playback")
        fps_text = window.fps_label.text()
        measured = (window.live.frames_shown - shown) / (time.monotonic() - started)
        window.live.play_button.setChecked(True)  # pause, as a user inspecting a frame
        wait_for(app, lambda: True, 1, "")
        time.sleep(0.3)
        app.processEvents()
        window.grab().save(str(args.out / "live.png"))
        window.live.stop()
        wait_for(app, lambda: not window.live.is_running(), 30, "the live run to stop")
        print(f"live: status bar showed {fps_text}; {measured:.1f} frames/s reached the screen over "
              "10 s of a 30 fps 640x360 video")

        # Images: the photo, its face and the CAM of each class
        window.tabs.setCurrentWidget(window.images)
        window.images.add_paths([args.image])
        wait_for(app, lambda: window.images.pending == 0, 120, "the image analysis")
        window.grab().save(str(args.out / "images.png"))

        # Training: a real run on a few FERPlus images, small enough for a CPU in a minute
        window.tabs.setCurrentWidget(window.training)
        window.training.form.load_config(TrainConfig(
            dataset="ferplus", data_root=str(args.data_root), input_size=49, output_stride=16,
            scheduler="cosine", epochs=4,
            batch_size=32, limit_train=256, limit_eval=128, workers=0, device="cpu",
            out=str(tmp_dir / "run")))
        if not window.training.start():
            print(f"training did not start: check --data-root {args.data_root}", file=sys.stderr)
            return 1
        wait_for(app, window.training.is_running, 60, "the training run's start (its labels are read first)")
        wait_for(app, lambda: not window.training.is_running(), 600, "the training run")
        window.grab().save(str(args.out / "training.png"))

        # the smallest window the layout allows (a small laptop screen), Images tab
        window.tabs.setCurrentWidget(window.images)
        window.resize(400, 300)  # clamped to the minimum size
        wait_for(app, lambda: True, 1, "")
        window.grab().save(str(args.out / "small.png"))
        print(f"small: {window.width()}x{window.height()}")
        window.close()
    print(f"wrote live.png, images.png, training.png, small.png to {args.out} (model: {checkpoint})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
