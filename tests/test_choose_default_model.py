"""The rule that picks the next default model on validation (scripts/choose_default_model.py)."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import choose_default_model  # noqa: E402


def row(accuracy, mean_class, worst_cost):
    return {"accuracy": accuracy, "mean_class_accuracy": mean_class,
            "worst_shift_cost_points": worst_cost}


SHIPPED = row(0.862, 0.689, 30.5)


def test_best_mean_class_among_those_within_the_accuracy_drop():
    candidates = {"plain": row(0.868, 0.661, 14.6), "adjusted": row(0.859, 0.682, 14.0),
                  "refit": row(0.855, 0.722, 14.5), "too far": row(0.851, 0.750, 10.0)}
    assert choose_default_model.choose(SHIPPED, candidates, 0.01) == "refit"
    assert choose_default_model.choose(SHIPPED, candidates, 0.005) == "adjusted"
    assert choose_default_model.choose(SHIPPED, candidates, 0.0) == "plain"


def test_a_candidate_less_robust_than_the_shipped_model_never_wins():
    candidates = {"fragile": row(0.870, 0.730, 31.0), "robust": row(0.860, 0.690, 20.0)}
    assert choose_default_model.choose(SHIPPED, candidates, 0.01) == "robust"
    assert choose_default_model.choose(SHIPPED, {"fragile": candidates["fragile"]}, 0.01) is None


def test_ties_in_mean_class_go_to_accuracy():
    candidates = {"a": row(0.860, 0.700, 20.0), "b": row(0.865, 0.700, 20.0)}
    assert choose_default_model.choose(SHIPPED, candidates, 0.01) == "b"


def test_cli_reads_eval_json_and_records_rule_and_choice(tmp_path, monkeypatch, capsys):
    def eval_json(name, accuracy, mean_class, worst):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({
            "accuracy": accuracy, "mean_class_accuracy": mean_class, "per_class": {"anger": 0.8},
            "robustness": {"shifts": {"blur": {"drop": 0.02}, "grey": {"drop": worst}},
                           "worst": {"shift": "grey", "drop": worst}}}))
        return f"{name}={path}"

    out = tmp_path / "choice.json"
    monkeypatch.setattr(sys, "argv", [
        "choose_default_model.py", "--shipped", eval_json("old", 0.86, 0.69, 0.30),
        "--candidate", eval_json("new", 0.855, 0.72, 0.15), "--out", str(out)])
    choose_default_model.main()
    record = json.loads(out.read_text())
    assert record["chosen"] == "new" and record["rule"] == choose_default_model.RULE
    assert record["models"]["new"]["shift_cost_points"] == {"blur": 2.0, "grey": 15.0}
    assert "chosen: new" in capsys.readouterr().out


def test_cli_refuses_to_write_over_an_eval_json(tmp_path, monkeypatch, capsys):
    candidate = tmp_path / "new.json"
    text = json.dumps({"accuracy": 0.86, "mean_class_accuracy": 0.7, "per_class": {},
                       "robustness": {"shifts": {}, "worst": {"shift": "grey", "drop": 0.1}}})
    candidate.write_text(text)
    monkeypatch.setattr(sys, "argv", ["choose_default_model.py", "--shipped", f"old={candidate}",
                                      "--candidate", f"new={candidate}", "--out", str(candidate)])
    with pytest.raises(SystemExit):
        choose_default_model.main()
    assert f"--out {candidate} is an input" in capsys.readouterr().err and candidate.read_text() == text
