"""``bege-psd fit``: fit peaks in one window of a spectrum file and write the result as JSON.

Example::

    bege-psd fit kept.root --window 650 675 --peaks 661.66 --model gauss_step --out cs137.json
    bege-psd fit all.n42 --window 1578 1603 --peaks 1588.2 1592.5 --out dep.json

SPECTRUM is a ROOT file with a TH1 (``--hist`` names it when there are several), or an N42 /
``.Spe`` channel spectrum (its energy calibration gives the keV axis).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ("load_spectrum", "register", "run")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit peaks in a window of a spectrum (ROOT TH1, N42, SPE) -> JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spectrum", help="ROOT file with a TH1, or .n42 / .spe")
    p.add_argument("--window", nargs=2, type=float, required=True, metavar=("LO", "HI"))
    p.add_argument("--peaks", nargs="+", type=float, required=True, metavar="E")
    p.add_argument(
        "--model",
        default="gauss_step",
        choices=("gauss_step", "gauss_step_tail", "gauss_linear", "gauss_const", "gauss_edge"),
    )
    p.add_argument("--hist", default=None, help="histogram name inside a ROOT file")
    p.add_argument("--fwhm", type=float, default=None, help="FWHM guess (axis units)")
    p.add_argument("--no-minos", action="store_true", help="skip Minos intervals")
    p.add_argument("--strict", action="store_true", help="fail if the fit does not converge")
    p.add_argument("--out", required=True, help="output JSON")
    p.set_defaults(func=run)


def load_spectrum(path: str | Path, name: str | None = None) -> Any:
    """A 1-D histogram from a ROOT TH1, or ``(counts, edges_kev)`` from an N42/SPE file."""
    import numpy as np

    from ..errors import CompassFormatError, MissingBranchError, nearest_names
    from ..io import export

    p = Path(path)
    if not p.exists():
        msg = f"{p}: no such file"
        raise CompassFormatError(msg, path=str(p))
    suffix = p.suffix.lower()
    if suffix in (".n42", ".spe"):
        sf = export.read_n42(p) if suffix == ".n42" else export.read_spe(p)
        c0, c1, c2 = sf.coefficients
        ch = np.arange(sf.counts.size + 1, dtype=np.float64) - 0.5
        if c1 == 0 and c2 == 0:  # uncalibrated: the window is in channels
            return (sf.counts, ch)
        edges = c0 + c1 * ch + c2 * ch * ch
        if not np.all(np.diff(edges) > 0):
            msg = (
                f"{p}: the energy calibration {sf.coefficients} is not increasing over the channels"
            )
            raise CompassFormatError(msg, path=str(p))
        return (sf.counts, edges)
    import uproot

    with uproot.open(p) as f:
        hists = [k.split(";")[0] for k, cls in f.classnames().items() if cls.startswith("TH1")]
        hists = list(dict.fromkeys(hists))
        if name is None:
            if len(hists) != 1:
                msg = f"{p}: holds histograms {hists}; choose one with --hist"
                raise MissingBranchError(msg, path=str(p))
            name = hists[0]
        if name not in hists:
            msg = f"{p}: no TH1 {name!r}; histograms (nearest first): {', '.join(nearest_names(name, hists, n=0))}"
            raise MissingBranchError(msg, path=str(p))
        return f[name].to_hist()


def run(args: argparse.Namespace) -> int:
    from ..io.export import write_fit_json
    from .peaks import fit_peaks

    h = load_spectrum(args.spectrum, args.hist)
    r = fit_peaks(
        h,
        tuple(args.window),
        args.model,
        args.peaks,
        minos=not args.no_minos,
        fwhm=args.fwhm,
        strict=args.strict,
    )
    write_fit_json(args.out, r, extra={"spectrum": str(args.spectrum)})
    for a in r.areas:
        lo = "" if a.minos_lower is None else f"  Minos [{a.minos_lower:.1f}, {a.minos_upper:.1f}]"
        print(f"peak {a.energy:.2f}: net area {a.area:.1f} ± {a.error:.1f}{lo}")
    print(
        f"chi2/ndof = {r.chi2:.1f}/{r.ndof} (p = {r.pvalue:.3g}); valid = {r.valid}; wrote {args.out}"
    )
    return 0 if r.valid else 3
