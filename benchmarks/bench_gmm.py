"""GMM fit + score of 1.5 M events: GMMSelector vs scikit-learn's default fit on all events.

Both sides get the same synthetic event table: three features shaped like the real ones (rise
time in ns, L1 distance to the SSE template, integer number of d2 peaks) drawn from an SSE-like
and an MSE-like population, plus an energy column with DEP/FEP lines so that the automatic MSE
decision has evidence. Measured in one run:

- ours: ``GMMSelector(GMMConfig(silhouette_events=0)).fit(table)`` then ``score(table)``
  (standardisation, 20 k-event pre-fit for the initialisation, 100 k-event float32 subsample
  fit, evidence, numpy posterior on all events);
- reference: the same preprocessing (standardise; the integer ``n_peaks_d2`` dequantised by
  uniform noise for the fit, as GMMSelector does), ``sklearn.mixture.GaussianMixture(2,
  covariance_type="full")`` with all other defaults fitted on all events (float64), then
  ``predict_proba`` on all (not dequantised) events.

The silhouette score is left out of both (``silhouette_events=0``): it is not part of a fit.

Agreement: fraction of events whose hard MSE/SSE class (posterior >= 0.5) is the same; the
reference's MSE component is the one with the longer mean rise time. Prints one JSON line.

Usage: ``python benchmarks/bench_gmm.py [--n 1500000] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
import time

import awkward as ak
import numpy as np
from numpy.typing import NDArray


def make_table(n: int, seed: int) -> tuple[ak.Array, NDArray[np.bool_]]:
    rng = np.random.default_rng(seed)
    e = 300.0 + rng.exponential(700.0, n)
    e = np.where(e < 2700.0, e, rng.uniform(300.0, 2700.0, n))
    mse = rng.random(n) < 0.45
    n_line = max(n // 200, 100)
    e[:n_line] = rng.normal(1592.5, 0.9, n_line)  # DEP, mostly SSE
    mse[:n_line] = rng.random(n_line) < 0.1
    e[n_line : 2 * n_line] = rng.normal(2614.5, 1.1, n_line)  # FEP, mostly MSE
    mse[n_line : 2 * n_line] = rng.random(n_line) < 0.9
    rt = np.where(mse, rng.gamma(9.0, 45.0, n), rng.normal(260.0, 70.0, n))
    l1 = np.where(mse, rng.normal(0.075, 0.022, n), rng.normal(0.045, 0.014, n))
    npk = np.where(mse, 2 + rng.poisson(1.3, n), 2 + rng.poisson(0.15, n)).astype(np.int32)
    table = ak.zip(
        {
            "energy_kev": e,
            "risetime_ns": rt.astype(np.float32),
            "l1_to_sse": l1.astype(np.float32),
            "n_peaks_d2": npk,
        }
    )
    return table, mse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_500_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from sklearn.mixture import GaussianMixture

    from bege_psd.select.gmm import GMMConfig, GMMSelector

    table, truth = make_table(args.n, args.seed)
    features = ("risetime_ns", "l1_to_sse", "n_peaks_d2")

    # warm-up of imports / BLAS on a small slice, not timed
    GMMSelector(GMMConfig(silhouette_events=0)).fit(table[:20_000]).score(table[:20_000])

    t0 = time.perf_counter()
    sel = GMMSelector(GMMConfig(silhouette_events=0)).fit(table)
    score = sel.score(table)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    x = np.column_stack([ak.to_numpy(table[f]).astype(np.float64) for f in features])
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    # same preprocessing as GMMSelector: the integer n_peaks_d2 is dequantised for the fit only
    zq = z.copy()
    zq[:, 2] += (np.random.default_rng(args.seed + 1).random(args.n) - 0.5) / x[:, 2].std()
    gm = GaussianMixture(n_components=2, covariance_type="full").fit(zq)
    proba = gm.predict_proba(z)
    t_ref = time.perf_counter() - t0

    ref_mse = int(np.argmax(gm.means_[:, 0]))  # longer rise time (standardised, same order)
    ours_cls = score >= 0.5
    ref_cls = proba[:, ref_mse] >= 0.5
    agreement = float(np.mean(ours_cls == ref_cls))
    print(
        json.dumps(
            {
                "benchmark": "gmm_fit_score",
                "n_events": args.n,
                "ours_s": round(t_ours, 3),
                "sklearn_default_all_events_s": round(t_ref, 3),
                "speedup": round(t_ref / t_ours, 2),
                "assignment_agreement": round(agreement, 5),
                "ours_fit_events": sel.training["n_fit"],
                "ours_n_iter": sel.training["n_iter"],
                "sklearn_n_iter": int(gm.n_iter_),
                "ours_accuracy_vs_truth": round(float(np.mean(ours_cls == truth)), 4),
                "sklearn_accuracy_vs_truth": round(float(np.mean(ref_cls == truth)), 4),
                "ours_mse_decided_by": sel.evidence.get("decided_by"),
            }
        )
    )


if __name__ == "__main__":
    main()
