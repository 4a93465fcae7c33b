"""The ``bege-psd`` command line: one subcommand per stage, mirroring the Python API.

Each subcommand lives beside the code it drives and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (a callable taking the parsed namespace and returning an exit
code). Heavy stacks are imported inside ``func``, so ``bege-psd --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .errors import BegePsdError

__all__ = ("COMMANDS", "build_parser", "main")

#: subcommand modules, in the order ``--help`` lists them; each has ``register(subparsers)``
COMMANDS: tuple[str, ...] = (
    "bege_psd.sim.cli",
    "bege_psd.io.cli",
    "bege_psd.dsp.cli",
    "bege_psd.select.cli",
    "bege_psd.spectrum_cli",
    "bege_psd.fit.cli",
    "bege_psd.stream_cli",
    "bege_psd.pipeline_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bege-psd",
        description="Pulse-shape discrimination for BEGe gamma-ray spectroscopy (CoMPASS runs).",
    )
    parser.add_argument("--version", action="version", version=f"bege-psd {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", help="only errors; no progress bars"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that stage is not part of this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BegePsdError as exc:
        print(f"bege-psd {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
