"""Copy a run's best checkpoint into assets/ as the shipped default model (half precision).

    python scripts/export_default_model.py runs/ferplus_default/best.pt
"""

import argparse
import dataclasses

from gsmc_core.checkpoint import load_checkpoint, save_checkpoint
from gsmc_core.outputs import refuse_overwriting_inputs
from gsmc_core.resources import DEFAULT_CHECKPOINT
from gsmc_core.training.config import DATASET_FACE_MARGIN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default=str(DEFAULT_CHECKPOINT))
    args = parser.parse_args()
    refuse_overwriting_inputs({"--out": args.out}, [args.checkpoint])  # a run's file keeps its fp32 state
    ckpt = load_checkpoint(args.checkpoint)
    dataset = ckpt.train_config.get("dataset")
    if dataset in DATASET_FACE_MARGIN:  # runs started before the framing was measured
        crop = dataclasses.replace(ckpt.meta.face_crop, margin=DATASET_FACE_MARGIN[dataset])
        ckpt.meta = dataclasses.replace(ckpt.meta, face_crop=crop)
    ckpt.training_state = None
    path = save_checkpoint(ckpt, args.out, half=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {ckpt.meta.arch}, "
          f"{ckpt.meta.input_size} px, face margin {ckpt.meta.face_crop.margin})")


if __name__ == "__main__":
    main()
