"""The label-noise study script end to end on a tiny budget: real FERPlus faces, real training."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import noise_study  # noqa: E402


@pytest.mark.slow
def test_tiny_study_writes_results_and_noise_fit(ferplus_root, tmp_path):
    out = tmp_path / "study"
    args = ["--data-root", str(ferplus_root), "--out", str(out), "--methods", "ce",
            "--rates", "0", "0.25", "--epochs", "1", "--limit-train", "64", "--limit-eval", "32",
            "--input-size", "48", "--batch-size", "32", "--workers", "0", "--device", "cpu"]
    assert noise_study.main(args) == 0
    study = json.loads((out / "study.json").read_text())
    clean, result = study["results"]
    assert clean["noise_rate"] == 0.0 and clean["flipped_labels"] is None
    assert result["method"] == "ce" and result["noise_rate"] == 0.25
    assert result["train_seconds"] > 0
    # one epoch: best.pt and last.pt hold the same weights, so both test figures are one number
    assert result["best_epoch"] == 1
    assert result["test_acc_best"] == pytest.approx(result["test_acc_last5_mean"], abs=1e-9)
    fit = result["flipped_labels"]
    assert fit["flipped"] == 16  # a quarter of the 64 faces, as train_labels.csv records
    # shares of those 16 flipped faces (not of all 64): whole sixteenths
    shares = fit["exported"]
    for share in (shares["predicts_injected_label"], shares["predicts_true_label"]):
        assert share * 16 == pytest.approx(round(share * 16), abs=1e-9)
    assert "student" not in fit  # only GSMC runs have a student besides the exported weights
    assert "| ce |" in (out / "table.md").read_text()
    # a second call finds the finished run and does not train again
    mtime = (out / "ce_noise25" / "last.pt").stat().st_mtime
    assert noise_study.main(args) == 0
    assert (out / "ce_noise25" / "last.pt").stat().st_mtime == mtime


@pytest.mark.slow
def test_seeds_noisy_validation_and_summary(ferplus_root, tmp_path):
    out = tmp_path / "study"
    args = ["--data-root", str(ferplus_root), "--out", str(out), "--methods", "ce",
            "--rates", "0.3", "--epochs", "1", "--limit-train", "64", "--limit-eval", "32",
            "--input-size", "32", "--output-stride", "8", "--batch-size", "32", "--device", "cpu",
            "--seeds", "0", "1", "--noisy-val-gsmc", "--preload", "--threads", "1"]
    assert noise_study.main(args) == 0
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["ce_noise30", "ce_noise30_seed1", "gsmc_noise30_noisyval"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_faces"] == 64 and summary["cam_size"] == 4 and summary["epochs"] == 1
    study = json.loads((out / "study.json").read_text())
    ce = [r["test_acc_best"] for r in study["results"] if r["method"] == "ce"]
    assert summary["noise30"]["ce"] == pytest.approx(100 * sum(ce) / 2, abs=0.01)
    assert set(summary["noise30"]) == {"ce"} and summary["seeds"] == [0, 1]  # noisy-val apart
    # the noisy-validation run selected on noisy labels: its validation accuracy is on them
    config = (out / "gsmc_noise30_noisyval" / "config.yaml").read_text()
    assert "noisy_validation: true" in config
    noisy = next(r for r in study["results"] if r.get("noisy_validation"))
    assert (f"GSMC selected on validation labels with the same 30 % noise (seed 0, no clean oracle): "
            f"{100 * noisy['test_acc_best']:.2f}") in (out / "table.md").read_text()
    # different seeds drew different noise
    flips = [(out / d / "train_labels.csv").read_text() for d in ("ce_noise30", "ce_noise30_seed1")]
    assert flips[0] != flips[1]
