"""How much an ensemble of checkpoints would gain (issue 28's ensemble lever), on a split of
FERPlus: each checkpoint's accuracy and mean class accuracy, then those of every combination of
two or more, the members' softmax probabilities averaged (each member with its own
preprocessing). Figures to decide whether distilling an ensemble into one network is worth its
training time; nothing here is shipped.

    python scripts/ensemble_eval.py --data-root ../shared/data/ferplus A.pt B.pt [C.pt ...] \
        [--split val] [--json out.json]
"""

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from gsmc_core.atomic import write_text_atomic
from gsmc_core.checkpoint import load_checkpoint
from gsmc_core.errors import GsmcError
from gsmc_core.outputs import same_file
from gsmc_core.training.data.readers import read_split
from gsmc_core.training.data.samples import ExpressionDataset, collate_skipping
from gsmc_core.training.data.transforms import eval_transform
from gsmc_core.training.evaluate import classification_metrics, predict_loader


def member_probabilities(path: Path, data_root: str, split_name: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Softmax probabilities of one checkpoint on the split (rows in the split's order), the
    labels and the class names."""
    ckpt = load_checkpoint(path)
    split = read_split("ferplus", data_root, split_name, len(ckpt.meta.classes))
    loader = DataLoader(ExpressionDataset(split, eval_transform(ckpt.meta)), batch_size=256,
                        collate_fn=collate_skipping)
    preds = predict_loader(ckpt.build_model(), loader, torch.device("cpu"))
    order = np.argsort(preds.indices)
    probs = torch.softmax(torch.from_numpy(preds.logits[order]), 1).numpy()
    return probs, preds.labels[order], split.classes


def scores(probs: np.ndarray, labels: np.ndarray, classes: tuple) -> dict:
    m = classification_metrics(np.log(probs + 1e-12).astype(np.float32), labels, classes)
    return {"accuracy": round(100 * m["accuracy"], 2), "mean_class": round(100 * m["mean_class_accuracy"], 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if len(args.checkpoints) < 2:
        p.error("give at least two checkpoints")
    names = [str(c) for c in args.checkpoints]
    if args.json and any(same_file(args.json, c) for c in args.checkpoints):
        p.error(f"--json {args.json} is one of the checkpoints; writing it would destroy it")
    if len(set(names)) != len(names):
        p.error("a checkpoint is named twice")
    try:
        members = {n: member_probabilities(Path(n), args.data_root, args.split) for n in names}
    except GsmcError as exc:
        print(f"ensemble_eval: {exc}", file=sys.stderr)
        return 2
    _, labels, classes = members[names[0]]
    for n in names[1:]:
        if not np.array_equal(members[n][1], labels) or members[n][2] != classes:
            print(f"ensemble_eval: {n} was scored on other faces or classes than {names[0]}", file=sys.stderr)
            return 2
    rows = [{"members": [n], **scores(members[n][0], labels, classes)} for n in names]
    for size in range(2, len(names) + 1):
        for combo in itertools.combinations(names, size):
            mean = np.mean([members[n][0] for n in combo], axis=0)
            rows.append({"members": list(combo), **scores(mean, labels, classes)})
    for row in rows:
        print(f"{row['accuracy']:6.2f} {row['mean_class']:6.2f}  {' + '.join(row['members'])}")
    if args.json:
        report = {"split": args.split, "faces": int(len(labels)), "rows": rows}
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
