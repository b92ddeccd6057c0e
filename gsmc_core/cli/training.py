"""`gsmc train | eval | audit`: training runs, evaluation and the noisy-label audit."""

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import typing
from pathlib import Path

from gsmc_core.checkpoint import load_checkpoint, save_checkpoint
from gsmc_core.cli.outputs import refuse_replacing_weights, require_writable_output
from gsmc_core.devices import DEVICE_CHOICES, resolve_device
from gsmc_core.errors import UsageError
from gsmc_core.outputs import refuse_overwriting_inputs, same_file
from gsmc_core.review.audit import audit, report_from_scores, write_audit_csv
from gsmc_core.review.cross_val import cross_validated_scores
from gsmc_core.review.label_issues import SCORES
from gsmc_core.review.relabel import RELABEL_DATASETS, relabel
from gsmc_core.review.review_log import ReviewLog
from gsmc_core.training.calibrate import calibrate, refitted_checkpoint, unadjusted_checkpoint
from gsmc_core.training.config import (
    METHOD_DEFAULTS,
    TrainConfig,
    config_for_resume,
)
from gsmc_core.training.data.readers import DATASETS, SPLITS, checkpoint_split, read_split
from gsmc_core.training.data.samples import Split
from gsmc_core.training.evaluate import evaluate_checkpoint, robustness
from gsmc_core.training.events import BatchEvent, EpochEvent, LogEvent
from gsmc_core.training.loop import as_trained, train
from gsmc_core.training.run_folder import RunFolder
from gsmc_core.training.shifts import without_twins


def _train_overrides(args: argparse.Namespace) -> dict:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if not args.resume:
        overrides.pop("resume", None)
    return overrides


def _print_event(event) -> None:
    if isinstance(event, LogEvent):
        # one write per line: torchrun ranks share the terminal, and print() writes the text and
        # its newline separately, so two ranks' lines could run together
        sys.stdout.write(event.message + "\n")
        sys.stdout.flush()
    elif isinstance(event, BatchEvent):
        if event.batch == event.batches or event.batch % 20 == 0:
            losses = " ".join(f"{k} {v:.4f}" for k, v in event.losses.items())
            print(f"  epoch {event.epoch}/{event.epochs} batch {event.batch}/{event.batches}  "
                  f"{losses}  {event.images_per_s:.1f} img/s  eta {event.eta_s / 60:.1f} min",
                  file=sys.stderr, flush=True)
    elif isinstance(event, EpochEvent):
        m = event.metrics
        teacher = f" teacher {m['val_acc_teacher']:.4f}" if "val_acc_teacher" in m else ""
        val = f"val acc {m['val_acc']:.4f}{teacher}" if "val_acc" in m else ""
        print(f"epoch {event.epoch}/{event.epochs}: loss {m['loss']:.4f} train acc "
              f"{m['train_acc']:.4f} {val} lr {m['lr']:.2e} {m['seconds']:.0f} s "
              f"{m['images_per_s']:.1f} img/s{' *best*' if event.is_best else ''}", flush=True)


class _StopRequest(threading.Event):
    signum = 0


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


