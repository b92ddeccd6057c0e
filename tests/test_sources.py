import time
import zlib

import cv2
import numpy as np
import pytest

from gsmc_core.frames.sources import (
    CameraSource,
    ImageFolderSource,
    SourceError,
    VideoFileSource,
    header_size,
    open_source,
    read_image,
)


def _write_video(path, frames=12, fps=10.0, size=(160, 120)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), i * 20, np.uint8)
        writer.write(frame)
    writer.release()
    return path


def test_video_file_frames_progress_and_clean_end(tmp_path):
    path = _write_video(tmp_path / "clip.mp4")
    with VideoFileSource(path) as source:
        assert source.frame_count == 12 and source.fps == pytest.approx(10.0)
        frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    assert [f.timestamp for f in frames] == pytest.approx([i / 10 for i in range(12)])
    assert frames[0].image.shape == (120, 160, 3) and frames[0].image.dtype == np.uint8
    # the content is the frame's own (brightness i * 20, within codec error)
    assert [round(float(f.image.mean()) / 20) for f in frames] == list(range(12))


def test_video_file_step(tmp_path):
    path = _write_video(tmp_path / "clip.mp4")
    with open_source(str(path), step=5) as source:
        assert isinstance(source, VideoFileSource)
        assert [f.index for f in source] == [0, 5, 10]


def test_missing_and_bad_video_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoFileSource(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="bad.mp4"):
        VideoFileSource(bad)


def test_image_folder(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((20, 30, 3), 50 * i, np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"\x00\x01garbage")
    (tmp_path / "notes.txt").write_text("not an image")
    skipped = []
    with open_source(str(tmp_path)) as source:
        assert isinstance(source, ImageFolderSource)
        source._on_skip = lambda path, why: skipped.append((path.name, why))
        assert source.frame_count == 4  # the broken .jpg counts until it fails to decode
        frames = list(source)
    assert [int(f.image.mean()) for f in frames] == [0, 50, 100]
    assert skipped and skipped[0][0] == "broken.jpg" and "cannot be decoded" in skipped[0][1]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="contains no images"):
        ImageFolderSource(empty)


def test_camera_that_does_not_exist_names_the_index():
    with pytest.raises(SourceError, match="camera 97 cannot be opened"):
        CameraSource(97)
    with pytest.raises(SourceError, match="camera 98"):
        open_source("98")


