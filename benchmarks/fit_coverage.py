"""Toy-MC coverage of ``bege_psd.fit.fit_peaks``: pulls and Minos 68 % coverage of the net area.

Each toy is a Poisson sample of a Gaussian + erfc step peak (net area 2000, sigma 0.6 keV, step
3 % of the peak height) on a linear background (46 -> 34 counts/keV) in 650-674 keV with
0.25 keV bins, fitted with ``gauss_step`` (ExtendedBinnedNLL on bin-integrated CDFs, Minos).
Prints one JSON line: pull mean and width, the fraction of Minos intervals covering the true
area, next to the reference values (0, 1, 0.6827), and the fit rate.

    python benchmarks/fit_coverage.py --toys 500 --seed 1
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from bege_psd.fit import fit_peaks, make_model

TRUTH = {
    "area_0": 2000.0,
    "mu_0": 661.66,
    "step_0": 0.03,
    "sigma": 0.6,
    "bkg_lo": 46.0,
    "bkg_hi": 34.0,
}
EDGES = np.linspace(650.0, 674.0, 97)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--toys", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    model = make_model("gauss_step", 1, 662.0, 12.0)
    mu = model.expected(EDGES, *TRUTH.values())
    rng = np.random.default_rng(args.seed)
    pulls, cover, invalid = [], 0, 0
    t0 = time.perf_counter()
    for _ in range(args.toys):
        n = rng.poisson(mu).astype(float)
        r = fit_peaks((n, EDGES), (650.0, 674.0), "gauss_step", [661.5])
        if not r.valid:
            invalid += 1
            continue
        a = r.areas[0]
        pulls.append((a.area - TRUTH["area_0"]) / a.error)
        cover += int(
            a.minos_lower is not None
            and a.minos_lower <= TRUTH["area_0"] <= (a.minos_upper or math.inf)
        )
    wall = time.perf_counter() - t0
    n_ok = len(pulls)
    print(
        json.dumps(
            {
                "benchmark": "fit_coverage",
                "toys": args.toys,
                "seed": args.seed,
                "invalid_fits": invalid,
                "pull_mean": round(float(np.mean(pulls)), 4),
                "pull_mean_stat_err": round(float(np.std(pulls, ddof=1) / math.sqrt(n_ok)), 4),
                "pull_width": round(float(np.std(pulls, ddof=1)), 4),
                "minos_coverage": round(cover / n_ok, 4),
                "coverage_stat_err": round(math.sqrt(0.6827 * 0.3173 / n_ok), 4),
                "reference": {"pull_mean": 0.0, "pull_width": 1.0, "coverage": 0.6827},
                "fits_per_s": round(args.toys / wall, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
