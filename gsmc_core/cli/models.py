"""`gsmc import-weights | export | info`: converting and describing model files."""

import argparse
import json
from pathlib import Path

from gsmc_core.checkpoint import load_checkpoint
from gsmc_core.cli.outputs import refuse_replacing_weights, require_onnx_output, require_writable_output
from gsmc_core.errors import UsageError
from gsmc_core.frames.onnx_export import OPSET, export_onnx, read_onnx_meta
from gsmc_core.frames.quantize import graph_calibration, graph_precision, quantize_int8
from gsmc_core.import_weights import FORMATS, import_weights
from gsmc_core.model import BACKBONES, DEFAULT_INPUT_SIZE, DEFAULT_OUTPUT_STRIDE, OUTPUT_STRIDES
from gsmc_core.outputs import refuse_overwriting_inputs
from gsmc_core.training.data.preload import CALIBRATION_FACES, calibration_faces
from gsmc_core.training.data.readers import DATASETS


def cmd_import_weights(args: argparse.Namespace) -> int:
    require_writable_output(args.out, "--out", folders_made=True)
    refuse_overwriting_inputs({"--out": args.out}, [args.src])
    refuse_replacing_weights(args.out, "--out", args.overwrite)
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


def cmd_export(args: argparse.Namespace) -> int:
    require_writable_output(args.out, "--out", folders_made=True)
    refuse_overwriting_inputs({"--out": args.out}, [args.checkpoint])
    require_onnx_output(args.out, "--out")
    ckpt = load_checkpoint(args.checkpoint)
    try:
        out = export_onnx(ckpt, args.out)
    except OSError as exc:
        raise UsageError(f"{args.out}: cannot write here ({exc.strerror or exc})") from exc
    meta = ckpt.meta
    print(f"wrote {out} (ONNX opset {OPSET}; inputs image N x 3 x {meta.input_size} x {meta.input_size}, "
          f"outputs logits and cams; {len(meta.classes)} classes; metadata in the gsmc_meta property)")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    if args.out is not None:
        require_writable_output(args.out, "--out", folders_made=True)
        refuse_overwriting_inputs({"--out": args.out}, [args.checkpoint])
        require_onnx_output(args.out, "--out")
    if args.faces < 1:
        raise UsageError(f"--faces must be at least 1 validation face, got {args.faces}")
    ckpt = load_checkpoint(args.checkpoint)
    calibration = calibration_faces(ckpt, args.dataset, args.data_root, args.faces)
    faces = sum(len(b) for b in calibration)
    out = quantize_int8(ckpt, calibration, args.out)
    where = "" if args.out is not None else " (the cache: the app and the CLI use it from now on)"
    print(f"wrote {out}{where}: int8 weights per channel, activations calibrated on {faces} "
          f"{args.dataset} validation faces")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    if Path(args.checkpoint).suffix.lower() == ".onnx":  # a `gsmc export` or `quantize` file
        info = {"path": str(args.checkpoint), "kind": "onnx",
                **read_onnx_meta(args.checkpoint).to_dict(),
                "precision": graph_precision(args.checkpoint),
                "calibration": graph_calibration(args.checkpoint)}
        print(json.dumps(info, indent=2, default=str))
        return 0
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


def add_model_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `import-weights`, `export` and `info` on the `gsmc` sub-command parser."""
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
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out when it already holds weights (refused otherwise)")
    p.add_argument("--arch", default="resnet18", choices=list(BACKBONES))
    p.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE)
    p.add_argument("--output-stride", type=int, default=DEFAULT_OUTPUT_STRIDE,
                   choices=OUTPUT_STRIDES)
    p.set_defaults(func=cmd_import_weights)

    p = sub.add_parser(
        "export", help="export a model for ONNX Runtime",
        description="Write a model checkpoint as an ONNX graph with logits and CAMs as outputs and the "
        "checkpoint's metadata as the gsmc_meta property. The app and the CLI do this by themselves "
        "on first CPU use (cached); this command is for using the model elsewhere.",
    )
    p.add_argument("--checkpoint", required=True, help="model checkpoint (.pt)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="only onnx for now")
    p.add_argument("--out", required=True, help="file to write (.onnx)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "quantize", help="make a model's int8 graph for fast CPU inference",
        description="Quantise a model's ONNX graph to int8 with ONNX Runtime's static quantisation "
        "(QDQ; int8 weights per output channel, uint8 activations calibrated on validation faces of "
        "the dataset). Without --out it goes into the per-user cache, where `gsmc predict/video/bench` "
        "and the app find it and use it by default (--precision auto); the shipped model has one.",
    )
    p.add_argument("--checkpoint", required=True, help="model checkpoint (.pt)")
    p.add_argument("--dataset", required=True, choices=DATASETS, help="whose validation faces calibrate")
    p.add_argument("--data-root", required=True)
    p.add_argument("--faces", type=int, default=CALIBRATION_FACES,
                   help=f"validation faces to calibrate on (default {CALIBRATION_FACES})")
    p.add_argument("--out", help="file to write (.onnx); default: the cache")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("info", help="show a checkpoint's (or exported ONNX file's) metadata and metrics")
    p.add_argument("checkpoint")
    p.set_defaults(func=cmd_info)