@contextlib.contextmanager
def _stop_on_signals():
    """Ctrl-C, SIGTERM and SIGHUP end training after the current batch with last.pt saved
    (as the desktop app's Stop does); a second one aborts at once without saving."""
    stop = _StopRequest()

    def request(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.signum = signum
        stop.set()
        print(f"\n{signal.Signals(signum).name}: stopping after this batch and saving last.pt, or at "
              "once while the data is still loading (again to abort without saving)",
              file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, request) for s in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def cmd_train(args: argparse.Namespace) -> int:
    overrides = _train_overrides(args)
    requested = ({**TrainConfig.settings_from_yaml(args.config), **overrides} if args.config
                 else overrides)
    if requested.get("resume"):  # --resume, or `resume: true` in the file: the run's own recipe
        if not requested.get("out"):
            raise UsageError("--resume needs --out, the run folder to continue")
        if not args.resume and not RunFolder(requested["out"]).can_resume():
            raise UsageError(f"{args.config} says resume: true, but {requested['out']} holds no run "
                             "to continue; remove that line to start a new run there")
        config = config_for_resume(requested["out"], requested)
    else:
        config = (TrainConfig.from_yaml(args.config, **overrides) if args.config
                  else TrainConfig(**overrides))
        if args.config and same_file(args.config, RunFolder(config.out).config_file):
            raise UsageError(f"--config {args.config} is the config.yaml the run writes in {config.out} "
                             "(it would be replaced, its comments lost): keep it in another folder")
    with _stop_on_signals() as stop:
        result = train(config, on_event=_print_event, should_stop=stop.is_set)
    if result.stopped_loading:
        again = (f"; continue with: gsmc train --resume --out {result.run_dir}" if result.last
                 else "")
        print(f"run folder {result.run_dir}: stopped while the data was loaded; no checkpoint or "
              f"metrics written{again}")
        return 128 + stop.signum
    if result.stopped:
        where = (f"in epoch {result.epochs_completed + 1}" if result.stopped_mid_epoch
                 else f"after epoch {result.epochs_completed}")
        print(f"run folder {result.run_dir}: stopped {where}; last.pt saved. Continue with: "
              f"gsmc train --resume --out {result.run_dir}")
        return 128 + stop.signum
    if result.last is None:
        return 0
    if not result.history and not result.stopped:
        print(f"run folder {result.run_dir}: already trained for its {result.epochs_completed} epochs; "
              "nothing to do (give a larger --epochs to continue it)")
    else:
        print(f"run folder {result.run_dir}: best validation accuracy "
              f"{result.best_val_accuracy:.4f}; best.pt and last.pt written")
    return 0


def _say(text: str, json_output: bool) -> None:
    """Progress: on stdout, or on stderr when stdout carries JSON."""
    print(text, file=sys.stderr if json_output else sys.stdout, flush=True)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1 face, got {args.limit}")
    ckpt = load_checkpoint(args.checkpoint)
    split = checkpoint_split(ckpt, args.dataset, args.data_root, args.split).subset(args.limit)
    twins = []
    if args.without_twins:
        if args.split == "train":
            raise UsageError("--without-twins leaves out the faces that are also in the training "
                             "split: give --split val or test")
        train = checkpoint_split(ckpt, args.dataset, args.data_root, "train")
        split, twins = without_twins(split, train)
        _say(f"{len(twins)} {args.split} faces with a pixel-identical training face left out", args.json)
    device = resolve_device(args.device)
    try:
        metrics = evaluate_checkpoint(ckpt, split, device, args.batch_size, args.workers, tta=args.tta)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if metrics["n"] == 0:  # an accuracy of nothing is not a result (and NaN is not JSON)
        raise UsageError(f"no {args.split} faces of {args.data_root} could be evaluated "
                         f"({metrics['skipped']} undecodable, --limit {args.limit}); nothing to report")
    metrics.pop("loss")
    metrics["twins_left_out"] = len(twins) if args.without_twins else None
    if args.shifts:
        _say(f"clean: accuracy {metrics['accuracy']:.4f}; the same faces under each shift:", args.json)
        metrics["robustness"] = robustness(
            ckpt, split, device, metrics["accuracy"], args.batch_size, args.workers, args.tta,
            on_shift=lambda name, row: _say(
                f"  {name:20s} accuracy {row['accuracy']:.4f}  mean class "
                f"{row['mean_class_accuracy']:.4f}  drop {100 * row['drop']:+.2f} points", args.json))
        worst = metrics["robustness"]["worst"]
        _say(f"worst shift: {worst['shift']} ({100 * worst['drop']:.2f} points below clean)", args.json)
    if args.json:
        print(json.dumps(metrics, allow_nan=False))
        return 0
    print(f"{args.dataset} {args.split}: {metrics['n']} samples ({metrics['skipped']} undecodable)")
    print(f"accuracy {metrics['accuracy']:.4f}   mean class accuracy "
          f"{metrics['mean_class_accuracy']:.4f}")
    for name, acc in metrics["per_class"].items():
        print(f"  {name:10s} {'-' if acc is None else f'{acc:.4f}'}")
    print("confusion matrix (rows: true, columns: predicted):")
    print("  " + " ".join(f"{c[:5]:>6s}" for c in split.classes))
    for name, row in zip(split.classes, metrics["confusion_matrix"], strict=True):
        print(f"  {' '.join(f'{v:6d}' for v in row)}  {name}")
    return 0


def _trained_on(train: Split, cfg: dict) -> Split:
    """``train`` as the run in ``cfg`` saw it: its subset and, with label noise, the labels it
    was given (calibrating on the dataset's own would use labels a noisy run never had)."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    recipe = TrainConfig(**{k: v for k, v in cfg.items() if k in known})
    if recipe.noise_file and not Path(recipe.noise_file).is_file():
        raise UsageError(f"the run trained on the labels of {recipe.noise_file}, which is not there: "
                         "calibrate where that file is")
    if recipe.label_noise:
        what = recipe.noise_file or f"{recipe.noise_kind}, rate {recipe.noise_rate:g}"
        print(f"the run trained on noisy labels ({what}): the class prior and a re-fitted head use "
              "those", flush=True)
    return as_trained(train, recipe)[0]


def cmd_calibrate(args: argparse.Namespace) -> int:
    if not 0 <= args.balance <= 2 or args.head_epochs < 1:
        raise UsageError(f"--balance must be in 0-2 (got {args.balance:g}) and --head-epochs at least 1 "
                         f"(got {args.head_epochs})")
    if not 0 <= args.max_drop <= 1:  # also refuses nan
        raise UsageError(f"--max-drop must be a fraction from 0 to 1, got {args.max_drop}")
    require_writable_output(args.out, "--out", folders_made=True)
    refuse_overwriting_inputs({"--out": args.out}, [args.checkpoint])
    refuse_replacing_weights(args.out, "--out", args.overwrite)
    ckpt = load_checkpoint(args.checkpoint)
    cfg = ckpt.train_config or {}
    dataset = args.dataset or cfg.get("dataset")
    if dataset is None:
        raise UsageError("the checkpoint does not say which dataset it was trained on: give --dataset")
    n = len(ckpt.meta.classes)
    fraction, seed, holdout = cfg.get("val_fraction", 0.1), cfg.get("seed", 0), cfg.get("holdout", "shuffle")
    train_split = read_split(dataset, args.data_root, "train", n, fraction, seed, holdout)
    val = read_split(dataset, args.data_root, "val", n, fraction, seed, holdout)
    if dataset == cfg.get("dataset"):  # the faces and labels the run trained on (its noise too)
        train_split = _trained_on(train_split, cfg)
    refuse_overwriting_inputs({"--out": args.out}, [s.source for s in (train_split, val) if s.source])
    if "fc.weight" not in ckpt.state_dict or "fc.bias" not in ckpt.state_dict:
        raise UsageError(f"{args.checkpoint} has no linear classifier (fc.weight, fc.bias) to adjust")
    if "logit_adjustment_offsets" not in ckpt.metrics and "logit_adjustment_tau" in ckpt.metrics:
        own = cfg.get("dataset")
        if own is not None and dataset != own:
            raise UsageError(f"{args.checkpoint} is calibrated already (tau "
                             f"{ckpt.metrics['logit_adjustment_tau']:g}, on {own}), by a version that did "
                             f"not record its offsets: calibrate it on {own}, or calibrate the checkpoint "
                             "it was made from")
        print(f"taking out the earlier adjustment (tau {ckpt.metrics['logit_adjustment_tau']:g}): its "
              f"offsets are rebuilt from the {dataset} training labels in {args.data_root}", flush=True)
    elif "logit_adjustment_tau" in ckpt.metrics:
        print(f"taking out the earlier adjustment (tau {ckpt.metrics['logit_adjustment_tau']:g}): "
              "the offsets it recorded", flush=True)
    ckpt = unadjusted_checkpoint(ckpt, train_split)  # a new adjustment replaces the old one
    device = resolve_device(args.device)
    if args.refit_head:
        print(f"re-fitting the classifier on the features of {len(train_split.samples)} training images "
              f"(class weights prior^-{args.balance:g}, {args.head_epochs} epochs)", flush=True)
        ckpt, refit = refitted_checkpoint(ckpt, train_split, val, device, args.balance, args.head_epochs)
        row = refit.table[refit.epoch - 1]
        print(f"classifier: epoch {refit.epoch} chosen, validation accuracy {row['accuracy']:.4f}, "
              f"mean class accuracy {row['mean_class_accuracy']:.4f}")
    adjusted, choice = calibrate(ckpt, train_split, val, device, args.max_drop)
    for i, row in enumerate(choice.table):
        if i % 2 and row["tau"] != choice.tau:
            continue
        mark = "  <- chosen" if row["tau"] == choice.tau else ""
        print(f"tau {row['tau']:.2f}: validation accuracy {row['accuracy']:.4f}, mean class accuracy "
              f"{row['mean_class_accuracy']:.4f}{mark}")
    save_checkpoint(adjusted, args.out)
    print(f"wrote {args.out} (tau {choice.tau:g}; bias offsets "
          f"{', '.join(f'{c} {o:+.2f}' for c, o in zip(ckpt.meta.classes, choice.offsets, strict=True))})")
    return 0


def cmd_crossval(args: argparse.Namespace) -> int:
    if args.folds < 2:  # one "fold" trains on every face: in-sample scores, called out-of-sample
        raise UsageError(f"--folds must be at least 2, got {args.folds} (for the run's own, "
                         "in-sample predictions use `gsmc audit`)")
    if args.csv:
        require_writable_output(args.csv, "--csv")
    refuse_overwriting_inputs({"--csv": args.csv}, RunFolder(args.run).written_files())
    base = config_for_resume(args.run, {"epochs": args.epochs} if args.epochs else {})
    base = dataclasses.replace(base, resume=False, device=args.device)
    print(f"{args.folds}-fold cross-validation of {args.run}'s recipe in {args.out} (each fold a "
          "resumable run; done folds are skipped)", flush=True)
    with _stop_on_signals() as stop:
        scores = cross_validated_scores(base, args.folds, args.out, _print_event, stop.is_set)
    if scores is None:
        print(f"stopped; run the same command to continue in {args.out}")
        return 128 + stop.signum
    args.threshold = 0.5  # the audit score's cut, when it is the score asked for
    return _print_report(report_from_scores(scores, args.score.replace("-", "_")), args,
                         "out-of-sample predictions, cross-validated")


def cmd_relabel(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.apply):  # a review log opened by the app may not exist yet; here it must
        raise UsageError(f"{args.apply}: no such decisions file; give the review's decisions.csv "
                         "(review/decisions.csv beside the model the Review tab used)")
    log = ReviewLog(args.apply, dataset=(args.dataset, args.data_root))
    if log.cut_lines:
        print(f"warning: {args.apply}: {_cut_lines(log.cut_lines)} damaged (cut short when the "
              "review was killed?) and not applied", file=sys.stderr)
    decisions = log.decisions()
    result = relabel(args.dataset, args.data_root, decisions, args.out, decided_in=args.apply)
    print(f"wrote {result.root}: {result.changed} faces relabelled, {result.removed} left out as "
          f"unusable, {result.kept} confirmed; changes in {result.root / 'changes.csv'}")
    if result.unmatched:
        print(f"warning: {len(result.unmatched)} decisions of {args.apply} name no face of "
              f"{args.data_root} and were not applied (the first: {result.unmatched[0][:80]})",
              file=sys.stderr)
    return 0


def _cut_lines(lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:5])) + (f" and {len(lines) - 5} more" if len(lines) > 5 else "")
    return f"line{'s' if len(lines) > 1 else ''} {shown} {'are' if len(lines) > 1 else 'is'}"


def cmd_audit(args: argparse.Namespace) -> int:
    if args.csv:
        require_writable_output(args.csv, "--csv")
    run = RunFolder(Path(args.checkpoint).parent)  # the checkpoint's run: its files are inputs too
    refuse_overwriting_inputs({"--csv": args.csv}, [args.checkpoint, *run.written_files()])
    report = audit(args.checkpoint, args.dataset, args.data_root, threshold=args.threshold,
                   device=args.device, score=args.score.replace("-", "_"), model=args.model,
                   tta=args.tta)
    mirror = ", each face averaged with its mirror image" if args.tta else ""
    return _print_report(report, args, f"in-sample predictions of the run's own model{mirror}")


def _print_report(report, args: argparse.Namespace, source: str) -> int:
    rule = (f"model confidence >= {args.threshold} in another class" if args.score == "audit"
            else f"confident learning, ranked by {args.score.replace('-', ' ')}")
    print(f"{len(report.flagged)} of {report.n} training samples flagged as likely mislabelled "
          f"({rule}; {source})")
    if report.note:
        print(f"note: {report.note}")
    if report.known_flips is not None:
        at_k = ", ".join(f"precision@{k} {v:.3f}" for k, v in report.precision_at_k.items())
        print(f"against the {report.known_flips} noisy labels: precision {report.precision:.3f}, "
              f"recall {report.recall:.3f}{', ' + at_k if at_k else ''}")
    for rank, s in enumerate(report.flagged[: args.top], start=1):
        mark = "" if s.injected_flip is None else ("  [flipped]" if s.injected_flip else "")
        print(f"{rank:4d}. {s.key}: labelled {s.given} ({s.p_given:.2f}), "
              f"model says {s.predicted} ({s.p_predicted:.2f}){mark}")
    if args.csv:
        refuse_overwriting_inputs({"--csv": args.csv}, [report.labels_file] if report.labels_file else [])
        write_audit_csv(report, args.csv)
        print(f"wrote {args.csv}")
    return 0


class _MethodAction(argparse.Action):
    """``--method confident-learning`` is ``--score self-confidence``; ``--method audit`` is
    ``--score audit``."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        namespace.score = "audit" if value == "audit" else "self-confidence"


def _add_ranking_options(p: argparse.ArgumentParser, default_score: str,
                          csv_flags: tuple[str, ...] = ("--csv",)) -> None:
    """What `audit` and `crossval` share: the score, how many to print, the CSV, the device."""
    p.add_argument("--score", default=default_score, choices=[s.replace("_", "-") for s in SCORES],
                   help=f"{default_score} (default): audit, or confident learning ranked by "
                   "self-confidence or normalized margin, cut by the estimated number of wrong labels")
    p.add_argument("--method", choices=("audit", "confident-learning"), action=_MethodAction,
                   dest="score", default=argparse.SUPPRESS,
                   help="audit, or confident-learning (= --score self-confidence)")
    p.add_argument("--top", type=int, default=20, help="suspects to print (default 20)")
    p.add_argument(*csv_flags, dest="csv", help="every flagged sample, ranked, to this CSV file")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)


