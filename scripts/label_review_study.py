"""How well each scoring method finds the wrong labels of a run (issue 26).

    python scripts/label_review_study.py --data-root ../shared/data/ferplus \
        --runs ~/runs/study/ce_sym30_s0 ~/runs/study/gsmc_sym30_s0 --out docs/results/label_review.json

For every run folder (trained on noisy labels, so the wrong ones are known: injected flips, or
one annotator's vote that disagrees with the majority) and every network it offers (the final
exported weights, the validation-chosen best.pt, GSMC's teacher and student; each also averaged
with the mirror image), the in-sample probabilities on its training faces are ranked by each
score (``label_issues.SCORES``): precision of the top 100 / 500 / 1,000 and precision and recall
at the method's own cut. With ``--crossval DIR`` the out-of-sample probabilities of ``gsmc
crossval --run RUN --folds K --out DIR/<run name>`` are ranked too. Writes the JSON summary and
prints a table.
"""

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from gsmc_core.checkpoint import load_checkpoint
from gsmc_core.review.audit import score_training_set
from gsmc_core.review.cross_val import cross_validated_scores
from gsmc_core.review.label_issues import SCORES, precision_recall, rank_suspects
from gsmc_core.training.config import config_for_resume
from gsmc_core.training.run_folder import RunFolder


def noise_of(cfg: dict) -> str:
    """The summary key of a run's label noise (its training config): "annotator" or "noise30"
    (30 % symmetric)."""
    return "annotator" if cfg.get("noise_kind") == "annotator" else f"noise{round(100 * cfg['noise_rate'])}"


def figures_for_run(run: Path, data_root: str) -> tuple[str, int, dict]:
    cfg = load_checkpoint(RunFolder(run).last).train_config
    kind = noise_of(cfg)
    # the final model (and GSMC's teacher and student in it), and the one chosen on validation
    # each also averaged with the mirror image ("+mirror"): GSMC trains its maps to agree
    # under the flip, so the two views are one signal it offers
    folder = RunFolder(run)
    models = [(folder.last, "exported"), (folder.best, "exported")]
    if cfg.get("method") == "gsmc":
        models += [(folder.last, "teacher"), (folder.last, "student")]
    out = {}
    for (file, model), tta in itertools.product(models, (False, True)):
        scored = score_training_set(file, cfg["dataset"], data_root, "cpu", model=model, tta=tta)
        wrong = np.array([int(i) in scored.flips for i in scored.indices])
        for score in SCORES:
            suspects = rank_suspects(scored.probs, scored.given, score)
            which = "final" if file == folder.last else "best-val"
            name = f"{score}/{cfg['method']}-{which}-{model}{'+mirror' if tta else ''}/in-sample"
            out[name] = {k: (round(v, 4) if isinstance(v, float) else v)
                         for k, v in precision_recall(suspects, wrong).items()}
            print(f"{run.name:22s} {name:45s} " + " ".join(f"{k} {v}" for k, v in out[name].items()),
                  flush=True)
    return kind, len(scored.given), out


def crossval_figures(run: Path, folder: Path, folds: int) -> dict:
    """The same figures from out-of-sample probabilities: the ``gsmc crossval --run RUN --folds
    K --out FOLDER`` fold runs (trained here if missing; done folds are only read)."""
    epochs = int(yaml.safe_load(RunFolder(folder / "fold0").config_file.read_text())["epochs"])
    base = dataclasses.replace(config_for_resume(run, {"epochs": epochs}), resume=False, device="cpu")
    scored = cross_validated_scores(base, folds, folder)
    wrong = np.array([int(i) in scored.flips for i in scored.indices])
    out = {}
    for score in SCORES:
        name = f"{score}/{base.method}-{folds}fold-{epochs}epochs-best-val/cross-validated"
        suspects = rank_suspects(scored.probs, scored.given, score)
        out[name] = {k: (round(v, 4) if isinstance(v, float) else v)
                     for k, v in precision_recall(suspects, wrong).items()}
        print(f"{run.name:22s} {name:45s} " + " ".join(f"{k} {v}" for k, v in out[name].items()),
              flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--runs", nargs="+", required=True, type=Path)
    p.add_argument("--out", type=Path, help="JSON summary to write (merged into an existing one)")
    p.add_argument("--crossval", type=Path, help="folder of `gsmc crossval` fold runs, one "
                   "subfolder per run (DIR/<run name>/fold0, ...): adds cross-validated figures")
    p.add_argument("--folds", type=int, default=3, help="folds of those runs (default 3)")
    p.add_argument("--crossval-only", action="store_true",
                   help="only the cross-validated figures (the in-sample ones are already in --out)")
    args = p.parse_args(argv)
    if args.crossval_only and args.crossval is None:
        p.error("--crossval-only needs --crossval")
    summary = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    for run in args.runs:
        if args.crossval_only:
            kind, figures = noise_of(load_checkpoint(RunFolder(run).last).train_config), {}
        else:
            kind, summary["train_faces"], figures = figures_for_run(run, args.data_root)
        if args.crossval is not None and (args.crossval / run.name).is_dir():
            figures.update(crossval_figures(run, args.crossval / run.name, args.folds))
        summary.setdefault(kind, {}).update(figures)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
