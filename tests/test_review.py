"""Label review decisions (an append-only sidecar that survives kill -9) and the cleaned dataset
written from them in the dataset's own format, with the originals untouched."""

import csv
import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gsmc_core.cli import build_parser, main
from gsmc_core.errors import UsageError
from gsmc_core.outputs import OutputError
from gsmc_core.review.relabel import relabel
from gsmc_core.review.review_log import ReviewLog
from gsmc_core.training.data.readers import read_split


def test_decisions_replay_with_undo(tmp_path):
    log = ReviewLog(tmp_path / "review" / "decisions.csv", who="tester")
    log.set_label("a.png", "anger", 0.9)
    log.keep("b.png", 0.5)
    log.unusable("c.png")
    log.set_label("d.png", "fear")
    assert log.undo().key == "d.png"
    log.set_label("a.png", "disgust")  # the latest decision for a face wins
    again = ReviewLog(tmp_path / "review" / "decisions.csv")
    standing = again.decisions()
    assert {k: (d.action, d.label) for k, d in standing.items()} == {
        "a.png": ("set", "disgust"), "b.png": ("keep", ""), "c.png": ("unusable", "")}
    assert standing["b.png"].who == "tester" and standing["b.png"].score == "0.5"
    assert again.undo().key == "a.png"  # undo across a reopen
    assert ReviewLog(tmp_path / "review" / "decisions.csv").decisions()["a.png"].label == "anger"


