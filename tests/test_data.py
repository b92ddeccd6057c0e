from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gsmc_core.checkpoint import ModelMeta
from gsmc_core.labels import CANONICAL_CLASSES, SEVEN_CLASSES
from gsmc_core.training.data.noise import inject_symmetric_noise, read_noise_file
from gsmc_core.training.data.readers import ferplus_majority, read_split
from gsmc_core.training.data.samples import DataError, ExpressionDataset, collate_skipping
from gsmc_core.training.data.transforms import eval_transform, train_transform


def _png(path: Path, value: int = 128, size: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size, 3), value, np.uint8))
    return path


# --- FERPlus on the real data ----------------------------------------------------------------

def test_ferplus_real_counts_and_class_order(ferplus_root):
    expected = {
        "train": (25045, [8733, 7284, 3136, 3022, 2098, 116, 536, 120]),
        "val": (3191, [1180, 862, 411, 348, 289, 25, 60, 16]),
        "test": (3137, [1083, 892, 394, 382, 269, 16, 86, 15]),
    }
    for split, (n, per_class) in expected.items():
        data = read_split("ferplus", ferplus_root, split)
        assert data.classes == CANONICAL_CLASSES
        assert len(data.samples) == n
        counts = Counter(data.labels())
        assert [counts[i] for i in range(8)] == per_class
    seven = read_split("ferplus", ferplus_root, "test", 7)
    assert seven.classes == SEVEN_CLASSES and len(seven.samples) == 3137 - 15
    first = read_split("ferplus", ferplus_root, "train").samples[0]  # fer0000000 has no majority
    assert first.key == "fer0000001.png" and first.label == CANONICAL_CLASSES.index("neutral")
    assert first.path.is_file()


def test_ferplus_majority_rule():
    # columns: neutral happiness surprise sadness anger disgust fear contempt unknown NF
    assert ferplus_majority([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]) is None  # 4 of 9 after zeroing the 1
    assert ferplus_majority([6, 0, 1, 1, 0, 0, 0, 0, 2, 0]) == 0  # 6 of 8
    assert ferplus_majority([1, 1, 1, 1, 1, 1, 1, 1, 1, 1]) is None  # all single votes
    assert ferplus_majority([0, 0, 0, 0, 0, 0, 0, 0, 0, 10]) == 9  # not-a-face wins, then dropped


def test_ferplus_malformed_line_names_file_and_line(tmp_path):
    folder = tmp_path / "FER2013Train"
    _png(folder / "a.png")
    (folder / "label.csv").write_text('a.png,"(0, 0, 48, 48)",10,0,0,0,0,0,0,0,0,0\n'
                                      'b.png,"(0, 0, 48, 48)",x,0,0,0,0,0,0,0,0,0\n')
    with pytest.raises(DataError, match=r"label.csv:2: vote counts must be numbers"):
        read_split("ferplus", tmp_path, "train")


# --- the other readers on fixtures in their exact formats -------------------------------------

def test_rafdb_reader_with_holdout_and_noise_file(tmp_path):
    lines = []
    for i in range(1, 21):
        lines.append(f"train_{i:05d}.jpg {i % 7 + 1}")
        _png(tmp_path / "Image" / "aligned" / f"train_{i:05d}_aligned.jpg")
    for i in range(1, 4):
        lines.append(f"test_{i:04d}.jpg 4")
        _png(tmp_path / "Image" / "aligned" / f"test_{i:04d}_aligned.jpg")
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    train = read_split("rafdb", tmp_path, "train", val_fraction=0.2)
    val = read_split("rafdb", tmp_path, "val", val_fraction=0.2)
    test = read_split("rafdb", tmp_path, "test")
    assert train.classes == SEVEN_CLASSES
    assert len(train.samples) + len(val.samples) == 20 and len(val.samples) >= 3
    assert not {s.key for s in train.samples} & {s.key for s in val.samples}
    assert [s.label for s in test.samples] == [SEVEN_CLASSES.index("happiness")] * 3
    sample = next(s for s in train.samples if s.key == "train_00001.jpg")
    assert sample.label == SEVEN_CLASSES.index("fear")  # RAF label 2
    assert sample.path.name == "train_00001_aligned.jpg"
    noise = tmp_path / "noise01.txt"
    noise.write_text("train_00001.jpg 7\n")
    noisy = read_noise_file(noise, train)
    changed = [s.key for s, y in zip(train.samples, noisy, strict=True) if y != s.label]
    assert changed == ["train_00001.jpg"]
    assert noisy[train.samples.index(sample)] == SEVEN_CLASSES.index("neutral")
    noise.write_text("train_00001.jpg 9\n")
    with pytest.raises(DataError, match=r"noise01.txt:1: expected 'name label'"):
        read_noise_file(noise, train)


