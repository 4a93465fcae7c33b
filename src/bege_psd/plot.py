"""Publication figures (mplhep), analogues of the paper's Figs. 4 and 7-14.

What to use when
----------------
- :func:`make_all` after :func:`bege_psd.pipeline.run_pipeline`: reads a results folder and
  writes every figure as PNG and PDF under ``figures/``.
- The single functions (:func:`spectrum_with_labels`, :func:`spectrum_comparison`,
  :func:`working_point_scan`, :func:`roc_curves`, :func:`savgol_example`,
  :func:`feature_distributions`, :func:`score_distribution`, :func:`survival_bars`,
  :func:`mda_bars`) take plain arrays / dicts and return a ``matplotlib.figure.Figure``, for
  your own notebooks. :func:`save_figure` writes PNG + PDF atomically.

Every figure made from simulated data carries the label "Simulation" (``simulated=True``).

Paper figures and their analogues (Baccolo et al., EPJC 2025):

====  ======================================================================================
Fig   analogue here
====  ======================================================================================
4     calibration spectrum 300-2700 keV with the label windows (:func:`spectrum_with_labels`)
7     [1500, 1650] keV before / after each cut (:func:`spectrum_comparison`)
8     208Tl peak-to-Compton and kept fraction vs working point (:func:`working_point_scan`)
9     ROC on the energy-window labels (and on simulation truth) (:func:`roc_curves`)
10    Savitzky-Golay smoothing and derivative of an SSE and an MSE (:func:`savgol_example`)
11    rise time, L1 distance, n_peaks for SSE (DEP) vs MSE (FEP) (:func:`feature_distributions`)
12    GMM score distribution on 232Th (:func:`score_distribution`)
13    sample spectrum 300-700 keV, original / ACM / GMM / A/E (:func:`spectrum_comparison`)
14    close-up 450-510 keV around 7Be 477.6 keV (:func:`spectrum_comparison`)
====  ======================================================================================
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._util import atomic_path
from .errors import require

__all__ = (
    "feature_distributions",
    "make_all",
    "mda_bars",
    "roc_curves",
    "save_figure",
    "savgol_example",
    "score_distribution",
    "spectrum_comparison",
    "spectrum_with_labels",
    "survival_bars",
    "working_point_scan",
)

log = logging.getLogger(__name__)

#: colours of the selections, fixed across figures (original blue, ACM red, GMM orange as
#: in the paper's Fig. 13; A/E green)
COLOURS: dict[str, str] = {
    "original": "#1f77b4",
    "acm": "#d62728",
    "gmm": "#ff7f0e",
    "aoe": "#2ca02c",
}
NAMES: dict[str, str] = {"original": "Original", "acm": "ACM", "gmm": "GMM", "aoe": "A/E"}


def _plt() -> Any:
    require("matplotlib", "plot")
    import matplotlib

    if matplotlib.get_backend().lower() not in (
        "agg",
        "pdf",
        "svg",
        "module://matplotlib_inline.backend_inline",
    ):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(ax: Any, simulated: bool, text: str = "") -> None:
    """Top-left experiment label: "bege-psd Simulation" for simulated data."""
    import mplhep as mh

    # with data=False mplhep itself writes "Simulation" after the experiment name
    mh.label.exp_label(
        exp="BEGe",
        text="" if simulated else text,
        data=not simulated,
        com=None,
        ax=ax,
        loc=0,
        rlabel="",
    )


def _new(simulated: bool, **kw: Any) -> tuple[Any, Any]:
    plt = _plt()
    import mplhep as mh

    with plt.style.context(mh.style.ROOT):
        fig, ax = plt.subplots(figsize=kw.pop("figsize", (8, 6)), **kw)
    return fig, ax


def save_figure(fig: Any, stem: str | os.PathLike[str]) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` atomically; close the figure; return the paths."""
    plt = _plt()
    out = []
    for ext in (".png", ".pdf"):
        dest = Path(stem).with_suffix(ext)
        with atomic_path(dest) as tmp:
            fig.savefig(tmp, format=ext[1:], dpi=120, bbox_inches="tight")
        out.append(dest)
    plt.close(fig)
    return out