def test_every_decision_survives_kill_9(tmp_path):
    path = tmp_path / "decisions.csv"
    code = ("import sys, time; from gsmc_core.review.review_log import ReviewLog\n"
            f"log = ReviewLog({str(path)!r})\n"
            "for i in range(20):\n    log.set_label(f'f{i}.png', 'anger')\n"
            "log.undo()\nprint('decided', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "decided"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert sorted(ReviewLog(path).decisions()) == sorted(f"f{i}.png" for i in range(19))


@pytest.mark.parametrize("cut", [2, 9])  # the line end only; the line end and part of the line
def test_a_decision_after_a_line_cut_by_a_kill_is_kept_with_the_ones_before(tmp_path, cut):
    path = tmp_path / "decisions.csv"
    log = ReviewLog(path)
    log.set_label("a.png", "anger")
    log.set_label("b.png", "fear", 0.25)
    path.write_bytes(path.read_bytes()[:-cut])  # killed while writing b's line
    reopened = ReviewLog(path)
    reopened.set_label("c.png", "disgust")
    standing = ReviewLog(path).decisions()
    assert {k: d.label for k, d in standing.items()} == {
        "a.png": "anger", "c.png": "disgust", **({"b.png": "fear"} if cut == 2 else {})}
    assert standing == reopened.decisions()  # what the session shows is what the file holds
    assert reopened.cut_lines == ([] if cut == 2 else [3])  # said, not silently dropped


def test_a_line_run_together_with_the_next_is_skipped_and_counted(tmp_path):
    # before 2026-12-01 a decision after a kill was appended to the line the kill cut: a log of
    # those versions must still open (it raised for lines longer than six columns)
    path = tmp_path / "decisions.csv"
    log = ReviewLog(path)
    log.set_label("a.png", "anger")
    log.set_label("b.png", "fear")
    log.keep("c.png")
    lines = path.read_text().splitlines()
    merged = lines[:2] + [lines[2][:-8] + lines[3]]  # b's line cut, c's written onto it
    path.write_text("\n".join(merged) + "\n")
    reopened = ReviewLog(path)
    assert list(reopened.decisions()) == ["a.png"] and reopened.cut_lines == [3]


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_ferplus_relabel_writes_votes_the_trainer_reads_and_leaves_the_original(small_ferplus, tmp_path):
    before = digest(small_ferplus / "FER2013Train")
    split = read_split("ferplus", small_ferplus, "train")
    first, second, third = split.samples[:3]
    classes = split.classes
    log = ReviewLog(tmp_path / "decisions.csv")
    new_label = classes[(first.label + 1) % 8]
    log.set_label(first.key, new_label, 0.8)
    log.unusable(second.key)
    log.keep(third.key)
    out = tmp_path / "cleaned"
    assert main(["relabel", "--apply", str(tmp_path / "decisions.csv"), "--dataset", "ferplus",
                 "--data-root", str(small_ferplus), "--out", str(out)]) == 0
    cleaned = {s.key: s for s in read_split("ferplus", out, "train").samples}
    assert classes[cleaned[first.key].label] == new_label
    assert second.key not in cleaned  # voted not-a-face: the majority rule leaves it out
    assert cleaned[third.key].label == third.label
    assert len(cleaned) == len(split.samples) - 1
    assert read_split("ferplus", out, "val").samples  # the other splits come along
    with open(out / "changes.csv", newline="") as f:
        changes = list(csv.DictReader(f))
    assert [(c["file"], c["old"], c["new"]) for c in changes] == [
        (first.key, classes[first.label], new_label), (second.key, classes[second.label], "unusable")]
    assert digest(small_ferplus / "FER2013Train") == before  # the original is byte-identical
    with pytest.raises(OutputError, match="is inside the dataset"):
        relabel("ferplus", small_ferplus, {}, small_ferplus / "cleaned")
    with pytest.raises(OutputError, match="is not empty"):
        relabel("ferplus", small_ferplus, {}, out)
    # a mistyped decisions file is an error, not an empty review copied whole
    missing = tmp_path / "decisons.csv"
    assert main(["relabel", "--apply", str(missing), "--dataset", "ferplus",
                 "--data-root", str(small_ferplus), "--out", str(tmp_path / "cleaned2")]) == 2
    assert not (tmp_path / "cleaned2").exists() and not missing.exists()


def test_relabel_says_which_lines_of_the_log_were_cut_short(small_ferplus, tmp_path, capsys):
    first, second = read_split("ferplus", small_ferplus, "train").samples[:2]
    path = tmp_path / "decisions.csv"
    log = ReviewLog(path)
    log.unusable(first.key)
    log.unusable(second.key)
    path.write_bytes(path.read_bytes()[:-12])  # killed while writing the second decision
    assert main(["relabel", "--apply", str(path), "--dataset", "ferplus",
                 "--data-root", str(small_ferplus), "--out", str(tmp_path / "cleaned")]) == 0
    out = capsys.readouterr()
    assert f"{path}: line 3 is damaged" in out.err and "1 left out as unusable" in out.out


def test_folder_and_fer2013_relabel(tmp_path, astronaut_rgb):
    import cv2

    root = tmp_path / "faces"
    for cls in ("happy", "sad"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(root / "train" / cls / f"{i}.png"), astronaut_rgb[:64, :64])
    log = ReviewLog(tmp_path / "d.csv")
    log.set_label("happy/0.png", "sadness")
    log.unusable("sad/1.png")
    relabel("folder", root, log.decisions(), tmp_path / "clean")
    train = tmp_path / "clean" / "train"
    files = sorted(str(p.relative_to(train)) for p in train.rglob("*.png"))
    assert files == ["happy/1.png", "sad/0.png", "sadness/0.png"]
    fer = tmp_path / "fer2013.csv"
    fer.write_text("emotion,pixels,Usage\n0," + " ".join(["9"] * 4) + ",Training\n3,"
                   + " ".join(["9"] * 4) + ",Training\n")
    log = ReviewLog(tmp_path / "f.csv")
    log.set_label("row2", "neutral")
    log.unusable("row3")
    relabel("fer2013", fer, log.decisions(), tmp_path / "fer_clean")
    lines = (tmp_path / "fer_clean" / "fer2013.csv").read_text().splitlines()
    assert lines[1].startswith("6,") and len(lines) == 2  # neutral is FER2013's 6; row 3 left out


def test_relabel_names_a_decision_or_a_label_line_it_cannot_apply(small_ferplus, tmp_path, capsys):
    decisions = tmp_path / "decisions.csv"
    log = ReviewLog(decisions)
    first = read_split("ferplus", small_ferplus, "train").samples[0].key
    log.set_label(first, "Happy")  # not a class name (a hand-edited log)
    argv = ["relabel", "--apply", str(decisions), "--dataset", "ferplus", "--data-root", str(small_ferplus)]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert f"{decisions}: the decision for {first} gives the class 'Happy'" in err and "happiness" in err
    assert not (tmp_path / "a").exists()  # nothing written: the same command works once fixed
    log.set_label(first, "happiness")
    labels = small_ferplus / "FER2013Train" / "label.csv"
    rows = labels.read_text().splitlines()
    line = next(k for k, row in enumerate(rows) if row.startswith(first + ","))
    rows[line] = rows[line].rsplit(",", 3)[0] + ",x,y,z"  # the decided face's line, damaged
    labels.write_text("\n".join(rows) + "\n")
    assert main([*argv, "--out", str(tmp_path / "b")]) == 2
    assert f"{labels}:{line + 1}: expected a file name, a box and 10 vote counts" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*"))  # nothing half-made left


def test_the_issue_spelling_of_audit_options():
    """`gsmc audit … --method confident-learning --out suspects.csv` (issue 26's own command)."""
    base = ["audit", "--checkpoint", "m.pt", "--dataset", "ferplus", "--data-root", "d"]
    parse = build_parser().parse_args
    args = parse([*base, "--method", "confident-learning", "--out", "suspects.csv"])
    assert (args.score, args.csv) == ("self-confidence", "suspects.csv")
    assert parse([*base, "--method", "audit"]).score == "audit"
    assert parse(base).score == "audit" and parse(base).csv is None
    assert parse([*base, "--score", "normalized-margin"]).score == "normalized-margin"


@pytest.mark.parametrize("decide", [("happiness/001.png", "sadness"), ("sadness/001.png", "happiness")])
def test_a_face_moved_into_a_class_holding_its_name_leaves_the_original_whole(tmp_path, decide):
    import cv2
    import numpy as np

    root = tmp_path / "faces"
    for cls, value in (("happiness", 50), ("sadness", 200)):
        (root / "train" / cls).mkdir(parents=True)
        cv2.imwrite(str(root / "train" / cls / "001.png"), np.full((8, 8, 3), value, np.uint8))
    before = digest(root)
    log = ReviewLog(tmp_path / "d.csv")
    log.set_label(*decide)
    relabel("folder", root, log.decisions(), tmp_path / "clean")
    assert digest(root) == before  # no copy written through a link into the dataset
    clean = read_split("folder", tmp_path / "clean", "train", val_fraction=0.0)
    values = sorted((clean.classes[s.label], int(cv2.imread(str(s.path)).mean())) for s in clean.samples)
    assert values == [("sadness", 50), ("sadness", 200)] if decide[1] == "sadness" else \
        values == [("happiness", 50), ("happiness", 200)]


def test_fer2013_relabel_after_a_blank_line_changes_the_face_the_reader_named(tmp_path):
    def row(code: int, value: int) -> str:
        return f"{code}," + " ".join([str(value)] * 4) + ",Training\n"

    fer = tmp_path / "fer2013.csv"
    fer.write_text("emotion,pixels,Usage\n" + row(0, 10) + "\n" + row(3, 20) + row(5, 30))
    faces = {int(s.pixels.mean()): s.key for s in read_split("fer2013", fer, "train").samples}
    log = ReviewLog(tmp_path / "f.csv")
    log.set_label(faces[30], "neutral")  # the surprise face
    log.set_label(faces[20], "anger")  # the happy face
    relabel("fer2013", fer, log.decisions(), tmp_path / "clean")
    clean = read_split("fer2013", tmp_path / "clean", "train")
    assert {int(s.pixels.mean()): clean.classes[s.label] for s in clean.samples} == {
        10: "anger", 20: "anger", 30: "neutral"}


def test_a_key_cut_inside_its_quotes_loses_no_later_decision(tmp_path):
    path = tmp_path / "decisions.csv"
    log = ReviewLog(path)
    log.set_label("happy/a.png", "anger")
    log.set_label('happy/IMG 2024, "beach".jpg', "fear")
    data = path.read_bytes()
    path.write_bytes(data[:data.index(b"beach")])  # killed inside the quoted key
    reopened = ReviewLog(path)
    reopened.set_label("happy/c.png", "disgust")
    reopened.keep("happy/d.png")
    assert sorted(ReviewLog(path).decisions()) == ["happy/a.png", "happy/c.png", "happy/d.png"]
    reopened.set_label('happy/IMG 2024, "beach".jpg', "fear")
    assert ReviewLog(path).decisions() == reopened.decisions()  # quoted keys replay whole


def test_relabel_says_which_line_it_cannot_apply_in_every_format(tmp_path, small_ferplus, capsys):
    from gsmc_core.training.data.samples import DataError

    def fer_row(code: str) -> str:
        return f"{code}," + " ".join(["9"] * 4) + ",Training\n"

    log = ReviewLog(tmp_path / "d.csv")
    log.set_label("row2", "neutral")
    cases = {  # (dataset, file, text): what is said
        "header": ("fer2013", "fer2013.csv", "Emotion,pixels,Usage\n" + fer_row("0"),
                   "fer2013.csv: no column emotion"),
        "empty": ("fer2013", "fer2013.csv", "", "fer2013.csv: empty"),
        "code": ("fer2013", "fer2013.csv", "emotion,pixels,Usage\n" + fer_row("x"),
                 "fer2013.csv:2: 'x' is not one of the codes 0-6"),
    }
    for name, (dataset, file, text, said) in cases.items():
        root = tmp_path / name
        root.mkdir()
        (root / file).write_text(text)
        with pytest.raises(DataError, match=said):
            relabel(dataset, root, log.decisions(), tmp_path / f"{name}_clean")
        assert not (tmp_path / f"{name}_clean").exists()
    # AffectNet: a blank last line (as editors leave) is no face; the decided face changes
    root = tmp_path / "affectnet"
    root.mkdir()
    (root / "training.csv").write_text(
        "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
        "valence,arousal\n1/a.jpg,0,0,10,10,,1,0,0\n\n")
    log = ReviewLog(tmp_path / "a.csv")
    log.set_label("1/a.jpg", "sadness")
    relabel("affectnet", root, log.decisions(), tmp_path / "affectnet_clean")
    lines = (tmp_path / "affectnet_clean" / "training.csv").read_text().splitlines()
    assert lines[1].split(",")[6] == "2"  # sadness is AffectNet's 2
    # FERPlus: a file listed twice is named with both lines (it was "[Errno 17] File exists")
    labels = small_ferplus / "FER2013Train" / "label.csv"
    rows = labels.read_text().splitlines()
    labels.write_text("\n".join([*rows, rows[0]]) + "\n")
    first = rows[0].split(",")[0]
    log = ReviewLog(tmp_path / "p.csv")
    log.set_label(first, "happiness")
    said = rf"label.csv:{len(rows) + 1}: {first} is listed again \(first on line 1\)"
    with pytest.raises(DataError, match=said):
        relabel("ferplus", small_ferplus, log.decisions(), tmp_path / "dup_clean")


def test_relabel_with_decisions_of_another_dataset_writes_nothing(small_ferplus, tmp_path, capsys):
    decisions = tmp_path / "decisions.csv"
    log = ReviewLog(decisions)
    log.set_label("not_in_this_dataset.png", "happiness")
    argv = ["relabel", "--apply", str(decisions), "--dataset", "ferplus", "--data-root", str(small_ferplus)]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    assert "none of its 1 changes names a face of" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    first = read_split("ferplus", small_ferplus, "train").samples[0].key
    log.set_label(first, "happiness")  # one that matches: written, the other one said
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr()
    assert "1 faces relabelled" in out.out
    assert "warning: 1 decisions of" in out.err and "not_in_this_dataset.png" in out.err


def test_a_review_log_belongs_to_the_dataset_its_decisions_were_made_on(small_ferplus, tmp_path, capsys):
    # FER2013's keys are row numbers and a folder's are class/file: on a cleaned copy the same
    # keys name other faces, and the decisions went to them
    import json
    import shutil

    first = read_split("ferplus", small_ferplus, "train").samples[0]
    path = tmp_path / "run" / "review" / "decisions.csv"
    log = ReviewLog(path, dataset=("ferplus", small_ferplus))
    assert not log.dataset_file.exists()  # nothing is written before the first decision
    log.unusable(first.key)
    recorded = json.loads(log.dataset_file.read_text())
    assert recorded == {"dataset": "ferplus", "data_root": str(small_ferplus.resolve())}
    assert ReviewLog(path, dataset=("ferplus", small_ferplus)).decisions()  # the same: reopened
    copy = tmp_path / "copy"
    shutil.copytree(small_ferplus, copy, symlinks=True)
    with pytest.raises(UsageError, match=r"holds the decisions of a review of ferplus in .*ferplus, "
                                         r"not of ferplus in .*copy: another dataset"):
        ReviewLog(path, dataset=("ferplus", copy))
    assert main(["relabel", "--apply", str(path), "--dataset", "ferplus", "--data-root", str(copy),
                 "--out", str(tmp_path / "cleaned")]) == 2
    assert "needs its own review" in capsys.readouterr().err and not (tmp_path / "cleaned").exists()
    recorded["data_root"] = str(copy.resolve())  # "only moved": the record is edited
    log.dataset_file.write_text(json.dumps(recorded))
    assert main(["relabel", "--apply", str(path), "--dataset", "ferplus", "--data-root", str(copy),
                 "--out", str(tmp_path / "cleaned")]) == 0


@pytest.mark.parametrize("dataset", ["ferplus", "rafdb", "fer2013", "affectnet", "folder"])
def test_relabel_of_a_folder_in_another_format_names_what_that_format_needs(tmp_path, capsys, dataset):
    decisions = tmp_path / "decisions.csv"
    ReviewLog(decisions).unusable("x.png")
    other = tmp_path / "photos"
    other.mkdir()
    assert main(["relabel", "--apply", str(decisions), "--dataset", dataset, "--data-root", str(other),
                 "--out", str(tmp_path / "cleaned")]) == 2
    err = capsys.readouterr().err  # was "[Errno 2] No such file or directory: 'photos/train'"
    assert f"photos: not a {dataset} dataset (" in err and "check --dataset and --data-root" in err
    assert not (tmp_path / "cleaned").exists()


def test_a_fer2013_review_is_one_dataset_whether_given_as_its_folder_or_its_csv(tmp_path):
    folder = tmp_path / "fer"
    folder.mkdir()
    (folder / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    path = tmp_path / "review" / "decisions.csv"
    ReviewLog(path, dataset=("fer2013", folder)).keep("row3")
    assert list(ReviewLog(path, dataset=("fer2013", folder / "fer2013.csv")).decisions()) == ["row3"]