def test_fer2013_csv(tmp_path):
    pixels = " ".join(["7"] * 48 * 48)
    rows = ["emotion,pixels,Usage", f"3,{pixels},Training", f"0,{pixels},Training",
            f"6,{pixels},PublicTest", f"5,{pixels},PrivateTest"]
    (tmp_path / "fer2013.csv").write_text("\n".join(rows) + "\n")
    train = read_split("fer2013", tmp_path, "train")
    assert [SEVEN_CLASSES[y] for y in train.labels()] == ["happiness", "anger"]
    assert read_split("fer2013", tmp_path, "val").labels() == [SEVEN_CLASSES.index("neutral")]
    image = ExpressionDataset(train, lambda im: im)[0][0]
    assert image.shape == (48, 48, 3) and image.max() == 7
    (tmp_path / "fer2013.csv").write_text(rows[0] + "\n9,1 2 3,Training\n")
    with pytest.raises(DataError, match=r"fer2013.csv:2: bad row"):
        read_split("fer2013", tmp_path, "train")


def test_affectnet_csv_drops_invalid_labels_and_crops_face(tmp_path):
    img = np.zeros((100, 100, 3), np.uint8)
    img[10:60, 20:70] = 255
    (tmp_path / "1").mkdir()
    cv2.imwrite(str(tmp_path / "1" / "a.jpg"), img)
    header = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
              "expression,valence,arousal")
    rows = [header, "1/a.jpg,20,10,50,50,1;2,1,0.5,0.1", "1/a.jpg,20,10,50,50,,7,0,0",
            "1/a.jpg,20,10,50,50,,8,0,0", "1/a.jpg,20,10,50,50,,10,0,0"]
    (tmp_path / "training.csv").write_text("\n".join([header, *rows[1:] * 3]) + "\n")
    (tmp_path / "validation.csv").write_text("\n".join(rows[:2]) + "\n")
    eight = read_split("affectnet", tmp_path, "test")
    assert [CANONICAL_CLASSES[y] for y in eight.labels()] == ["happiness"]
    crop = ExpressionDataset(eight, lambda im: im)[0][0]
    assert crop.shape == (50, 50, 3) and crop.mean() > 200
    train8 = read_split("affectnet", tmp_path, "train", 8, val_fraction=0.0)
    assert sorted(Counter(train8.labels()).values()) == [3, 3]  # happy + contempt, 8-10 dropped
    train7 = read_split("affectnet", tmp_path, "train", 7, val_fraction=0.0)
    assert set(train7.labels()) == {SEVEN_CLASSES.index("happiness")}


def test_image_folder_with_aliases_and_bad_class(tmp_path):
    for split in ("train", "val", "test"):
        _png(tmp_path / split / "happy" / "1.png")
        _png(tmp_path / split / "Neutral" / "2.jpg")
    data = read_split("folder", tmp_path, "train")
    assert sorted(CANONICAL_CLASSES[y] for y in data.labels()) == ["happiness", "neutral"]
    _png(tmp_path / "test" / "bored" / "3.png")
    with pytest.raises(DataError, match=r"bored: unknown expression class 'bored'"):
        read_split("folder", tmp_path, "test")


# --- bad data ----------------------------------------------------------------------------------

