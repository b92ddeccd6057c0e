"""The ``gsmc`` command line: one module per group of commands (training, models, faces)."""

import argparse
import os
import sys

from gsmc_core import __version__
from gsmc_core.cli.frames import add_face_commands
from gsmc_core.cli.models import add_model_commands
from gsmc_core.cli.training import add_training_commands
from gsmc_core.errors import GsmcError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsmc",
        description="GSMC facial expression recognition: train, evaluate, predict, convert.",
    )
    parser.add_argument("--version", action="version", version=f"gsmc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_model_commands(sub)
    add_training_commands(sub)
    add_face_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, so that a reader gone early is handled below, not at exit
        return code
    except BrokenPipeError:  # `gsmc info ... | head`: the reader has gone; nothing to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush does not fail again
        return 0
    except (GsmcError, OSError) as exc:  # OSError: unwritable, missing or wrong-kind files and folders
        print(f"gsmc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gsmc {args.command}: interrupted", file=sys.stderr)
        return 130

