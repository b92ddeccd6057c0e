"""Images tab: faces, probabilities and the per-class CAM grid; undecodable files listed."""

import cv2
import numpy as np
import pytest
from conftest import shared_path
from desktop_support import desktop_test
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from gsmc_core.labels import CANONICAL_CLASSES
from gsmc_desktop.images.tab import ImagesTab
from gsmc_desktop.images.worker import TILE_SIZE
from gsmc_desktop.model_handle import load_model


@pytest.fixture(autouse=True)
def isolated(qapp, tmp_path):
    with desktop_test(qapp, tmp_path / "settings"):
        yield


@pytest.fixture
def tab(qtbot, random_checkpoint):
    tab = ImagesTab()
    qtbot.addWidget(tab)
    tab.set_model(load_model(random_checkpoint, "cpu"))
    yield tab
    tab.shutdown()


def test_astronaut_face_probabilities_and_cam_grid(qtbot, tab, tmp_path):
    astronaut = shared_path("images", "astronaut.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    runtimes = []
    tab.runtime_changed.connect(runtimes.append)
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        assert tab.add_paths([astronaut, broken]) == 2
    assert runtimes == ["cpu · fp32"]  # the photo, not the broken file; no int8 graph here
    assert tab.pending == 0 and tab.image_list.count() == 2
    assert tab.image_list.item(0).text() == "astronaut.png\n1 face"
    assert "cannot be decoded as an image" in tab.image_list.item(1).text()

    tab.image_list.setCurrentRow(0)
    image = tab.current_result()
    (face,) = image.result.faces
    x, y, w, h = face.box
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 200  # her face, top centre of the photo
    np.testing.assert_allclose(tab.chart.values, face.probabilities)
    assert tab.chart.values.sum() == pytest.approx(1, abs=1e-4)
    assert tab.face_list.count() == 1
    assert tab.cam_grid.tile_count() == 8
    assert tab.cam_grid.captions == [f"{c} {p:.0%}" for c, p in zip(CANONICAL_CLASSES, face.probabilities,
                                                                    strict=True)]
    tiles = image.cam_tiles[0]
    assert len(tiles) == 8 and tiles[0].shape == (TILE_SIZE, TILE_SIZE, 3)
    assert not all(np.array_equal(tiles[0], t) for t in tiles[1:])  # one map per class
    assert tab.view.image().width() == 512 and tab.view.message() == ""

    out = tmp_path / "annotated.png"
    tab.save_annotated(out)
    annotated = cv2.imread(str(out))
    original = cv2.imread(str(astronaut))
    assert annotated.shape == original.shape
    assert np.abs(annotated[y + 5 : y + h - 5, x + 5 : x + w - 5].astype(int)
                  - original[y + 5 : y + h - 5, x + 5 : x + w - 5]).mean() > 10

    tab.image_list.setCurrentRow(1)
    assert tab.view.image() is None and "cannot be decoded" in tab.view.message()
    assert tab.cam_grid.tile_count() == 0 and not tab.save_button.isEnabled()


def test_dropped_folder_is_analysed(qtbot, tab, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(shared_path("images", "astronaut.png").read_bytes())
    (folder / "notes.txt").write_text("not an image: ignored")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    drop = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.dropEvent(drop)
    assert [tab.image_list.item(i).text() for i in range(tab.image_list.count())] == ["a.png\n1 face"]


def test_folder_without_images_and_no_model(qtbot, tab, tmp_path):
    with qtbot.waitSignal(tab.status_message) as said:
        assert tab.add_paths([tmp_path]) == 0
    assert said.args[0].startswith(f"No images in {tmp_path} (.png, .jpg")  # names the folder
    tab.set_model(None)
    assert tab.add_paths([shared_path("images", "astronaut.png")]) == 0
    assert tab.image_list.count() == 0


def test_a_model_switch_recomputes_every_open_image(qtbot, tab, tmp_path):
    from gsmc_core.resources import DEFAULT_CHECKPOINT

    astronaut = shared_path("images", "astronaut.png")
    copy = tmp_path / "copy.png"
    copy.write_bytes(astronaut.read_bytes())
    runtimes = []
    tab.runtime_changed.connect(runtimes.append)
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths([astronaut])
    first_model = tab.current_result().model
    before = tab.current_result().result.faces[0].probabilities
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths([copy])
    assert tab.image_list.currentRow() == 1  # what was just opened is shown
    default = load_model(DEFAULT_CHECKPOINT, "cpu")
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.set_model(default)
    assert tab.pending == 0 and len(tab.results) == 2
    # said for each photo analysed: twice with the random model, twice with the default one,
    # whose int8 graph ships
    assert runtimes == ["cpu · fp32", "cpu · fp32", "cpu · int8", "cpu · int8"]
    for result in tab.results.values():
        assert result.model is default and result.model is not first_model
        assert not np.allclose(result.result.faces[0].probabilities, before)
        assert [f.id for f in result.result.faces] == [1]  # numbered per image
    np.testing.assert_allclose(tab.chart.values, tab.current_result().result.faces[0].probabilities)


def test_comparable_heatmap_scale_keeps_weak_classes_dark(qtbot, tab):
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths([shared_path("images", "astronaut.png")])
    per_map = tab.current_result().cam_tiles[0]
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.scale_combo.setCurrentIndex(tab.scale_combo.findData("face"))
    assert tab.color_bar.ends() == ("0", "face's strongest class")
    comparable = tab.current_result().cam_tiles[0]
    # per map, every class has a fully red spot; comparable, at most the strongest has
    red = [int(((t[..., 0] > 200) & (t[..., 2] < 80)).sum()) for t in comparable]
    red_per_map = [int(((t[..., 0] > 200) & (t[..., 2] < 80)).sum()) for t in per_map]
    assert min(red_per_map) > 0 and sorted(red)[0] < min(red_per_map)


def test_export_results_and_save_cams(qtbot, tab, tmp_path):
    import csv
    import json

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"x")
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths([shared_path("images", "astronaut.png"), broken])
    assert tab.export_results(tmp_path / "r.csv") == 1
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    face = tab.results[0].result.faces[0]
    assert rows[0]["expression"] == face.label and rows[0]["model"] == "random.pt"
    assert rows[0]["runtime"] == "cpu · fp32" and rows[1]["runtime"] == ""  # how each result ran
    assert float(rows[0]["p_happiness"]) == pytest.approx(face.probabilities[1], abs=1e-5)
    assert "cannot be decoded" in rows[1]["error"]
    assert tab.export_results(tmp_path / "r.json") == 1
    entry = json.loads((tmp_path / "r.json").read_text())[0]  # the entries of `gsmc predict --json`
    assert entry["faces"][0]["id"] == 1 and entry["model"] == "random.pt"
    tab.image_list.setCurrentRow(0)
    photo = shared_path("images", "astronaut.png")
    for save in (tab.export_results, tab.save_annotated):  # never over a file the tab reads
        with pytest.raises(OSError, match="is an input"):
            save(photo)
    written = tab.save_cams(tmp_path)
    assert [p.name for p in written][:2] == ["astronaut_face1_neutral.png", "astronaut_face1_happiness.png"]
    assert cv2.imread(str(written[0])).shape == (TILE_SIZE, TILE_SIZE, 3)


def test_an_image_opened_twice_is_listed_once_and_entries_can_be_removed(qtbot, tab, tmp_path):
    import cv2 as cv

    astronaut = shared_path("images", "astronaut.png")
    blank = tmp_path / "blank.png"
    cv.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    opened = []
    tab.opened.connect(opened.append)
    assert not tab.remove_button.isEnabled()  # an empty list: nothing to remove
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        assert tab.add_paths([astronaut, blank]) == 2
    assert tab.add_paths([astronaut]) == 0 and tab.image_list.count() == 2  # shown, not listed again
    assert opened == [[astronaut, blank]]
    rows = tab_export(tab, tmp_path)
    assert [r["image"] for r in rows] == [str(astronaut), str(blank)]  # the faceless photo too
    assert rows[1]["face"] == ""
    tab.image_list.setCurrentRow(0)
    with qtbot.waitActive(tab):
        tab.show()
        tab.activateWindow()
    tab.opacity_slider.setFocus()  # Delete works whatever control of the tab has focus
    qtbot.keyClick(tab.opacity_slider, Qt.Key.Key_Delete)
    assert tab.image_list.count() == 1 and len(tab.results) == 1
    assert tab.image_list.item(0).data(Qt.ItemDataRole.UserRole + 1) == str(blank)
    assert tab.remove_button.isEnabled()
    tab.remove_selected(everything=True)
    assert tab.image_list.count() == 0 and not tab.results
    assert not tab.remove_button.isEnabled()  # nothing left to remove


def tab_export(tab, tmp_path):
    import csv

    tab.export_results(tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_faces_are_numbered_left_to_right(qtbot, tab, tmp_path, astronaut_rgb):
    import cv2 as cv

    face = cv.resize(cv.cvtColor(astronaut_rgb, cv.COLOR_RGB2BGR), (300, 300))
    group = np.full((300, 1000, 3), 200, np.uint8)
    group[:, :300], group[:, 650:950] = face, cv.resize(face, (300, 300))
    path = tmp_path / "group.png"
    cv.imwrite(str(path), group)
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths([path])
    faces = tab.results[0].result.faces
    assert len(faces) == 2
    assert [f.id for f in sorted(faces, key=lambda f: f.box[0])] == [1, 2]


def test_images_removed_while_analysed_stay_removed(qtbot, tab, tmp_path):
    photos = [tmp_path / f"p{k}.png" for k in range(4)]
    for p in photos:
        p.write_bytes(shared_path("images", "astronaut.png").read_bytes())
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths(photos)
        tab.remove_selected(everything=True)  # Shift+Remove while they are being analysed
    assert tab.image_list.count() == 0 and tab.results == {} and not tab.export_button.isEnabled()


def test_a_job_that_breaks_marks_its_images_and_the_next_one_is_analysed(qtbot, tab, tmp_path,
                                                                         monkeypatch):
    import gsmc_desktop.images.worker as worker

    real = worker.FramePipeline

    def broken(*args, **kwargs):
        raise RuntimeError("the pipeline broke")

    monkeypatch.setattr(worker, "FramePipeline", broken)
    photos = [tmp_path / f"p{k}.png" for k in range(2)]
    for p in photos:
        p.write_bytes(shared_path("images", "astronaut.png").read_bytes())
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths(photos)
    assert tab.pending == 0
    texts = [tab.image_list.item(k).text() for k in range(2)]
    assert all("not analysed" in t and "the pipeline broke" in t for t in texts), texts
    monkeypatch.setattr(worker, "FramePipeline", real)
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths([shared_path("images", "astronaut.png")])
    assert tab.pending == 0 and tab.image_list.item(2).text() == "astronaut.png\n1 face"


def test_open_images_adds_them_to_recent_files(qtbot, tab, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    astronaut = shared_path("images", "astronaut.png")
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(astronaut)], ""))
    opened = []
    tab.opened.connect(opened.append)
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab._on_open_files()
    assert opened == [[astronaut]]


