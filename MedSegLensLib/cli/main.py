"""Entry point of the `medseglens` command.

Each command lives in its own module exposing `register(subparsers)`; the module
adds its parser and sets `handler` (a function taking the parsed arguments and
returning an exit code). Expected errors (`MedSegLensError`) print one line and
exit non-zero; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import MedSegLensError

# Command modules, in the order they appear in --help.
COMMAND_MODULES = [
    "MedSegLensLib.cli.data_commands",
    "MedSegLensLib.cli.metrics_commands",
    "MedSegLensLib.cli.scene_commands",
    "MedSegLensLib.cli.latent_commands",
    "MedSegLensLib.cli.synth_commands",
    "MedSegLensLib.cli.model_commands",
    "MedSegLensLib.cli.byom_commands",
    "MedSegLensLib.cli.sae_commands",
    "MedSegLensLib.cli.steering_commands",
    "MedSegLensLib.cli.viewer_commands",
    "MedSegLensLib.cli.interpret_commands",
    "MedSegLensLib.cli.diff_commands",
    "MedSegLensLib.cli.triage_commands",
    "MedSegLensLib.cli.demo_commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medseglens",
        description="Sparse-autoencoder lenses, model diffing and latent steering for brain-tumour segmentation.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for expected errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or bool(os.environ.get("MEDSEGLENS_DEBUG"))
    try:
        return int(args.handler(args) or 0)
    except MedSegLensError as exc:
        if debug:
            raise
        print(f"medseglens {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"medseglens {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
