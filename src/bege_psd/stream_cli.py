"""``bege-psd process``: a whole run through features, selectors and spectra, locally or on dask."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ("register",)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "process",
        help="stream a run: features -> scores -> spectra (+ friend tree); local or dask",
        description=(
            "Read a CoMPASS run chunk by chunk (bounded memory), compute features, score every "
            "given selector, fill all/kept/rejected spectra (written as ROOT TH1D) and, locally, "
            "a friend tree. With --executor dask the same work runs on a dask.distributed "
            "cluster (--scheduler ADDRESS, or a LocalCluster on this machine)."
        ),
    )
    p.add_argument("source", help="CoMPASS file, run folder, or several files", nargs="+")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PATH",
        help="saved selector (repeatable); its kind names the spectra",
    )
    p.add_argument("--template", help="saved SSE template (.npz) for l1_to_sse")
    p.add_argument(
        "--calibration", help="calibration JSON (Calibration.to_dict); default: run.info"
    )
    p.add_argument("--out", required=True, help="output folder (spectra.root, summary.json)")
    p.add_argument("--friend", action="store_true", help="also write friend.root (local only)")
    p.add_argument("--step-size", type=int, default=100_000, help="events per chunk/partition")
    p.add_argument("--executor", choices=("local", "dask"), default="local")
    p.add_argument("--scheduler", help="dask scheduler address (default: a LocalCluster)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster workers / local threads")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from . import io, stream
    from ._util import atomic_write_text
    from .calib import Calibration
    from .select.base import read_model_header

    source: Any = args.source[0] if len(args.source) == 1 else args.source
    if args.calibration:
        calibration = json.loads(Path(args.calibration).read_text())
    else:
        meta = io.read_metadata(source if isinstance(source, str) else source[0])
        calibration = (
            Calibration.from_coefficients(*meta.calibration).to_dict() if meta.calibration else None
        )
    selectors = {read_model_header(m)["kind"]: str(m) for m in args.model}
    spec = stream.StreamSpec(
        selectors=selectors,
        calibration=calibration,
        template=args.template,
        n_threads=args.workers if args.executor == "local" else 1,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = stream.process(
        source,
        spec,
        step_size=args.step_size,
        executor=args.executor,
        scheduler=args.scheduler,
        n_workers=args.workers,
        friend=out / "friend.root" if args.friend else None,
        progress=not args.quiet,
    )
    import uproot

    from ._util import atomic_path

    # one file, one TH1D per spectrum (all, kept_<sel>, rejected_<sel>), with sumw2
    with atomic_path(out / "spectra.root") as tmp, uproot.recreate(tmp) as f:
        for name, h in result.spectra.items():
            f[name] = h
    summary = {
        "n_events": result.n_events,
        "n_kept": dict(result.n_kept),
        "n_chunks": result.n_chunks,
        "executor": args.executor,
        "selectors": selectors,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0