def test_a_folder_that_cannot_be_listed_is_said_in_the_status_bar(qtbot, tab, tmp_path, monkeypatch):
    import gsmc_desktop.images.tab as images_tab

    folder = tmp_path / "locked"
    folder.mkdir()

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images_tab, "image_files", denied)
    said = []
    tab.status_message.connect(said.append)
    assert tab.add_paths([folder]) == 0
    assert said == [f"Cannot open {folder}: Permission denied"]


def test_a_scale_change_mid_batch_never_shows_the_old_scales_heatmaps(qtbot, tab, tmp_path):
    photos = [tmp_path / f"p{k}.png" for k in range(4)]
    for p in photos:
        p.write_bytes(shared_path("images", "astronaut.png").read_bytes())
    stale = []

    def check(_image):  # after the tab's own slot: what it keeps is of the scale on screen
        stale.extend(r.entry for r in tab.results.values() if r.cam_scale != tab.scale_combo.currentData())

    tab.worker.image_done.connect(check)
    assert tab.scale_combo.currentData() == "map"  # (settings are fresh: the change below is one)
    with qtbot.waitSignal(tab.all_done, timeout=120_000):
        tab.add_paths(photos)
        tab.scale_combo.setCurrentIndex(tab.scale_combo.findData("face"))  # while the first is analysed
    assert stale == [] and len(tab.results) == 4
    assert {r.cam_scale for r in tab.results.values()} == {"face"}


