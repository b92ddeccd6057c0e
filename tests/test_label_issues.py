"""Confident learning and the audit score on cases worked by hand and on simulated noise."""

import numpy as np
import pytest

from gsmc_core.label_issues import (
    confident_joint,
    estimated_joint,
    per_class_thresholds,
    precision_recall,
    prune_by_noise_rate,
    rank_suspects,
)


def test_thresholds_and_confident_joint_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3], [0.3, 0.7]])
    given = np.array([0, 0, 1, 1, 1])
    t = per_class_thresholds(probs, given)
    assert t == pytest.approx([0.75, 0.6])  # mean p0 over labelled 0; mean p1 over labelled 1
    # sample 0: only p0 0.9 >= 0.75 -> (0, 0); sample 1: none above -> not counted;
    # sample 2: p1 0.8 -> (1, 1); sample 3: none (0.7 < 0.75, 0.3 < 0.6); sample 4: p1 -> (1, 1)
    assert confident_joint(probs, given).tolist() == [[1, 0], [0, 2]]
    # calibrated to the class counts (2 and 3), normalised
    assert estimated_joint(probs, given) == pytest.approx(np.array([[2, 0], [0, 3]]) / 5)


def test_a_clear_flip_is_found_by_every_score():
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.1, 0.9], [0.05, 0.95], [0.97, 0.03]])
    given = np.array([0, 0, 1, 1, 1])  # the last one is labelled 1 but looks like 0
    for score in ("audit", "self_confidence", "normalized_margin"):
        suspects = rank_suspects(probs, given, score)
        assert suspects.order[0] == 4 and suspects.predicted[4] == 0, score
    assert prune_by_noise_rate(probs, given).tolist() == [False, False, False, False, True]


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(0)
    n, m = 4000, 6
    true = rng.integers(0, m, n)
    given = true.copy()
    flip = rng.random(n) < 0.3
    given[flip] = (true[flip] + rng.integers(1, m, flip.sum())) % m
    logits = 2.5 * np.eye(m)[true] + rng.normal(0, 1.0, (n, m))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, given, given != true


@pytest.mark.parametrize("score", ["audit", "self_confidence", "normalized_margin"])
def test_scores_find_simulated_noise(simulated, score):
    probs, given, wrong = simulated
    suspects = rank_suspects(probs, given, score)
    figures = precision_recall(suspects, wrong)
    assert figures["p100"] > 0.95 and figures["p500"] > 0.9
    assert figures["p_at_cut"] > 0.75 and figures["recall_at_cut"] > 0.6
    assert suspects.cut == (int(prune_by_noise_rate(probs, given).sum()) if score != "audit"
                            else int(((probs.argmax(1) != given) & (probs.max(1) >= 0.5)).sum()))


def test_the_estimated_joint_recovers_the_noise_rate(simulated):
    probs, given, wrong = simulated
    q = estimated_joint(probs, given)
    assert 1 - np.trace(q) == pytest.approx(wrong.mean(), abs=0.05)
