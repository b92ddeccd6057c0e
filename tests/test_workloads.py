"""What the benchmarks run on: the real clip laid out per face count, and the busy neighbour."""

from pathlib import Path

import numpy as np

from gsmc_core.frames.workloads import busy_core, clip_frames, read_clip
from gsmc_core.resources import asset_path


def _spinners() -> int:
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            count += b"while True: pass" in cmdline.read_bytes()
        except OSError:
            pass
    return count


def test_busy_core_runs_a_spinning_process_only_inside():
    before = _spinners()
    with busy_core():
        assert _spinners() == before + 1
    assert _spinners() == before


def test_clip_frames_loop_and_tile_the_real_clip():
    clip = read_clip(str(asset_path("videos", "carphone_qcif.mp4")))
    assert len(clip) == 120 and clip[0].shape == (144, 176, 3)
    frames = list(clip_frames(clip, faces=4, count=300, size=(640, 360)))
    assert len(frames) == 300 and frames[0].shape == (360, 640, 3)
    # four identical cells of 320 x 180
    cells = [frames[10][r * 180 : (r + 1) * 180, c * 320 : (c + 1) * 320] for r in (0, 1) for c in (0, 1)]
    assert all(np.array_equal(cells[0], cell) for cell in cells[1:])
    # forwards then backwards: frame 119 is the clip's last, 120 its second to last again
    assert np.array_equal(frames[118], frames[120]) and not np.array_equal(frames[119], frames[120])
