"""Choose the next default model among candidates, on validation only, by a rule fixed in advance.

Each input is the output of `gsmc eval --checkpoint CKPT --dataset ferplus --data-root
../shared/data/ferplus --split val --shifts --json`,
and the rule is RULE below (issue 28).

    python scripts/choose_default_model.py --shipped "0.4=val_0.4.json" \
        --candidate "as trained=val_best.json" --candidate "logit adjustment=val_la.json" \
        --out docs/results/model05_val.json
"""

import argparse
import json
from pathlib import Path

from gsmc_core.atomic import write_text_atomic
from gsmc_core.outputs import OutputError, refuse_overwriting_inputs

RULE = ("a candidate qualifies when its validation accuracy is at most --max-drop below the shipped "
        "model's and its worst shift costs fewer points than the shipped model's worst; among those "
        "the highest mean class accuracy wins (the failures users meet are in the rare classes), "
        "ties to the higher accuracy; none qualifying means the shipped model stays")


def summary(metrics: dict) -> dict:
    shifts = metrics["robustness"]["shifts"]
    return {"accuracy": metrics["accuracy"], "mean_class_accuracy": metrics["mean_class_accuracy"],
            "per_class": metrics["per_class"],
            "shift_cost_points": {name: round(100 * row["drop"], 2) for name, row in shifts.items()},
            "worst_shift": metrics["robustness"]["worst"]["shift"],
            "worst_shift_cost_points": round(100 * metrics["robustness"]["worst"]["drop"], 2)}


def named_json(text: str) -> tuple[str, dict, Path]:
    name, _, path = text.partition("=")
    if not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=eval.json")
    try:
        return name, summary(json.loads(Path(path).read_text())), Path(path)
    except (OSError, ValueError, KeyError) as exc:  # missing, not JSON, not `gsmc eval --shifts --json`
        raise argparse.ArgumentTypeError(f"{path}: {exc!r}; give the output of "
                                         "`gsmc eval --split val --shifts --json`") from exc


def choose(shipped: dict, candidates: dict[str, dict], max_drop: float) -> str | None:
    qualified = [name for name, c in candidates.items()
                 if c["accuracy"] >= shipped["accuracy"] - max_drop
                 and c["worst_shift_cost_points"] < shipped["worst_shift_cost_points"]]
    if not qualified:
        return None
    return max(qualified, key=lambda name: (candidates[name]["mean_class_accuracy"],
                                            candidates[name]["accuracy"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipped", type=named_json, required=True, help="NAME=eval.json")
    parser.add_argument("--candidate", type=named_json, action="append", required=True,
                        help="NAME=eval.json (repeat)")
    parser.add_argument("--max-drop", type=float, default=0.01,
                        help="validation accuracy a candidate may lose against the shipped model")
    parser.add_argument("--what", default="", help="a line saying which runs these are")
    parser.add_argument("--out", help="write every summary and the choice here as JSON")
    args = parser.parse_args()
    try:  # an eval JSON is kept
        refuse_overwriting_inputs({"--out": args.out}, [a[2] for a in (args.shipped, *args.candidate)])
    except OutputError as exc:
        parser.error(str(exc))
    shipped_name, shipped, _ = args.shipped
    candidates = {name: row for name, row, _ in args.candidate}
    chosen = choose(shipped, candidates, args.max_drop)
    for name, row in [(f"shipped {shipped_name}", shipped), *candidates.items()]:
        print(f"{name:40s} accuracy {100 * row['accuracy']:.2f}  mean class "
              f"{100 * row['mean_class_accuracy']:.2f}  worst shift {row['worst_shift']} "
              f"{row['worst_shift_cost_points']:.2f} points")
    print(f"chosen: {chosen or f'none qualifies, keep {shipped_name}'}")
    if args.out:
        record = {"what": args.what, "split": "val",
                  "rule": RULE,
                  "max_drop": args.max_drop, "chosen": chosen,
                  "models": {f"shipped {shipped_name}": shipped, **candidates}}
        write_text_atomic(args.out, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
