"""``bege-psd simulate``: write a simulated CoMPASS run with truth (see :func:`bege_psd.sim.simulate`).

Example::

    bege-psd simulate --source th232 --events 300000 --out generated/sim/th232 --seed 1
    bege-psd -q simulate --source cryoconite --events 100000 --out generated/sim/cryo --format bin

``--config FILE`` reads the ``[sim]`` table of a TOML configuration (detector, electronics,
source, transport, run options); without it the defaults describe the paper's set-up.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ("register",)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"expected a positive integer, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate a BEGe run (CoMPASS files + truth)",
        description="Simulate a 232Th source, a cryoconite sample or the laboratory background "
        "seen by a BEGe detector and write a CoMPASS run folder plus <run stem>_truth.root.",
    )
    p.add_argument("--source", required=True, choices=("th232", "cryoconite", "background"))
    p.add_argument("--events", required=True, type=_positive_int, help="number of recorded events")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument(
        "--format", default="root", choices=("root", "bin"), help="RAW file format (default root)"
    )
    p.add_argument("--seed", default=0, type=int, help="random seed (same seed, same bytes)")
    p.add_argument("--config", default=None, help="TOML file with a [sim] table")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="pulse-library cache (default $BEGE_PSD_CACHE or generated/cache)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from .run import simulate

    config = load_config(args.config).sim if args.config else None
    folder = simulate(
        args.source,
        args.events,
        args.out,
        fmt=args.format,
        seed=args.seed,
        config=config,
        progress=not args.quiet,
        cache_dir=args.cache_dir,
    )
    if not args.quiet:
        print(folder)
    return 0
