"""The label-noise study script end to end on a tiny budget: real FERPlus faces, real training,
then the three selections (clean validation, noisy validation, last five epochs) checked against
the per-epoch scores the run wrote."""

import csv
import json
import statistics
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import noise_study  # noqa: E402

from gsmc_core.training.run_lock import RunLock  # noqa: E402


@pytest.mark.slow
def test_tiny_study_runs_resumes_and_summarises(ferplus_root, tmp_path, monkeypatch):
    out = tmp_path / "study"
    common = ["--data-root", str(ferplus_root), "--out", str(out), "--limit-train", "64",
              "--limit-eval", "48"]
    assert noise_study.main(["run", "gsmc_sym30_s0", "ce_annotator_s0", "--epochs", "2", *common]) == 0
    gsmc = json.loads((out / "gsmc_sym30_s0" / "result.json").read_text())
    scores = {int(k): v for k, v in json.loads((out / "gsmc_sym30_s0" / "scores.json").read_text()).items()}
    assert set(scores) == {1, 2} and set(scores[1]) == {"student", "teacher"}
    offered = [(scores[e][m]["val_clean"], m == "student", scores[e][m]["test"])
               for e in scores for m in scores[e]]
    assert gsmc["test_clean_val_choice"] == max(offered)[2]
    with open(out / "gsmc_sym30_s0" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    noisy = [(float(r["val_acc" if m == "student" else "val_acc_teacher"]), m == "student",
              scores[int(r["epoch"])][m]["test"]) for r in rows for m in ("student", "teacher")]
    assert gsmc["test_noisy_val_choice"] == max(noisy)[2]
    exported = [scores[int(r["epoch"])][r["selected"]]["test"] for r in rows]
    assert gsmc["test_last5"] == pytest.approx(statistics.mean(exported))
    config = (out / "gsmc_sym30_s0" / "config.yaml").read_text()
    assert "noisy_validation: true" in config and "input_size: 49" in config
    fit = gsmc["fit"]
    assert fit["noisy_faces"] == round(0.3 * 64)
    for share in (fit["noisy_label_reproduced"], fit["true_label_predicted"]):
        assert share * fit["noisy_faces"] == pytest.approx(round(share * fit["noisy_faces"]), abs=1e-9)
    annotator = json.loads((out / "ce_annotator_s0" / "result.json").read_text())
    assert annotator["noise"] == "annotator" and 0 < annotator["fit"]["noisy_faces"] < 64
    # a finished run is skipped; a longer one resumes where it stopped
    mtime = (out / "ce_annotator_s0" / "last.pt").stat().st_mtime
    assert noise_study.main(["run", "ce_annotator_s0", "--epochs", "2", *common]) == 0
    assert (out / "ce_annotator_s0" / "last.pt").stat().st_mtime == mtime
    assert noise_study.main(["summary", "--epochs", "2", *common]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # every method's key is there; null where its run has not finished (docs/results/summary.json)
    chosen = round(100 * gsmc["test_clean_val_choice"], 2)
    assert summary["noise30"] == {"ce": None, "eac": None, "gsmc": chosen}
    assert summary["noise30_last5"] == {"ce": None, "eac": None, "gsmc": round(100 * gsmc["test_last5"], 2)}
    assert summary["annotator"]["noisyval"] == {"ce": round(100 * annotator["test_noisy_val_choice"], 2),
                                                "eac": None, "gsmc": None}
    assert summary["ablation30_last5"] == {"ce_ac": None, "ce_kl": None, "ce_ema": None}
    assert 10 < summary["annotator"]["noise_rate"] < 45 and summary["cam_size"] == 4
    assert "ce_sym30_s0" in summary["unfinished"]
    assert summary["noise30_seeds"] == {"ce": [], "eac": [], "gsmc": [0]}
    # stopped after saving epoch 2 but before scoring it: resuming scores last.pt (still epoch 2) first
    scores_file = out / "ce_annotator_s0" / "scores.json"
    scores_file.write_text(json.dumps({"1": json.loads(scores_file.read_text())["1"]}))
    (out / "ce_annotator_s0" / "result.json").unlink()  # not finished: it runs on to 3 epochs
    before = scores_file.read_bytes()
    with RunLock(out / "ce_annotator_s0"):  # another queue is training it: skipped, nothing written
        assert noise_study.main(["run", "ce_annotator_s0", "--epochs", "3", *common]) == 0
    assert scores_file.read_bytes() == before
    assert noise_study.main(["run", "ce_annotator_s0", "--epochs", "3", *common]) == 0
    assert sorted(json.loads(scores_file.read_text())) == ["1", "2", "3"]
    # an epoch never scored (its checkpoint replaced) is not chosen, and is said; among the last
    # five it makes the result an error, not a mean over fewer epochs
    scored = json.loads(scores_file.read_text())
    scores_file.write_text(json.dumps({k: v for k, v in scored.items() if k != "1"}))
    args = noise_study.parse_args(["run", "ce_annotator_s0", "--epochs", "3", *common])
    metrics_file = out / "ce_annotator_s0" / "metrics.csv"
    with open(metrics_file, newline="") as f:
        rows = list(csv.DictReader(f))

    def summarise_with_epoch1_val(val_acc: str) -> dict:
        rows[0]["val_acc"] = val_acc
        with open(metrics_file, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return noise_study.summarise_run(noise_study.RUNS["ce_annotator_s0"], out / "ce_annotator_s0", args)

    with pytest.raises(SystemExit, match="never scored, some of the last 5"):  # 3 epochs: all in the last 5
        summarise_with_epoch1_val("0.0")
    monkeypatch.setattr(noise_study, "LAST_EPOCHS", 2)
    with pytest.raises(SystemExit, match="noisy-validation choice"):  # the best epoch has no test score
        summarise_with_epoch1_val("1.0")
    result = summarise_with_epoch1_val("0.0")
    assert result["unscored_epochs"] == [1]
    assert result["clean_val_choice"]["epoch"] != 1 and result["noisy_val_choice"]["epoch"] != 1


@pytest.mark.slow
def test_review_loop_fixes_the_reviewed_flips_and_retrains(ferplus_root, tmp_path):
    out = tmp_path / "study"
    common = ["--data-root", str(ferplus_root), "--out", str(out), "--limit-train", "96",
              "--limit-eval", "32", "--epochs", "2"]
    assert noise_study.main(["run", "ce_sym30_s0", "ce_reviewed_sym30_s0", *common]) == 0
    review = json.loads((out / "ce_reviewed_sym30_s0" / "review" / "review.json").read_text())
    with open(out / "ce_sym30_s0" / "train_labels.csv", newline="") as f:
        before = {r["key"]: r for r in csv.DictReader(f)}
    with open(out / "ce_reviewed_sym30_s0" / "train_labels.csv", newline="") as f:
        after = {r["key"]: r for r in csv.DictReader(f)}
    decisions = noise_study.ReviewLog(out / "ce_reviewed_sym30_s0" / "review" / "decisions.csv").decisions()
    assert review["reviewed"] == len(decisions) > 0 and review["noisy_before"] == round(0.3 * 96)
    assert review["changed"] + review["kept"] == review["reviewed"]
    assert set(after) == set(before)
    for key, row in after.items():  # the retrained run's labels: the review applied, nothing else
        decided = decisions.get(key)
        if decided is not None and decided.action == "set":
            assert row["noisy_label"] == before[key]["clean_label"] != before[key]["noisy_label"]
        else:
            assert row["noisy_label"] == before[key]["noisy_label"]
            assert decided is None or before[key]["flipped"] == "0"  # kept: the label was right
    assert sum(r["flipped"] == "1" for r in after.values()) == review["noisy_after"]
    assert review["noisy_after"] == review["noisy_before"] - review["changed"]
    assert noise_study.main(["summary", *common]) == 0
    retrain = json.loads((out / "summary.json").read_text())["retrain30"]
    result = json.loads((out / "ce_reviewed_sym30_s0" / "result.json").read_text())
    assert retrain["after"]["last5"] == round(100 * result["test_last5"], 2)
    assert retrain["review"] == review and set(retrain["before"]) == {"clean_val_choice", "noisyval", "last5"}


def test_bad_input_is_a_message_not_a_traceback(tmp_path, capsys):
    assert noise_study.main(["list"]) == 0  # needs no data
    assert "gsmc_ema_sym30_s0" in capsys.readouterr().out.split()
    assert noise_study.main(["summary", "--out", str(tmp_path)]) == 2
    assert "needs --data-root" in capsys.readouterr().err
    missing = tmp_path / "no-ferplus"
    assert noise_study.main(["summary", "--data-root", str(missing), "--out", str(tmp_path)]) == 2
    assert f"{missing}: data root not found" in capsys.readouterr().err
    assert noise_study.main(["run", "nope_s0", "--data-root", str(missing), "--out", str(tmp_path)]) == 2
    assert "unknown: ['nope_s0']" in capsys.readouterr().err
    assert not (tmp_path / "nope_s0").exists()
