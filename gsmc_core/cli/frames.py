"""`gsmc predict | video | bench`: the frame pipeline from the command line."""

import argparse
import errno
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import torch

from gsmc_core.cli.outputs import require_writable_output
from gsmc_core.devices import DEVICE_CHOICES
from gsmc_core.errors import UsageError
from gsmc_core.frames.bench import run_bench, run_realtime
from gsmc_core.frames.detection import (
    DEFAULT_LIVE_DETECTOR,
    DETECTOR_MODELS,
    LIVE_DETECTORS,
    FaceDetector,
    WholeImage,
    make_live_detector,
)
from gsmc_core.frames.face_table import ImageFaces, image_entry, write_image_table
from gsmc_core.frames.pipeline import FramePipeline
from gsmc_core.frames.predictor import BACKENDS, DEFAULT_THREADS, Predictor
from gsmc_core.frames.quantize import PRECISIONS
from gsmc_core.frames.recording import CAMERA_VIDEO_FPS, Recorder
from gsmc_core.frames.render import RenderOptions
from gsmc_core.frames.results import FrameResult
from gsmc_core.frames.sources import (
    IMAGE_EXTENSIONS,
    MAX_CAMERA_INDEX,
    CameraEvent,
    CameraSource,
    FrameSource,
    ImageFolderSource,
    SourceError,
    VideoFileSource,
    image_files,
    list_cameras,
    open_source,
    read_image,
)
from gsmc_core.frames.stream import play
from gsmc_core.frames.workloads import busy_core, clip_frames, read_clip
from gsmc_core.outputs import (
    OutputError,
    commit,
    free_space_problem,
    partial_path,
    refuse_folder_of_inputs,
    refuse_overwriting_inputs,
    same_file,
    write_image,
)
from gsmc_core.resources import DEFAULT_CHECKPOINT, asset_path

BENCH_WARMUP = 5


def load_predictor(checkpoint: str | None, device: str, threads: int = DEFAULT_THREADS,
                   backend: str = "auto", precision: str = "auto") -> Predictor:
    """The predictor for ``--checkpoint`` (a checkpoint or an exported .onnx), or the shipped
    default model. ``threads`` is the CPU inference thread count (ONNX Runtime's, and torch's
    for ``--backend torch`` on the CPU)."""
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    if checkpoint is None:
        if not DEFAULT_CHECKPOINT.is_file():
            raise FileNotFoundError(
                f"no default model yet ({DEFAULT_CHECKPOINT} does not exist); train one with "
                "`gsmc train` and pass it with --checkpoint CKPT"
            )
        checkpoint = str(DEFAULT_CHECKPOINT)
    return Predictor.from_checkpoint(checkpoint, device, backend, threads, precision)


def _model_files(checkpoint: str | None) -> list[str | Path]:
    """The model files a command reads (no output may replace them): ``--checkpoint``, or the
    shipped default model and its int8 graph."""
    if checkpoint:
        return [checkpoint]
    return [DEFAULT_CHECKPOINT, DEFAULT_CHECKPOINT.with_suffix(".int8.onnx")]


def _add_model_args(p: argparse.ArgumentParser, detector: str, choices: tuple[str, ...]) -> None:
    p.add_argument("--checkpoint", help=f"model checkpoint (default: {DEFAULT_CHECKPOINT})")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--detector", default=detector, choices=choices,
                   help="face detector: short (webcam distance), full (small faces)"
                        + (", auto (short on every frame, full every third frame and whenever it "
                           "adds a face)" if "auto" in choices else "")
                        + f"; default {detector}")
    p.add_argument("--min-score", type=float, default=0.5, help="face detection threshold (default 0.5)")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="auto: ONNX Runtime on the CPU (exported and cached on first use), torch on "
                        "a GPU; onnx or torch to force one")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto: int8 on the CPU when the model has an int8 graph (the shipped model "
                        "does; `gsmc quantize` makes one), else fp32")
    p.add_argument("--tta", action="store_true",
                   help="average each face with its mirror image (flip test-time augmentation): "
                        "a little more accurate, twice the network time per face")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, metavar="N",
                   help=f"CPU inference threads (default {DEFAULT_THREADS}: more threads are slower as "
                        "soon as another program keeps a core busy, see docs/performance.md)")


