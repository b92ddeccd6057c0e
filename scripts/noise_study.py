"""Label-noise study: CE vs EAC vs GSMC on FERPlus with injected symmetric noise.

    python scripts/noise_study.py --data-root ../shared/data/ferplus --out runs/noise_study

Every (method, noise rate) run trains with the same budget, input size, batch size, optimiser
and schedule, selects on the clean validation split, and is scored on the clean test split: the
best-by-validation checkpoint, and the mean test accuracy of the last five epochs. Finished runs
are skipped and interrupted ones resumed, so the study can be restarted. Writes ``study.json``
and ``table.md`` in the output folder, and the noisy-label audit of the GSMC run at the highest
noise rate (precision/recall of the flagged samples against the injected flips).
"""

import argparse
import csv
import dataclasses
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

from gsmc_core.audit import audit
from gsmc_core.checkpoint import CheckpointError, load_checkpoint
from gsmc_core.data.readers import read_split
from gsmc_core.data.samples import DataError, Split
from gsmc_core.devices import resolve_device
from gsmc_core.evaluate import evaluate_checkpoint
from gsmc_core.train import train
from gsmc_core.train_config import TrainConfig, TrainingError
from gsmc_core.train_events import EpochEvent, LogEvent

LAST_EPOCHS = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="FERPlus root (Microsoft layout)")
    p.add_argument("--out", default="runs/noise_study", help="study folder (default runs/noise_study)")
    p.add_argument("--methods", nargs="+", default=["ce", "eac", "gsmc"])
    p.add_argument("--rates", nargs="+", type=float, default=[0.0, 0.1, 0.2, 0.3])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--limit-train", type=int, help="train on a fixed random subset of this size")
    p.add_argument("--limit-eval", type=int,
                   help="select on a fixed random subset of the validation split (test stays whole)")
    p.add_argument("--input-size", type=int, default=112)
    p.add_argument("--output-stride", type=int, default=16)
    # optimiser settings: each method's published recipe unless given (then the same for all)
    p.add_argument("--batch-size", type=int, help="default: each method's published batch size")
    p.add_argument("--lr", type=float, help="default: each method's published learning rate")
    p.add_argument("--weight-decay", type=float, help="default: each method's published weight decay")
    p.add_argument("--scheduler", choices=["step", "exp", "cosine"],
                   help="default: each method's published schedule")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--init", help="backbone initialisation (a `gsmc import-weights` file), for every run")
    p.add_argument("--ema-alpha", type=float, help="GSMC teacher EMA ceiling (trainer default 0.999)")
    p.add_argument("--eac-lambda", type=float, help="EAC attention weight (trainer default 5)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="training seeds; each also draws its own label noise (noise seed + seed)")
    p.add_argument("--noisy-val-gsmc", action="store_true",
                   help="also one GSMC run per noisy rate whose validation labels carry the same noise")
    p.add_argument("--preload", action="store_true", help="decode the data once into memory (fast)")
    p.add_argument("--threads", type=int, help="CPU threads per training process")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    return p.parse_args(argv)


def fit_of_flipped(run_dir: Path, data_root: str, device: torch.device) -> dict | None:
    """How the run's final model labels the training faces whose labels were flipped: the share
    it predicts as the injected (wrong) label, i.e. memorised noise, and as the true label. For
    the exported weights and, for GSMC (whose export may be the EMA teacher), the student too."""
    labels_file = run_dir / "train_labels.csv"  # written by runs with injected noise
    if not labels_file.exists():
        return None
    with open(labels_file, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["flipped"] == "1"]
    if not rows:
        return None
    train = read_split("ferplus", data_root, "train")
    by_key = {s.key: s for s in train.samples}
    flipped = Split(train.dataset, train.name, train.classes, [by_key[r["key"]] for r in rows])
    index = train.classes.index
    given = flipped.with_labels([index(r["noisy_label"]) for r in rows])
    true = flipped.with_labels([index(r["clean_label"]) for r in rows])
    ckpt = load_checkpoint(run_dir / "last.pt")
    models = {"exported": ckpt}
    if ckpt.train_config.get("method") == "gsmc":
        models["student"] = dataclasses.replace(ckpt, state_dict=ckpt.training_state["student"])
    fit: dict = {"flipped": len(rows)}
    for name, model in models.items():
        fit[name] = {"predicts_injected_label": evaluate_checkpoint(model, given, device)["accuracy"],
                     "predicts_true_label": evaluate_checkpoint(model, true, device)["accuracy"]}
    return fit


def run_name(method: str, rate: float, seed: int, noisy_val: bool = False) -> str:
    return (f"{method}_noise{round(rate * 100):02d}" + ("_noisyval" if noisy_val else "")
            + (f"_seed{seed}" if seed else ""))


def run_one(args: argparse.Namespace, method: str, rate: float, test_split, seed: int = 0,
            noisy_val: bool = False) -> dict:
    run_dir = Path(args.out) / run_name(method, rate, seed, noisy_val)
    result_file = run_dir / "result.json"
    if result_file.exists():
        print(f"{run_dir.name}: done before, skipped", flush=True)
        return json.loads(result_file.read_text())
    config = TrainConfig(
        method=method, dataset="ferplus", data_root=args.data_root, epochs=args.epochs,
        input_size=args.input_size, output_stride=args.output_stride, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, scheduler=args.scheduler, noise_rate=rate,
        noise_seed=args.noise_seed + seed, seed=seed, noisy_validation=noisy_val,
        limit_train=args.limit_train, limit_eval=args.limit_eval, init=args.init, device=args.device,
        workers=0 if args.preload else args.workers, preload=args.preload, threads=args.threads,
        precision=args.precision, out=str(run_dir), resume=(run_dir / "last.pt").exists(),
        **{k: v for k, v in (("ema_alpha", args.ema_alpha), ("eac_lambda", args.eac_lambda))
           if v is not None},
    )
    device = resolve_device(args.device)
    test_by_epoch: dict[int, float] = {}
    history_file = run_dir / "test_by_epoch.json"
    if config.resume and history_file.exists():
        test_by_epoch = {int(k): v for k, v in json.loads(history_file.read_text()).items()}

    def on_event(event) -> None:
        if isinstance(event, LogEvent):
            print(f"  {event.message}", flush=True)
        elif isinstance(event, EpochEvent):
            row = event.metrics
            line = (f"  {run_dir.name} epoch {event.epoch}/{event.epochs}: train (given labels) "
                    f"{row['train_acc']:.4f} val {row['val_acc']:.4f}")
            if event.epoch > event.epochs - LAST_EPOCHS:
                # last.pt holds this epoch's exported weights (the better of student and teacher)
                m = evaluate_checkpoint(load_checkpoint(run_dir / "last.pt"), test_split, device)
                test_by_epoch[event.epoch] = m["accuracy"]
                history_file.write_text(json.dumps(test_by_epoch))
                line += f" test {m['accuracy']:.4f}"
            print(f"{line} ({row['images_per_s']:.0f} img/s)", flush=True)

    result = train(config, on_event)
    best_ckpt = load_checkpoint(result.best)
    best = evaluate_checkpoint(best_ckpt, test_split, device)
    last = [test_by_epoch[e] for e in sorted(test_by_epoch)[-LAST_EPOCHS:]]
    with open(run_dir / "metrics.csv", newline="") as f:
        epochs = list(csv.DictReader(f))
    summary = {
        "method": method, "noise_rate": rate, "seed": seed, "noisy_validation": noisy_val,
        "train_faces": len(read_split("ferplus", args.data_root, "train").subset(args.limit_train)
                           .samples),
        "cam_size": best_ckpt.build_model().cam_size(args.input_size),
        "best_val_acc": result.best_val_accuracy,
        "test_acc_best": best["accuracy"], "test_mean_class_acc_best": best["mean_class_accuracy"],
        "test_acc_last5_mean": statistics.mean(last), "epochs": args.epochs,
        "best_epoch": best_ckpt.metrics["epoch"], "best_selected": best_ckpt.metrics.get("selected"),
        "train_acc_given_labels_last": float(epochs[-1]["train_acc"]),
        "flipped_labels": fit_of_flipped(run_dir, args.data_root, device),
        # training time of all epochs (resumed ones included), evaluation excluded
        "train_seconds": round(sum(float(e["seconds"]) for e in epochs), 1), "run_dir": str(run_dir),
    }
    result_file.write_text(json.dumps(summary, indent=2))
    return summary


def mean_over_seeds(results: list[dict]) -> dict:
    """One row per (method, rate): the seeds' mean of every number (the per-seed values kept)."""
    first = results[0]
    merged = {k: v for k, v in first.items() if not isinstance(v, int | float) or isinstance(v, bool)}
    for key in ("best_val_acc", "test_acc_best", "test_mean_class_acc_best", "test_acc_last5_mean"):
        merged[key] = statistics.mean(r[key] for r in results)
        merged[f"{key}_by_seed"] = [r[key] for r in results]
    merged["seeds"] = [r["seed"] for r in results]
    if all(r.get("flipped_labels") for r in results):
        merged["flipped_labels"] = {"exported": {
            k: statistics.mean(r["flipped_labels"]["exported"][k] for r in results)
            for k in ("predicts_injected_label", "predicts_true_label")}}
    return merged


def summary_json(results: list[dict], epochs: int) -> dict | None:
    """``{"train_faces", "cam_size", "epochs", "noise30": {method: best-by-val test %}}``."""
    at30 = [r for r in results if r["noise_rate"] == 0.3 and not r.get("noisy_validation")]
    if not at30:
        return None
    methods = sorted({r["method"] for r in at30})
    return {
        "train_faces": at30[0]["train_faces"], "cam_size": at30[0]["cam_size"], "epochs": epochs,
        "noise30": {m: round(100 * statistics.mean(r["test_acc_best"] for r in at30 if r["method"] == m), 2)
                    for m in methods},
        "seeds": sorted({r["seed"] for r in at30}),
    }


def markdown_table(results: list[dict], methods: list[str], rates: list[float]) -> str:
    groups: dict = {}
    for r in results:
        if not r.get("noisy_validation"):
            groups.setdefault((r["method"], r["noise_rate"]), []).append(r)
    by = {key: mean_over_seeds(rows) for key, rows in groups.items()}
    rates = sorted(rates)

    def table(rates: list[float], cell) -> list[str]:
        head = "| method | " + " | ".join(f"{round(r * 100)} % noise" for r in rates) + " |"
        rows = [f"| {m} | " + " | ".join(cell(by[m, r]) for r in rates) + " |" for m in methods]
        return [head, "|---" * (len(rates) + 1) + "|", *rows]

    lines = table(rates, lambda r: f"{100 * r['test_acc_best']:.2f} / {100 * r['test_acc_last5_mean']:.2f}")
    lines.append(f"\nEach cell: test accuracy of the best-by-validation checkpoint / mean test accuracy "
                 f"of the last {LAST_EPOCHS} epochs (%).\n")
    for r in results:
        if r.get("noisy_validation"):
            lines.append(f"GSMC selected on validation labels with the same {round(r['noise_rate'] * 100)} % "
                         f"noise (seed {r['seed']}, no clean oracle): {100 * r['test_acc_best']:.2f} / "
                         f"{100 * r['test_acc_last5_mean']:.2f}.\n")
    noisy = [r for r in rates if r > 0]
    if noisy and all(by[m, r].get("flipped_labels") for m in methods for r in noisy):
        def fit_cell(r: dict) -> str:
            fit = r["flipped_labels"]["exported"]
            return f"{100 * fit['predicts_injected_label']:.1f} / {100 * fit['predicts_true_label']:.1f}"

        lines += table(noisy, fit_cell)
        lines.append("\nEach cell: of the training faces whose label was flipped, the share the final "
                     "model (the exported weights) labels with the injected (wrong) label / with the true "
                     "label (%).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        test_split = read_split("ferplus", args.data_root, "test")
        results = [run_one(args, m, r, test_split, seed) for seed in args.seeds
                   for r in args.rates for m in args.methods]
        if args.noisy_val_gsmc:
            results += [run_one(args, "gsmc", r, test_split, args.seeds[0], noisy_val=True)
                        for r in args.rates if r > 0]
    except (CheckpointError, DataError, TrainingError) as e:
        print(f"noise_study: error: {e}", file=sys.stderr)
        return 2
    audit_summary = None
    top = max(args.rates)
    if "gsmc" in args.methods and top > 0:
        run = out / run_name("gsmc", top, args.seeds[0])
        report = audit(run / "last.pt", "ferplus", args.data_root, device=args.device)
        audit_summary = {"run": str(run), "noise_rate": top, "flagged": len(report.flagged),
                         "injected_flips": report.known_flips, "precision": report.precision,
                         "recall": report.recall, "precision_at_k": report.precision_at_k}
    study = {
        "settings": vars(args), "results": results, "audit": audit_summary,
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
                    f"threads, torch {torch.__version__}, python {sys.version.split()[0]}",
    }
    (out / "study.json").write_text(json.dumps(study, indent=2))
    summary = summary_json(results, args.epochs)
    if summary is not None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table = markdown_table(results, args.methods, args.rates)
    (out / "table.md").write_text(table)
    print(table)
    if audit_summary:
        print(f"audit at {round(top * 100)} % noise: {audit_summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
