"""The Review tab driven with the keyboard as a person uses it: score a dataset with a model,
decide 20 faces with the number keys, Space and Delete (focus on a button, where Space would
press it), undo one, reopen and find the review where it stopped, export exactly the decisions
made with the original files byte-identical."""

import hashlib

import pytest
from desktop_support import desktop_test
from PySide6.QtCore import Qt

from gsmc_core.review.review_log import ReviewLog
from gsmc_core.training.data.readers import read_split
from gsmc_desktop.review.tab import ReviewTab, review_log_path


@pytest.fixture(autouse=True)
def isolated(qapp, tmp_path):
    with desktop_test(qapp, tmp_path / "settings"):
        yield


def digest(folder):
    files = (p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())
    return hashlib.sha256(b"".join(files)).hexdigest()


@pytest.fixture
def tabs():
    made = []
    yield made
    for tab in made:
        tab.shutdown()


def run_checkpoint(tmp_path, random_checkpoint):
    """A copy of the random model as a run's last.pt: the review is written beside it."""
    checkpoint = tmp_path / "run" / "last.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(random_checkpoint.read_bytes())
    return checkpoint


def filled_tab(qtbot, tabs, root, checkpoint) -> ReviewTab:
    """A Review tab with the dataset and model chosen, not scored yet."""
    tab = ReviewTab()
    tabs.append(tab)
    qtbot.addWidget(tab)
    tab.data_root.edit.setText(str(root))
    tab.checkpoint.edit.setText(str(checkpoint))
    tab.score.setCurrentIndex(tab.score.findData("self_confidence"))  # every face is ranked
    return tab


def scored_tab(qtbot, tabs, root, checkpoint) -> ReviewTab:
    tab = filled_tab(qtbot, tabs, root, checkpoint)
    tab.start_scoring()
    qtbot.waitUntil(lambda: tab.run is not None and bool(tab.rows), timeout=120_000)
    with qtbot.waitActive(tab):  # shortcuts act in the active window, as for a person's keys
        tab.show()
        tab.activateWindow()
    return tab


