"""Label-noise study: CE vs EAC vs GSMC on FERPlus where label noise bites (issue 24).

    python scripts/noise_study.py run ce_sym30_s0 --data-root ../shared/data/ferplus --out ~/runs/study
    python scripts/noise_study.py summary --data-root ../shared/data/ferplus --out ~/runs/study

Each run (``RUNS``) trains as a user of the Training tab would, on a fixed 10,000-face subset of
FER2013Train with noisy labels, and selects its exported model on **noisy** validation labels
(the trainer's ``noisy_validation``: a user has no clean oracle). After every epoch this script
also scores every model the run offers (the student, and GSMC's teacher) on the clean
validation split and on the clean test split, so one run gives the test accuracy of the model
chosen on clean validation, of the one chosen on noisy validation, and the mean of the last five
epochs. ``run`` continues a run where it stopped (kill it any time); ``summary`` writes
``study.json``, ``summary.json``, ``table.md`` and the curves of the runs finished so far.
"""

import argparse
import csv
import json
import statistics
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from gsmc_core.atomic import write_atomic
from gsmc_core.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from gsmc_core.devices import resolve_device
from gsmc_core.review.audit import score_training_set
from gsmc_core.review.label_issues import rank_suspects
from gsmc_core.review.review_log import ReviewLog
from gsmc_core.training.config import RECOMMENDED_SCHEDULER, TrainConfig, TrainingError
from gsmc_core.training.data.noise import given_labels
from gsmc_core.training.data.preload import MemoryLoader, preload_split
from gsmc_core.training.data.readers import read_split
from gsmc_core.training.data.samples import DataError, Split
from gsmc_core.training.evaluate import evaluate_checkpoint, predict_loader
from gsmc_core.training.events import EpochEvent, LogEvent
from gsmc_core.training.loop import train
from gsmc_core.training.run_folder import RunFolder
from gsmc_core.training.run_lock import RunFolderBusy, RunLock

LAST_EPOCHS = 5
# The regime: the Training tab's default recipe (each method's published optimiser, a cosine
# schedule over the run) at 49 px (4x4 CAMs, mirror-exact; the faces are 48 px), long enough
# that CE memorises.
STUDY = {"limit_train": 10_000, "input_size": 49, "output_stride": 16, "epochs": 40}


@dataclass(frozen=True)
class Run:
    method: str
    noise: str  # "sym30" (30 % symmetric) or "annotator" (one FERPlus annotator's vote)
    seed: int = 0
    settings: dict = field(default_factory=dict)  # anything else that differs (ablations)
    variant: str = ""
    reviews: str = ""  # a finished run whose suspects are reviewed first (see ``review_labels``)

    @property
    def name(self) -> str:
        return f"{self.method}{self.variant}_{self.noise}_s{self.seed}"


# one colour a method (and ablation); the line style says the noise and seed (``curves``)
RUN_COLOURS = {"ce": "tab:blue", "gsmc": "tab:red", "eac": "tab:green", "gsmc_ac": "tab:orange",
               "gsmc_kl": "tab:purple", "gsmc_ema": "tab:brown", "ce_reviewed": "tab:cyan"}

RUNS = {r.name: r for r in [
    Run("ce", "sym30"), Run("gsmc", "sym30"), Run("eac", "sym30"),
    Run("gsmc", "sym30", settings={"lambda_kl": 0.0}, variant="_ac"),  # CE + consistency only
    Run("gsmc", "sym30", settings={"lambda_ac": 0.0}, variant="_kl"),  # CE + teacher KL only
    Run("ce", "annotator"), Run("gsmc", "annotator"), Run("eac", "annotator"),
    Run("ce", "sym30", 1), Run("gsmc", "sym30", 1), Run("eac", "sym30", 1),
    # the label-review loop (issue 26): CE again, on ce_sym30_s0's labels after a review
    Run("ce", "sym30", variant="_reviewed", reviews="ce_sym30_s0"),
    # beyond the issue's two ablations: CE with the EMA teacher alone (averaged and exported,
    # neither loss term), which separates the weight average from both of GSMC's losses
    Run("gsmc", "sym30", settings={"lambda_kl": 0.0, "lambda_ac": 0.0}, variant="_ema"),
]}
REVIEW_SCORE = "self_confidence"  # confident learning; its own cut says how many to review


