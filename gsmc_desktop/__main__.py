"""`gsmc-desktop [--camera N | --video FILE] [--checkpoint CKPT] [PHOTO...]`: start the desktop
app (`--self-test` and `--soak DIR` check an installation)."""

import argparse
import json
import os
import sys
from pathlib import Path

from gsmc_core import __version__

# Only what the splash screen needs is imported here; torch, MediaPipe and the tabs load behind
# it (about 5-8 s on a 2-core CPU), so a window appears within a second of starting.


def camera_index(text: str) -> int:
    """A camera number 0-99 (OpenCV crashes on some negative indices)."""
    from gsmc_core.frames.sources import MAX_CAMERA_INDEX  # here: cv2 loads only when asked

    index = int(text) if text.strip().isdigit() else -1
    if not 0 <= index <= MAX_CAMERA_INDEX:
        raise argparse.ArgumentTypeError(f"camera must be a number 0-{MAX_CAMERA_INDEX}, got {text!r}")
    return index


def soak_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= 86_400:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be 1 to 86400 seconds, got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gsmc-desktop",
        description="Facial expressions and attention maps from a camera, a video or photos; "
        "and training of new models.")
    parser.add_argument("--version", action="version", version=f"gsmc-desktop {__version__}")
    parser.add_argument("photos", nargs="*", metavar="PHOTO",
                        help="photos or folders of them to open in the Images tab (as a file "
                             "manager's Open with does)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--camera", type=camera_index, metavar="N", help="start the Live tab on camera N")
    source.add_argument("--video", metavar="FILE", help="start the Live tab on a video file")
    parser.add_argument("--checkpoint", metavar="CKPT",
                        help="model to use (default: the last one used, else the shipped model)")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation offscreen (model, face detection, CAM, Qt), "
                             "print a JSON summary and exit: 0 when it works")
    parser.add_argument("--soak", metavar="DIR",
                        help="soak check: play a long real video (--video, or the shipped talking head "
                             "looped to --soak-seconds) in the real window with recording into DIR; "
                             "print a JSON summary and exit: 0 when the app ran to the end and the "
                             "recording is whole")
    parser.add_argument("--soak-seconds", type=soak_seconds, default=190.0, metavar="S",
                        help="length of the generated soak video, 1 to 86400 (default 190)")
    parser.add_argument("--reset-settings", action="store_true",
                        help="forget every remembered setting (window, last model, sources, "
                             "options) before starting")
    parser.add_argument("--startup-report", action="store_true",
                        help="start, print when the splash and the main window appeared (seconds "
                             "since the process started) as JSON, and exit")
    return parser.parse_args(argv)


def seconds_since_process_start() -> float | None:
    """Wall time since this process started (Linux: /proc), None where unknown."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def show_splash(app):
    """A plain splash screen saying what is loading; returns it (call ``finish`` on it)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QFont, QPainter, QPixmap
    from PySide6.QtWidgets import QSplashScreen

    pixmap = QPixmap(460, 170)
    pixmap.fill(QColor(32, 44, 64))
    painter = QPainter(pixmap)
    painter.setPen(QColor(255, 255, 255))
    font = QFont()
    font.setPointSize(22)
    font.setBold(True)
    painter.setFont(font)
    painter.drawText(24, 62, "GSMC")
    font.setPointSize(10)
    font.setBold(False)
    painter.setFont(font)
    painter.drawText(24, 90, f"Facial expressions and attention maps · {__version__}")
    painter.end()
    splash = QSplashScreen(pixmap)
    splash.showMessage("Loading PyTorch, MediaPipe and the model…",
                       Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft, QColor(200, 210, 230))
    splash.show()
    app.processEvents()
    return splash


def _ensure_standard_fds() -> None:
    """Give closed standard descriptors (a windowed start) /dev/null, before Qt opens files:
    otherwise the first file Qt opens becomes descriptor 2, and the crash log would take it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main(argv: list[str] | None = None) -> int:
    _ensure_standard_fds()
    args = parse_args(argv)
    if args.self_test:
        from gsmc_desktop.self_test import run_self_test
        return run_self_test(Path(args.checkpoint) if args.checkpoint else None)
    if args.soak:
        from gsmc_desktop.soak import run_soak
        return run_soak(Path(args.soak), Path(args.video) if args.video else None, args.soak_seconds,
                        Path(args.checkpoint) if args.checkpoint else None)
    from gsmc_desktop.platform_check import xcb_advice
    advice = xcb_advice()
    if advice:  # said before Qt tries (its own message blames one library only, then aborts)
        print(advice, file=sys.stderr)
    from gsmc_desktop.app import create_application
    app = create_application(sys.argv[:1])
    if args.reset_settings:
        from gsmc_desktop.settings import reset_settings
        reset_settings()
    splash = show_splash(app)
    splash_at = seconds_since_process_start()
    from PySide6.QtCore import QTimer

    from gsmc_desktop.app import install_exception_hook
    from gsmc_desktop.live.worker import SourceSpec
    from gsmc_desktop.main_window import MainWindow
    from gsmc_desktop.widgets.messages import warn
    install_exception_hook(app)
    window = MainWindow(checkpoint=Path(args.checkpoint) if args.checkpoint else None)
    try:
        window.show()
        splash.finish(window)
        if args.startup_report:
            app.processEvents()
            window_at = seconds_since_process_start()
            print(json.dumps({"splash_s": splash_at, "window_s": window_at,
                              "model": window.model.name if window.model else None}))
            return 0
        if window.startup_problem:
            QTimer.singleShot(0, lambda: warn(window, "The model at start", window.startup_problem))
        if args.video is not None:
            video = Path(args.video)
            if video.is_file():
                window.open_video(video)  # as File ▸ Open video: also in File ▸ Recent
            else:  # said where the video would have played, not only in the status bar
                window.tabs.setCurrentWidget(window.live)
                window.live.view.set_message(f"{video}: no such file. Open a video with File ▸ "
                                             "Open video…")
                window.show_message(f"{video}: no such file")
        elif args.camera is not None:
            window.tabs.setCurrentWidget(window.live)
            window.live.start(SourceSpec(camera=args.camera))
        if args.photos:  # shown unless a video or camera was asked for too; the status bar
            window.open_images([Path(p) for p in args.photos])  # says when none was found
            if args.video is not None or args.camera is not None:
                window.tabs.setCurrentWidget(window.live)
        return app.exec()
    finally:  # whatever ends the app, worker threads are stopped before Qt objects go away
        window.shutdown()


if __name__ == "__main__":
    sys.exit(main())
