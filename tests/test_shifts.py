"""The robustness shifts (each does what its name says) and the test faces with a training twin."""

import json

import cv2
import numpy as np
import pytest

from gsmc_core.training.data.readers import read_split
from gsmc_core.training.data.samples import Sample, Split, load_image
from gsmc_core.training.shifts import SHIFTS, contrast, crop, gamma, grey_rows, roll, without_twins


@pytest.fixture(scope="module")
def face(ferplus_root) -> np.ndarray:
    return load_image(Sample("fer0032220.png", 0, ferplus_root / "FER2013Test" / "fer0032220.png"))


@pytest.mark.parametrize("name", list(SHIFTS))
def test_every_shift_changes_a_real_face_and_keeps_its_shape(face, name):
    shifted = SHIFTS[name](face)
    assert shifted.shape == face.shape and shifted.dtype == np.uint8
    assert np.abs(shifted.astype(int) - face).mean() > 1.0  # a shift that does nothing measures nothing
    np.testing.assert_array_equal(SHIFTS[name](face), shifted)  # the same every time


def test_grey_rows_cover_exactly_their_part_of_the_face(face):
    lower = grey_rows(0.6, 1.0)(face)
    assert (lower[29:] == 128).all()  # 0.6 x 48 = 28.8: rows 29-47
    np.testing.assert_array_equal(lower[:29], face[:29])
    upper = grey_rows(0.0, 0.4)(face)
    assert (upper[:19] == 128).all()
    np.testing.assert_array_equal(upper[19:], face[19:])


def test_crops_zoom_in_and_out_about_the_centre():
    image = np.full((48, 48, 3), 255, np.uint8)
    image[:3], image[-3:], image[:, :3], image[:, -3:] = 0, 0, 0, 0  # a 3 px black frame
    tighter = crop(0.85)(image)  # keeps the central 41 px: the frame is cut off
    assert tighter.min() > 200
    looser = crop(1.15)(image)  # 4 px of replicated black around it: a 6 px frame once resized
    assert looser[24, :5].max() < 60 and looser[24, 8:40].min() == 255


def test_roll_turns_counter_clockwise_for_positive_degrees():
    image = np.zeros((48, 48, 3), np.uint8)
    image[23:25, 4:44] = 255  # a horizontal bar through the centre
    rolled = roll(10)(image)
    rows = np.nonzero(rolled[:, :, 0] > 128)
    right, left = rows[0][rows[1] > 38].mean(), rows[0][rows[1] < 9].mean()
    assert right < 23 < 25 < left  # right end up, left end down (as displayed, y down)


def test_gamma_and_contrast_values():
    grey = np.full((4, 4, 3), 128, np.uint8)
    assert gamma(0.6)(grey)[0, 0, 0] == round(255 * (128 / 255) ** 0.6)
    assert gamma(1.6)(grey)[0, 0, 0] == round(255 * (128 / 255) ** 1.6)
    ramp = np.tile(np.array([0, 255], np.uint8).reshape(1, 2, 1), (1, 1, 3))
    np.testing.assert_array_equal(contrast(0.5)(ramp)[0, :, 0], [64, 191])  # half way to the mean


def test_twins_are_found_by_pixels_not_by_bytes_or_names(ferplus_root, tmp_path):
    train_dir = ferplus_root / "FER2013Train"
    names = ["fer0000000.png", "fer0000001.png", "fer0000002.png"]
    train = Split("ferplus", "train", ("a",), [Sample(n, 0, train_dir / n) for n in names])
    recoded = tmp_path / "recoded.png"  # the same pixels written with other PNG settings
    cv2.imwrite(str(recoded), cv2.imread(str(train_dir / names[1])), [cv2.IMWRITE_PNG_COMPRESSION, 0])
    assert recoded.read_bytes() != (train_dir / names[1]).read_bytes()
    test_dir = ferplus_root / "FER2013Test"
    test = Split("ferplus", "test", ("a",), [
        Sample("fer0032220.png", 0, test_dir / "fer0032220.png"),
        Sample("recoded.png", 0, recoded),
        Sample("missing.png", 0, tmp_path / "missing.png"),  # undecodable: no twin, kept
        Sample("copy.png", 0, train_dir / names[2]),
    ])
    kept, twins = without_twins(test, train)
    assert twins == ["recoded.png", "copy.png"]
    assert [s.key for s in kept.samples] == ["fer0032220.png", "missing.png"]


def test_cli_eval_with_shifts_and_without_twins(ferplus_root, small_ferplus, capsys):
    """Twenty real test faces and one that is a training face: the twin is left out, every shift
    is reported, and the worst is the one with the largest drop."""
    from gsmc_core.cli import main
    from gsmc_core.resources import DEFAULT_CHECKPOINT

    test_dir = small_ferplus / "FER2013Test"
    test_dir.unlink()
    test_dir.mkdir()
    rows = (ferplus_root / "FER2013Test" / "label.csv").read_text().splitlines()[:20]
    for row in rows:
        name = row.split(",")[0]
        (test_dir / name).write_bytes((ferplus_root / "FER2013Test" / name).read_bytes())
    train_name = read_split("ferplus", small_ferplus, "train", 8).samples[0].key  # one the run uses
    train_row = next(row for row in (small_ferplus / "FER2013Train" / "label.csv").read_text().splitlines()
                     if row.startswith(train_name))
    (test_dir / "twin.png").write_bytes((small_ferplus / "FER2013Train" / train_name).read_bytes())
    rows.append("twin.png," + train_row.split(",", 1)[1])
    (test_dir / "label.csv").write_text("\n".join(rows) + "\n")

    rc = main(["eval", "--checkpoint", str(DEFAULT_CHECKPOINT), "--dataset", "ferplus", "--data-root",
               str(small_ferplus), "--workers", "0", "--shifts", "--without-twins", "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    metrics = json.loads(captured.out)
    assert metrics["twins_left_out"] == 1 and "1 test faces with a pixel-identical" in captured.err
    robust = metrics["robustness"]
    assert list(robust["shifts"]) == list(SHIFTS)
    assert robust["clean_accuracy"] == metrics["accuracy"]
    drops = {name: row["drop"] for name, row in robust["shifts"].items()}
    assert robust["worst"]["shift"] == max(drops, key=drops.get)
    for row in robust["shifts"].values():
        assert row["drop"] == pytest.approx(metrics["accuracy"] - row["accuracy"])
    assert robust["shifts"]["lower 40% grey"]["accuracy"] < metrics["accuracy"]
