"""Which training labels are likely wrong, from a model's predicted probabilities.

Two families of scores, each a ranking (worst first) and a cut (how many to flag):

- ``audit``: the model predicts another class than the given one with probability >= a
  threshold; ranked by p(predicted) - p(given). The cut is every flagged sample.
- Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in
  Dataset Labels", JAIR 70, 2021), written here from the paper (cleanlab is AGPL): per-class
  thresholds t_j = mean p_j over the samples labelled j; the confident joint C[given][true]
  counts each sample under the most probable class j whose p_j >= t_j; C calibrated to the class
  counts and normalised estimates the joint of given and true labels, Q; the cut removes, for
  every off-diagonal (i, j), the round(n · Q[i][j]) samples labelled i with the largest margin
  p_j - p_i ("prune by noise rate"). Ranked by self-confidence (1 - p_given) or by normalised
  margin (max_{j != given} p_j - p_given).

Probabilities should be out-of-sample (cross-validated) for confident learning; a run's own
predictions on its training faces are in-sample and trust memorised labels.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gsmc_core.errors import UsageError

SCORES = ("audit", "self_confidence", "normalized_margin")


@dataclass(frozen=True)
class Suspects:
    """Training samples ordered from most to least suspect, and how many the method flags."""

    order: npt.NDArray[np.int64]  # sample indices, worst first
    score: npt.NDArray[np.float64]  # per sample (higher = more suspect)
    cut: int  # the first ``cut`` of ``order`` are flagged
    predicted: npt.NDArray[np.int64]  # the class each sample most likely belongs to


def per_class_thresholds(probs: npt.NDArray, given: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """t_j: the mean probability of class j over the samples labelled j (1 where none are)."""
    m = probs.shape[1]
    return np.array([probs[given == j, j].mean() if (given == j).any() else 1.0 for j in range(m)])


def confident_joint(probs: npt.NDArray, given: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """C[i][j]: samples labelled i whose most probable class above its threshold is j."""
    m = probs.shape[1]
    above = probs >= per_class_thresholds(probs, given)[None, :]
    masked = np.where(above, probs, -1.0)
    true = masked.argmax(1)
    counted = above.any(1)
    joint = np.zeros((m, m), np.int64)
    np.add.at(joint, (given[counted], true[counted]), 1)
    return joint


def estimated_joint(probs: npt.NDArray, given: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Q: the confident joint calibrated so each row sums to its class count, normalised to 1."""
    joint = confident_joint(probs, given).astype(np.float64)
    counts = np.bincount(given, minlength=probs.shape[1]).astype(np.float64)
    rows = joint.sum(1, keepdims=True)
    calibrated = np.divide(joint, rows, out=np.zeros_like(joint), where=rows > 0) * counts[:, None]
    return calibrated / max(calibrated.sum(), 1e-12)


def prune_by_noise_rate(probs: npt.NDArray, given: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """The confident-learning cut: for each off-diagonal (i, j) of Q, the round(n · Q[i][j])
    samples labelled i with the largest margin p_j - p_i."""
    n, m = probs.shape
    q = estimated_joint(probs, given)
    issue = np.zeros(n, bool)
    for i in range(m):
        members = np.flatnonzero(given == i)
        for j in range(m):
            k = int(round(n * q[i, j]))
            if i == j or k == 0 or not len(members):
                continue
            margin = probs[members, j] - probs[members, i]
            issue[members[np.argsort(-margin, kind="stable")[:k]]] = True
    return issue


def rank_suspects(probs: npt.NDArray, given: npt.NDArray[np.int64], score: str = "audit",
                  threshold: float = 0.5) -> Suspects:
    """Order the samples by ``score`` (one of SCORES) and say how many the method flags."""
    if score not in SCORES:
        raise UsageError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
    probs = np.asarray(probs, np.float64)
    given = np.asarray(given, np.int64)
    rows = np.arange(len(given))
    p_given = probs[rows, given]
    predicted = probs.argmax(1)
    others = probs.copy()
    others[rows, given] = -1.0
    if score == "audit":
        flagged = (predicted != given) & (probs[rows, predicted] >= threshold)
        value = np.where(flagged, probs[rows, predicted] - p_given, -np.inf)
        order = np.argsort(-value, kind="stable")
        return Suspects(order, value, int(flagged.sum()), predicted)
    value = 1.0 - p_given if score == "self_confidence" else others.max(1) - p_given
    order = np.argsort(-value, kind="stable")
    cut = int(prune_by_noise_rate(probs, given).sum())
    return Suspects(order, value, cut, others.argmax(1))


def precision_recall(suspects: Suspects, truly_wrong: npt.NDArray[np.bool_],
                     ks: tuple[int, ...] = (100, 500, 1000)) -> dict[str, float]:
    """Precision of the top k for each k (when there are that many samples), and precision and
    recall of the method's own cut, against the samples known to be mislabelled."""
    wrong = np.asarray(truly_wrong, bool)
    out: dict[str, float] = {}
    for k in ks:
        if k <= len(suspects.order):
            out[f"p{k}"] = float(wrong[suspects.order[:k]].mean())
    flagged = suspects.order[: suspects.cut]
    out["cut"] = suspects.cut
    out["p_at_cut"] = float(wrong[flagged].mean()) if len(flagged) else 0.0
    out["recall_at_cut"] = float(wrong[flagged].sum() / max(wrong.sum(), 1))
    return out