def _photos(tmp_path, n):
    photos = [tmp_path / f"p{k}.png" for k in range(n)]
    for p in photos:
        p.write_bytes(shared_path("images", "astronaut.png").read_bytes())
    return photos


@pytest.mark.parametrize("change", ["scale", "detector", "remove"])
def test_thrown_away_work_is_skipped_not_done(qtbot, tab, tmp_path, change):
    # a change in the middle of a folder: the old job's other images are not analysed before
    # the new job starts (each was analysed and dropped: minutes of "analysing…" on 2,000 photos)
    import threading

    gate, started, analysed = threading.Event(), threading.Event(), []
    real = tab.worker._analyse

    def held(pipeline, predictor, entry, path, cam_scale):
        started.set()
        gate.wait(60)
        analysed.append(entry)
        return real(pipeline, predictor, entry, path, cam_scale)

    tab.worker._analyse = held
    with qtbot.waitSignal(tab.all_done, timeout=120_000):
        tab.add_paths(_photos(tmp_path, 6))
        assert started.wait(60)  # the worker is inside the first photo
        if change == "scale":
            tab.scale_combo.setCurrentIndex(tab.scale_combo.findData("face"))
        elif change == "detector":
            tab.detector_combo.setCurrentIndex(tab.detector_combo.findData("short"))
        else:
            tab.remove_selected(everything=True)
        gate.set()
    # the photo in progress, then (unless removed) the new job's six
    assert len(analysed) == (1 if change == "remove" else 7), analysed
    assert tab.pending == 0 and len(tab.results) == (0 if change == "remove" else 6)


