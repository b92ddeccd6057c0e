"""Training curves of several runs side by side, from their metrics.csv files.

    python scripts/plot_runs.py --out docs/results/curves_30.png \
        "CE=runs/noise_study_long/ce_noise30" "GSMC=runs/noise_study_long/gsmc_noise30"

Left: accuracy on the clean validation split by epoch (for GSMC, the better of student and
teacher, the one a checkpoint exports). Right: accuracy on the training labels as given, noisy
ones included (the first sign of memorising the noise is this climbing while validation falls).
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from gsmc_core.training.run_folder import RunFolder  # noqa: E402


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    run = RunFolder(run_dir)
    if not run.metrics_file.is_file():
        raise FileNotFoundError(f"{run.metrics_file}: not found (is {run_dir} a training run folder?)")
    rows = run.history()
    return [{"epoch": float(r["epoch"]), "train_acc": float(r["train_acc"]),
             "val_acc": max(float(r["val_acc"]), float(r.get("val_acc_teacher") or 0.0))}
            for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    fig, (val_ax, train_ax) = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for spec in args.runs:
        label, sep, run = spec.partition("=")
        if not sep:
            p.error(f"{spec!r}: expected LABEL=RUN_DIR")
        try:
            rows = read_metrics(Path(run))
        except FileNotFoundError as e:
            print(f"plot_runs: error: {e}", file=sys.stderr)
            return 2
        epochs = [r["epoch"] for r in rows]
        val_ax.plot(epochs, [100 * r["val_acc"] for r in rows], marker="o", ms=3, label=label)
        train_ax.plot(epochs, [100 * r["train_acc"] for r in rows], marker="o", ms=3, label=label)
    val_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="clean validation split")
    train_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="training labels as given (noisy)")
    for ax in (val_ax, train_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