def _expand_paths(paths: list[str]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            files = image_files(p)
            if not files:
                raise UsageError(f"{p}: contains no images ({', '.join(IMAGE_EXTENSIONS)})")
            yield from files
        else:
            yield p  # a missing or bad file becomes an error entry


def _tiles_option(text: str) -> int | str:
    if text == "auto" or (text.isdigit() and int(text) >= 1):
        return text if text == "auto" else int(text)
    raise argparse.ArgumentTypeError(f"expected auto or a whole number >= 1, got {text!r}")


def _half_life_option(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def cmd_predict(args: argparse.Namespace) -> int:
    if any(not p for p in args.paths):
        raise UsageError("an empty path was given; name image files or folders")
    if args.csv:
        require_writable_output(args.csv, "--csv")
    images = list(_expand_paths(args.paths))
    refuse_overwriting_inputs({"--csv": args.csv}, [*images, *_model_files(args.checkpoint)])
    cam_dir = Path(args.cam_dir) if args.cam_dir else None
    written: set[str] = set()
    if cam_dir is not None:
        if cam_dir.exists() and not cam_dir.is_dir():
            raise UsageError(f"--cam-dir {cam_dir}: is a file, not a folder; name a folder for the "
                             "annotated images")
        refuse_folder_of_inputs("--cam-dir", cam_dir, images)
        planned: set[str] = set()  # the annotated images' names (those written are among them)
        targets = [cam_dir / f"{_unique_name(p.stem, planned)}.png" for p in images]
        if args.csv and any(Path(args.csv).resolve() == t.resolve() for t in targets):
            raise UsageError(f"--csv {args.csv} is also the name of an annotated image in "
                                 f"--cam-dir {cam_dir}; give the table another name")
    predictor = load_predictor(args.checkpoint, args.device, args.threads, args.backend, args.precision)
    predictor.tta = args.tta
    if cam_dir is not None:
        cam_dir.mkdir(parents=True, exist_ok=True)
        _require_writable_folder(cam_dir, "--cam-dir")
    render = RenderOptions() if cam_dir is not None else None
    tiles = args.tiles
    items: list[ImageFaces] = []
    model = Path(args.checkpoint).name if args.checkpoint else DEFAULT_CHECKPOINT.name
    detector = WholeImage() if args.no_detect else FaceDetector(args.detector, args.min_score, tiles=tiles)
    with detector:
        pipeline = FramePipeline(predictor, detector, cam_class=args.cam_class)
        for path in images:
            try:
                image = read_image(path)
            except (OSError, SourceError) as exc:
                items.append(ImageFaces(str(path), None, model, str(exc)))
                if not args.json:
                    print(f"{path}: error: {exc}", file=sys.stderr)
                continue
            pipeline.reset(restart_ids=True)  # stills are unrelated: faces numbered from 1
            result = pipeline.process(image, render=render)
            items.append(ImageFaces(str(path), result, model, runtime=predictor.summary))
            if cam_dir is not None and result.annotated is not None:
                # encoded here and written as bytes: cv2.imwrite cannot write non-ASCII paths on Windows
                write_image(cam_dir / f"{_unique_name(path.stem, written)}.png", result.annotated)
            if not args.json:
                _print_faces(path, result)
    if args.json:
        print(json.dumps([image_entry(item) for item in items], indent=2))
    if args.csv:
        _write_predict_csv(Path(args.csv), items)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 1 if any(item.error for item in items) else 0


def _write_predict_csv(path: Path, items: list[ImageFaces]) -> None:
    """The image table (``face_table``), written whole or not at all."""
    try:
        write_image_table(path, items)
    except OSError as exc:
        raise OutputError(exc.errno, f"{path}: could not be written ({exc.strerror or exc}"
                          f"{free_space_problem(path)}); nothing was replaced") from exc


def _require_writable_folder(folder: Path, option: str) -> None:
    if not folder.is_dir():
        raise OSError(f"{option} {folder}: is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OSError(f"{option} {folder}: folder is not writable; choose another")


def _unique_name(stem: str, used: set[str]) -> str:
    name, k = stem, 2
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return name


def _print_faces(path: Path, result: FrameResult) -> None:
    print(f"{path}: {len(result.faces)} face{'s' if len(result.faces) != 1 else ''}")
    for f in result.faces:
        top = sorted(zip(result.classes, f.smoothed, strict=True), key=lambda cp: -cp[1])[:3]
        others = ", ".join(f"{c} {p:.0%}" for c, p in top[1:])
        print(f"  box={f.box} score={f.score:.2f} {f.label} {f.confidence:.0%} ({others})")


class _Progress:
    """A one-line progress report on stderr (tqdm is not a dependency)."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        rate = done / max(now - self.start, 1e-9)
        if self.total:
            text = f"{done}/{self.total} frames ({done / self.total:.0%}), {rate:.1f} frames/s"
        else:
            text = f"{done} frames, {rate:.1f} frames/s"
        print(f"\r{text}   ", end="", file=sys.stderr, flush=True)

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        print(file=sys.stderr)


def _open_video_input(spec: str, every: int, skipped: list[Path]) -> FrameSource:
    """The source ``spec`` names; a camera's lost/back events and an image folder's unreadable
    images (added to ``skipped``) are said on stderr as they come."""
    def camera_event(event: CameraEvent) -> None:
        print(f"\n{event.message}", file=sys.stderr, flush=True)

    def skip(path: Path, reason: str) -> None:
        skipped.append(path)
        print(f"\nwarning: {reason}; skipped", file=sys.stderr, flush=True)

    if re.fullmatch(r"-\d+", spec):
        raise SourceError(f"camera {spec}: camera numbers are 0 to {MAX_CAMERA_INDEX}")
    try:
        return open_source(spec, step=every, on_event=camera_event, on_skip=skip)
    except SourceError as exc:
        if spec.isdigit() and "cameras found" not in str(exc):
            found = list_cameras()
            raise SourceError(f"{exc}; cameras found: {found or 'none'}") from exc
        raise


def _close_when_set(stop: threading.Event, source: FrameSource) -> None:
    """A camera that gives no frames never reaches the loop's check of ``stop``: closing the
    source ends its wait."""
    stop.wait()
    source.close()


def cmd_video(args: argparse.Namespace) -> int:
    if args.every < 1:
        raise UsageError(f"--every must be >= 1, got {args.every}")
    if not args.input:
        raise UsageError("no input given: name a video file, an image folder or a camera index")
    for option, value in (("--out", args.out), ("--csv", args.csv)):
        if value:
            require_writable_output(value, option)
    inputs = [args.input] if not args.input.isdigit() else []
    refuse_overwriting_inputs({"--out": args.out, "--csv": args.csv},
                              [*inputs, *_model_files(args.checkpoint)])
    if args.out and args.csv and same_file(args.out, args.csv):
        raise UsageError(f"--out and --csv name the same file ({args.out}); give two files")
    for target in (args.out, args.csv):
        if target and partial_path(target).exists():  # what a killed run recorded: not replaced
            raise OutputError(errno.EEXIST, f"{partial_path(target)} is what an earlier run of this "
                              "command wrote before it was cut short (or one still running): rename "
                              "or delete it first")
    predictor = load_predictor(args.checkpoint, args.device, args.threads, args.backend, args.precision)
    predictor.tta = args.tta
    skipped: list[Path] = []
    source = _open_video_input(args.input, args.every, skipped)
    if isinstance(source, ImageFolderSource):
        refuse_overwriting_inputs({"--out": args.out, "--csv": args.csv}, source.files)
    # video files skip frames by decoding less (step); cameras and folders are thinned here
    thin = 1 if isinstance(source, VideoFileSource) else args.every
    render = RenderOptions() if args.out else None
    # both outputs are written under temporary names beside their targets and renamed only when
    # whole, so a failed run (a full disk, a crash) leaves existing files as they were; the table
    # is flushed every second, so a killed run leaves its rows so far in the .partial file (and,
    # with --out NAME.mkv, a playable video), as the app's recordings do
    video_tmp = partial_path(args.out) if args.out else None
    csv_tmp = partial_path(args.csv) if args.csv else None
    camera = isinstance(source, CameraSource)  # recorded in real time (see Recorder)
    recorder = Recorder(csv_tmp, predictor.classes, video_tmp,
                        CAMERA_VIDEO_FPS if camera else (source.fps or CAMERA_VIDEO_FPS) / args.every,
                        matroska=False, timed=camera)
    finished = False
    total = -(-source.frame_count // args.every) if source.frame_count else None
    progress = _Progress(total)
    done = faces = 0
    interrupted = False
    stop = threading.Event()
    previous_handlers = _finish_on_termination(stop)
    if isinstance(source, CameraSource):
        threading.Thread(target=_close_when_set, args=(stop, source), daemon=True).start()
    try:
        with make_live_detector(args.detector, args.min_score) as detector:
            pipeline = FramePipeline(predictor, detector, half_life=args.half_life, half_life_unit="seconds",
                                     reuse=args.reuse)
            for k, cue in enumerate(play(source)):  # the Live tab's loop, without its controls
                if stop.is_set():  # between two frames: the files hold whole frames only
                    raise KeyboardInterrupt
                if k % thin:
                    continue
                frame = cue.frame
                result = pipeline.process(frame.image, frame.timestamp, render=render)
                recorder.write(frame.index, frame.timestamp, result, result.annotated)
                done += 1
                faces += len(result.faces)
                progress.update(done)
        finished = True
        interrupted = stop.is_set()  # a camera closed by the stop, between two frames
    except KeyboardInterrupt:
        interrupted = finished = True  # Ctrl-C: stop reading, but finish the files below
    except OSError as exc:
        if video_tmp is not None and exc.filename == str(video_tmp):
            raise UsageError(f"{args.out}: {exc.strerror}") from exc
        if exc.errno == errno.ENOSPC:  # the CSV is the file written here as frames come
            raise OutputError(errno.ENOSPC, f"{args.csv}: the disk is full; nothing was "
                              "replaced") from exc
        raise
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        source.close()
        stop.set()  # ends the camera's closer
        close_error = None
        try:
            recorder.close()
        except OSError as exc:  # the last flush failed (a full disk): the files are incomplete
            close_error = exc
            finished = False
        if not finished or done == 0:
            for tmp in (video_tmp, csv_tmp):
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
    if close_error is not None:  # the CSV's (the video writer reports no errors)
        raise OutputError(close_error.errno or errno.EIO, f"{args.csv or args.out}: could not be finished "
                          f"({close_error.strerror or close_error}); nothing was replaced")
    progress.finish(done)
    if done == 0:
        print(f"no frame of {args.input} could be read; nothing was written", file=sys.stderr)
        return 1
    if video_tmp is not None:  # checked before either file replaces its target
        try:
            _check_video(video_tmp, args.out, recorder.video_frames)
        except OutputError:
            if csv_tmp is not None:
                csv_tmp.unlink(missing_ok=True)
            raise
    if csv_tmp is not None:
        commit(csv_tmp, args.csv)
    if video_tmp is not None:
        commit(video_tmp, args.out)
    outputs = ", ".join(f"wrote {p}" for p in (args.out, args.csv) if p)
    stopped = "stopped (Ctrl-C or a termination signal); kept the first " if interrupted else ""
    print(f"{stopped}{done} frames, {faces} face detections" + (f"; {outputs}" if outputs else ""),
          file=sys.stderr)
    damaged = getattr(source, "damaged", 0)
    if damaged:
        print(f"warning: {damaged} damaged frames of {source.name} could not be decoded and were "
              "skipped", file=sys.stderr)
    if getattr(source, "ends_after", None) is not None:
        print(f"warning: {source.name} ends after {source.ends_after} of the {source.frame_count} "
              "frames it announces (cut short?)", file=sys.stderr)
    if skipped:
        print(f"warning: {len(skipped)} images of {source.name} could not be read and were skipped "
              f"(first: {skipped[0].name})", file=sys.stderr)
    # Ctrl-C is how a camera run ends normally; for a file it means the run was cut short
    return 130 if interrupted and not isinstance(source, CameraSource) else 0


def _finish_on_termination(stop: threading.Event) -> dict:
    """Ctrl-C, SIGTERM and SIGHUP (a closed terminal, `timeout`, a scheduler) end `gsmc video`
    after the frame in progress: the frames read so far are kept, the CSV and video finished and
    put in place. A second signal aborts at once."""
    def finish(_signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    return {s: signal.signal(s, finish) for s in (getattr(signal, n, None) for n in names)
            if s is not None}


def _check_video(path: Path, target: str, frames: int) -> None:
    """A written video opens and holds every frame (OpenCV's writer reports no write errors: a
    full disk leaves a file without its index); otherwise it is removed and the target kept."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    if count < frames:
        problem = free_space_problem(path)
        path.unlink(missing_ok=True)
        raise OutputError(errno.ENOSPC if problem else errno.EIO,
                          f"{target}: the video could not be written whole ({count} of {frames} "
                          f"frames readable){problem}; nothing was replaced")


def _bench_frames(args: argparse.Namespace) -> list:
    """The frames to measure, in memory, so an idle and a loaded run see the same ones."""
    count = args.frames + BENCH_WARMUP
    if args.video:
        source = VideoFileSource(args.video)
        try:
            frames = [f.image for _, f in zip(range(count), source, strict=False)]
        finally:
            source.close()
        if args.faces != 1:
            frames = list(clip_frames(frames, args.faces, count))
        return frames
    return list(clip_frames(read_clip(str(asset_path("videos", "carphone_qcif.mp4"))), args.faces, count))


def cmd_bench(args: argparse.Namespace) -> int:
    if args.faces < 1:
        raise UsageError(f"--faces must be >= 1, got {args.faces}")
    predictor = load_predictor(args.checkpoint, args.device, args.threads, args.backend, args.precision)
    predictor.tta = args.tta
    frames = _bench_frames(args)
    reports = {}
    with make_live_detector(args.detector, args.min_score) as detector:
        pipeline = FramePipeline(predictor, detector, reuse=args.reuse)
        reports["idle"] = run_bench(pipeline, frames, warmup=BENCH_WARMUP, overlap=args.overlap)
        pipeline.reset()
        reports["idle"]["realtime"] = run_realtime(pipeline, frames, warmup=BENCH_WARMUP)
        if args.busy_core:
            pipeline.reset()
            with busy_core():
                reports["busy_core"] = run_bench(pipeline, frames, warmup=BENCH_WARMUP, overlap=args.overlap)
                pipeline.reset()
                reports["busy_core"]["realtime"] = run_realtime(pipeline, frames, warmup=BENCH_WARMUP)
    video = args.video or (f"assets/videos/carphone_qcif.mp4 (real, 176x144) on 640x360, "
                           f"{args.faces} face(s)")
    for report in reports.values():
        report["video"] = video
    if args.busy_core:
        reports["busy_over_idle"] = round(reports["busy_core"]["fps"] / reports["idle"]["fps"], 3)
    if args.json:
        print(json.dumps(reports if args.busy_core else reports["idle"], indent=2))
        return 0
    for name, report in reports.items():
        if name == "busy_over_idle":
            continue
        title = "idle" if name == "idle" else "one core kept busy by another process"
        stages = ", two stages in flight" if report["overlap"] else ""
        reuse = f", {report['reused_fraction']:.0%} of faces still (output kept)" if args.reuse else ""
        print(f"[{title}] {video}: {report['frames']} frames, {report['faces_per_frame']} faces/frame, "
              f"{report['fps']} fps{stages}{reuse}")
        for stage, q in report["latency_ms"].items():
            print(f"  {stage:9s} p50 {q['p50']:7.2f} ms   p95 {q['p95']:7.2f} ms")
        print(f"  network ({report['backend']} {report['precision']}, {args.threads} thread(s)): "
              f"{report['gflops_per_face']} GFLOPs/face, {report['classify_gflops_per_s']} GFLOP/s "
              f"achieved = {report['fraction_of_peak']:.0%} of the {report['matmul_peak_gflops_per_s']} "
              f"GFLOP/s fp32 matmul peak of {report['peak_threads']} threads")
        rt = report["realtime"]
        print(f"  as a {rt['fps']:.0f} fps camera: latency p50 {rt['latency_ms']['p50']:.1f} ms, p95 "
              f"{rt['latency_ms']['p95']:.1f} ms (arrival to result), {rt['frames_processed']} of "
              f"{rt['frames_arrived']} frames processed, {rt['cpu_seconds_per_second']:.2f} CPU-seconds "
              "per second of video")
        print(f"  cpu: {report['cpu']}, load average {report['load_average']}")
    if args.busy_core:
        print(f"busy / idle fps: {reports['busy_over_idle']:.2f}")
    return 0


REUSE_HELP = ("a face that has not moved or changed since it was last classified keeps that output "
              "instead of running the network again (as the desktop's Live tab does)")


def add_face_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `predict`, `video` and `bench` on the `gsmc` sub-command parser."""
    p = sub.add_parser(
        "predict", help="expressions of the faces in images or folders",
        description="Detect faces in images (files or folders) and classify their expressions.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    p.add_argument("--cam-dir", metavar="DIR", help="write annotated images with heatmaps here "
                   "(NAME.png for each image NAME; files of those names are replaced)")
    p.add_argument("--csv", metavar="FILE",
                   help="also write image,face,x,y,w,h,score,expression,p_<class>... rows here")
    p.add_argument("--cam-class", metavar="CLASS",
                   help="draw every face's heatmap for this class (default: its predicted class)")
    p.add_argument("--no-detect", action="store_true",
                   help="the images are already face crops (e.g. FERPlus faces): classify each "
                        "whole image as one face, without face detection")
    p.add_argument("--tiles", default="auto", type=_tiles_option,
                   help="detect on an N x N grid of tiles too (small faces in big photos); "
                        "auto: from the image size; 1: off")
    _add_model_args(p, detector="full", choices=tuple(DETECTOR_MODELS))
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "video", help="expressions through a video file or camera",
        description="Run the live pipeline over a video file or camera; write an annotated "
        "video and/or a CSV with one row per face per frame. Ctrl-C stops cleanly.",
    )
    p.add_argument("input", help="video file, image folder, or camera index (0, 1, ...)")
    p.add_argument("--out", help="annotated video to write (.mp4; .mkv survives a crash: a killed run "
                   "leaves a playable .NAME.partial.mkv, which a later run does not replace)")
    p.add_argument("--csv", help="CSV to write: frame,time_s,face_id,x,y,w,h,score,expression,p_<class>...")
    p.add_argument("--every", type=int, default=1, metavar="N", help="process every N-th frame")
    p.add_argument("--half-life", type=_half_life_option, default=None, metavar="SECONDS",
                   help="smooth each face's probabilities over time (default: raw)")
    p.add_argument("--reuse", action="store_true", help=REUSE_HELP)
    _add_model_args(p, detector=DEFAULT_LIVE_DETECTOR, choices=LIVE_DETECTORS)
    p.set_defaults(func=cmd_video)

    p = sub.add_parser(
        "bench", help="speed of the live pipeline",
        description="Frames per second and p50/p95 latency per stage on a real video, with "
        "heatmaps, plus FLOPs per face and the fraction of the CPU's "
        "measured matmul peak the network achieves; then the same frames arriving as from a 30 fps "
        "camera: latency from arrival to result, frames dropped, and CPU-seconds per second of video.",
    )
    p.add_argument("--video", help="video file (default: the real clip shipped in assets/videos)")
    p.add_argument("--faces", type=int, default=1, metavar="N",
                   help="copies of the clip on a grid in each 640x360 frame (default 1)")
    p.add_argument("--busy-core", action="store_true",
                   help="measure twice: idle, then with one core kept busy by another process; "
                        "print both and their ratio")
    p.add_argument("--frames", type=int, default=150, metavar="K", help="frames to measure")
    p.add_argument("--overlap", action="store_true",
                   help="two stages in flight: detect the next frame while this one is classified "
                        "and rendered (the camera-paced part stays one stage at a time)")
    p.add_argument("--reuse", action="store_true", help=REUSE_HELP)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    _add_model_args(p, detector=DEFAULT_LIVE_DETECTOR, choices=LIVE_DETECTORS)
    p.set_defaults(func=cmd_bench)
