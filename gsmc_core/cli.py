"""The ``gsmc`` command line."""

import argparse
import json
import sys

from gsmc_core import __version__
from gsmc_core.checkpoint import CheckpointError, load_checkpoint
from gsmc_core.devices import DeviceUnavailableError
from gsmc_core.import_weights import FORMATS, import_weights
from gsmc_core.model import BACKBONES, DEFAULT_INPUT_SIZE, DEFAULT_OUTPUT_STRIDE, OUTPUT_STRIDES


class UsageError(Exception):
    """A problem with what the user asked for; printed without a traceback."""


def cmd_import_weights(args: argparse.Namespace) -> int:
    out = import_weights(
        args.src,
        args.format,
        args.out,
        arch=args.arch,
        input_size=args.input_size,
        output_stride=args.output_stride,
    )
    print(f"wrote initialisation checkpoint {out} ({args.arch}, from {args.format} {args.src})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint, kind=None)
    info = {
        "path": str(ckpt.path),
        "kind": ckpt.kind,
        **ckpt.meta.to_dict(),
        "metrics": ckpt.metrics,
        "created": ckpt.created,
        "package_version": ckpt.package_version,
        "train_config": ckpt.train_config,
    }
    print(json.dumps(info, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsmc",
        description="GSMC facial expression recognition: train, evaluate, predict, convert.",
    )
    parser.add_argument("--version", action="version", version=f"gsmc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "import-weights",
        help="convert third-party backbone weights into an initialisation checkpoint",
        description="Convert a third-party ResNet weight file into a GSMC initialisation "
        "checkpoint for `gsmc train --init`. The source classifier is dropped.",
    )
    p.add_argument("src", help="the weight file to convert")
    p.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="torchvision: plain torchvision ResNet state dict; eac-msceleb: EAC's "
        "resnet18_msceleb.pth; gsmc-dmue: GSMC's mv_epoch_17.pt (feat_net. prefix)",
    )
    p.add_argument("--out", required=True, help="checkpoint to write")
    p.add_argument("--arch", default="resnet18", choices=list(BACKBONES))
    p.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE)
    p.add_argument("--output-stride", type=int, default=DEFAULT_OUTPUT_STRIDE,
                   choices=OUTPUT_STRIDES)
    p.set_defaults(func=cmd_import_weights)

    p = sub.add_parser("info", help="show a checkpoint's metadata and metrics")
    p.add_argument("checkpoint")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, DeviceUnavailableError, UsageError, FileNotFoundError,
            ValueError) as exc:
        print(f"gsmc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gsmc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
