"""scripts/ensemble_eval.py: the figures that decide whether an ensemble is worth distilling."""

import dataclasses
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import ensemble_eval  # noqa: E402
import numpy as np  # noqa: E402

from gsmc_core.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from gsmc_core.resources import DEFAULT_CHECKPOINT  # noqa: E402
from gsmc_core.training.data.readers import read_split  # noqa: E402


def run(tmp_path, root, *checkpoints):
    out = tmp_path / "ensembles.json"
    rc = ensemble_eval.main([*map(str, checkpoints), "--data-root", str(root), "--split", "train",
                             "--json", str(out)])
    return rc, (json.loads(out.read_text()) if out.exists() else None)


def contrarian(path: Path) -> Path:
    """The shipped model with its classifier bias pushed to say contempt with certainty."""
    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    state = dict(ckpt.state_dict)
    bias = state["fc.bias"].clone()
    bias[ckpt.meta.classes.index("contempt")] += 100.0
    state["fc.bias"] = bias
    save_checkpoint(dataclasses.replace(ckpt, state_dict=state), path)
    return path


def test_a_model_with_itself_scores_as_itself_and_every_member_counts(tmp_path, small_ferplus):
    twin = tmp_path / "twin.pt"
    shutil.copy(DEFAULT_CHECKPOINT, twin)
    sure = contrarian(tmp_path / "contempt.pt")
    rc, report = run(tmp_path, small_ferplus, DEFAULT_CHECKPOINT, twin, sure)
    split = read_split("ferplus", small_ferplus, "train", 8)  # 40 rows, some not a face
    assert rc == 0 and report["faces"] == len(split.labels()) >= 30 and report["split"] == "train"
    rows = {tuple(Path(m).name for m in r["members"]): r for r in report["rows"]}
    assert len(rows) == 3 + 3 + 1  # each alone, each pair, all three
    shipped = rows[("gsmc_default.pt",)]
    assert shipped["accuracy"] >= 70  # it reads most of these training faces right
    same = rows[("gsmc_default.pt", "twin.pt")]
    assert (same["accuracy"], same["mean_class"]) == (shipped["accuracy"], shipped["mean_class"])
    # half of the mean is certain of contempt: contempt wins every face, so the pair is right
    # exactly on the faces labelled contempt (by majority vote)
    contempt_share = 100 * float(np.mean(split.labels() == split.classes.index("contempt")))
    assert rows[("gsmc_default.pt", "contempt.pt")]["accuracy"] == round(contempt_share, 2)
    assert rows[("contempt.pt",)]["accuracy"] == round(contempt_share, 2)


def test_a_missing_checkpoint_is_named_not_a_traceback(tmp_path, small_ferplus, capsys):
    rc, report = run(tmp_path, small_ferplus, DEFAULT_CHECKPOINT, tmp_path / "gone.pt")
    assert rc == 2 and report is None
    assert "gone.pt" in capsys.readouterr().err