def config_for(run: Run, args: argparse.Namespace) -> TrainConfig:
    noise = ({"noise_rate": 0.3} if run.noise == "sym30" else {"noise_kind": "annotator"})
    return TrainConfig(
        method=run.method, dataset="ferplus", data_root=args.data_root, epochs=args.epochs,
        input_size=STUDY["input_size"], output_stride=STUDY["output_stride"],
        scheduler=RECOMMENDED_SCHEDULER[run.method],
        noise_seed=run.seed, seed=run.seed, noisy_validation=True,
        limit_train=args.limit_train, limit_eval=args.limit_eval, device="cpu", workers=0,
        preload=True, threads=1, out=str(Path(args.out) / run.name),
        resume=RunFolder(Path(args.out) / run.name).last.exists(),
        **noise, **run.settings,
    )


def candidates(ckpt: Checkpoint) -> dict[str, Checkpoint]:
    """The models a run offers at an epoch: the student, and GSMC's teacher."""
    state = ckpt.training_state
    found = {"student": replace(ckpt, state_dict=state["student"])}
    if state.get("teacher"):
        found["teacher"] = replace(ckpt, state_dict={k.removeprefix("module."): v
                                                     for k, v in state["teacher"].items()
                                                     if k.startswith("module.")})
    return found


def accuracy(ckpt: Checkpoint, loader: MemoryLoader, device: torch.device) -> float:
    preds = predict_loader(ckpt.build_model().to(device), loader, device)
    return float((preds.logits.argmax(1) == preds.labels).mean())


def review_labels(run: Run, run_dir: Path, args: argparse.Namespace) -> Path:
    """The label-review loop with the majority vote standing in for the person: score the
    training faces of ``run.reviews`` with its validation-chosen model (in-sample), review its
    confident-learning suspects worst first through the Review tab's own decision log (the
    majority label set, or the given label kept), and write the labels to train on: the given
    (noisy) ones with the decisions applied, as a ``noise_file``. Done once; the file is kept."""
    labels_file = run_dir / "reviewed_labels.txt"
    if labels_file.exists():
        return labels_file
    source = Path(args.out) / run.reviews
    with open(RunFolder(source).train_labels, newline="") as f:
        rows = {r["key"]: r for r in csv.DictReader(f)}
    scored = score_training_set(RunFolder(source).best, "ferplus", args.data_root, "cpu", model="exported")
    suspects = rank_suspects(scored.probs, scored.given, REVIEW_SCORE)
    classes = scored.split.classes
    (run_dir / "review").mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "review" / "decisions.csv"
    log_path.unlink(missing_ok=True)  # an interrupted review starts over: it takes seconds
    log = ReviewLog(log_path, who="majority vote")
    for r in suspects.order[: suspects.cut]:
        key = scored.split.samples[scored.indices[r]].key
        row = rows[key]
        assert row["noisy_label"] == classes[scored.given[r]], key  # the labels the run trained on
        if row["clean_label"] == row["noisy_label"]:
            log.keep(key, float(scored.probs[r, scored.given[r]]))
        else:
            log.set_label(key, row["clean_label"], float(scored.probs[r, scored.given[r]]))
    decisions = ReviewLog(log_path).decisions()  # read back, as an export would
    labels = {k: (decisions[k].label if k in decisions and decisions[k].action == "set"
                  else r["noisy_label"]) for k, r in rows.items()}
    flips = {k for k, r in rows.items() if r["flipped"] == "1"}
    stats = {"score": REVIEW_SCORE, "model": f"{run.reviews}/best.pt (in-sample)",
             "reviewed": len(decisions),
             "changed": sum(d.action == "set" for d in decisions.values()),
             "kept": sum(d.action == "keep" for d in decisions.values()),
             "noisy_before": len(flips),
             "noisy_after": sum(labels[k] != rows[k]["clean_label"] for k in rows)}
    (run_dir / "review" / "review.json").write_text(json.dumps(stats, indent=2))
    write_atomic(labels_file, lambda f: f.writelines(f"{k} {v}\n" for k, v in labels.items()))
    print(f"{run.name}: reviewed {stats['reviewed']} suspects of {run.reviews} ({stats['changed']} "
          f"changed, {stats['kept']} kept): {stats['noisy_before']} -> {stats['noisy_after']} wrong "
          "labels", flush=True)
    return labels_file


