"""``bege-psd spectrum``: events or features (+ optional mask) -> a spectrum file (ROOT, N42, SPE).

Examples::

    bege-psd spectrum features.root --field energy_kev --bins 3000 --range 0 3000 --out all.root
    bege-psd spectrum features.root --mask scores.root:acm_score --threshold 0.58 \\
        --adc --calib calib.json --live-time 86400 --real-time 86410 --out kept.n42

Inputs: a ROOT file with one tree (``--tree`` picks one otherwise) holding the ``--field``
branch, a CoMPASS run (folder or ``Data_R`` file, read with :func:`bege_psd.io.read`), or a
``.npy`` array. Masks: a boolean ``.npy`` array, or ``FILE.root:branch`` /
``FILE.root:tree/branch`` (with ``--threshold`` a score branch becomes ``score >= threshold``);
the mask must be entry-aligned with the events.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

__all__ = ("load_array", "register", "run")

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "spectrum",
        help="histogram events/features (optionally masked) into ROOT, N42 or SPE",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="ROOT features/events file, CoMPASS run folder, or .npy energies")
    p.add_argument("--out", required=True, help="output file: .root, .n42 or .spe")
    p.add_argument(
        "--field", default=None, help="energy branch (default energy_kev, else energy_adc)"
    )
    p.add_argument("--tree", default=None, help="tree name when the ROOT file holds several")
    p.add_argument("--mask", default=None, help="boolean .npy, or FILE.root:[tree/]branch")
    p.add_argument("--threshold", type=float, default=None, help="mask = score >= threshold")
    p.add_argument("--adc", action="store_true", help="one bin per ADC channel (field in ADC)")
    p.add_argument("--channels", type=int, default=16384, help="number of ADC channels (--adc)")
    p.add_argument("--bins", type=int, default=3000, help="number of bins (keV spectra)")
    p.add_argument("--range", nargs=2, type=float, default=(0.0, 3000.0), metavar=("LO", "HI"))
    p.add_argument("--calib", default=None, help="calibration JSON (Calibration.to_dict)")
    p.add_argument("--live-time", type=float, default=None, help="live time in s (N42/SPE)")
    p.add_argument("--real-time", type=float, default=None, help="real time in s (N42/SPE)")
    p.add_argument("--name", default="spectrum", help="histogram name in ROOT / title")
    p.set_defaults(func=run)


def _read_root_branch(path: Path, branch: str | None, tree: str | None) -> tuple[Any, str]:
    import uproot

    from .errors import MissingBranchError, nearest_names

    with uproot.open(path) as f:
        kinds = ("TTree", "TNtuple", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")
        trees = [k.split(";")[0] for k, cls in f.classnames().items() if cls in kinds]
        trees = list(dict.fromkeys(trees))
        if tree is None:
            if len(trees) != 1:
                msg = f"{path}: holds trees {trees}; choose one with --tree / FILE:tree/branch"
                raise MissingBranchError(msg, path=str(path))
            tree = trees[0]
        if tree not in trees:
            msg = f"{path}: no tree {tree!r}; trees (nearest first): {', '.join(nearest_names(tree, trees, n=0))}"
            raise MissingBranchError(msg, path=str(path))
        t = f[tree]
        names = list(t.keys())
        if branch is None:
            branch = "energy_kev" if "energy_kev" in names else "energy_adc"
        if branch not in names:
            msg = (
                f"{path}: tree {tree!r} has no branch {branch!r}; branches (nearest first): "
                f"{', '.join(nearest_names(branch, names, n=0))}"
            )
            raise MissingBranchError(msg, path=str(path))
        return t.arrays([branch], library="np")[branch], branch


def load_array(spec: str, field: str | None = None, tree: str | None = None) -> tuple[Any, str]:
    """Load a 1-D array from ``.npy``, ``FILE.root[:tree/branch]`` or a CoMPASS run."""
    import numpy as np

    from .errors import CompassFormatError

    path_s, _, inner = spec.partition(":") if ".root:" in spec else (spec, "", "")
    path = Path(path_s)
    if inner:
        t, _, b = inner.rpartition("/")
        tree, field = (t or tree), b
    if not path.exists():
        msg = f"{path}: no such file or folder"
        raise CompassFormatError(msg, path=str(path))
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False), field or path.stem
    if path.is_dir() or path.suffix.lower() in (".bin", ".csv"):
        from . import io

        ev = io.read(path)
        name = field or "energy_adc"
        return np.asarray(ev[name]), name
    import uproot

    with uproot.open(path) as f:
        is_compass = any(k.split(";")[0] == "Data_R" for k in f)
    if is_compass and field in (None, "energy_adc") and tree in (None, "Data_R"):
        from . import io

        ev = io.read(path)
        return np.asarray(ev["energy_adc"]), "energy_adc"
    return _read_root_branch(path, field, tree)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .calib import Calibration
    from .errors import ConfigError
    from .io import export
    from .spectrum import adc_spectrum, make_spectrum

    energy, field = load_array(args.input, args.field, args.tree)
    mask = None
    if args.mask:
        m, _ = load_array(args.mask)
        if args.threshold is not None:
            m = np.asarray(m, dtype=np.float64) >= args.threshold
        mask = np.asarray(m)
        if mask.dtype != np.bool_:
            msg = f"mask {args.mask} has dtype {mask.dtype}; pass --threshold to turn scores into a mask"
            raise ConfigError(msg)
        if mask.shape != energy.shape:
            msg = f"mask {args.mask} has {mask.size} entries but {args.input} has {energy.size}; they must be entry-aligned"
            raise ConfigError(msg)
    cal = None
    if args.calib:
        cal = Calibration.from_dict(json.loads(Path(args.calib).read_text()))
    if args.adc:
        h = adc_spectrum(energy, mask, n_channels=args.channels)
    else:
        e = np.asarray(energy, dtype=np.float64)
        if field != "energy_kev" and cal is not None:
            e = cal.apply(e)
        elif field == "energy_adc" and cal is None:
            msg = "the energies are in ADC channels: pass --calib calib.json for a keV spectrum, or --adc"
            raise ConfigError(msg)
        h = make_spectrum(e, mask, bins=args.bins, range=tuple(args.range))
    n_in = int(mask.sum()) if mask is not None else int(np.size(energy))
    log.info("%d events histogrammed (%d in range)", n_in, int(np.sum(h.values())))
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix == ".root":
        export.write_th1(out, h, name=args.name, title=args.name)
    elif suffix in (".n42", ".spe"):
        if args.live_time is None or args.real_time is None:
            msg = f"{out}: {suffix} files need --live-time and --real-time (seconds)"
            raise ConfigError(msg)
        writer = export.write_n42 if suffix == ".n42" else export.write_spe
        kw: dict[str, Any] = {"calibration": cal if args.adc else None}
        if suffix == ".n42":
            kw["title"] = args.name
        else:
            kw["spec_id"] = args.name
        writer(out, h, live_time_s=args.live_time, real_time_s=args.real_time, **kw)
    else:
        msg = f"{out}: unknown output type {suffix!r}; use .root, .n42 or .spe"
        raise ConfigError(msg)
    print(f"wrote {out} ({n_in} events)")
    return 0
