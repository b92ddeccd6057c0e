"""No output may destroy an input, and no output is left half-written (issue 25, data loss):
each test fails on the code before the fix (an input overwritten, a truncated video over the
previous one, two writers in one run folder)."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from conftest import shared_path
from desktop_support import write_clip

from gsmc_core.atomic import write_atomic, write_text_atomic
from gsmc_core.cli import main
from gsmc_core.training.config import TrainConfig, TrainingError
from gsmc_core.training.loop import train
from gsmc_core.training.run_lock import RunLock


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def clip(tmp_path, astronaut_rgb) -> Path:
    return write_clip(astronaut_rgb, tmp_path / "in.mp4", frames=6)


@pytest.mark.parametrize("option", ["--out", "--csv"])
def test_video_refuses_to_write_over_its_input(clip, capsys, random_checkpoint, option):
    before = digest(clip)
    code = main(["video", str(clip), option, str(clip), "--checkpoint", str(random_checkpoint)])
    assert code == 2
    assert f"{option} {clip} is an input" in capsys.readouterr().err
    assert digest(clip) == before


def test_video_keeps_what_a_killed_run_left_in_its_partial_file(clip, tmp_path, capsys, random_checkpoint):
    left = tmp_path / ".faces.partial.csv"  # the help promises a killed run leaves it
    left.write_text("frame,time\n0,0.0\n")
    code = main(["video", str(clip), "--csv", str(tmp_path / "faces.csv"),
                 "--checkpoint", str(random_checkpoint)])
    assert code == 2 and "is what an earlier run of this command wrote" in capsys.readouterr().err
    assert left.read_text() == "frame,time\n0,0.0\n" and not (tmp_path / "faces.csv").exists()


def test_video_refuses_a_hard_link_or_relative_spelling_of_its_input(clip, capsys, random_checkpoint,
                                                                    monkeypatch):
    link = clip.with_name("link.mp4")
    os.link(clip, link)
    assert main(["video", str(clip), "--out", str(link), "--checkpoint", str(random_checkpoint)]) == 2
    monkeypatch.chdir(clip.parent)
    assert main(["video", "in.mp4", "--csv", "./in.mp4", "--checkpoint", str(random_checkpoint)]) == 2
    assert "is an input" in capsys.readouterr().err


def test_predict_refuses_a_cam_folder_that_holds_its_photos(tmp_path, capsys, random_checkpoint):
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = photos / "astronaut.png"
    photo.write_bytes(shared_path("images", "astronaut.png").read_bytes())
    before = digest(photo)
    assert main(["predict", str(photos), "--cam-dir", str(photos),
                 "--checkpoint", str(random_checkpoint)]) == 2
    assert "--cam-dir" in capsys.readouterr().err and digest(photo) == before
    assert main(["predict", str(photo), "--csv", str(photo), "--checkpoint", str(random_checkpoint)]) == 2
    assert digest(photo) == before
    cams = tmp_path / "cams"
    cams.mkdir()
    capsys.readouterr()
    assert main(["predict", str(photo), "--cam-dir", str(cams), "--csv", str(cams / "astronaut.png"),
                 "--checkpoint", str(random_checkpoint)]) == 2  # the table replaced the image
    assert "also the name of an annotated image" in capsys.readouterr().err
    table = tmp_path / "out.csv"
    table.write_text("x")
    assert main(["predict", str(photo), "--cam-dir", str(table), "--checkpoint", str(random_checkpoint)]) == 2
    assert "--cam-dir" in capsys.readouterr().err and table.read_text() == "x"
    assert main(["predict", "", "--checkpoint", str(random_checkpoint)]) == 2  # not the cwd
    assert main(["video", "", "--checkpoint", str(random_checkpoint)]) == 2
    assert "no input given" in capsys.readouterr().err


def test_model_commands_refuse_to_overwrite_their_source(tmp_path, capsys, random_checkpoint):
    model = tmp_path / "model.pt"
    model.write_bytes(random_checkpoint.read_bytes())
    before = digest(model)
    for argv in (["import-weights", str(model), "--format", "torchvision", "--out", str(model)],
                 ["export", "--checkpoint", str(model), "--out", str(model)],
                 ["calibrate", "--checkpoint", str(model), "--data-root", str(tmp_path), "--out", str(model)],
                 ["audit", "--checkpoint", str(model), "--dataset", "ferplus", "--data-root",
                  str(tmp_path), "--csv", str(model)]):
        assert main(argv) == 2, argv
        assert "is an input" in capsys.readouterr().err
        assert digest(model) == before


def test_no_command_writes_over_another_training_runs_files(tmp_path, capsys, random_checkpoint):
    # `calibrate --checkpoint runs/a/last.pt --out runs/a/best.pt` replaced the run's best.pt
    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.pt", "best.pt"):
        (run / name).write_bytes(random_checkpoint.read_bytes())
    (run / "metrics.csv").write_text("epoch\n1\n")
    model = tmp_path / "model.pt"
    model.write_bytes(random_checkpoint.read_bytes())
    before = {p.name: digest(p) for p in run.iterdir()}
    for argv in (["import-weights", str(model), "--format", "torchvision", "--out", str(run / "best.pt")],
                 ["export", "--checkpoint", str(model), "--out", str(run / "last.pt")],
                 ["calibrate", "--checkpoint", str(run / "last.pt"), "--data-root", str(tmp_path),
                  "--out", str(run / "best.pt")],
                 ["quantize", "--checkpoint", str(model), "--dataset", "ferplus", "--data-root",
                  str(tmp_path), "--out", str(run / "best.pt")],
                 ["predict", str(shared_path("images", "astronaut.png")), "--checkpoint", str(model),
                  "--csv", str(run / "metrics.csv")]):
        assert main(argv) == 2, argv
        assert "of the training run in" in capsys.readouterr().err, argv
    assert {p.name: digest(p) for p in run.iterdir()} == before
    # a file of another name beside them is fine, and so is a same-named file outside a run
    assert main(["export", "--checkpoint", str(model), "--out", str(run / "model.onnx")]) == 0
    assert main(["import-weights", str(_torchvision_file(tmp_path)), "--format", "torchvision",
                 "--out", str(tmp_path / "best.pt")]) == 0


def _torchvision_file(folder: Path) -> Path:
    import torch
    from torchvision import models

    path = folder / "resnet18.pth"
    torch.save(models.resnet18(weights=None).state_dict(), path)
    return path


def test_a_model_file_is_replaced_only_when_asked_and_graphs_are_named_onnx(tmp_path, capsys,
                                                                         random_checkpoint, monkeypatch):
    # import-weights over a trained model replaced it with untrained "init" weights; export
    # wrote a graph under .pt that every command then called damaged
    model, trained = tmp_path / "model.pt", tmp_path / "trained.pt"
    model.write_bytes(random_checkpoint.read_bytes())
    trained.write_bytes(random_checkpoint.read_bytes())
    before = digest(trained)
    source = str(_torchvision_file(tmp_path))
    assert main(["import-weights", source, "--format", "torchvision", "--out", str(trained)]) == 2
    assert "already holds PyTorch weights" in capsys.readouterr().err and digest(trained) == before
    assert main(["calibrate", "--checkpoint", str(model), "--data-root", str(tmp_path),
                 "--out", str(trained)]) == 2
    assert "add --overwrite to replace it" in capsys.readouterr().err and digest(trained) == before
    assert main(["import-weights", source, "--format", "torchvision", "--out", str(trained),
                 "--overwrite"]) == 0 and digest(trained) != before
    text = tmp_path / "notes.pt"  # not weights: nothing to lose but a name
    text.write_text("x")
    assert main(["import-weights", source, "--format", "torchvision", "--out", str(text)]) == 0
    for argv in (["export", "--checkpoint", str(model), "--out", str(tmp_path / "exported.pt")],
                 ["quantize", "--checkpoint", str(model), "--dataset", "ferplus", "--data-root",
                  str(tmp_path), "--out", str(tmp_path / "q.pt")]):
        assert main(argv) == 2 and "give a name ending in .onnx" in capsys.readouterr().err
        assert not (tmp_path / "exported.pt").exists() and not (tmp_path / "q.pt").exists()
    # without --checkpoint the shipped model and its int8 graph are inputs too
    import gsmc_core.cli.frames as frames

    default = tmp_path / "gsmc_default.pt"
    default.write_bytes(random_checkpoint.read_bytes())
    monkeypatch.setattr(frames, "DEFAULT_CHECKPOINT", default)
    photo = str(shared_path("images", "astronaut.png"))
    for target in (default, tmp_path / "gsmc_default.int8.onnx"):
        assert main(["predict", photo, "--csv", str(target)]) == 2
        assert "is an input" in capsys.readouterr().err
    assert digest(default) == before


def test_a_video_that_cannot_be_written_whole_keeps_the_previous_file(clip, tmp_path, capsys,
                                                                      random_checkpoint, monkeypatch):
    out = tmp_path / "x.mp4"
    out.write_bytes(b"the previous video")

    class FullDisk:  # what OpenCV does on ENOSPC: no error, a file without its index
        def __init__(self, path, *args):
            self.path = path
            Path(path).write_bytes(b"\0" * 100)

        def isOpened(self):
            return True

        def write(self, frame):
            pass

        def release(self):
            pass

    csv_out = tmp_path / "x.csv"
    csv_out.write_text("the previous rows\n")
    monkeypatch.setattr(cv2, "VideoWriter", FullDisk)
    monkeypatch.setattr(os, "statvfs", lambda p: os.statvfs_result((4096, 4096, 1, 0, 0, 1, 0, 0, 0, 255)))
    assert main(["video", str(clip), "--out", str(out), "--csv", str(csv_out),
                 "--checkpoint", str(random_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert f"{out}: the video could not be written whole (0 of 6 frames readable)" in err
    assert "the disk is full" in err and "wrote" not in err
    assert out.read_bytes() == b"the previous video"
    assert csv_out.read_text() == "the previous rows\n"  # "nothing was replaced": the CSV neither
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "x.csv", "x.mp4"]  # no partial left


def test_a_csv_whose_last_flush_fails_keeps_the_previous_file(clip, tmp_path, capsys, random_checkpoint,
                                                              monkeypatch):
    from gsmc_core.frames.recording import Recorder

    out = tmp_path / "x.csv"
    out.write_text("the previous rows\n")
    real_close = Recorder.close

    def full_disk(self):
        real_close(self)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Recorder, "close", full_disk)
    assert main(["video", str(clip), "--csv", str(out), "--checkpoint", str(random_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert f"{out}: could not be finished (No space left on device); nothing was replaced" in err
    assert out.read_text() == "the previous rows\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "x.csv"]


def test_an_interrupted_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("epochs: 5\n")

    def dies(f):
        f.write("epo")
        raise KeyboardInterrupt  # as a kill in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, dies)
    assert target.read_text() == "epochs: 5\n" and os.listdir(tmp_path) == ["config.yaml"]
    write_text_atomic(target, "epochs: 6\n")
    assert target.read_text() == "epochs: 6\n"


def _holder(folder: Path) -> subprocess.Popen:
    code = ("import sys, time; from gsmc_core.training.run_lock import RunLock\n"
            f"with RunLock({str(folder)!r}):\n    print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_of_a_run_folder_is_refused_until_the_first_dies(ferplus_root, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(method="ce", dataset="ferplus", data_root=str(ferplus_root), input_size=33,
                         epochs=1, batch_size=16, limit_train=16, limit_eval=16, workers=0,
                         out=str(run))
    other = _holder(run)  # another process training in the folder
    try:
        with pytest.raises(TrainingError, match=f"being written by process {other.pid}"):
            train(config)
        assert not (run / "config.yaml").exists()  # nothing was written
    finally:
        other.send_signal(signal.SIGKILL)  # a crash: the OS releases the lock
        other.wait()
    time.sleep(0.1)
    assert train(config).epochs_completed == 1
    with RunLock(run), pytest.raises(TrainingError, match=f"process {os.getpid()}"):
        train(TrainConfig(**{**config.__dict__, "epochs": 2, "resume": True}))


def test_sigterm_to_the_process_group_stops_training_with_workers_cleanly(ferplus_root, tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "gsmc_core.cli", "train", "--method", "ce", "--dataset", "ferplus",
            "--data-root", str(ferplus_root), "--input-size", "33", "--epochs", "50", "--batch-size",
            "8", "--limit-train", "400", "--limit-eval", "16", "--workers", "2", "--out", str(run)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = []
    for line in proc.stdout:  # wait until batches are flowing through the workers
        lines.append(line)
        if "epoch 1/50" in line and "batch" in line or (run / "metrics.csv").exists():
            break
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group: the trainer and its loader workers
    out = "".join(lines) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "Traceback" not in out and "killed by signal" not in out
    assert f"Continue with: gsmc train --resume --out {run}" in out
    assert (run / "last.pt").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.slow
def test_a_terminated_video_run_keeps_what_it_wrote(tmp_path, astronaut_rgb, random_checkpoint, signum):
    clip = write_clip(astronaut_rgb, tmp_path / "long.mp4", frames=400)
    out, table = tmp_path / "out.mp4", tmp_path / "faces.csv"
    proc = subprocess.Popen([sys.executable, "-m", "gsmc_core.cli", "video", str(clip), "--out", str(out),
                             "--csv", str(table), "--checkpoint", str(random_checkpoint), "--device",
                             "cpu"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".out.partial") for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(2)  # some frames in
    proc.send_signal(signum)
    err = proc.communicate(timeout=120)[1]
    assert "Traceback" not in err and "kept the first" in err, err
    frames = int(err.split("kept the first ")[1].split()[0])
    assert 0 < frames < 400
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames  # a whole, playable file
    capture.release()
    assert len(table.read_text().splitlines()) == frames + 1  # one face per frame, and the header
    assert not any(".partial" in p.name for p in tmp_path.iterdir())


def test_video_of_a_folder_unreadable_or_of_mixed_sizes(tmp_path, capsys, random_checkpoint, astronaut_rgb):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"{i}.png").write_bytes(b"not an image")
    out = tmp_path / "out.mp4"
    assert main(["video", str(bad), "--out", str(out), "--checkpoint", str(random_checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "nothing was written" in err and "wrote" not in err and not out.exists()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    face = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR)
    for i, size in enumerate([(320, 240), (640, 480), (300, 300), (320, 240), (200, 400)]):
        cv2.imwrite(str(mixed / f"{i}.png"), cv2.resize(face, size))
    assert main(["video", str(mixed), "--out", str(out), "--checkpoint", str(random_checkpoint)]) == 0
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5  # every image a frame, none dropped
    capture.release()


def test_predict_refuses_a_cam_folder_a_photo_links_into(tmp_path, capsys, random_checkpoint):
    cam, photos = tmp_path / "cam", tmp_path / "photos"
    cam.mkdir()
    photos.mkdir()
    original = cam / "astronaut.png"  # the photo itself; photos/ holds a link to it
    original.write_bytes(shared_path("images", "astronaut.png").read_bytes())
    os.symlink(original, photos / "astronaut.png")
    before = digest(original)
    assert main(["predict", str(photos), "--cam-dir", str(cam), "--checkpoint", str(random_checkpoint)]) == 2
    assert "--cam-dir" in capsys.readouterr().err and digest(original) == before


def test_label_review_outputs_refuse_the_dataset_label_file_and_the_runs_files(small_ferplus, tmp_path,
                                                                             capsys, random_checkpoint):
    labels = small_ferplus / "FER2013Train" / "label.csv"
    run = tmp_path / "run"
    run.mkdir()
    model = run / "best.pt"
    model.write_bytes(random_checkpoint.read_bytes())
    (run / "metrics.csv").write_text("epoch,loss\n1,0.5\n")
    kept = {p: digest(p) for p in (labels, run / "metrics.csv")}
    audit = ["audit", "--checkpoint", str(model), "--dataset", "ferplus", "--data-root", str(small_ferplus)]
    for argv, said in (([*audit, "--csv", str(labels)], "is an input"),
                       ([*audit, "--csv", str(run / "metrics.csv")], "is the metrics.csv of the training"),
                       (["calibrate", "--checkpoint", str(model), "--dataset", "ferplus", "--data-root",
                         str(small_ferplus), "--out", str(labels)], "is an input")):
        assert main(argv) == 2, argv
        assert said in capsys.readouterr().err
        assert {p: digest(p) for p in kept} == kept
    assert main([*audit, "--csv", str(tmp_path / "audit.csv")]) == 0  # elsewhere: written
    assert (tmp_path / "audit.csv").read_text().startswith("rank,index,key")


def test_an_output_that_is_a_folder_is_refused_before_any_work(tmp_path, capsys, random_checkpoint,
                                                               small_ferplus):
    folder = tmp_path / "outdir"
    folder.mkdir()
    model, root = str(random_checkpoint), str(small_ferplus)
    for argv in (["import-weights", model, "--format", "torchvision", "--out", str(folder)],
                 ["export", "--checkpoint", model, "--out", str(folder)],
                 ["quantize", "--checkpoint", model, "--dataset", "ferplus", "--data-root", root,
                  "--out", str(folder)],
                 ["calibrate", "--checkpoint", model, "--data-root", root, "--out", str(folder)],
                 ["audit", "--checkpoint", model, "--dataset", "ferplus", "--data-root", root,
                  "--csv", str(folder)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"--{argv[-2].lstrip('-')} {folder}: is a folder; give a file name" in err, (argv, err)
        assert list(folder.iterdir()) == []  # and nothing written into it


def test_atomic_text_is_utf8_whatever_the_systems_encoding(tmp_path, monkeypatch):
    # Windows opens text in cp1252 by default: `gsmc predict 写真.jpg --csv` lost every result
    real = os.fdopen

    def windows_fdopen(fd, mode, newline=None, encoding=None):
        return real(fd, mode, newline=newline, encoding=encoding or (None if "b" in mode else "cp1252"))

    monkeypatch.setattr("gsmc_core.atomic.os.fdopen", windows_fdopen)
    write_text_atomic(tmp_path / "faces.csv", "file\n写真.jpg\n")
    assert (tmp_path / "faces.csv").read_bytes() == "file\n写真.jpg\n".encode()


def test_a_run_folder_inside_the_dataset_or_over_its_own_config_is_refused(small_ferplus, tmp_path, capsys):
    inside = small_ferplus / "FER2013Train" / "run1"
    code = main(["train", "--dataset", "ferplus", "--data-root", str(small_ferplus), "--out", str(inside),
                 "--epochs", "1", "--limit-train", "16", "--input-size", "33"])
    assert code == 2 and "is inside the dataset" in capsys.readouterr().err
    assert not inside.exists()  # refused before the folder (its lock) was made
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    code = main(["train", "--dataset", "ferplus", "--data-root", str(small_ferplus), "--out", str(a_file),
                 "--epochs", "1", "--limit-train", "16", "--input-size", "33"])
    assert code == 2 and "notes.txt is a file, not a folder" in capsys.readouterr().err  # was Errno 17
    assert a_file.read_text() == "mine"
    run = tmp_path / "exp"
    run.mkdir()
    template = run / "config.yaml"
    template.write_text("# my experiment\nmethod: ce\nepochs: 1\n")
    code = main(["train", "--config", str(template), "--dataset", "ferplus", "--data-root",
                 str(small_ferplus), "--out", str(run)])
    assert code == 2 and "is the config.yaml the run writes" in capsys.readouterr().err
    assert template.read_text() == "# my experiment\nmethod: ce\nepochs: 1\n"