def run_one(run: Run, args: argparse.Namespace) -> None:
    run_dir = Path(args.out) / run.name
    config = config_for(run, args)
    if run.reviews:
        config = replace(config, noise_file=str(review_labels(run, run_dir, args)))
    device = resolve_device("cpu")
    splits = {"val_clean": read_split("ferplus", args.data_root, "val").subset(args.limit_eval),
              "test": read_split("ferplus", args.data_root, "test").subset(args.limit_eval)}
    loaders: dict[str, MemoryLoader] = {}  # decoded once, at the first epoch's end
    scores_file = run_dir / "scores.json"
    scores: dict = {}  # read under the lock below

    def score(ckpt) -> dict:
        """Every model ``ckpt`` offers, on clean validation and test, kept in scores.json."""
        if not loaders:
            loaders.update({k: MemoryLoader(preload_split(split, ckpt.meta), ckpt.meta, 256)
                            for k, split in splits.items()})
        epoch_scores = {name: {k: accuracy(c, loader, device) for k, loader in loaders.items()}
                        for name, c in candidates(ckpt).items()}
        scores[str(ckpt.training_state["epoch"])] = epoch_scores
        write_atomic(scores_file, lambda f: json.dump(scores, f, indent=1))  # a kill keeps the old one
        return epoch_scores

    # a run stopped after saving an epoch but before scoring it: last.pt is still that epoch
    # (under the folder's lock: another queue training this run raises RunFolderBusy here)
    last = RunFolder(run_dir).last
    with RunLock(run_dir):
        scores.update(json.loads(scores_file.read_text()) if scores_file.exists() else {})
        if last.is_file() and str((ckpt := load_checkpoint(last)).training_state["epoch"]) not in scores:
            score(ckpt)

    def on_event(event) -> None:
        if isinstance(event, LogEvent):
            print(f"  {event.message}", flush=True)
        elif isinstance(event, EpochEvent):
            epoch_scores = score(load_checkpoint(last))
            m = event.metrics
            print(f"{run.name} epoch {event.epoch}/{event.epochs}: train (given labels) "
                  f"{m['train_acc']:.4f}, val (noisy) {m['val_acc']:.4f}, "
                  + ", ".join(f"{k} clean val {v['val_clean']:.4f} test {v['test']:.4f}"
                              for k, v in epoch_scores.items())
                  + f" ({m['images_per_s']:.0f} img/s, {m['seconds']:.0f} s)", flush=True)

    result = train(config, on_event)
    if result.stopped or result.epochs_completed < args.epochs:
        return
    (run_dir / "result.json").write_text(json.dumps(summarise_run(run, run_dir, args), indent=2))
    print(f"{run.name}: finished, {run_dir / 'result.json'}", flush=True)


def fit_of_training_labels(run_dir: Path, data_root: str, device: torch.device) -> dict:
    """How the final exported model (last.pt's weights) labels the training faces, without
    augmentation: the share of all given (noisy) labels it reproduces, and of the faces whose
    given label differs from the majority, the share it gives the noisy label / the true one."""
    run = RunFolder(run_dir)
    ckpt = load_checkpoint(run.last)
    with open(run.train_labels, newline="") as f:
        rows = list(csv.DictReader(f))
    train_split = read_split("ferplus", data_root, "train")
    by_key = {s.key: s for s in train_split.samples}
    faces = Split("ferplus", "train", train_split.classes, [by_key[r["key"]] for r in rows])
    index = train_split.classes.index
    noisy = faces.with_labels([index(r["noisy_label"]) for r in rows])
    flipped = [i for i, r in enumerate(rows) if r["flipped"] == "1"]
    sub = Split("ferplus", "train", faces.classes, [faces.samples[i] for i in flipped])
    return {
        "given_labels_reproduced": evaluate_checkpoint(ckpt, noisy, device)["accuracy"],
        "noisy_faces": len(flipped),
        "noisy_label_reproduced": evaluate_checkpoint(
            ckpt, sub.with_labels([index(rows[i]["noisy_label"]) for i in flipped]), device)["accuracy"],
        "true_label_predicted": evaluate_checkpoint(
            ckpt, sub.with_labels([index(rows[i]["clean_label"]) for i in flipped]), device)["accuracy"],
    }