def test_a_detector_change_analyses_the_open_images_again(qtbot, tab, tmp_path):
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths(_photos(tmp_path, 1))
    before = tab.results[0]
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.detector_combo.setCurrentIndex(tab.detector_combo.findData("short"))
        assert tab.image_list.item(0).text() == "p0.png\nanalysing with the short range detector…"
    assert tab.results[0] is not before and tab.results[0].job > before.job
    assert tab.image_list.item(0).text() == "p0.png\n1 face"


@pytest.mark.parametrize("replace", [False, True])
def test_save_cams_asks_before_replacing_maps_already_there(qtbot, tab, tmp_path, monkeypatch, replace):
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths([shared_path("images", "astronaut.png")])
    tab.image_list.setCurrentRow(0)
    out = tmp_path / "cams"
    out.mkdir()
    earlier = out / "astronaut_face1_happiness.png"  # another model's map of the same face
    earlier.write_bytes(b"earlier map")
    asked = []
    monkeypatch.setattr("gsmc_desktop.images.tab.ask", lambda _p, _t, text: asked.append(text) or replace)
    monkeypatch.setattr("gsmc_desktop.images.tab.QFileDialog.getExistingDirectory", lambda *a, **k: str(out))
    tab.cams_button.click()
    assert len(asked) == 1 and "1 of these CAM images already exist" in asked[0]
    assert (earlier.read_bytes() == b"earlier map") != replace
    assert len(list(out.iterdir())) == (8 if replace else 1)


