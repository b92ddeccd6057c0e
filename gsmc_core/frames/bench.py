"""Speed measurement of the frame pipeline: per-stage latencies, fps, and distance from the
CPU's matrix-multiply peak."""

import math
import os
import platform
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import torch

from gsmc_core.errors import UsageError
from gsmc_core.frames.pipeline import FramePipeline, overlapped
from gsmc_core.frames.render import RenderOptions
from gsmc_core.model import flops_per_image

STAGES = ("detect", "classify", "cam", "track", "render", "total")
# the head of astronaut.png (its face box is about half this width): four copies in a 640x480
# frame still have faces large enough for the short-range detector
_HEAD_FRACTION = (0.27, 0.06, 0.63, 0.42)  # x0, y0, x1, y1 as fractions of the portrait


def synthetic_frames(
    portrait_bgr: npt.NDArray[np.uint8],
    faces: int = 1,
    count: int = 150,
    size: tuple[int, int] = (640, 480),
) -> Iterator[npt.NDArray[np.uint8]]:
    """A moving test clip: ``faces`` copies of the portrait's head on a grid of cells, each
    drifting on its own circle (so detection, tracking and crops see real motion)."""
    width, height = size
    cols = math.ceil(math.sqrt(faces))
    rows = math.ceil(faces / cols)
    cell_w, cell_h = width // cols, height // rows
    h, w = portrait_bgr.shape[:2]
    x0, y0, x1, y1 = _HEAD_FRACTION
    head = portrait_bgr[round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w)]
    side = round(min(cell_w, cell_h) * (0.85 if faces == 1 else 0.9))
    head = cv2.resize(head, (side, round(side * head.shape[0] / head.shape[1])), interpolation=cv2.INTER_AREA)
    hh, hw = head.shape[:2]
    background = np.full((height, width, 3), (70, 80, 90), np.uint8)
    for t in range(count):
        frame = background.copy()
        for k in range(faces):
            r, c = divmod(k, cols)
            slack_x, slack_y = max(0, cell_w - hw), max(0, cell_h - hh)
            phase = 2 * math.pi * (t / 60 + k / max(faces, 1))
            x = c * cell_w + round(slack_x * (0.5 + 0.5 * math.cos(phase)))
            y = r * cell_h + round(slack_y * (0.5 + 0.5 * math.sin(phase)))
            ph, pw = min(hh, height - y), min(hw, width - x)
            frame[y : y + ph, x : x + pw] = head[:ph, :pw]
        yield frame


def matmul_peak_gflops(threads: int = 2, n: int = 1024, seconds: float = 1.0) -> float:
    """Best observed fp32 matmul throughput (GFLOP/s) with ``threads`` torch threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up: thread pool and caches
        best = 0.0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
        return best / 1e9
    finally:
        torch.set_num_threads(previous)


def run_bench(
    pipeline: FramePipeline,
    frames: Iterable[npt.NDArray[np.uint8]],
    warmup: int = 5,
    render: RenderOptions | None = None,
    peak_threads: int = 2,
    overlap: bool = False,
) -> dict:
    """Process ``frames`` (the first ``warmup`` unmeasured) and summarise speed as a dict:
    fps, p50/p95 ms per stage, faces per frame, FLOPs per face, and the network's achieved
    throughput as a fraction of the fp32 matmul peak with ``peak_threads`` threads (the
    machine's cores, whatever thread count the pipeline itself uses). ``overlap``: detection
    of the next frame beside the rest of this one (``pipeline.overlapped``); fps is then
    frames over the wall time of the whole measured run."""
    render = render if render is not None else RenderOptions()
    peak = matmul_peak_gflops(threads=peak_threads)  # first, before the pipeline warms caches
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    faces_seen: list[int] = []
    reused = 0
    frames = list(frames)
    for frame in frames[:warmup]:
        result = pipeline.process(frame, render=render)
    start = time.perf_counter()
    if overlap:
        results = overlapped(pipeline, ((f, None) for f in frames[warmup:]), render)
    else:
        results = (pipeline.process(f, render=render) for f in frames[warmup:])
    measured = 0
    for result in results:
        measured += 1
        faces_seen.append(len(result.faces))
        reused += sum(face.reused for face in result.faces)
        for stage in STAGES:
            samples[stage].append(result.timings.get(stage, 0.0))
    wall = time.perf_counter() - start
    if measured == 0:
        raise UsageError(f"the video has no frames after the {warmup} warm-up frames")
    predictor = pipeline.predictor
    flops = flops_per_image(predictor.meta.build_model(), predictor.meta.input_size)
    faces_mean = float(np.mean(faces_seen))
    classified_mean = faces_mean - reused / measured  # faces the network ran on (all, without reuse)
    classify_mean = float(np.mean(samples["classify"]))
    achieved = flops * classified_mean / (classify_mean / 1e3) / 1e9 if classify_mean > 0 else 0.0
    return {
        "frames": measured,
        "frame_size": list(result.size),
        "faces_per_frame": round(faces_mean, 3),
        "reused_fraction": round(reused / max(1, sum(faces_seen)), 3),
        "fps": round(measured / wall, 2),
        "latency_ms": {
            s: {
                "p50": round(float(np.percentile(v, 50)), 2),
                "p95": round(float(np.percentile(v, 95)), 2),
            }
            for s, v in samples.items()
        },
        "gflops_per_face": round(flops / 1e9, 3),
        "classify_gflops_per_s": round(achieved, 1),
        "matmul_peak_gflops_per_s": round(peak, 1),
        "fraction_of_peak": round(achieved / peak, 3) if peak else None,
        "peak_threads": peak_threads,
        "torch_threads": torch.get_num_threads(),
        "backend": predictor.backend,
        "precision": predictor.precision,
        "overlap": overlap,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "cpu": _cpu_name(),
    }


def run_realtime(pipeline: FramePipeline, frames: list[npt.NDArray[np.uint8]], fps: float = 30.0,
                 warmup: int = 5, render: RenderOptions | None = None) -> dict:
    """``frames`` arriving as from a camera at ``fps`` (frame k at k / fps): the pipeline takes
    the newest frame that has arrived whenever it is free (older ones are dropped, as the live
    view does) and sleeps while none is waiting. Returns the latency from a frame's arrival to
    its result (p50/p95), the frames dropped, and the CPU seconds the whole process spent per
    second of video (every thread: ONNX Runtime, MediaPipe; what drains a laptop's battery)."""
    render = render if render is not None else RenderOptions()
    for frame in frames[:warmup]:
        pipeline.process(frame, render=render)
    frames = frames[warmup:]
    latencies: list[float] = []
    cpu_start, start = _cpu_seconds(), time.perf_counter()
    k = 0
    while k < len(frames):
        now = time.perf_counter() - start
        arrived = min(int(now * fps), len(frames) - 1)  # the newest frame already delivered
        if arrived < k:  # ahead of the camera: wait for frame k
            time.sleep(k / fps - now)
            continue
        pipeline.process(frames[arrived], timestamp=arrived / fps, render=render)
        latencies.append(time.perf_counter() - start - arrived / fps)
        k = arrived + 1
    wall = max(time.perf_counter() - start, len(frames) / fps)
    cpu = _cpu_seconds() - cpu_start
    return {
        "fps": fps,
        "frames_arrived": len(frames),
        "frames_processed": len(latencies),
        "latency_ms": {"p50": round(1e3 * float(np.percentile(latencies, 50)), 2),
                       "p95": round(1e3 * float(np.percentile(latencies, 95)), 2)},
        "cpu_seconds_per_second": round(cpu / wall, 3),
    }


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = os.times()
    return usage.user + usage.system


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
