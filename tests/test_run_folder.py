"""The run folder's layout, known in one place: what makes a folder another run's, its history
(metrics.csv, rewritten whole), and the temporaries a killed save leaves."""

import os
import time

from gsmc_core.training.run_folder import METRIC_COLUMNS, RunFolder


def test_a_new_run_is_refused_among_another_runs_files(tmp_path):
    fresh = RunFolder(tmp_path / "new" / "run")
    assert fresh.problem_for_new_run() is None and fresh.run_files() == [] and not fresh.can_resume()
    used = RunFolder(tmp_path / "used")
    used.path.mkdir()
    used.best.write_bytes(b"x")  # even without last.pt: best.pt would be overwritten
    assert used.run_files() == ["best.pt"]
    assert "already holds a run (best.pt)" in used.problem_for_new_run()
    (tmp_path / "file").write_text("a file")
    assert "is a file, not a folder" in RunFolder(tmp_path / "file").problem_for_new_run()
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "Cannot write in" in RunFolder(locked / "run").problem_for_new_run()
    used.last.write_bytes(b"x")
    used.config_file.write_text("epochs: 2\n")
    assert used.can_resume()


def test_history_is_rewritten_whole_with_the_known_columns(tmp_path):
    run = RunFolder(tmp_path)
    assert run.history() == []
    run.append_metrics({"epoch": 1, "loss": 2.5, "val_acc": 0.4, "not_a_column": 7})
    run.append_metrics({"epoch": 2, "loss": 2.0, "val_acc": 0.5})
    rows = run.history()
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[1]["val_acc"] == "0.5"
    assert list(rows[0]) == list(METRIC_COLUMNS)  # one header, the same columns in every run
    run.write_history(rows[:1])
    assert [r["epoch"] for r in run.history()] == ["1"]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary left


def test_stale_temporaries_of_a_killed_save_are_removed(tmp_path):
    run = RunFolder(tmp_path)
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "notes.tmp").write_text("the user's")
    assert run.remove_stale_temporaries() == [".last.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp"]


def _lingering_worker(ready) -> None:
    from gsmc_core.training.loop import _leave_stop_signals_to_the_trainer

    _leave_stop_signals_to_the_trainer(0)  # what each loader worker runs first
    ready.set()
    time.sleep(60)


def test_a_loader_worker_that_outlives_its_run_does_not_keep_the_folder_locked(tmp_path):
    """Forked workers share the lock's open file: a persistent worker left alive by a run that
    ended in an exception kept the folder locked, and the resume was refused (seen in CI)."""
    import multiprocessing

    from gsmc_core.training.run_lock import RunLock

    context = multiprocessing.get_context("fork")
    ready = context.Event()
    with RunLock(tmp_path):
        worker = context.Process(target=_lingering_worker, args=(ready,))
        worker.start()
        assert ready.wait(30)
    try:
        with RunLock(tmp_path):  # the run that took the lock is over; its worker is not
            pass
    finally:
        worker.kill()
        worker.join()


def test_metrics_damaged_on_disk_are_read_around_not_raised(tmp_path):
    # a field beyond the csv module's limit, "²" (a digit to str.isdigit, not to int) and
    # zero-filled blocks: each is a named problem, and the whole rows around them are kept
    folder = RunFolder(tmp_path)
    folder.metrics_file.write_bytes(b"epoch,loss\n1,0.5\n" + "\u00b2,1\n".encode() + b"2,"
                                    + b"x" * 200_000 + b"\n\x00\x00\x00\n3,0.3\n")
    rows, problems = folder.read_history()
    assert [r["epoch"] for r in rows] == ["1", "3"]
    assert problems[0] == "line 3: epoch '²' is not an epoch number"
    assert problems[1] == "line 4: not CSV text" and problems[2] == "line 5: 1 columns, 2 expected"
    folder.metrics_file.write_bytes(b"\x00" * 4096)  # a whole block zeroed
    assert folder.read_history() == ([], ["line 1: not metrics.csv's header (no epoch column)"])