def test_face_crops_of_a_dataset_are_read_with_no_detection(qtbot, tab, ferplus_root):
    crop = next(iter(sorted((ferplus_root / "FER2013Test").glob("*.png"))))  # a 48 x 48 face
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths([crop])
    assert tab.results[0].result.faces == ()  # too small for the detector: "No face found"
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.detector_combo.setCurrentIndex(tab.detector_combo.findData("whole"))
        assert tab.image_list.item(0).text() == f"{crop.name}\nanalysing as face crops…"
    faces = tab.results[0].result.faces
    assert len(faces) == 1 and faces[0].box == (0, 0, 48, 48)
    assert tab.image_list.item(0).text() == f"{crop.name}\n1 face"
    tile = tab.results[0].cam_tiles[0]
    assert tile is not None


def test_no_save_replaces_an_image_still_being_analysed_and_export_waits_for_all(qtbot, tab, tmp_path,
                                                                                random_checkpoint):
    photos = [tmp_path / f"{name}.png" for name in ("a", "b")]
    for photo in photos:
        photo.write_bytes(shared_path("images", "astronaut.png").read_bytes())
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths(photos)
    assert tab.export_button.isEnabled()
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.set_model(load_model(random_checkpoint, "cpu"))  # every image is analysed again
        assert tab.pending == 2 and not tab.results and not tab.export_button.isEnabled()
        with pytest.raises(ValueError, match="2 image\\(s\\) are still being analysed"):
            tab.export_results(tmp_path / "r.csv")
        for target in (photos[1], random_checkpoint):  # once it was only the analysed ones
            with pytest.raises(OSError, match="is an input"):
                tab.export_results(target)
    assert tab.export_button.isEnabled() and tab.export_results(tmp_path / "r.csv") == 2
    assert photos[1].read_bytes() == shared_path("images", "astronaut.png").read_bytes()


def test_an_image_changed_on_disk_is_analysed_again_before_it_is_drawn(qtbot, tab, tmp_path,
                                                                      astronaut_rgb):
    import os

    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths([photo])
    before = tab.current_result().result.faces[0].box
    mirrored = np.ascontiguousarray(astronaut_rgb[:, ::-1])  # edited in another program
    cv2.imwrite(str(photo), cv2.cvtColor(mirrored, cv2.COLOR_RGB2BGR))
    os.utime(photo, ns=(0, 10**18))
    tab._shown = None  # as after looking at another image: the file is read again
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab._on_image_selected()  # the old result would be drawn on the new pixels
        assert "changed on disk since it was analysed: analysing it again" in tab.view.message()
        with pytest.raises(ValueError, match="no analysed image"):  # nothing drawn on other pixels
            tab.save_annotated(tmp_path / "out.png")
    after = tab.current_result().result.faces[0].box
    width = astronaut_rgb.shape[1]
    assert abs(after[0] - (width - before[0] - before[2])) <= 8  # the mirrored face's box
    tab.save_annotated(tmp_path / "out.png")
    assert (tmp_path / "out.png").is_file()


def test_an_image_that_keeps_changing_on_disk_is_analysed_again_only_once(qtbot, tab, tmp_path,
                                                                         monkeypatch):
    import itertools

    photo = tmp_path / "latest.jpg"  # e.g. a file a sync client is still writing
    photo.write_bytes(shared_path("images", "astronaut.png").read_bytes())
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab.add_paths([photo])
    stamps = itertools.count()
    monkeypatch.setattr("gsmc_desktop.images.tab.file_stamp", lambda path: (next(stamps), 0))
    tab._shown = None
    with qtbot.waitSignal(tab.all_done, timeout=60_000):
        tab._on_image_selected()  # changed: analysed again, once
    qtbot.waitUntil(lambda: "it keeps changing" in tab.view.message(), timeout=10_000)
    qtbot.wait(500)
    assert tab.pending == 0  # not queued again and again