def _add_setting_flags(p: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` setting, from its field: type, choices, help and default.
    Flags default to None, so only the settings given override the config file's."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if not meta["flag"]:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = next(t for t in (*typing.get_args(hints[f.name]), hints[f.name]) if t is not type(None))
        shown_default = f.default if f.default is not None else (
            "the method's" if f.name in METHOD_DEFAULTS["gsmc"] else None)
        said = shown_default is not None and shown_default is not False and shown_default != ""
        help_text = meta["help"] + (f" (default: {shown_default})" if said else "")
        if kind is bool:
            p.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            p.add_argument(flag, type=kind, choices=meta["choices"], default=None, help=help_text)


def add_training_commands(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model (GSMC, EAC or CE) on an expression dataset",
        description="Train with the GSMC recipe or a baseline. Settings come from --config "
        "(YAML with the same names, underscores for dashes) and flags, flags winning. "
        "Runs unchanged under `torchrun --nproc_per_node N` (DDP; --batch-size is per process).",
    )
    p.add_argument("--config", help="YAML file of settings")
    _add_setting_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "calibrate", help="adjust a model for class imbalance, chosen on the validation split",
        description="Optionally re-fit the classifier with class weights (--refit-head), then "
        "logit adjustment (Menon et al. 2021): subtract tau x log(class prior of the "
        "training labels) from the logits, tau chosen on the validation split as the highest mean "
        "class accuracy within --max-drop of the plain accuracy; written into the classifier "
        "bias of a new checkpoint (CAMs unchanged).")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data-root", required=True)
    p.add_argument("--dataset", choices=DATASETS, help="default: the one the checkpoint was trained on")
    p.add_argument("--max-drop", type=float, default=0.01,
                   help="accuracy the adjustment may cost on validation (default 0.01)")
    p.add_argument("--refit-head", action="store_true",
                   help="first train the linear classifier again on the frozen backbone's features "
                   "of the training images, rare classes weighted up (Kang et al. 2020); the epoch "
                   "with the best validation accuracy + mean class accuracy is kept")
    p.add_argument("--balance", type=float, default=0.25, metavar="POWER",
                   help="with --refit-head: class weights prior^-POWER (0 none, 1 fully balanced; "
                   "default 0.25)")
    p.add_argument("--head-epochs", type=int, default=30, help="with --refit-head (default 30)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--out", required=True, help="the adjusted checkpoint to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out when it already holds weights (refused otherwise)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("eval", help="accuracy, per-class accuracy and confusion matrix")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--limit", type=int)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--json", action="store_true")
    p.add_argument("--tta", action="store_true",
                   help="average each face with its mirror image (flip test-time augmentation)")
    p.add_argument("--shifts", action="store_true",
                   help="also the accuracy under each shift a studio or webcam brings (crop, roll, "
                        "gamma, contrast, blur, JPEG, half the face greyed) and the worst of them")
    p.add_argument("--without-twins", action="store_true",
                   help="leave out the faces whose pixels equal a training face's")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("audit", help="rank training samples that are likely mislabelled")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-root", required=True)
    p.add_argument("--threshold", type=float, default=0.5, help="audit score: the confidence in "
                   "another class that flags a sample (default 0.5)")
    p.add_argument("--model", default="auto", choices=("auto", "teacher", "student", "exported"),
                   help="which network scores: auto = the EMA teacher when the run has one")
    p.add_argument("--tta", action="store_true",
                   help="average each face with its mirror image (two views: steadier scores)")
    _add_ranking_options(p, default_score="audit", csv_flags=("--csv", "--out"))
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("crossval", help="out-of-sample label-issue scores by k-fold cross-validation",
                       description="Train the run's own recipe k times, each without one fold of its "
                       "training faces, score each fold with the model that never saw it, and rank "
                       "the labels as `gsmc audit` does (resumable: run it again to continue).")
    p.add_argument("--run", required=True, help="a run folder (its recipe: config.yaml, else last.pt)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, help="epochs per fold (default: the run's)")
    p.add_argument("--out", required=True, help="folder for the fold runs")
    _add_ranking_options(p, default_score="normalized-margin")
    p.set_defaults(func=cmd_crossval)

    p = sub.add_parser("relabel", help="write a cleaned copy of a dataset from review decisions",
                       description="Apply a label review's decisions (the append-only CSV the "
                       "Review tab writes) to a new copy of the dataset in its own format; the "
                       "original files are never modified.")
    p.add_argument("--apply", required=True, metavar="DECISIONS", help="the review's decisions CSV")
    p.add_argument("--dataset", required=True, choices=RELABEL_DATASETS)
    p.add_argument("--data-root", required=True)
    p.add_argument("--out", required=True, help="new folder for the cleaned dataset")
    p.set_defaults(func=cmd_relabel)
