"""How far the CAMs of a mirrored face are from the mirrored CAMs, at even and mirror-exact sizes.

    python scripts/mirror_check.py --data-root ../shared/data/ferplus [--checkpoint model.pt]

For a trained model (default: the shipped one) on FERPlus test faces, and for the same network
with every kernel made mirror-symmetric: the flip-consistency loss relative to the CAMs' mean
square, MSE(CAM(x), flip(CAM(flip x))) / mean(CAM(x)²), at each input size. At an even size part
of it is the sampling shift (model.mirror_exact), not a disagreement of the model.
"""

import argparse

import torch
from torch import nn

from gsmc_core.checkpoint import load_checkpoint
from gsmc_core.model import mirror_exact
from gsmc_core.resources import DEFAULT_CHECKPOINT
from gsmc_core.training.data.batch_augment import normalize, to_float
from gsmc_core.training.data.preload import preload_split
from gsmc_core.training.data.readers import read_split
from gsmc_core.training.losses import flip_consistency_loss


def relative_loss(model: nn.Module, images: torch.Tensor) -> float:
    with torch.no_grad():
        _, cams = model(images)
        _, cams_of_mirror = model(images.flip(-1))
    return float(flip_consistency_loss(cams, cams_of_mirror) / cams.pow(2).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--faces", type=int, default=500)
    p.add_argument("--sizes", type=int, nargs="+", default=[48, 49, 64, 65, 112, 113])
    args = p.parse_args()
    ckpt = load_checkpoint(args.checkpoint)
    trained = ckpt.build_model().eval()
    symmetric = ckpt.build_model().eval()
    with torch.no_grad():
        for m in symmetric.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_((m.weight + m.weight.flip(-1)) / 2)
    split = read_split("ferplus", args.data_root, "test").subset(args.faces)
    print(f"{args.checkpoint} (trained at {ckpt.meta.input_size} px), {len(split.samples)} "
          "FERPlus test faces; relative flip-consistency loss:")
    for size in args.sizes:
        meta = ckpt.meta.__class__(**{**ckpt.meta.__dict__, "input_size": size})
        images = normalize(to_float(preload_split(split, meta).images), meta)
        exact = mirror_exact(size, ckpt.meta.output_stride)
        print(f"  {size:4d} px ({'mirror-exact' if exact else 'misaligned  '}): trained "
              f"{relative_loss(trained, images):.4f}, mirror-symmetric kernels "
              f"{relative_loss(symmetric, images):.4f}")


if __name__ == "__main__":
    main()
