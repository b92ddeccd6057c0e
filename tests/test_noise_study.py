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
