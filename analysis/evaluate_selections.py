"""Issue 6 evaluation: the unsupervised GMM and the classical A/E cut on simulated runs.

Train on a simulated 232Th run, apply to it and to a simulated cryoconite run, and write
figures (PNG) plus ``summary.json`` into ``--out`` (default ``generated/eval/selections``):

- GMM score distribution on 232Th (the paper's Fig. 12) split by simulation truth; silhouette;
- survival of the DEP 1592.5, SEP 2103.5, 212Bi 1620.7, FEP 2614.5 keV peaks (net counts,
  sideband-subtracted) and of the Compton continuum [1850, 2000] keV, for: the GMM (kept =
  MSE-like), A/E kept (MSE side) at the 90 %-DEP working point, A/E kept at the GMM's kept
  fraction, and the GERDA-style A/E SSE cut (the literature's survival figures);
- ROC and AUC against the truth (multi-site = ``n_sites >= 2``) on both runs, and the
  distribution of ``n_peaks_d2`` for true single- and multi-site events in energy bands;
- GMM variants beside the paper's default: + raw ``a_over_e``, + the energy-corrected A/E
  classifier of the fitted A/E selector, diagonal covariances, rise time and L1 only;
- on cryoconite: 137Cs peak-to-Compton ([355, 450] keV; the paper's max-bin definition with
  1-ADC-channel bins and the fitted-area one, via :mod:`bege_psd.metrics`) before/after, the
  137Cs peak survival, the Compton survival and the 7Be 477.6 keV significance before/after,
  for the GMM and for A/E at the same kept fraction in [300, 700] keV.

Everything goes through the public API: :func:`bege_psd.sim.simulate` (only if a run folder
is missing), :func:`bege_psd.io.iterate`, :func:`bege_psd.calib.calibrate` (fallback: the
run.info coefficients), :class:`bege_psd.dsp.SSETemplate`, :func:`bege_psd.dsp.features`,
:class:`~bege_psd.select.gmm.GMMSelector`, :class:`~bege_psd.select.aoe.AoESelector`,
:mod:`bege_psd.metrics`. Features are cached in ``<out>/cache`` keyed by the run files and the
calibration. Results are on SIMULATED data.

Usage::

    python analysis/evaluate_selections.py [--th232 generated/sim/th232]
        [--cryoconite generated/sim/cryoconite] [--n-events 300000] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bege_psd._util import atomic_path, atomic_write_text, stable_hash

log = logging.getLogger("evaluate_selections")

#: peak -> (window, sidebands) in keV; sidebands avoid the neighbouring 232Th-chain lines
PEAKS: dict[str, tuple[tuple[float, float], tuple[tuple[float, float], ...]]] = {
    "DEP 1592.5": ((1590.0, 1595.0), ((1564.0, 1576.0), (1598.0, 1612.0))),
    "Bi-212 1620.7": ((1618.5, 1623.0), ((1598.0, 1612.0), (1634.0, 1646.0))),
    "SEP 2103.5": ((2098.0, 2109.0), ((2075.0, 2090.0), (2117.0, 2132.0))),
    "FEP 2614.5": ((2609.0, 2621.0), ((2585.0, 2600.0), (2630.0, 2645.0))),
}
COMPTON_TH_KEV = (1850.0, 2000.0)
CRYO_RANGE_KEV = (300.0, 700.0)
TRAIN_RANGE_KEV = (300.0, 2700.0)
BE7_KEV = 477.6035


# ----------------------------------------------------------------------------- data
def _data_file(run: Path) -> Path:
    files = sorted((run / "RAW").glob("*.root")) + sorted((run / "RAW").glob("*.BIN"))
    if not files:
        msg = f"{run}: no RAW/*.root or RAW/*.BIN data file"
        raise FileNotFoundError(msg)
    return files[0]


def ensure_run(run: Path, source: str, n_events: int, seed: int) -> Path:
    if run.exists() and any((run / "RAW").glob("*")):
        return run
    from bege_psd.sim import simulate

    log.info("simulating %d %s events into %s", n_events, source, run)
    return Path(simulate(source, n_events, run, seed=seed))


def calibration_for(run: Path) -> tuple[Any, dict[str, Any]]:
    """(callable ADC -> keV, description); bege_psd.calib on the run, else run.info."""
    from bege_psd import io

    adc = _energies(run)
    try:
        from bege_psd.calib import calibrate

        cal = calibrate(adc)
        return cal, {"method": "bege_psd.calib.calibrate", **cal.to_dict()}
    except Exception as exc:
        meta = io.read_metadata(run)
        if meta.calibration is None:
            raise
        c = [float(x) for x in meta.calibration]
        log.warning("calibration failed (%s); using run.info coefficients %s", exc, c)

        class _Poly:
            coeffs = tuple(c)

            def apply(self, x: Any) -> NDArray[np.float64]:
                x = np.asarray(x, dtype=np.float64)
                return c[0] + c[1] * x + c[2] * x * x

            def fwhm_kev(self, e: Any) -> NDArray[np.float64]:
                return np.full(np.shape(e), np.nan)

        return _Poly(), {"method": "run.info", "coeffs": c, "error": str(exc)}


def _energies(run: Path) -> NDArray[np.float64]:
    from bege_psd import io

    parts = []
    for chunk in io.iterate(run, step_size=100_000):
        parts.append(np.asarray(chunk["energy_adc"], dtype=np.float64))
    return np.concatenate(parts)


def build_template(run: Path, cal: Any, window: tuple[float, float], dsp_cfg: Any) -> Any:
    import awkward as ak

    from bege_psd import dsp, io

    picked, attrs = [], {}
    for chunk in io.iterate(run, step_size=50_000):
        e = cal.apply(np.asarray(chunk["energy_adc"], dtype=np.float64))
        sel = (e >= window[0]) & (e <= window[1])
        if sel.any():
            picked.append(chunk[sel])
            attrs = dict(chunk.attrs)
    events = ak.concatenate(picked)
    energy = cal.apply(np.asarray(events["energy_adc"], dtype=np.float64))
    return dsp.SSETemplate.build(
        events, energy, window, dsp_cfg,
        polarity=attrs.get("polarity"), sample_period_ns=attrs.get("sample_period_ns"),
    )  # fmt: skip


def feature_table(run: Path, cal: Any, template: Any, cache: Path, cal_desc: dict[str, Any]) -> Any:
    """Features + energy_kev + flags + truth (n_sites, process) of every event of ``run``."""
    import awkward as ak

    from bege_psd import dsp, io
    from bege_psd.sim.run import read_truth, truth_path

    data = _data_file(run)
    st = data.stat()
    key = stable_hash(
        {"v": 3, "file": str(data.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns,
         "cal": cal_desc.get("coeffs"), "template": np.asarray(template.values).tolist()[:50],
         "dsp": dataclasses.asdict(dsp.DSPConfig())}
    )  # fmt: skip
    path = cache / f"features_{run.name}_{key}.npz"
    if path.exists():
        with np.load(path) as z:
            cols = {k: z[k] for k in z.files}
        log.info("%s: features from cache %s", run, path)
        return ak.zip(cols, depth_limit=1)
    parts: dict[str, list[NDArray[Any]]] = {}
    t0 = time.perf_counter()
    n = 0
    for chunk in io.iterate(run, step_size=50_000):
        f = dsp.features(chunk, template=template)
        cols = {name: np.asarray(f[name]) for name in f.fields}
        cols["energy_kev"] = cal.apply(np.asarray(chunk["energy_adc"], dtype=np.float64))
        cols["flags"] = np.asarray(chunk["flags"], dtype=np.uint32)
        for k, v in cols.items():
            parts.setdefault(k, []).append(v)
        n += len(chunk)
        log.info("%s: features of %d events (%.0f s)", run.name, n, time.perf_counter() - t0)
    cols = {k: np.concatenate(v) for k, v in parts.items()}
    tp = truth_path(run, data)
    if tp.exists():
        truth = read_truth(tp)
        if len(truth) != n:
            msg = f"{tp}: {len(truth)} truth entries for {n} events"
            raise ValueError(msg)
        cols["n_sites"] = np.asarray(truth["n_sites"], dtype=np.int32)
        cols["process"] = np.asarray(truth["process"], dtype=np.int32)
        cols["energy_true_kev"] = np.asarray(truth["energy_true_kev"], dtype=np.float64)
        cols["primary_energy_kev"] = np.asarray(truth["primary_energy_kev"], dtype=np.float64)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **cols)
    return ak.zip(cols, depth_limit=1)


# ----------------------------------------------------------------------------- metrics
def _q(x: Any) -> dict[str, float]:
    v, e = x
    return {"value": float(v), "error": float(e)}


def survival_table(table: Any, masks: dict[str, NDArray[np.bool_]]) -> dict[str, Any]:
    from bege_psd.select.aoe import net_peak_counts, net_survival

    e = np.asarray(table.energy_kev)
    out: dict[str, Any] = {"peaks_net_counts": {}}
    for name, (win, sides) in PEAKS.items():
        out["peaks_net_counts"][name] = _q(net_peak_counts(e, win, sides))
    for sel, keep in masks.items():
        row: dict[str, Any] = {}
        for name, (win, sides) in PEAKS.items():
            row[name] = _q(net_survival(e, keep, win, sides))
        c = (e >= COMPTON_TH_KEV[0]) & (e <= COMPTON_TH_KEV[1])
        f = float(keep[c].mean())
        row[f"Compton {COMPTON_TH_KEV[0]:.0f}-{COMPTON_TH_KEV[1]:.0f}"] = {
            "value": f, "error": math.sqrt(f * (1 - f) / max(int(c.sum()), 1))
        }  # fmt: skip
        r = (e >= TRAIN_RANGE_KEV[0]) & (e <= TRAIN_RANGE_KEV[1])
        row["kept_fraction_300_2700"] = float(keep[r].mean())
        if "n_sites" in table.fields:
            ns = np.asarray(table.n_sites)
            row["truth_sse_kept_300_2700"] = float(keep[r & (ns == 1)].mean())
            row["truth_mse_kept_300_2700"] = float(keep[r & (ns >= 2)].mean())
        out[sel] = row
    return out


def roc_block(
    table: Any, scores: dict[str, NDArray[np.float64]], erange: tuple[float, float]
) -> dict[str, Any]:
    from bege_psd.metrics import roc_auc, roc_curve

    if "n_sites" not in table.fields:
        return {}
    e = np.asarray(table.energy_kev)
    ns = np.asarray(table.n_sites)
    base = (e >= erange[0]) & (e <= erange[1]) & (ns >= 1)
    out: dict[str, Any] = {
        "energy_range_kev": list(erange),
        "positive": "n_sites >= 2 (multi-site)",
    }
    for name, s in scores.items():
        ok = base & np.isfinite(s)
        fpr, tpr, _ = roc_curve(s[ok], ns[ok] >= 2)
        out[name] = {
            "auc": roc_auc(s[ok], ns[ok] >= 2),
            "n_events": int(ok.sum()),
            "n_not_scorable": int((base & ~np.isfinite(s)).sum()),
            "truth_mse_fraction": float(np.mean(ns[ok] >= 2)),
            "_curve": (fpr, tpr),
        }
    return out


def npeaks_block(table: Any) -> dict[str, Any]:
    """Distribution of n_peaks_d2 for true single- and multi-site events in energy bands, and
    the AUC of the count alone (multi-site positive) in each band."""
    from bege_psd.metrics import roc_auc

    if "n_sites" not in table.fields:
        return {}
    e = np.asarray(table.energy_kev)
    ns = np.asarray(table.n_sites)
    npk = np.asarray(table.n_peaks_d2)
    out: dict[str, Any] = {}
    for lo, hi in (
        (300.0, 500.0),
        (500.0, 900.0),
        (900.0, 1500.0),
        (1500.0, 2700.0),
        (300.0, 2700.0),
    ):
        r = (e >= lo) & (e < hi) & (ns >= 1) & (npk >= 0)
        row: dict[str, Any] = {"auc": roc_auc(npk[r].astype(np.float64), ns[r] >= 2)}
        for name, m in (("single_site", r & (ns == 1)), ("multi_site", r & (ns >= 2))):
            v = npk[m]
            row[name] = {
                "n": int(v.size), "median": float(np.median(v)) if v.size else None,
                "mean": float(v.mean()) if v.size else None,
                "fraction_by_count_0_to_6plus": (np.bincount(np.minimum(v, 6), minlength=7) / max(v.size, 1)).round(4).tolist(),
            }  # fmt: skip
        out[f"{lo:.0f}-{hi:.0f} keV"] = row
    return out


def cryo_block(table: Any, cal: Any, masks: dict[str, NDArray[np.bool_]]) -> dict[str, Any]:
    from bege_psd.errors import BegePsdError
    from bege_psd.metrics import MetricsConfig, compare_peak_to_compton, line_significance
    from bege_psd.spectrum import channel_edges_kev, make_spectrum

    e = np.asarray(table.energy_kev)
    ch = np.arange(0, 16384)
    ekev = cal.apply(ch.astype(np.float64))
    inside = np.flatnonzero((ekev >= 290.0) & (ekev <= 710.0))
    edges = channel_edges_kev(cal.apply, int(inside[0]), int(inside[-1]))
    h_all = make_spectrum(e, bins=edges)
    mcfg = MetricsConfig()
    fwhm = float(np.asarray(cal.fwhm_kev(BE7_KEV)))
    fwhm_arg = fwhm if math.isfinite(fwhm) else None
    out: dict[str, Any] = {"bins": "1 ADC channel", "fwhm_477_kev": fwhm}
    r = (e >= CRYO_RANGE_KEV[0]) & (e <= CRYO_RANGE_KEV[1])

    def be7(h: Any) -> dict[str, Any]:
        try:
            s = line_significance(h, mcfg.weak_line_window_kev, BE7_KEV, model="gauss_linear", fwhm=fwhm_arg,
                                  fix={"mu_0": BE7_KEV} if fwhm_arg else None)  # fmt: skip
            return {"z": s.z, "area": s.area.to_dict()}
        except BegePsdError as exc:
            return {"error": str(exc)}

    # The 137Cs Compton edge (661.66 keV -> 477.3 keV) sits on the 7Be line: a Gaussian on a
    # linear background (the fit above) partly fits the edge. In simulation the truth separates
    # them: S = 7Be full-energy events, B = everything else, in +-1.5 FWHM around 477.6 keV.
    be7_truth: dict[str, Any] = {}
    if "primary_energy_kev" in table.fields:
        half = 1.5 * (fwhm if math.isfinite(fwhm) else 1.2)
        roi = (e >= BE7_KEV - half) & (e <= BE7_KEV + half)
        sig = (
            roi
            & (np.asarray(table.process) == 1)
            & (np.abs(np.asarray(table.primary_energy_kev) - BE7_KEV) < 0.05)
        )
        for name, keep in {"all": np.ones(e.size, bool), **masks}.items():
            s_n, b_n = int((sig & keep).sum()), int((roi & ~sig & keep).sum())
            be7_truth[name] = {
                "signal": s_n, "background": b_n,
                "s_over_sqrt_b": s_n / math.sqrt(b_n) if b_n else None,
                "signal_survival": s_n / max(int(sig.sum()), 1),
            }  # fmt: skip
        be7_truth["roi_kev"] = [BE7_KEV - half, BE7_KEV + half]
    out["be7_truth"] = be7_truth
    out["all"] = {"be7": be7(h_all), "n_events_300_700": int(r.sum())}
    for name, keep in masks.items():
        h_kept = make_spectrum(e, keep, bins=edges)
        row: dict[str, Any] = {"kept_fraction_300_700": float(keep[r].mean()), "be7": be7(h_kept)}
        for method in ("paper", "area"):
            try:
                row[f"ptc_{method}"] = compare_peak_to_compton(
                    h_all, h_kept, method=method, config=mcfg
                ).to_dict()
            except BegePsdError as exc:
                row[f"ptc_{method}"] = {"error": str(exc)}
        out[name] = row
    out["_spectra"] = (edges, {"all": np.ones(e.size, bool), **masks})
    return out


def scan_block(
    table: Any, cal: Any, scores: dict[str, NDArray[np.float64]], edges: NDArray[np.float64]
) -> dict[str, Any]:
    """Working-point scan on cryoconite: kept fraction in [300, 700] keV, 137Cs peak survival
    (fitted net area) and the paper's peak-to-Compton factor; interpolated at the paper's GMM
    peak survival (49.5 %)."""
    from bege_psd.errors import BegePsdError
    from bege_psd.metrics import compare_peak_to_compton
    from bege_psd.select.aoe import threshold_for_kept_fraction
    from bege_psd.spectrum import make_spectrum

    e = np.asarray(table.energy_kev)
    h_all = make_spectrum(e, bins=edges)
    out: dict[str, Any] = {}
    for name, s in scores.items():
        rows = []
        for target in np.linspace(0.08, 0.8, 19):
            t = threshold_for_kept_fraction(
                s, float(target), energy_kev=e, energy_range_kev=CRYO_RANGE_KEV
            )
            keep = np.isfinite(s) & (s >= t)
            r = (e >= CRYO_RANGE_KEV[0]) & (e <= CRYO_RANGE_KEV[1])
            try:
                imp = compare_peak_to_compton(
                    h_all, make_spectrum(e, keep, bins=edges), method="paper"
                )
            except BegePsdError as exc:
                log.warning("scan %s at %.2f: %s", name, target, exc)
                continue
            rows.append({"threshold": t, "kept_fraction_300_700": float(keep[r].mean()),
                         "peak_survival": imp.peak_survival.value, "ptc_kept": imp.ratio_kept.value,
                         "factor": imp.factor.value, "compton_survival": imp.compton_survival.value})  # fmt: skip
        ps = np.array([row["peak_survival"] for row in rows])
        fac = np.array([row["factor"] for row in rows])
        order = np.argsort(ps)
        at = (
            float(np.interp(0.495, ps[order], fac[order]))
            if ps.min() <= 0.495 <= ps.max()
            else None
        )
        out[name] = {"points": rows, "factor_at_peak_survival_0.495": at}
    return out


# ----------------------------------------------------------------------------- figures
def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)


def figures(out: Path, th: Any, cryo: Any, gmm: Any, aoe: Any, scores_th: dict[str, Any],
            roc_th: dict[str, Any], roc_cr: dict[str, Any], masks_th: dict[str, Any],
            cryo_res: dict[str, Any]) -> list[str]:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ROOT)
    written = []
    # Fig. 12: GMM score distribution, split by truth
    s = scores_th["gmm"]
    e = np.asarray(th.energy_kev)
    r = (e >= TRAIN_RANGE_KEV[0]) & (e <= TRAIN_RANGE_KEV[1]) & np.isfinite(s)
    fig, ax = plt.subplots(figsize=(8, 6))
    bins = np.linspace(0, 1, 51)
    ax.hist(s[r], bins=bins, histtype="step", color="k", label="all events")
    if "n_sites" in th.fields:
        ns = np.asarray(th.n_sites)
        ax.hist(s[r & (ns == 1)], bins=bins, histtype="step", label="truth: single-site")
        ax.hist(s[r & (ns >= 2)], bins=bins, histtype="step", label="truth: multi-site")
    ax.axvline(gmm.threshold, ls="--", color="gray")
    ax.set_yscale("log")
    ax.set_xlabel("GMM score (posterior of the MSE component)")
    ax.set_ylabel("events")
    ax.set_title(f"SIMULATED 232Th, 300-2700 keV; silhouette {gmm.silhouette:.2f}", fontsize=12)
    ax.legend(fontsize=11)
    written.append(_save(fig, out / "fig12_gmm_score_th232.png"))
    # ROC
    for tag, roc in (("th232", roc_th), ("cryoconite", roc_cr)):
        if not roc:
            continue
        fig, ax = plt.subplots(figsize=(7, 7))
        for name, v in roc.items():
            if isinstance(v, dict) and "_curve" in v:
                fpr, tpr = v["_curve"]
                ls = "--" if name.startswith("feature") else "-"
                ax.plot(fpr, tpr, ls, label=f"{name}: AUC {v['auc']:.3f}")
        ax.plot([0, 1], [0, 1], ":", color="gray")
        ax.set_xlabel("single-site events kept (FPR)")
        ax.set_ylabel("multi-site events kept (TPR)")
        ax.set_title(f"SIMULATED {tag}, {roc['energy_range_kev']} keV, truth n_sites", fontsize=12)
        ax.legend(fontsize=11, loc="lower right")
        written.append(_save(fig, out / f"roc_{tag}.png"))
    # 232Th spectra
    fig, ax = plt.subplots(figsize=(10, 6))
    bins = np.arange(1500.0, 2700.0, 1.0)
    for name, keep in {"all": np.ones(e.size, bool), **masks_th}.items():
        if name == "aoe_gerda_sse_pass":
            continue
        ax.hist(e[keep], bins=bins, histtype="step", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("energy [keV]")
    ax.set_ylabel("counts / keV")
    ax.set_title("SIMULATED 232Th: all and kept (MSE-like) events", fontsize=12)
    ax.legend(fontsize=10)
    written.append(_save(fig, out / "th232_spectra.png"))
    # cryoconite spectra (Fig. 13 / 14)
    edges, cmasks = cryo_res["_spectra"]
    ec = np.asarray(cryo.energy_kev)
    for fname, lo, hi in (
        ("fig13_cryoconite_spectra.png", 300.0, 700.0),
        ("fig14_cryoconite_be7.png", 450.0, 510.0),
    ):
        fig, ax = plt.subplots(figsize=(10, 6))
        for name, keep in cmasks.items():
            h, _ = np.histogram(ec[keep], bins=edges)
            ax.stairs(h, edges, label=name)
        ax.set_xlim(lo, hi)
        ax.set_yscale("log")
        ax.set_xlabel("energy [keV]")
        ax.set_ylabel("counts / ADC channel")
        ax.set_title("SIMULATED cryoconite: all and kept events", fontsize=12)
        ax.legend(fontsize=10)
        written.append(_save(fig, out / fname))
    # A/E energy correction
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    es = np.array([sl["energy_kev"] for sl in aoe.slices])
    a1.errorbar(
        es, [sl["mu"] for sl in aoe.slices], [sl["mu_err"] for sl in aoe.slices], fmt="o", ms=3
    )
    grid = np.linspace(es.min(), es.max(), 100)
    a1.plot(grid, aoe.mu(grid))
    a1.set_ylabel("SSE band mu")
    a2.errorbar(es, [sl["sigma"] / aoe.mu(sl["energy_kev"]) for sl in aoe.slices],
                [sl["sigma_err"] / aoe.mu(sl["energy_kev"]) for sl in aoe.slices], fmt="o", ms=3)  # fmt: skip
    a2.plot(grid, aoe.sigma(grid))
    a2.set_ylabel("rel. width")
    a2.set_xlabel("energy [keV]")
    a1.set_title("SIMULATED 232Th: A/E correction from Compton slices", fontsize=12)
    written.append(_save(fig, out / "aoe_energy_correction.png"))
    # working-point scan on cryoconite
    fig, ax = plt.subplots(figsize=(8, 6))
    for name, v in cryo_res.get("_scan", {}).items():
        pts = v["points"]
        ax.plot(
            [p["peak_survival"] for p in pts], [p["factor"] for p in pts], "o-", ms=3, label=name
        )
    ax.plot([0.495], [1.74], "k*", ms=12, label="paper GMM (real data)")
    ax.set_xlabel("137Cs peak survival")
    ax.set_ylabel("P/C improvement (paper def.)")
    ax.set_title("SIMULATED cryoconite: working-point scan", fontsize=12)
    ax.legend(fontsize=11)
    written.append(_save(fig, out / "cryoconite_scan.png"))
    return written


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_strip(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--th232", type=Path, default=Path("generated/sim/th232"))
    parser.add_argument("--cryoconite", type=Path, default=Path("generated/sim/cryoconite"))
    parser.add_argument(
        "--n-events",
        type=int,
        default=300_000,
        help="232Th events to simulate if the run is missing",
    )
    parser.add_argument(
        "--n-cryoconite",
        type=int,
        default=None,
        help="cryoconite events to simulate (default: --n-events)",
    )
    parser.add_argument("--out", type=Path, default=Path("generated/eval/selections"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from bege_psd.dsp import DSPConfig
    from bege_psd.select.aoe import AoESelector, threshold_for_kept_fraction
    from bege_psd.select.gmm import GMMConfig, GMMSelector

    t_start = time.perf_counter()
    out = args.out
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    th_run = ensure_run(args.th232, "th232", args.n_events, args.seed)
    cr_run = ensure_run(
        args.cryoconite, "cryoconite", args.n_cryoconite or args.n_events, args.seed + 1
    )

    cal, cal_desc = calibration_for(th_run)
    dsp_cfg = DSPConfig()
    template = build_template(th_run, cal, (1590.0, 1595.0), dsp_cfg)
    th = feature_table(th_run, cal, template, cache, cal_desc)
    cr = feature_table(cr_run, cal, template, cache, cal_desc)

    t0 = time.perf_counter()
    gmm = GMMSelector().fit(th)
    t_gmm = time.perf_counter() - t0
    gmm.save(out / "gmm.json")
    gmm4 = GMMSelector(
        GMMConfig(features=("risetime_ns", "l1_to_sse", "n_peaks_d2", "a_over_e"))
    ).fit(th)
    # variant without n_peaks_d2 (that feature is noise-dominated on the simulated pulses)
    gmm2 = GMMSelector(GMMConfig(features=("risetime_ns", "l1_to_sse"))).fit(th)
    aoe = AoESelector().fit(th)
    aoe.save(out / "aoe.json")
    # variant: the energy-corrected A/E classifier (label-free: fitted on Compton slices) as a
    # 4th GMM feature; the raw a_over_e above carries the energy dependence of A/E
    for tab in (th, cr):
        tab["aoe_classifier"] = aoe.classifier(tab)
    gmm4c = GMMSelector(
        GMMConfig(features=("risetime_ns", "l1_to_sse", "n_peaks_d2", "aoe_classifier"))
    ).fit(th)
    # variant: the paper's three features with diagonal covariances (the best GMM measured here)
    gmmd = GMMSelector(GMMConfig(covariance_type="diag")).fit(th)

    e_th = np.asarray(th.energy_kev)
    e_cr = np.asarray(cr.energy_kev)
    scores_th = {"gmm": gmm.score(th), "gmm+aoe": gmm4.score(th), "gmm+aoe_corrected": gmm4c.score(th),
                 "gmm_diag": gmmd.score(th),
                 "gmm_rt_l1": gmm2.score(th), "aoe": aoe.score(th)}  # fmt: skip
    scores_cr = {"gmm": gmm.score(cr), "gmm+aoe": gmm4.score(cr), "gmm+aoe_corrected": gmm4c.score(cr),
                 "gmm_diag": gmmd.score(cr),
                 "gmm_rt_l1": gmm2.score(cr), "aoe": aoe.score(cr)}  # fmt: skip
    for name in ("risetime_ns", "l1_to_sse", "n_peaks_d2"):
        scores_th[f"feature {name}"] = np.asarray(getattr(th, name), dtype=np.float64)
        scores_cr[f"feature {name}"] = np.asarray(getattr(cr, name), dtype=np.float64)

    def keep(s: NDArray[np.float64], t: float) -> NDArray[np.bool_]:
        return np.isfinite(s) & (s >= t)

    gmm_keep_th = keep(scores_th["gmm"], gmm.threshold)
    r_th = (e_th >= TRAIN_RANGE_KEV[0]) & (e_th <= TRAIN_RANGE_KEV[1])
    f_gmm_th = float(gmm_keep_th[r_th].mean())
    t_aoe_th = threshold_for_kept_fraction(
        scores_th["aoe"], f_gmm_th, energy_kev=e_th, energy_range_kev=TRAIN_RANGE_KEV
    )
    masks_th = {
        "gmm": gmm_keep_th,
        "gmm+aoe": keep(scores_th["gmm+aoe"], gmm4.threshold),
        "gmm+aoe_corrected": keep(scores_th["gmm+aoe_corrected"], gmm4c.threshold),
        "gmm_diag": keep(scores_th["gmm_diag"], gmmd.threshold),
        "gmm_rt_l1": keep(scores_th["gmm_rt_l1"], gmm2.threshold),
        "aoe_keep_mse_at_90pc_dep": aoe.mask(th),
        "aoe_keep_mse_matched_to_gmm": keep(scores_th["aoe"], t_aoe_th),
        "aoe_gerda_sse_pass": aoe.sse_pass(th),
    }
    gmm_keep_cr = keep(scores_cr["gmm"], gmm.threshold)
    r_cr = (e_cr >= CRYO_RANGE_KEV[0]) & (e_cr <= CRYO_RANGE_KEV[1])
    f_gmm_cr = float(gmm_keep_cr[r_cr].mean())
    t_aoe_cr = threshold_for_kept_fraction(
        scores_cr["aoe"], f_gmm_cr, energy_kev=e_cr, energy_range_kev=CRYO_RANGE_KEV
    )
    masks_cr = {
        "gmm": gmm_keep_cr,
        "gmm+aoe": keep(scores_cr["gmm+aoe"], gmm4.threshold),
        "gmm+aoe_corrected": keep(scores_cr["gmm+aoe_corrected"], gmm4c.threshold),
        "gmm_diag": keep(scores_cr["gmm_diag"], gmmd.threshold),
        "gmm_rt_l1": keep(scores_cr["gmm_rt_l1"], gmm2.threshold),
        "aoe_matched_to_gmm": keep(scores_cr["aoe"], t_aoe_cr),
        "aoe_keep_mse_at_90pc_dep": aoe.mask(cr),
    }
    roc_th = roc_block(th, dict(scores_th.items()), TRAIN_RANGE_KEV)
    roc_cr = roc_block(cr, dict(scores_cr.items()), CRYO_RANGE_KEV)
    cryo_res = cryo_block(cr, cal, masks_cr)
    surv = survival_table(th, masks_th)
    scan = scan_block(
        cr,
        cal,
        {
            k: scores_cr[k]
            for k in ("gmm", "gmm+aoe", "gmm+aoe_corrected", "gmm_diag", "gmm_rt_l1", "aoe")
        },
        cryo_res["_spectra"][0],
    )
    cryo_res["_scan"] = scan
    figs = figures(out, th, cr, gmm, aoe, scores_th, roc_th, roc_cr, masks_th, cryo_res)

    summary = {
        "simulated": True,
        "runs": {
            "th232": str(th_run),
            "cryoconite": str(cr_run),
            "n_th232": len(th),
            "n_cryoconite": len(cr),
        },
        "calibration": {
            k: v for k, v in cal_desc.items() if k in ("method", "coeffs", "fwhm_coeffs")
        },
        "gmm": {
            "config_hash": gmm.to_dict()["config_hash"],
            "silhouette": gmm.silhouette,
            "mse_components": list(gmm.mse_components),
            "evidence": gmm.evidence,
            "training": gmm.training,
            "fit_seconds": t_gmm,
            "kept_fraction_th232_300_2700": f_gmm_th,
            "kept_fraction_cryoconite_300_700": f_gmm_cr,
        },
        "gmm+aoe": {
            "silhouette": gmm4.silhouette,
            "evidence_decided_by": gmm4.evidence.get("decided_by"),
        },
        "gmm+aoe_corrected": {
            "silhouette": gmm4c.silhouette,
            "evidence_decided_by": gmm4c.evidence.get("decided_by"),
        },
        "gmm_diag": {
            "silhouette": gmmd.silhouette,
            "evidence_decided_by": gmmd.evidence.get("decided_by"),
        },
        "gmm_rt_l1": {
            "silhouette": gmm2.silhouette,
            "evidence_decided_by": gmm2.evidence.get("decided_by"),
        },
        "aoe": {
            "mu_coeffs": aoe.mu_coeffs,
            "sigma_coeffs": aoe.sigma_coeffs,
            "n_slices": len(aoe.slices),
            "gerda_low_cut_sigma_at_90pc_dep": aoe.cut_value,
            "threshold_keep_mse_at_90pc_dep": aoe.threshold,
            "threshold_matched_to_gmm_th232": t_aoe_th,
            "threshold_matched_to_gmm_cryoconite": t_aoe_cr,
            "score_definition": "1/2 - arctan(c)/pi, c = (A/E/mu(E) - 1)/sigma(E)",
        },
        "th232_survival": surv,
        "n_peaks_d2_vs_truth": {"th232": npeaks_block(th), "cryoconite": npeaks_block(cr)},
        "th232_roc": roc_th,
        "cryoconite_roc": roc_cr,
        "cryoconite": cryo_res,
        "cryoconite_scan": scan,
        "paper_gmm": {
            "ptc_before": 0.238,
            "ptc_after": 0.414,
            "factor": 1.74,
            "cs137_peak_kept": 0.495,
            "compton_discarded": 0.72,
        },
        "figures": figs,
        "wall_seconds": time.perf_counter() - t_start,
    }
    atomic_write_text(out / "summary.json", json.dumps(_strip(summary), indent=1))
    log.info("wrote %s and %d figures", out / "summary.json", len(figs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
