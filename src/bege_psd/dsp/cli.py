"""``bege-psd features SOURCE --out FILE``: the feature table of a CoMPASS run as a ROOT tree.

The run is streamed with :func:`bege_psd.io.iterate`; each chunk goes through
:func:`bege_psd.dsp.features` and is appended to the tree ``Features`` (entry-aligned with the
run's ``Data_R``, so it can be used as a friend tree). The output is written atomically.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

__all__ = ("register", "write_features")

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``features`` subcommand."""
    p = subparsers.add_parser(
        "features",
        help="compute pulse-shape features of a CoMPASS run into a ROOT tree",
        description="Stream a CoMPASS run (file, split files or run folder), compute the "
        "pulse-shape features (rise times, A/E, L1 to the SSE template, |d2| peaks, quality "
        "flags) and write them as a ROOT tree entry-aligned with the events.",
    )
    p.add_argument(
        "source", nargs="+", help="a run folder, a data file, or the files of a split run"
    )
    p.add_argument("--out", required=True, type=Path, help="output ROOT file")
    p.add_argument("--config", type=Path, help="TOML configuration ([dsp] and [io] sections)")
    p.add_argument("--template", type=Path, help="SSE template (.npz from SSETemplate.save)")
    p.add_argument("--tree", default="Features", help="output tree name (default: Features)")
    p.add_argument("--step-size", type=int, default=100_000, help="events per chunk")
    p.add_argument("--threads", type=int, default=1, help="threads for the feature kernels")
    p.set_defaults(func=_run)


def write_features(
    source: Any,
    out: str | Path,
    *,
    config: Any = None,
    template: Any = None,
    tree: str = "Features",
    step_size: int = 100_000,
    n_threads: int = 1,
    io_options: Any = None,
) -> int:
    """Stream ``source`` through :func:`bege_psd.dsp.features` into ``out`` (ROOT, tree
    ``tree``); returns the number of events written (= read: none is dropped)."""
    import awkward as ak
    import numpy as np
    import uproot

    from .. import io
    from .._util import atomic_path
    from . import features
    from ._constants import FEATURE_COLUMNS
    from .template import SSETemplate

    if template is not None and not isinstance(template, SSETemplate):
        template = SSETemplate.load(template)
    n_total = 0
    n_flagged = 0
    with atomic_path(out) as tmp, uproot.recreate(tmp) as fout:
        created = False
        for chunk in io.iterate(source, step_size, options=io_options):
            feats = features(chunk, config, template=template, n_threads=n_threads)
            data = {name: ak.to_numpy(feats[name]) for name in ak.fields(feats)}
            if not created:
                fout[tree] = data
                created = True
            else:
                fout[tree].extend(data)
            n_total += len(chunk)
            n_flagged += int(np.count_nonzero(data["quality"]))
        if not created:  # an empty run still gets a (typed, empty) tree
            empty: dict[str, Any] = {name: np.zeros(0, np.float32) for name in FEATURE_COLUMNS}
            empty["n_peaks_d2"] = np.zeros(0, np.int32)
            empty["quality"] = np.zeros(0, np.uint32)
            fout[tree] = empty
    log.info("%s: %d events, %d with quality flags -> %s:%s", source, n_total, n_flagged, out, tree)
    return n_total


def _run(args: argparse.Namespace) -> int:
    from ..config import load_config

    conf = load_config(args.config) if args.config else None
    source = args.source[0] if len(args.source) == 1 else args.source
    write_features(
        source,
        args.out,
        config=conf.dsp if conf else None,
        template=args.template,
        tree=args.tree,
        step_size=args.step_size,
        n_threads=args.threads,
        io_options=conf.sections.get("io") if conf else None,
    )
    return 0