def test_missing_root_label_file_and_empty_split(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: data root not found"):
        read_split("ferplus", tmp_path / "nowhere", "train")
    (tmp_path / "FER2013Train").mkdir()
    with pytest.raises(DataError, match=r"label.csv: FERPlus label file not found"):
        read_split("ferplus", tmp_path, "train")
    (tmp_path / "FER2013Train" / "label.csv").write_text("")
    with pytest.raises(DataError, match=r"train split of ferplus has no usable samples"):
        read_split("ferplus", tmp_path, "train")


def test_undecodable_image_is_skipped_and_counted_or_raises_when_strict(tmp_path):
    for i in range(3):
        _png(tmp_path / "train" / "happy" / f"{i}.png")
    (tmp_path / "train" / "happy" / "broken.png").write_bytes(b"not a png")
    split = read_split("folder", tmp_path, "train", val_fraction=0.0)
    meta = ModelMeta(arch="resnet18", classes=split.classes, input_size=32, output_stride=16)
    dataset = ExpressionDataset(split, eval_transform(meta))
    batch = collate_skipping([dataset[i] for i in range(len(dataset))])
    assert batch.skipped == 1 and batch.images.shape == (3, 3, 32, 32)
    strict = ExpressionDataset(split, eval_transform(meta), strict=True)
    with pytest.raises(DataError, match=r"broken.png: cannot be decoded"):
        [strict[i] for i in range(len(strict))]


# --- label noise -------------------------------------------------------------------------------

def test_symmetric_noise_is_exact_different_and_reproducible():
    labels = [i % 8 for i in range(1000)]
    noisy, flipped = inject_symmetric_noise(labels, 8, 0.3, seed=5)
    assert len(flipped) == 300
    assert sum(a != b for a, b in zip(labels, noisy, strict=True)) == 300
    assert all(noisy[i] != labels[i] for i in flipped)
    assert inject_symmetric_noise(labels, 8, 0.3, seed=5) == (noisy, flipped)
    assert inject_symmetric_noise(labels, 8, 0.3, seed=6)[1] != flipped
    new = Counter(noisy[i] - labels[i] for i in flipped)  # offsets spread over the other classes
    assert len({(d % 8) for d in new}) == 7
    assert inject_symmetric_noise(labels, 8, 0.0, seed=5) == (labels, [])


def test_transforms_shapes_and_grayscale(astronaut_rgb):
    meta = ModelMeta(arch="resnet18", classes=CANONICAL_CLASSES, input_size=64, output_stride=16,
                     color="gray")
    x = eval_transform(meta)(astronaut_rgb)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    # grayscale: after undoing the per-channel normalisation the three channels are equal
    mean, std = torch.tensor(meta.mean).view(3, 1, 1), torch.tensor(meta.std).view(3, 1, 1)
    raw = x * std + mean
    torch.testing.assert_close(raw[0], raw[1], atol=1e-5, rtol=0)
    torch.manual_seed(0)
    y = train_transform(meta)(astronaut_rgb)
    assert y.shape == (3, 64, 64) and not torch.equal(x, y)


# --- label files as people save them; splits that hold still ------------------------------------

def _rafdb(root: Path, n: int = 60) -> Path:
    lines = []
    for i in range(1, n + 1):
        lines.append(f"train_{i:05d}.jpg {i % 7 + 1}")
        _png(root / "Image" / "aligned" / f"train_{i:05d}_aligned.jpg", size=8)
    (root / "EmoLabel").mkdir(parents=True)
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text("\n".join(lines) + "\n")
    return label_file


def test_label_files_with_a_byte_order_mark_read_whole_and_other_encodings_are_named(tmp_path):
    label_file = _rafdb(tmp_path)
    plain = {s.key for s in read_split("rafdb", tmp_path, "train", val_fraction=0.0).samples}
    label_file.write_bytes(b"\xef\xbb\xbf" + label_file.read_bytes())  # as Excel / Notepad save it
    assert {s.key for s in read_split("rafdb", tmp_path, "train", val_fraction=0.0).samples} == plain
    pixels = " ".join(["7"] * 16)
    fer = tmp_path / "fer2013.csv"
    fer.write_bytes(b"\xef\xbb\xbfemotion,pixels,Usage\r\n3," + pixels.encode() + b",Training\r\n")
    assert read_split("fer2013", fer, "train").labels() == [SEVEN_CLASSES.index("happiness")]
    label_file.write_bytes("caf\u00e9.jpg 1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"list_patition_label.txt: not UTF-8 text .*save it as UTF-8"):
        read_split("rafdb", tmp_path, "train")


def test_a_noise_file_that_names_none_of_the_faces_is_refused(tmp_path):
    _rafdb(tmp_path, 20)
    train = read_split("rafdb", tmp_path, "train", val_fraction=0.0)
    noise = tmp_path / "noise.txt"
    noise.write_text("".join(f"train_{i:05d}_aligned.jpg 7\n" for i in range(1, 21)))  # the images' names
    with pytest.raises(DataError, match=r"noise.txt: names none of the 20 train faces .*"
                                        r"'train_00001_aligned.jpg'.*'train_00001.jpg'"):
        read_noise_file(noise, train)


def test_relabelling_one_face_moves_no_other_face_between_train_and_val(tmp_path):
    label_file = _rafdb(tmp_path, 300)
    before = {s.key for s in read_split("rafdb", tmp_path, "val", val_fraction=0.1).samples}
    lines = label_file.read_text().splitlines()
    lines[3] = "train_00004.jpg 7"  # one face to another class (it was 5)
    label_file.write_text("\n".join(lines) + "\n")
    after = {s.key for s in read_split("rafdb", tmp_path, "val", val_fraction=0.1).samples}
    assert len(before) == len(after) == 28  # 4 of each class's 42 or 43
    assert len(before ^ after) <= 4  # at most the relabelled face and one per class count change
    other = {s.key for s in read_split("rafdb", tmp_path, "val", val_fraction=0.1, seed=1).samples}
    assert len(before & other) < 15  # the seed still chooses the held-out faces


def test_an_image_folder_without_contempt_has_seven_classes(tmp_path):
    for name in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"):
        for split in ("train", "val", "test"):
            _png(tmp_path / split / name / "1.png", size=8)
    assert read_split("folder", tmp_path, "train").classes == SEVEN_CLASSES
    assert read_split("folder", tmp_path, "val").classes == SEVEN_CLASSES
    asked = read_split("folder", tmp_path, "train", 8)
    assert asked.classes == CANONICAL_CLASSES
    assert any("no training faces of contempt" in note for note in asked.notes)
    _png(tmp_path / "train" / "contempt" / "1.png", size=8)
    eight = read_split("folder", tmp_path, "train")
    assert eight.classes == CANONICAL_CLASSES and not any("no training" in n for n in eight.notes)