def _step(ax: Any, counts: NDArray[Any], edges: NDArray[Any], **kw: Any) -> None:
    import mplhep as mh

    mh.histplot(
        np.asarray(counts, dtype=float),
        np.asarray(edges, dtype=float),
        ax=ax,
        histtype="step",
        yerr=False,
        flow=None,
        **kw,
    )


def _slice(
    counts: NDArray[Any], edges: NDArray[Any], lo: float, hi: float
) -> tuple[NDArray[Any], NDArray[Any]]:
    i0 = int(np.searchsorted(edges, lo, side="left"))
    i1 = int(np.searchsorted(edges, hi, side="right")) - 1
    i0 = max(min(i0, edges.size - 2), 0)
    i1 = max(min(i1, edges.size - 1), i0 + 1)
    return np.asarray(counts[i0:i1]), np.asarray(edges[i0 : i1 + 1])


def _rebin(
    counts: NDArray[Any], edges: NDArray[Any], width_kev: float | None
) -> tuple[NDArray[Any], NDArray[Any]]:
    """Merge whole bins to about ``width_kev`` for display (the analysis keeps 1-channel bins)."""
    counts, edges = np.asarray(counts), np.asarray(edges, dtype=float)
    if width_kev is None or counts.size < 2:
        return counts, edges
    k = max(1, round(width_kev / float(edges[1] - edges[0])))
    n = (counts.size // k) * k
    if k == 1 or n == 0:
        return counts, edges
    return counts[:n].reshape(-1, k).sum(axis=1), edges[: n + 1 : k]


def spectrum_with_labels(
    counts: NDArray[Any],
    edges: NDArray[Any],
    windows: Mapping[str, tuple[float, float]],
    *,
    energy_range: tuple[float, float] = (300.0, 2700.0),
    simulated: bool = True,
    display_width_kev: float | None = 1.0,
) -> Any:
    """Fig. 4: the 232Th spectrum with the label windows shaded (MSE red, SSE yellow/green)."""
    fig, ax = _new(simulated)
    c, e = _slice(*_rebin(counts, edges, display_width_kev), *energy_range)
    _step(ax, c, e, color="k", label="All events")
    colours = {
        "fep": "tab:red",
        "sep": "tab:red",
        "multi_compton": "tab:red",
        "dep": "gold",
        "single_compton": "gold",
    }
    kinds = {
        "fep": "MSE",
        "sep": "MSE",
        "multi_compton": "MSE",
        "dep": "SSE",
        "single_compton": "SSE",
    }
    for name, (lo, hi) in windows.items():
        ax.axvspan(
            lo,
            hi,
            color=colours.get(name, "grey"),
            alpha=0.3,
            lw=0,
            label=f"{name} ({kinds.get(name, '?')}) [{lo:g}, {hi:g}] keV",
        )
    ax.set_yscale("log")
    ax.set_xlabel("Energy [keV]")
    ax.set_ylabel(f"Counts / {e[1] - e[0]:.2g} keV")
    ax.set_xlim(*energy_range)
    ax.legend(fontsize="x-small", loc="upper right")
    _label(ax, simulated)
    return fig


def spectrum_comparison(
    spectra: Mapping[str, NDArray[Any]],
    edges: NDArray[Any],
    energy_range: tuple[float, float],
    *,
    simulated: bool = True,
    log_y: bool = True,
    marks: Mapping[str, float] | None = None,
    display_width_kev: float | None = 1.0,
) -> Any:
    """Figs. 7, 13, 14: spectra of several selections over ``energy_range``.

    Bins are merged to about ``display_width_kev`` for legibility (``None``: as given).
    """
    fig, ax = _new(simulated)
    for sel, counts in spectra.items():
        c, e = _slice(*_rebin(counts, edges, display_width_kev), *energy_range)
        _step(ax, c, e, color=COLOURS.get(sel), label=NAMES.get(sel, sel))
    for name, energy in (marks or {}).items():
        ax.axvline(energy, color="grey", ls=":", lw=1)
        ax.text(
            energy,
            0.97,
            f" {name}",
            rotation=90,
            va="top",
            ha="right",
            fontsize="x-small",
            transform=ax.get_xaxis_transform(),
        )
    if log_y:
        ax.set_yscale("log")
    ax.set_xlim(*energy_range)
    ax.set_xlabel("Energy [keV]")
    shown = _rebin(next(iter(spectra.values())), edges, display_width_kev)[1] if spectra else edges
    ax.set_ylabel(f"Counts / {shown[1] - shown[0]:.2g} keV")
    ax.legend(fontsize="small", loc="upper right")
    _label(ax, simulated)
    return fig


def working_point_scan(
    scan: Sequence[Mapping[str, float]],
    working_point: float,
    *,
    selector: str = "acm",
    simulated: bool = True,
) -> Any:
    """Fig. 8: 208Tl peak-to-Compton ratio (left axis) and kept fraction (right) vs threshold."""
    fig, ax = _new(simulated)
    t = np.array([r["threshold"] for r in scan])
    pc = np.array([r["tl_pc"] for r in scan], dtype=float)
    err = np.array([r["tl_pc_err"] for r in scan], dtype=float)
    kept = np.array([r["kept_fraction"] for r in scan])
    ax.plot(t, pc, color="tab:blue", label="208Tl FEP / single-Compton")
    ax.fill_between(t, pc - err, pc + err, color="tab:blue", alpha=0.25, lw=0)
    ax.set_xlabel(f"{NAMES.get(selector, selector)} working point (score threshold)")
    ax.set_ylabel("Peak-to-Compton ratio", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(t, kept, color="tab:red", label="kept fraction [300, 2700] keV")
    ax2.set_ylabel("Fraction of events kept", color="tab:red")
    ax2.set_ylim(0, 1.05)
    ax.axvline(working_point, color="tab:green", ls="--", label=f"working point {working_point:g}")
    ax.legend(loc="upper left", fontsize="small", bbox_to_anchor=(0.0, 0.9))
    _label(ax, simulated)
    return fig


def roc_curves(
    rocs: Mapping[str, Mapping[str, Any]],
    *,
    title: str = "energy-window labels",
    simulated: bool = True,
) -> Any:
    """Fig. 9: ROC (TPR = kept MSE, FPR = kept SSE) of each selector, AUC in the legend."""
    fig, ax = _new(simulated, figsize=(7, 7))
    for sel, r in rocs.items():
        if "fpr" not in r:
            continue
        ax.plot(
            r["fpr"],
            r["tpr"],
            color=COLOURS.get(sel),
            label=f"{NAMES.get(sel, sel)} (AUC = {r['auc']:.3f})",
        )
    ax.plot([0, 1], [0, 1], color="grey", ls=":")
    ax.set_xlabel("False positive rate (SSE kept)")
    ax.set_ylabel("True positive rate (MSE kept)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize="small", title=title, title_fontsize="small")
    _label(ax, simulated)
    return fig


def savgol_example(
    sse: NDArray[Any],
    mse: NDArray[Any],
    *,
    sample_period_ns: float = 4.0,
    smooth: tuple[int, int] = (19, 2),
    derivative: tuple[int, int] = (19, 13),
    simulated: bool = True,
) -> Any:
    """Fig. 10: a typical SSE (top) and MSE (bottom): raw, smoothed and differentiated pulses."""
    from scipy.signal import savgol_filter

    plt = _plt()
    import mplhep as mh

    with plt.style.context(mh.style.ROOT):
        fig, axes = plt.subplots(2, 1, figsize=(8, 10), sharex=True, layout="constrained")
    for ax, wf, name in ((axes[0], sse, "SSE (DEP window)"), (axes[1], mse, "MSE (FEP window)")):
        w = np.asarray(wf, dtype=float)
        w = w - np.median(w[: max(len(w) // 10, 5)])
        if abs(w.min()) > abs(w.max()):
            w = -w
        t = np.arange(w.size) * sample_period_ns
        s = savgol_filter(w, smooth[0], smooth[1])
        d = savgol_filter(s, derivative[0], derivative[1], deriv=1)
        ax.plot(t, w / max(w.max(), 1e-9), color="lightgrey", label="waveform")
        ax.plot(t, s / max(s.max(), 1e-9), color="k", label=f"SG smooth ({smooth[0]}, {smooth[1]})")
        ax.plot(
            t,
            d / max(np.abs(d).max(), 1e-9),
            color="tab:red",
            label=f"SG derivative ({derivative[0]}, {derivative[1]})",
        )
        ax.set_ylabel("normalised")
        ax.legend(fontsize="x-small", loc="center right", title=name, title_fontsize="small")
        _label(ax, simulated)
    axes[1].set_xlabel("Time [ns]")
    return fig


def feature_distributions(
    sse: Mapping[str, NDArray[Any]], mse: Mapping[str, NDArray[Any]], *, simulated: bool = True
) -> Any:
    """Fig. 11: rise time, L1 distance to the SSE template and n_peaks_d2 for SSE vs MSE."""
    plt = _plt()
    import mplhep as mh

    names = [n for n in ("risetime_ns", "l1_to_sse", "n_peaks_d2") if n in sse and n in mse]
    with plt.style.context(mh.style.ROOT):
        fig, axes = plt.subplots(
            len(names),
            1,
            figsize=(8, 4.5 * max(len(names), 1)),
            squeeze=False,
            layout="constrained",
        )
    for ax, name in zip(axes[:, 0], names, strict=True):
        a = np.asarray(sse[name], dtype=float)
        b = np.asarray(mse[name], dtype=float)
        both = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]])
        if both.size == 0:
            continue
        if name == "n_peaks_d2":
            bins = np.arange(-0.5, min(both.max(), 15) + 1.5)
        else:
            lo, hi = np.quantile(both, [0.005, 0.995])
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 50)
        for vals, lab, col in (
            (a, "SSE-like (DEP window)", "tab:blue"),
            (b, "MSE-like (FEP window)", "tab:red"),
        ):
            v = vals[np.isfinite(vals)]
            h, _ = np.histogram(v, bins=bins)
            norm = h / max(h.sum(), 1)
            _step(ax, norm, bins, color=col, label=f"{lab}, n={v.size}")
        ax.set_xlabel(name)
        ax.set_ylabel("fraction")
        ax.legend(fontsize="x-small")
        _label(ax, simulated)
    return fig


def score_distribution(
    hists: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    thresholds: Mapping[str, float] | None = None,
    simulated: bool = True,
) -> Any:
    """Fig. 12: score distributions (the GMM's first) on the 232Th run."""
    fig, ax = _new(simulated)
    for sel, h in hists.items():
        _step(
            ax,
            np.asarray(h["counts"]),
            np.asarray(h["edges"]),
            color=COLOURS.get(sel),
            label=NAMES.get(sel, sel),
        )
        if thresholds and sel in thresholds:
            ax.axvline(thresholds[sel], color=COLOURS.get(sel), ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("Score (1 = MSE-like)")
    ax.set_ylabel("Events")
    ax.legend(fontsize="small")
    _label(ax, simulated)
    return fig


def _bars(
    values: Mapping[str, Mapping[str, tuple[float, float]]],
    ylabel: str,
    simulated: bool,
    ref: float | None = None,
) -> Any:
    fig, ax = _new(simulated, figsize=(10, 6))
    lines = sorted({line for per in values.values() for line in per})
    sels = list(values)
    width = 0.8 / max(len(sels), 1)
    x = np.arange(len(lines))
    for i, sel in enumerate(sels):
        v = [values[sel].get(line, (np.nan, np.nan)) for line in lines]
        ax.bar(
            x + i * width - 0.4 + width / 2,
            [a for a, _ in v],
            width,
            yerr=[b for _, b in v],
            color=COLOURS.get(sel),
            label=NAMES.get(sel, sel),
            capsize=2,
        )
    if ref is not None:
        ax.axhline(ref, color="grey", ls=":")
    ax.set_xticks(x, lines, rotation=30, ha="right", fontsize="small")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    _label(ax, simulated)
    return fig


def survival_bars(
    lines: Mapping[str, Mapping[str, Mapping[str, float]]], *, simulated: bool = True
) -> Any:
    """Survival fraction of each named line for each cut (net counts, sideband-subtracted)."""
    vals = {
        sel: {name: (d["fraction"], d["error"]) for name, d in per.items()}
        for sel, per in lines.items()
        if sel != "original"
    }
    return _bars(vals, "Peak survival fraction", simulated, ref=1.0)


def mda_bars(
    lines: Mapping[str, Mapping[str, Mapping[str, float]]], *, simulated: bool = True
) -> Any:
    """MDA after each cut relative to the original spectrum (Currie L_D / peak survival)."""
    vals = {
        sel: {name: (d.get("mda_relative", np.nan), 0.0) for name, d in per.items()}
        for sel, per in lines.items()
    }
    return _bars(vals, "MDA relative to no cut", simulated, ref=1.0)


# ---------------------------------------------------------------------------------------------


def _friend_columns(path: Path, names: Sequence[str]) -> dict[str, NDArray[Any]]:
    import uproot

    with uproot.open(path) as f:
        t = f["PSD"]
        have = [n for n in names if n in t]
        return {n: np.asarray(t[n].array(library="np")) for n in have}


def make_all(
    results_dir: str | os.PathLike[str], results: Mapping[str, Any] | None = None
) -> list[Path]:
    """Every figure of a pipeline results folder, as PNG + PDF under ``figures/``.

    Figures whose inputs are absent (e.g. no sample run, no ACM) are skipped with a log
    message; the list of written files is returned.
    """
    from .config import from_mapping
    from .select.labels import LabelConfig

    root = Path(results_dir)
    if results is None:
        results = json.loads((root / "results.json").read_text())
    figdir = root / "figures"
    simulated = {w: bool(info.get("simulated")) for w, info in results.get("runs", {}).items()}
    analysis = results.get("analysis", {})
    cfg = json.loads((root / "config.json").read_text()) if (root / "config.json").exists() else {}
    labels = from_mapping(LabelConfig, cfg.get("labels", {}), where="labels")
    thresholds = {k: v.get("threshold") for k, v in results.get("models", {}).items()}
    written: list[Path] = []

    def out(fig: Any, name: str) -> None:
        written.extend(save_figure(fig, figdir / name))

    spectra: dict[str, dict[str, NDArray[Any]]] = {}
    for which in ("calibration", "sample"):
        p = root / "spectra" / f"{which}.npz"
        if p.exists():
            with np.load(p) as z:
                spectra[which] = {k: np.asarray(z[k]) for k in z.files}

    def sel_counts(which: str) -> dict[str, NDArray[Any]]:
        s = spectra[which]
        return {
            "original": s["all"],
            **{k.removeprefix("kept_"): v for k, v in s.items() if k.startswith("kept_")},
        }

    if "calibration" in spectra:
        sim = simulated.get("calibration", True)
        s = spectra["calibration"]
        out(
            spectrum_with_labels(
                s["all"],
                s["edges"],
                {**labels.mse_windows, **labels.sse_windows},
                energy_range=labels.energy_range,
                simulated=sim,
            ),
            "fig04_th232_spectrum_labels",
        )
        out(
            spectrum_comparison(
                sel_counts("calibration"),
                s["edges"],
                (1500.0, 1650.0),
                simulated=sim,
                marks={"DEP": 1592.5, "Ac-228": 1588.2, "Bi-212": 1620.5},
                display_width_kev=0.6,
            ),
            "fig07_dep_region_cuts",
        )
    for sel, scan in analysis.get("scan", {}).items():
        out(
            working_point_scan(
                scan,
                float(thresholds.get(sel) or 0.5),
                selector=sel,
                simulated=simulated.get("calibration", True),
            ),
            f"fig08_working_point_{sel}",
        )
    if analysis.get("roc_labels"):
        out(
            roc_curves(
                analysis["roc_labels"],
                title="energy-window labels",
                simulated=simulated.get("calibration", True),
            ),
            "fig09_roc_labels",
        )
    if analysis.get("roc_truth"):
        out(
            roc_curves(
                analysis["roc_truth"], title="simulation truth (n_sites > 1)", simulated=True
            ),
            "fig09b_roc_truth",
        )
    ex = root / "spectra" / "example_pulses.npz"
    if ex.exists():
        with np.load(ex) as z:
            if z["sse"].size and z["mse"].size:
                period = (
                    results.get("runs", {})
                    .get("calibration", {})
                    .get("metadata", {})
                    .get("sample_period_ns")
                    or 4.0
                )
                dsp = cfg.get("dsp", {})
                # the [dsp] keys of DSPConfig, so the figure shows the filters the features used
                smooth = (int(dsp.get("smooth_window", 19)), int(dsp.get("smooth_order", 2)))
                derivative = (int(dsp.get("current_window", 19)), int(dsp.get("current_order", 13)))
                out(
                    savgol_example(
                        z["sse"][0],
                        z["mse"][0],
                        sample_period_ns=float(period),
                        smooth=smooth,
                        derivative=derivative,
                        simulated=simulated.get("calibration", True),
                    ),
                    "fig10_savgol_sse_mse",
                )
    friend = root / "friends" / "calibration_psd.root"
    if friend.exists():
        cols = _friend_columns(friend, ["energy_kev", "risetime_ns", "l1_to_sse", "n_peaks_d2"])
        if "energy_kev" in cols:
            e = cols["energy_kev"]
            dep = (e >= labels.dep[0]) & (e <= labels.dep[1])
            fep = (e >= labels.fep[0]) & (e <= labels.fep[1])
            feats = [n for n in cols if n != "energy_kev"]
            if feats:
                out(
                    feature_distributions(
                        {n: cols[n][dep] for n in feats},
                        {n: cols[n][fep] for n in feats},
                        simulated=simulated.get("calibration", True),
                    ),
                    "fig11_features_sse_mse",
                )
    if analysis.get("score_hist"):
        h = analysis["score_hist"]
        order = {k: h[k] for k in sorted(h, key=lambda k: k != "gmm")}
        out(
            score_distribution(
                order, thresholds=thresholds, simulated=simulated.get("calibration", True)
            ),
            "fig12_score_distributions",
        )
    if "sample" in spectra:
        sim = simulated.get("sample", True)
        s = spectra["sample"]
        out(
            spectrum_comparison(
                sel_counts("sample"),
                s["edges"],
                (300.0, 700.0),
                simulated=sim,
                marks={"Be-7": 477.6, "Cs-137": 661.7},
            ),
            "fig13_sample_spectrum_cuts",
        )
        out(
            spectrum_comparison(
                sel_counts("sample"),
                s["edges"],
                (450.0, 510.0),
                simulated=sim,
                log_y=False,
                marks={"Be-7 477.6": 477.6},
                display_width_kev=0.6,
            ),
            "fig14_be7_closeup",
        )
    for which in ("calibration", "sample"):
        lines = analysis.get(f"lines_{which}")
        if lines and any(lines.get(s) for s in lines if s != "original"):
            out(survival_bars(lines, simulated=simulated.get(which, True)), f"survival_{which}")
            out(mda_bars(lines, simulated=simulated.get(which, True)), f"mda_{which}")
    log.info("wrote %d figure files under %s", len(written), figdir)
    return written