def summarise_run(run: Run, run_dir: Path, args: argparse.Namespace) -> dict:
    scores = {int(k): v for k, v in json.loads((run_dir / "scores.json").read_text()).items()}
    metrics = {int(r["epoch"]): r for r in RunFolder(run_dir).history()}
    epochs = sorted(metrics)

    def noisy_val(epoch: int, name: str) -> float:
        column = "val_acc" if name == "student" else f"val_acc_{name}"
        return float(metrics[epoch][column])

    # an epoch whose checkpoint was replaced before it was scored (a run stopped in between, before
    # run_one scored such a last.pt on resuming) cannot be chosen: said in the result
    unscored = [e for e in epochs if e not in scores]
    offered = [(e, name) for e in epochs if e in scores for name in scores[e]]
    clean_choice = max(offered, key=lambda en: (scores[en[0]][en[1]]["val_clean"], en[1] == "student"))
    noisy_choice = max(offered, key=lambda en: (noisy_val(*en), en[1] == "student"))
    at_unscored = [noisy_val(e, name) for e in unscored for name in ("student", "teacher")
                   if metrics[e].get("val_acc" if name == "student" else f"val_acc_{name}")]
    if any(v > noisy_val(*noisy_choice) for v in at_unscored):
        raise SystemExit(f"{run.name}: the noisy-validation choice is among epochs {unscored}, never scored")
    exported = [(e, metrics[e]["selected"]) for e in epochs[-LAST_EPOCHS:]]
    if any(e in unscored for e, _ in exported):
        raise SystemExit(f"{run.name}: epochs {unscored} were never scored, some of the last {LAST_EPOCHS}")
    return {
        "run": run.name, "method": run.method, "variant": run.variant, "noise": run.noise,
        "seed": run.seed, "settings": run.settings, "epochs": len(epochs), "unscored_epochs": unscored,
        "test_clean_val_choice": scores[clean_choice[0]][clean_choice[1]]["test"],
        "clean_val_choice": {"epoch": clean_choice[0], "model": clean_choice[1]},
        "test_noisy_val_choice": scores[noisy_choice[0]][noisy_choice[1]]["test"],
        "noisy_val_choice": {"epoch": noisy_choice[0], "model": noisy_choice[1]},
        "test_last5": statistics.mean(scores[e][name]["test"] for e, name in exported),
        "train_acc_given_labels_last": float(metrics[epochs[-1]]["train_acc"]),
        "fit": fit_of_training_labels(run_dir, args.data_root, resolve_device("cpu")),
        "train_seconds": round(sum(float(metrics[e]["seconds"]) for e in epochs), 1),
    }


def annotator_noise_rates(data_root: str, limit_train: int) -> dict:
    """How often one annotator's vote differs from the majority label, overall and per class,
    on the study's 10,000 training faces (seed 0) and on the validation split."""
    train_split = read_split("ferplus", data_root, "train").subset(limit_train, 0)
    out = {}
    for name, split, seed in (("train", train_split, 0), ("val", read_split("ferplus", data_root, "val"), 1)):
        clean = np.array(split.labels())
        drawn = np.array(given_labels(split, "annotator", 0.0, seed))
        out[name] = {"overall": float((clean != drawn).mean()),
                     "by_class": {c: float((drawn[clean == i] != i).mean())
                                  for i, c in enumerate(split.classes) if (clean == i).any()}}
    return out