def test_review_with_keys_undo_reopen_and_export(qtbot, tabs, small_ferplus, random_checkpoint, tmp_path,
                                                 monkeypatch):
    checkpoint = run_checkpoint(tmp_path, random_checkpoint)
    original = digest(small_ferplus / "FER2013Train")
    tab = scored_tab(qtbot, tabs, small_ferplus, checkpoint)
    faces = len(read_split("ferplus", small_ferplus, "train").samples)
    assert len(tab.rows) == faces > 20 and tab.position == 0
    tab.score_button.setFocus()  # Space must decide, not press the focused button
    keys = [Qt.Key.Key_1, Qt.Key.Key_Space, Qt.Key.Key_Delete, Qt.Key.Key_5, Qt.Key.Key_0] * 4
    expected = {}
    for key in keys:
        face = tab._key(tab.rows[tab.position])
        qtbot.keyClick(tab.score_button, key)
        expected[face] = key
    assert tab.position == 20 and "reviewed 20" in tab.counter.text()
    qtbot.keyClick(tab.score_button, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the 20th
    last = tab._key(tab.rows[19])
    del expected[last]
    assert tab.position == 19 and "reviewed 19" in tab.counter.text()
    qtbot.keyClick(tab.suspect_list, Qt.Key.Key_Left)
    assert tab.position == 18
    tab.shutdown()  # as if the app had been killed: the decisions are already on disk

    decisions = ReviewLog(review_log_path(checkpoint)).decisions()
    action = {Qt.Key.Key_1: ("set", "neutral"), Qt.Key.Key_Space: ("keep", ""),
              Qt.Key.Key_Delete: ("unusable", ""), Qt.Key.Key_0: ("unusable", ""),
              Qt.Key.Key_5: ("set", "anger")}
    assert {k: (d.action, d.label) for k, d in decisions.items()} == {
        k: action[v] for k, v in expected.items()}

    again = scored_tab(qtbot, tabs, small_ferplus, checkpoint)  # reopened: resumes at the first undecided
    assert again._key(again.rows[again.position]) == last
    import threading

    import gsmc_desktop.review.worker as review_worker

    threads, shown = [], []
    real = review_worker.relabel
    monkeypatch.setattr(review_worker, "relabel",
                        lambda *a, **k: threads.append(threading.current_thread()) or real(*a, **k))
    monkeypatch.setattr("gsmc_desktop.widgets.messages.warn", lambda _p, title, text: shown.append(text))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with qtbot.waitSignal(again.worker.errored, timeout=60_000):
        assert again.export(tmp_path / "taken")  # a folder that is not empty: refused, in a dialog
    qtbot.waitUntil(lambda: len(shown) == 1)
    assert "is not empty" in shown[0] and again.export_button.isEnabled()
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    (tmp_path / "cleaned").mkdir()  # the empty folder a folder dialog gives
    trained_on = []
    again.train_on.connect(lambda dataset, root: trained_on.append((dataset, root)))
    with qtbot.waitSignal(again.export_ended, timeout=120_000):
        with qtbot.waitSignal(again.worker.exported, timeout=120_000) as exported:
            assert again.export(tmp_path / "cleaned")
            assert not again.export(tmp_path / "twice")  # one export at a time
            assert not again.export_button.isEnabled() and not again.score_button.isEnabled()
    assert trained_on == [("ferplus", str(tmp_path / "cleaned"))] and again.score_button.isEnabled()
    out = exported.args[1].root
    assert threading.main_thread() not in threads and len(threads) == 2  # not on the GUI thread
    assert out == tmp_path / "cleaned" and again.export_button.isEnabled()
    cleaned = {s.key: s.label for s in read_split("ferplus", out, "train").samples}
    originals = {s.key: s.label for s in read_split("ferplus", small_ferplus, "train").samples}
    classes = read_split("ferplus", out, "train").classes
    for key, (kind, label) in ((k, action[v]) for k, v in expected.items()):
        if kind == "set":
            assert classes[cleaned[key]] == label
        elif kind == "unusable":
            assert key not in cleaned
        else:
            assert cleaned[key] == originals[key]
    untouched = set(originals) - set(expected)
    assert all(cleaned[k] == originals[k] for k in untouched)
    assert digest(small_ferplus / "FER2013Train") == original


def test_cross_validated_scoring_from_the_tab(qtbot, tabs, ferplus_root, tmp_path):
    from gsmc_core.training.config import TrainConfig
    from gsmc_core.training.loop import train

    run = tmp_path / "run"
    train(TrainConfig(method="ce", dataset="ferplus", data_root=str(ferplus_root), input_size=33,
                      epochs=1, batch_size=16, limit_train=40, limit_eval=16, workers=0,
                      noise_rate=0.25, out=str(run)))
    tab = ReviewTab()
    tabs.append(tab)
    qtbot.addWidget(tab)
    tab.data_root.edit.setText(str(ferplus_root))
    tab.checkpoint.edit.setText(str(run / "last.pt"))
    tab.folds.setValue(2)
    tab.start_scoring()
    qtbot.waitUntil(lambda: tab.run is not None, timeout=300_000)
    assert "Out-of-sample predictions (2-fold cross-validation)" in tab.progress_label.text()
    assert "10 labels known to be noisy" in tab.progress_label.text()
    assert (run / "crossval" / "fold1" / "heldout.npz").is_file() and len(tab.rows) > 0
    # a label the run's noise put in place of the file's: said, and "keep" records the label shown
    # (it recorded "keep", and the export left the file's other label)
    tab.position = next(i for i, r in enumerate(tab.rows) if tab._injected(r))
    tab._show_position()
    row = tab.rows[tab.position]
    assert "put there by the run's label noise" in tab.face_captions[1].text()
    tab.decide_keep()
    shown = tab.run.scores.split.classes[int(tab.run.scores.given[row])]
    decision = ReviewLog(review_log_path(run / "last.pt")).decisions()[tab._key(row)]
    assert (decision.action, decision.label) == ("set", shown)


def test_a_face_that_cannot_be_drawn_is_said_in_its_place(qtbot, tabs, small_ferplus, random_checkpoint,
                                                          tmp_path):
    checkpoint = run_checkpoint(tmp_path, random_checkpoint)
    tab = scored_tab(qtbot, tabs, small_ferplus, checkpoint)
    qtbot.waitUntil(lambda: not tab.face_views[0].pixmap().isNull(), timeout=30_000)  # the first face
    following = tab.run.scores.split.samples[tab.run.scores.indices[tab.rows[1]]]
    following.path.unlink()  # the next suspect's image is gone (a moved or deleted file)
    tab.move(1)
    assert all(view.pixmap().isNull() for view in tab.face_views)  # not the previous suspect's face
    qtbot.waitUntil(lambda: tab.face_views[0].text().startswith("Cannot show this face"), timeout=30_000)
    assert following.path.name in tab.face_views[0].text()
    assert tab.score_button.isEnabled() and "failed" not in tab.progress_label.text()
    tab.move(1)  # the one after is drawn as usual
    qtbot.waitUntil(lambda: not tab.face_views[0].pixmap().isNull(), timeout=30_000)


def test_a_log_that_cannot_be_written_is_said_and_the_review_stays(qtbot, tabs, small_ferplus,
                                                                    random_checkpoint, tmp_path, monkeypatch):
    checkpoint = run_checkpoint(tmp_path, random_checkpoint)
    tab = scored_tab(qtbot, tabs, small_ferplus, checkpoint)
    shown = []
    monkeypatch.setattr("gsmc_desktop.widgets.messages.warn", lambda _p, title, text: shown.append(text))
    log = review_log_path(checkpoint)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.mkdir()  # in its place a folder: as a read-only install, open() fails (root ignores modes)
    qtbot.keyClick(tab, Qt.Key.Key_1)  # was a PermissionError out of the shortcut: the crash dialog
    assert len(shown) == 1 and str(log) in shown[0] and "copy the checkpoint" in shown[0]
    assert tab.position == 0 and tab.log.decisions() == {}  # nothing recorded, still on the face
    qtbot.keyClick(tab, Qt.Key.Key_Space)
    assert len(shown) == 2 and tab.position == 0
    # a log that is not a review log: the tab says so and keeps the review it shows
    log.rmdir()
    log.write_text("some,other,file\n")
    run, rows = tab.run, tab.rows
    tab.start_scoring()
    qtbot.waitUntil(lambda: "Cannot open the review log" in tab.progress_label.text(), timeout=120_000)
    assert "not a review log" in tab.progress_label.text() and tab.run is run and tab.rows == rows
    assert tab.score_button.isEnabled()
    with qtbot.waitSignal(tab.worker.rendered, timeout=60_000) as drawn:  # the refused one's faces
        tab.move(1)                                                         # were drawn under it
    assert drawn.args[0].run is run
    # a log with a line cut by a kill: the review opens and the tab says what was skipped
    log.write_text("time,who,action,key,label,score\r\n2026-12-02T05:00:00+00:00,me,unusa")
    tab.start_scoring()
    qtbot.waitUntil(lambda: "faces scored" in tab.progress_label.text(), timeout=120_000)
    assert "decisions.csv: 1 damaged line(s) (from line 2" in tab.progress_label.text()


def test_before_anything_is_scored_space_presses_the_focused_button(qtbot, tabs, small_ferplus,
                                                                   random_checkpoint, tmp_path):
    # a keyboard user tabs to "Score" and presses Space: the decision key took it, nothing happened
    checkpoint = run_checkpoint(tmp_path, random_checkpoint)
    tab = filled_tab(qtbot, tabs, small_ferplus, checkpoint)
    with qtbot.waitActive(tab):
        tab.show()
        tab.activateWindow()
    tab.score_button.setFocus()
    qtbot.keyClick(tab.score_button, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: tab.run is not None and bool(tab.rows), timeout=120_000)
    assert tab.suspect_list.hasFocus()  # scored: the keys decide now
    first = tab._key(tab.rows[0])
    qtbot.keyClick(tab.suspect_list, Qt.Key.Key_Space)
    assert ReviewLog(review_log_path(checkpoint)).decisions()[first].action == "keep"


@pytest.mark.slow
def test_a_failed_rescore_says_which_review_stays_and_the_next_start_remembers_it(
        qtbot, tabs, small_ferplus, random_checkpoint, tmp_path):
    checkpoint = run_checkpoint(tmp_path, random_checkpoint)
    tab = scored_tab(qtbot, tabs, small_ferplus, checkpoint)
    not_a_dataset = tmp_path / "photos"
    not_a_dataset.mkdir()
    tab.data_root.edit.setText(str(not_a_dataset))
    tab.start_scoring()
    qtbot.waitUntil(lambda: "failed" in tab.progress_label.text(), timeout=60_000)
    assert (f"The review on screen is still that of last.pt on {small_ferplus}"
            in tab.progress_label.text())
    again = ReviewTab()  # the next start of the app
    tabs.append(again)
    assert again.data_root.text() == str(small_ferplus) and again.checkpoint.text() == str(checkpoint)


def test_a_filter_change_keeps_the_face_on_screen_under_the_keys(qtbot, tabs, small_ferplus,
                                                                 random_checkpoint, tmp_path):
    # after a filter change the screen showed one face while the next key decided another
    checkpoint = run_checkpoint(tmp_path, random_checkpoint)
    tab = scored_tab(qtbot, tabs, small_ferplus, checkpoint)
    for _ in range(3):
        qtbot.keyClick(tab.suspect_list, Qt.Key.Key_Right)
    shown = tab.rows[tab.position]
    given = int(tab.run.scores.given[shown])
    tab.given_filter.setCurrentIndex(tab.given_filter.findData(given))  # the face is still listed
    assert tab.rows[tab.position] == shown and tab.suspect_list.currentRow() == tab.position
    assert tab.face_captions[0].text().startswith(tab._key(shown))
    other = next(c for c in range(8) if c != given and any(int(g) == c for g in tab.run.scores.given))
    tab.given_filter.setCurrentIndex(tab.given_filter.findData(other))  # it is not: the first is shown
    first = tab.rows[0]
    assert tab.position == 0 and tab.suspect_list.currentRow() == 0
    assert tab.face_captions[0].text().startswith(tab._key(first))
    assert tab.face_captions[1].text().startswith(f"given: {tab.run.scores.split.classes[other]}")
    qtbot.keyClick(tab.suspect_list, Qt.Key.Key_5)
    decided = ReviewLog(review_log_path(checkpoint)).decisions()
    assert list(decided) == [tab._key(first)] and decided[tab._key(first)].label == "anger"
    assert "listed, worst first (" in tab.counter.text()
    tab.min_score.setValue(tab.min_score.maximum())  # nothing listed: no face stays on screen
    assert not tab.rows and tab.face_captions[0].text() == "" and tab._current() is None
    # a copy of the dataset (a cleaned one too) is another review: these decisions are not its
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_ferplus, copy, symlinks=True)
    run = tab.run
    tab.data_root.edit.setText(str(copy))
    tab.start_scoring()
    qtbot.waitUntil(lambda: "Cannot open the review log" in tab.progress_label.text(), timeout=120_000)
    assert "another dataset (a cleaned copy too) needs its own review" in tab.progress_label.text()
    assert tab.run is run