def test_read_image(tmp_path, astronaut_rgb):
    path = tmp_path / "ünïcode face.png"
    cv2.imwrite(str(tmp_path / "plain.png"), astronaut_rgb[..., ::-1])
    path.write_bytes((tmp_path / "plain.png").read_bytes())
    np.testing.assert_array_equal(read_image(path), astronaut_rgb[..., ::-1])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(SourceError, match="empty.png: cannot be decoded"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(SourceError, match="is not a file"):
        read_image(tmp_path)


class _FakeCapture:
    """Stands in for cv2.VideoCapture: a frame per ms, then it 'unplugs' after ``fail_after``."""

    def __init__(self, fail_after=None):
        self.reads = 0
        self.fail_after = fail_after

    def read(self):
        time.sleep(0.001)
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            return False, None
        return True, np.zeros((4, 4, 3), np.uint8)

    def set(self, *_):
        return True

    def release(self):
        pass


class _EmptyCapture(_FakeCapture):
    """A driver that says a frame was read and hands back an empty image."""

    def read(self):
        time.sleep(0.001)
        return True, np.zeros((0, 0, 3), np.uint8)


def test_a_camera_that_opens_but_gives_only_empty_frames_says_so_and_reopens(monkeypatch):
    opened = []

    def fake_open(index):
        opened.append(_EmptyCapture() if not opened else _FakeCapture())
        return opened[-1]

    monkeypatch.setattr("gsmc_core.frames.sources._open_camera", fake_open)
    events = []
    source = CameraSource(2, on_event=events.append, retry_delays=(0.01,))
    try:
        frame = source.read_latest(timeout=5.0)
    finally:
        source.close()
    assert frame is not None and frame.image.shape == (4, 4, 3)  # the empty ones never came out
    assert events[0].kind == "lost" and "camera 2 opened but gives no frames" in events[0].message
    assert len(opened) == 2


def test_camera_keeps_only_the_newest_frame_and_reopens(monkeypatch):
    opened = []

    def fake_open(index):
        # the first device fails after 60 frames, the reopened one keeps working
        cap = _FakeCapture(fail_after=60 if not opened else None)
        opened.append(cap)
        return cap

    monkeypatch.setattr("gsmc_core.frames.sources._open_camera", fake_open)
    events = []
    source = CameraSource(3, on_event=events.append, retry_delays=(0.01,))
    try:
        seen = []
        for frame in source:
            seen.append(frame.index)
            time.sleep(0.01)  # a slow consumer: ~10 frames arrive per frame it takes
            if len(seen) == 15:
                break
    finally:
        source.close()
    assert not source._thread.is_alive()
    assert seen == sorted(set(seen))  # never the same or an older frame twice
    assert max(b - a for a, b in zip(seen, seen[1:], strict=False)) > 1  # stale frames dropped
    kinds = [e.kind for e in events]
    assert kinds[:3] == ["lost", "retry", "reopened"] and all(e.camera == 3 for e in events)
    assert len(opened) == 2 and seen[-1] > 60  # frames kept coming after the reopen


def test_image_above_the_pixel_limit_is_refused_before_decoding(tmp_path, astronaut_rgb):
    path = tmp_path / "huge.png"
    cv2.imwrite(str(path), astronaut_rgb[:8, :8])
    for side, message in ((12000, r"12000 x 12000 pixels \(144 MP\) is more than the 100 MP"),
                          (25000, r"huge.png: more than 200 MP, and this program opens up to 100 MP")):
        data = bytearray(path.read_bytes())
        data[16:24] = side.to_bytes(4, "big") * 2  # the header now claims side x side
        data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # with a valid checksum
        path.write_bytes(bytes(data))
        with pytest.raises(SourceError, match=message):
            read_image(path)
    jpeg = tmp_path / "photo.jpg"
    cv2.imwrite(str(jpeg), astronaut_rgb[:, :300])
    assert header_size(jpeg.read_bytes()) == (300, 512)
    assert read_image(jpeg).shape == (512, 300, 3)


def _mjpeg_avi(path):
    """30 numbered frames in an MJPEG AVI, and where each frame's JPEG starts in the file."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(30):
        image = np.full((48, 64, 3), i * 8, np.uint8)
        cv2.putText(image, str(i), (5, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        writer.write(image)
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(starts) == 30 and min(b - a for a, b in zip(starts, starts[1:], strict=False)) > 400
    return data, starts


def test_damaged_video_frames_are_skipped_and_counted(tmp_path):
    path = tmp_path / "v.avi"
    data, starts = _mjpeg_avi(path)
    data[starts[15] : starts[15] + 400] = b"\x55" * 400  # frame 15's JPEG destroyed
    path.write_bytes(bytes(data))
    source = VideoFileSource(path)
    indices = [f.index for f in source]
    assert indices == [i for i in range(30) if i != 15] and source.damaged == 1
    assert [f.index for f in VideoFileSource(tmp_path / "v.avi", step=1)][-1] == 29


def test_a_video_that_opens_but_has_no_decodable_frame_says_so(tmp_path):
    # the header says 30 frames, every JPEG in it is destroyed: it used to end as if played
    path = tmp_path / "v.avi"
    data, starts = _mjpeg_avi(path)
    for start in starts:  # every frame's JPEG destroyed, the container left whole
        data[start : start + 400] = b"\x55" * 400
    path.write_bytes(bytes(data))
    source = VideoFileSource(path)
    assert source.frame_count == 30
    with pytest.raises(SourceError, match=r"v.avi: no frame of it can be decoded"):
        list(source)


def test_a_huge_camera_index_is_refused_with_the_range():
    with pytest.raises(SourceError, match="camera index 99999999999999 is out of range"):
        open_source("99999999999999")


def test_huge_tiff_and_webp_are_refused_from_the_header_and_thin_images_too(tmp_path, monkeypatch):
    import PIL.Image

    tiff = tmp_path / "huge.tif"
    PIL.Image.new("1", (30000, 30000)).save(tiff, compression="group4")  # 25 kB on disk
    assert tiff.stat().st_size < 100_000
    webp = tmp_path / "big.webp"
    PIL.Image.new("RGB", (11000, 10000)).save(webp, lossless=True)

    def never(*_):
        raise AssertionError("decoded: the header should have refused it (it took 46 s and 6 GB)")

    monkeypatch.setattr(cv2, "imdecode", never)
    with pytest.raises(SourceError, match="more than 200 MP"):
        read_image(tiff)
    with pytest.raises(SourceError, match=r"11000 x 10000 pixels \(110 MP\) is more than the 100 MP"):
        read_image(webp)
    thin = tmp_path / "thin.png"
    cv2.imwrite(str(thin), np.zeros((1, 5000, 3), np.uint8))
    with pytest.raises(SourceError, match="5000 x 1 pixels is too thin to hold a face"):
        read_image(thin)


def test_the_pixel_limit_can_be_raised_and_a_bad_setting_is_ignored(tmp_path):
    import subprocess
    import sys

    import PIL.Image

    big = tmp_path / "big.png"
    PIL.Image.new("L", (12000, 10000)).save(big)  # 120 MP, compressed to a few kB
    code = ("import sys; from gsmc_core.frames.sources import read_image\n"
            "try:\n    print(read_image(sys.argv[1]).shape)\nexcept Exception as e:\n    print(e)")
    run = lambda env: subprocess.run([sys.executable, "-c", code, str(big)], capture_output=True, text=True,  # noqa: E731
                                     env={**__import__("os").environ, **env}).stdout
    assert "starting the program with the environment variable GSMC_MAX_IMAGE_MP" in run({})
    assert "(120 MP) is more than the 119.5 MP" in run({"GSMC_MAX_IMAGE_MP": "119.5"})  # was "120 ... 120"
    assert "(10000, 12000, 3)" in run({"GSMC_MAX_IMAGE_MP": "150"})
    assert "is more than the 100 MP" in run({"GSMC_MAX_IMAGE_MP": "lots"})