def retrain_figures(out: Path, results: list[dict]) -> dict:
    """Test accuracy (%) before and after the label review: the reviewed run beside the run
    whose labels were reviewed, with what the review did."""
    found = {}
    for r in results:
        run = RUNS[r["run"]]
        if run.reviews:
            found["after"] = r
            found["before"] = next((b for b in results if b["run"] == run.reviews), None)
            found["review"] = json.loads((out / run.name / "review" / "review.json").read_text())
    if not found.get("before"):
        return {}
    keys = {"clean_val_choice": "test_clean_val_choice", "noisyval": "test_noisy_val_choice",
            "last5": "test_last5"}
    return {"before": {k: pct(found["before"][v]) for k, v in keys.items()},
            "after": {k: pct(found["after"][v]) for k, v in keys.items()},
            "review": found["review"]}


def plot_curves(out: Path, path: Path) -> list[str]:
    """Test accuracy by epoch of every run with scores so far (the model each epoch exported,
    solid; GSMC's other network, dotted), and accuracy on the given (noisy) training labels
    (the climb that means memorising). Returns the runs drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name in RUNS:
        run_dir = out / name
        if not (run_dir / "scores.json").is_file():
            continue
        scores = {int(k): v for k, v in json.loads((run_dir / "scores.json").read_text()).items()}
        metrics = {int(r["epoch"]): r for r in RunFolder(run_dir).history()}
        epochs = sorted(e for e in scores if e in metrics)
        if not epochs:
            continue
        exported = [scores[e][metrics[e]["selected"]]["test"] * 100 for e in epochs]
        run = RUNS[name]
        style = "--" if run.noise == "annotator" else "-." if run.seed else "-"
        line, = left.plot(epochs, exported, style, label=name, color=RUN_COLOURS[run.method + run.variant])
        if all("teacher" in scores[e] for e in epochs):
            other = [scores[e]["student" if metrics[e]["selected"] == "teacher" else "teacher"]["test"] * 100
                     for e in epochs]
            left.plot(epochs, other, ":", color=line.get_color())
        right.plot(epochs, [float(metrics[e]["train_acc"]) * 100 for e in epochs], style,
                   color=line.get_color(), label=name)
        drawn.append(name)
    left.set(title="Test accuracy of the exported model (dotted: GSMC's other network)\n"
                   "solid: 30 % symmetric, seed 0; dash-dot: seed 1; dashed: one annotator",
             xlabel="epoch", ylabel="%")
    right.set(title="Accuracy on the given (noisy) training labels, while training", xlabel="epoch",
              ylabel="%")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def pct(x: float) -> float:
    return round(100 * x, 2)


def summary(args: argparse.Namespace) -> int:
    out = Path(args.out)
    results = [json.loads((out / name / "result.json").read_text()) for name in RUNS
               if (out / name / "result.json").exists()]
    unfinished = [name for name in RUNS if not (out / name / "result.json").exists()]

    def mean_of(method: str, noise: str, key: str, variant: str = "", fit: bool = False) -> float | None:
        rows = [r for r in results if (r["method"], r["noise"], r["variant"]) == (method, noise, variant)]
        if not rows:
            return None
        return pct(statistics.mean(r["fit"][key] if fit else r[key] for r in rows))

    def by_method(noise: str, key: str, fit: bool = False) -> dict:
        return {m: mean_of(m, noise, key, fit=fit) for m in ("ce", "eac", "gsmc")}

    rates = annotator_noise_rates(args.data_root, args.limit_train)
    summary = {
        "train_faces": args.limit_train, "cam_size": (STUDY["input_size"] - 1) // 16 + 1,
        "epochs": args.epochs, "seeds": sorted({r["seed"] for r in results if r["noise"] == "sym30"}),
        # each method's figures are the mean over its finished seeds, listed here
        "noise30_seeds": {m: sorted(r["seed"] for r in results
                                    if (r["method"], r["noise"], r["variant"]) == (m, "sym30", ""))
                          for m in ("ce", "eac", "gsmc")},
        "noise30": by_method("sym30", "test_clean_val_choice"),
        "noise30_noisyval": by_method("sym30", "test_noisy_val_choice"),
        "noise30_last5": by_method("sym30", "test_last5"),
        "memorised30": by_method("sym30", "noisy_label_reproduced", fit=True),
        "annotator": {"noise_rate": pct(rates["train"]["overall"]),
                      "noise_rate_by_class": {c: pct(v) for c, v in rates["train"]["by_class"].items()},
                      "noisyval": by_method("annotator", "test_noisy_val_choice"),
                      "cleanval": by_method("annotator", "test_clean_val_choice"),
                      "last5": by_method("annotator", "test_last5"),
                      "memorised": by_method("annotator", "noisy_label_reproduced", fit=True)},
        "ablation30_last5": {"ce_ac": mean_of("gsmc", "sym30", "test_last5", "_ac"),
                             "ce_kl": mean_of("gsmc", "sym30", "test_last5", "_kl"),
                             "ce_ema": mean_of("gsmc", "sym30", "test_last5", "_ema")},
        "retrain30": retrain_figures(out, results),
        "unfinished": unfinished,
        "note": "null: the run has not finished yet (scripts/noise_study.py resumes it); 'unfinished' "
                "lists them; the noise30 figures are means over the seeds in noise30_seeds. "
                f"{args.limit_train:,} FERPlus faces, {STUDY['input_size']} px, {args.epochs} epochs, "
                "the Training tab's recipe; docs/results.md section 1.",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "study.json").write_text(json.dumps({"study": STUDY, "results": results,
                                                "annotator_noise": rates}, indent=2))
    lines = ["| run | clean-val choice | noisy-val choice | last 5 | given labels fitted | "
             "noisy labels reproduced / true predicted |", "|---|---|---|---|---|---|"]
    for r in results:
        fit = r["fit"]
        lines.append(f"| {r['run']} | {pct(r['test_clean_val_choice'])} | "
                     f"{pct(r['test_noisy_val_choice'])} | {pct(r['test_last5'])} | "
                     f"{pct(fit['given_labels_reproduced'])} | {pct(fit['noisy_label_reproduced'])} / "
                     f"{pct(fit['true_label_predicted'])} |")
    lines.append(f"\nUnfinished: {', '.join(unfinished) or 'none'}")
    drawn = plot_curves(out, out / "curves.png")
    lines.append(f"Curves ({', '.join(drawn)}): {out / 'curves.png'}")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps(summary, indent=2))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["run", "summary", "list"])
    p.add_argument("runs", nargs="*", help=f"run names for `run`: {', '.join(RUNS)}")
    p.add_argument("--data-root", help="FERPlus root (Microsoft layout); needed by run and summary")
    p.add_argument("--out", default="runs/noise_study", help="study folder (outside git)")
    p.add_argument("--epochs", type=int, default=STUDY["epochs"])
    p.add_argument("--limit-train", type=int, default=STUDY["limit_train"],
                   help="training faces (a smaller study is a smoke test, not the study)")
    p.add_argument("--limit-eval", type=int, help="validation/test faces scored (smoke tests)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "list":
        print("\n".join(RUNS))
        return 0
    if not args.data_root:
        print(f"noise_study: {args.command} needs --data-root (the FERPlus folder)", file=sys.stderr)
        return 2
    unknown = [r for r in args.runs if r not in RUNS]
    if args.command == "run" and (unknown or not args.runs):
        print(f"noise_study: name runs from: {', '.join(RUNS)} (unknown: {unknown})", file=sys.stderr)
        return 2
    try:
        if args.command == "summary":
            return summary(args)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        for name in args.runs:
            if (Path(args.out) / name / "result.json").exists():
                print(f"{name}: finished before, skipped", flush=True)
                continue
            try:
                run_one(RUNS[name], args)
            except RunFolderBusy as e:  # another queue is training it: take the next one
                print(f"{name}: skipped, {e}", flush=True)
    except (CheckpointError, DataError, TrainingError) as e:
        print(f"noise_study: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
