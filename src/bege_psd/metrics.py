"""Figures of merit of a Compton-suppression cut, each with its uncertainty.

What to use when
----------------
- :func:`peak_to_compton_paper`: the paper's peak-to-Compton (maximum bin in the peak window /
  counts in the Compton window; use 1-ADC-channel bins, see
  :func:`bege_psd.spectrum.channel_edges_kev`). Depends on the bin width by construction.
- :func:`peak_to_compton_area`: bin-width independent (fitted net area / Compton counts per keV).
- :func:`compare_peak_to_compton`: improvement factor kept/all *together with* the peak survival
  (a cut that keeps 5 % of everything is useless however good its ratio).
- :func:`survival_fraction`, :func:`peak_survival`, :func:`window_survival`: fractions kept, with
  binomial-correct errors (the kept spectrum is a subset of the full one).
- :func:`signal_to_background`: S/B in a region of interest from side bands.
- :func:`mislabelled_fraction`: Gaussian + constant fit of a label window (paper: ~4 % Compton
  under the 208Tl SEP window [2098, 2109] keV).
- :func:`line_significance`: likelihood-ratio significance of a weak line (e.g. 7Be 477.6 keV).
- :func:`currie_mda`, :func:`mda_before_after`, :func:`mda_from_spectra`: Currie minimum
  detectable activity, before and after a cut.
- :func:`roc_curve`, :func:`auc`: ROC and area under it from scores and truth labels (numpy).

All quantities are :class:`bege_psd.spectrum.Quantity` ``(value, error)`` pairs where an
uncertainty exists. Windows select bins whose centres lie inside ``[lo, hi]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import BegePsdError
from .fit.peaks import FitResult, fit_peaks
from .spectrum import Quantity, roi_counts, roi_mask

__all__ = (
    "Improvement",
    "LineSignificance",
    "MDAComparison",
    "MetricsConfig",
    "SignalToBackground",
    "auc",
    "compare_peak_to_compton",
    "currie_detection_limit",
    "currie_mda",
    "line_significance",
    "mda_before_after",
    "mda_from_spectra",
    "mislabelled_fraction",
    "peak_survival",
    "peak_to_compton_area",
    "peak_to_compton_paper",
    "ratio_error",
    "roc_auc",
    "roc_curve",
    "signal_to_background",
    "survival_fraction",
    "window_survival",
)


class MetricsError(BegePsdError, ValueError):
    """A metric cannot be computed from the given input (empty window, zero counts, ...)."""


@dataclass(frozen=True)
class MetricsConfig:
    """Windows and constants of the paper's metrics (keV). ``[metrics]`` in the TOML config."""

    ptc_peak_kev: float = field(
        default=661.6553, metadata={"min": 0.0, "doc": "137Cs line (LNHB 2023)"}
    )
    ptc_peak_window_kev: tuple[float, float] = (660.0, 670.0)
    ptc_compton_window_kev: tuple[float, float] = (355.0, 450.0)
    ptc_fit_window_kev: tuple[float, float] = (650.0, 675.0)
    ptc_model: str = field(
        default="gauss_step",
        metadata={"choices": ("gauss_step", "gauss_step_tail", "gauss_linear")},
    )
    sep_kev: float = field(
        default=2103.511, metadata={"min": 0.0, "doc": "208Tl SEP = 2614.511 - 511"}
    )
    sep_window_kev: tuple[float, float] = (2098.0, 2109.0)
    weak_line_kev: float = field(default=477.6035, metadata={"min": 0.0, "doc": "7Be (DDEP)"})
    weak_line_window_kev: tuple[float, float] = (468.0, 488.0)
    weak_line_model: str = field(
        default="gauss_edge",
        metadata={
            "choices": ("gauss_edge", "gauss_linear", "gauss_const"),
            "doc": "7Be sits on the 137Cs Compton edge (477.3 keV): a linear background overstates Z",
        },
    )
    currie_k: float = field(
        default=1.645, metadata={"min": 0.5, "max": 5.0, "doc": "k_alpha = k_beta"}
    )

    def __post_init__(self) -> None:
        for name in (
            "ptc_peak_window_kev",
            "ptc_compton_window_kev",
            "ptc_fit_window_kev",
            "sep_window_kev",
            "weak_line_window_kev",
        ):
            lo, hi = getattr(self, name)
            if not hi > lo:
                msg = f"metrics.{name} = {(lo, hi)!r}: expected lo < hi"
                raise ValueError(msg)


def ratio_error(a: float, ea: float, b: float, eb: float) -> float:
    """Error of ``a / b`` for independent ``a``, ``b`` (first-order propagation)."""
    if a == 0:
        return abs(ea / b)
    return abs(a / b) * math.hypot(ea / a, eb / b)


# --------------------------------------------------------------------------- peak-to-Compton
def peak_to_compton_paper(
    h: Any,
    peak_window: tuple[float, float] = (660.0, 670.0),
    compton_window: tuple[float, float] = (355.0, 450.0),
) -> Quantity:
    """Maximum single-bin count in ``peak_window`` / summed counts in ``compton_window``.

    The paper's definition (137Cs: 660-670 keV over 355-450 keV, 1-ADC-channel bins). The
    uncertainty propagates the Poisson (``sqrt(sum w^2)``) errors of the maximum bin and the
    Compton sum, which are independent.
    """
    peak, peak_err = _max_bin(h, peak_window)
    compton = roi_counts(h, compton_window)
    if compton.value <= 0:
        msg = f"Compton window {compton_window} holds no counts"
        raise MetricsError(msg)
    r = peak / compton.value
    return Quantity(r, ratio_error(peak, peak_err, compton.value, compton.error))


def _max_bin(h: Any, window: tuple[float, float]) -> Quantity:
    sel = roi_mask(h, window)
    if not sel.any():
        msg = f"peak window {window} contains no bin centre of the spectrum"
        raise MetricsError(msg)
    vals = np.asarray(h.values())
    var = h.variances()
    var_arr = np.asarray(var) if var is not None else vals
    idx = np.flatnonzero(sel)
    imax = idx[int(np.argmax(vals[idx]))]
    return Quantity(float(vals[imax]), math.sqrt(max(float(var_arr[imax]), 0.0)))


def _compton_density(h: Any, window: tuple[float, float]) -> Quantity:
    sel = roi_mask(h, window)
    width = float(np.sum(np.asarray(h.axes[0].widths)[sel]))
    c = roi_counts(h, window)
    if c.value <= 0:
        msg = f"Compton window {window} holds no counts"
        raise MetricsError(msg)
    return Quantity(c.value / width, c.error / width)


def peak_to_compton_area(
    h: Any,
    area: FitResult | Quantity | tuple[float, float],
    compton_window: tuple[float, float] = (355.0, 450.0),
) -> Quantity:
    """Net peak area / (Compton counts per keV in ``compton_window``): independent of binning.

    ``area`` is a :class:`~bege_psd.fit.FitResult` (its first peak's area) or ``(value, error)``.
    """
    a, ea = _area_of(area)
    d = _compton_density(h, compton_window)
    return Quantity(a / d.value, ratio_error(a, ea, d.value, d.error))


def _area_of(x: FitResult | Quantity | tuple[float, float], peak: int = 0) -> tuple[float, float]:
    if isinstance(x, FitResult):
        return x.areas[peak].area, x.areas[peak].error
    v, e = x
    return float(v), float(e)


@dataclass(frozen=True)
class Improvement:
    """Peak-to-Compton of all and kept events, their ratio and the peak survival (frozen)."""

    method: str
    ratio_all: Quantity
    ratio_kept: Quantity
    factor: Quantity
    peak_survival: Quantity
    compton_survival: Quantity

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "ratio_all": self.ratio_all.to_dict(),
            "ratio_kept": self.ratio_kept.to_dict(),
            "factor": self.factor.to_dict(),
            "peak_survival": self.peak_survival.to_dict(),
            "compton_survival": self.compton_survival.to_dict(),
        }


def compare_peak_to_compton(
    h_all: Any,
    h_kept: Any,
    *,
    method: str = "paper",
    config: MetricsConfig | None = None,
) -> Improvement:
    """Improvement factor of the peak-to-Compton ratio from all to kept events.

    ``method="paper"`` uses :func:`peak_to_compton_paper`; ``"area"`` fits the peak in both
    spectra (``config.ptc_model`` in ``config.ptc_fit_window_kev``) and uses
    :func:`peak_to_compton_area`. The factor is written as ``f_peak / f_compton`` (survival of
    the peak estimator over survival of the Compton counts); both fractions carry binomial
    errors (kept is a subset of all) and are independent (disjoint windows).
    """
    cfg = config or MetricsConfig()
    compton_all = roi_counts(h_all, cfg.ptc_compton_window_kev)
    compton_kept = roi_counts(h_kept, cfg.ptc_compton_window_kev)
    f_c = survival_fraction(compton_kept, compton_all)
    if method == "paper":
        r_all = peak_to_compton_paper(h_all, cfg.ptc_peak_window_kev, cfg.ptc_compton_window_kev)
        r_kept = peak_to_compton_paper(h_kept, cfg.ptc_peak_window_kev, cfg.ptc_compton_window_kev)
        # the max-bin ratio enters the factor; the max bin is treated as a counted subset
        f_p = survival_fraction(
            _max_bin(h_kept, cfg.ptc_peak_window_kev), _max_bin(h_all, cfg.ptc_peak_window_kev)
        )
        # the peak survival reported beside the factor is the fitted net-area survival when the
        # peak can be fitted, else the max-bin survival
        try:
            peak_f = peak_survival(
                h_all, h_kept, cfg.ptc_fit_window_kev, [cfg.ptc_peak_kev], model=cfg.ptc_model
            )
        except BegePsdError:
            peak_f = f_p
    elif method == "area":
        fit_all = fit_peaks(h_all, cfg.ptc_fit_window_kev, cfg.ptc_model, [cfg.ptc_peak_kev])
        fit_kept = fit_peaks(h_kept, cfg.ptc_fit_window_kev, cfg.ptc_model, [cfg.ptc_peak_kev])
        r_all = peak_to_compton_area(h_all, fit_all, cfg.ptc_compton_window_kev)
        r_kept = peak_to_compton_area(h_kept, fit_kept, cfg.ptc_compton_window_kev)
        f_p = survival_fraction(fit_kept, fit_all)
        peak_f = f_p
    else:
        msg = f"method={method!r} is not allowed; use 'paper' or 'area'"
        raise MetricsError(msg)
    if f_c.value <= 0:
        msg = "no Compton counts survive the cut; the improvement factor is undefined"
        raise MetricsError(msg)
    factor = Quantity(
        f_p.value / f_c.value, ratio_error(f_p.value, f_p.error, f_c.value, f_c.error)
    )
    return Improvement(method, r_all, r_kept, factor, peak_f, f_c)


# --------------------------------------------------------------------------- survival
def survival_fraction(
    kept: FitResult | Quantity | tuple[float, float],
    total: FitResult | Quantity | tuple[float, float],
    *,
    peak: int = 0,
) -> Quantity:
    """Fraction ``kept / total`` where the kept sample is a subset of the total.

    Writes ``f = K / (K + R)`` with the rejected part ``R = total - kept`` independent of ``K``,
    ``var(R) = var(total) - var(K)`` (clipped at 0), so that
    ``var(f) = (R^2 var(K) + K^2 var(R)) / total^4``. For plain counts this is exactly the
    binomial ``f (1 - f) / n``; for fitted net areas it carries the background-subtraction
    uncertainty. ``kept``/``total`` are ``(value, error)`` pairs or fit results (``peak`` picks
    the peak).
    """
    k, ek = _area_of(kept, peak)
    t, et = _area_of(total, peak)
    if t <= 0:
        msg = f"total = {t} must be positive to form a survival fraction"
        raise MetricsError(msg)
    r = t - k
    var_r = max(et * et - ek * ek, 0.0)
    var_f = (r * r * ek * ek + k * k * var_r) / t**4
    return Quantity(k / t, math.sqrt(var_f))


def window_survival(h_all: Any, h_kept: Any, window: tuple[float, float]) -> Quantity:
    """Survival fraction of the counts in a continuum ``window`` (binomial error)."""
    return survival_fraction(roi_counts(h_kept, window), roi_counts(h_all, window))


def peak_survival(
    h_all: Any,
    h_kept: Any,
    window: tuple[float, float],
    peaks: list[float],
    *,
    model: str = "gauss_step",
    peak: int = 0,
    fit_kwargs: Mapping[str, Any] | None = None,
) -> Quantity:
    """Survival of a named peak: net areas fitted in kept and all spectra (binomial-correct).

    The kept fit reuses the peak width of the full fit as its starting value.
    """
    kw = dict(fit_kwargs or {})
    fit_all = fit_peaks(h_all, window, model, peaks, minos=False, **kw)
    kw.setdefault("fwhm", fit_all.fwhm[0])
    fit_kept = fit_peaks(h_kept, window, model, peaks, minos=False, **kw)
    return survival_fraction(fit_kept, fit_all, peak=peak)


# --------------------------------------------------------------------------- S/B
@dataclass(frozen=True)
class SignalToBackground:
    """Net signal, background and their ratio in a region of interest (frozen)."""

    signal: Quantity
    background: Quantity
    ratio: Quantity

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).to_dict() for k in ("signal", "background", "ratio")}


def signal_to_background(
    h: Any,
    roi: tuple[float, float],
    sidebands: tuple[tuple[float, float], tuple[float, float]],
) -> SignalToBackground:
    """S/B in ``roi`` with the background interpolated linearly from two side bands.

    The background density (counts per axis unit) is the straight line through the mean
    densities of the two side bands at their bin-weighted centres; ``B`` is its integral over
    the ROI bins and ``S = gross - B``. Errors: Poisson on the gross counts and propagated
    from the side-band counts (disjoint bins, hence independent).
    """
    widths = np.asarray(h.axes[0].widths)
    centres = np.asarray(h.axes[0].centers)
    sel = roi_mask(h, roi)
    gross = roi_counts(h, roi)
    dens, dens_err, xs = [], [], []
    for sb in sidebands:
        s = roi_mask(h, sb)
        if not s.any():
            msg = f"side band {sb} contains no bin centre of the spectrum"
            raise MetricsError(msg)
        c = roi_counts(h, sb)
        w = float(np.sum(widths[s]))
        dens.append(c.value / w)
        dens_err.append(c.error / w)
        xs.append(float(np.sum(centres[s] * widths[s]) / w))
    if xs[0] == xs[1]:
        msg = "the two side bands must have different centres"
        raise MetricsError(msg)
    # B = sum_roi w_i (d0 + (d1 - d0) (x_i - x0)/(x1 - x0)) = a0 d0 + a1 d1
    t = (centres[sel] - xs[0]) / (xs[1] - xs[0])
    a1 = float(np.sum(widths[sel] * t))
    a0 = float(np.sum(widths[sel] * (1.0 - t)))
    b = a0 * dens[0] + a1 * dens[1]
    eb = math.hypot(a0 * dens_err[0], a1 * dens_err[1])
    s_val = gross.value - b
    es = math.hypot(gross.error, eb)
    if b <= 0:
        msg = f"background estimate in {roi} is {b:.3g} <= 0; S/B is undefined"
        raise MetricsError(msg)
    # S/B = G/B - 1 with G and B independent
    ratio_err = ratio_error(gross.value, gross.error, b, eb)
    return SignalToBackground(Quantity(s_val, es), Quantity(b, eb), Quantity(s_val / b, ratio_err))


# --------------------------------------------------------------------------- mislabelling
def mislabelled_fraction(
    h: Any,
    window: tuple[float, float] = (2098.0, 2109.0),
    peak_kev: float = 2103.511,
    **fit_kwargs: Any,
) -> Quantity:
    """Fraction of the counts in a label window that belong to the continuum, not the peak.

    Fits Gaussian + constant in ``window`` (the paper's method; ~4 % Compton under the 208Tl
    SEP window) and returns ``B / (B + S)`` with ``B = const x window width`` and ``S`` the peak
    area inside the window, with the error propagated through the fit covariance.
    """
    fit = fit_peaks(h, window, "gauss_const", [peak_kev], minos=False, **fit_kwargs)
    lo, hi = float(fit.edges[0]), float(fit.edges[-1])
    model = fit.model_function
    names = list(fit.names)
    p0 = np.array(fit.parameters)

    def frac(p: NDArray[np.float64]) -> float:
        b = p[names.index("bkg_const")] * (hi - lo)
        s = p[names.index("area_0")] * model.peak_fraction_in(lo, hi, 0, *p)
        return float(b / (b + s))

    f0 = frac(p0)
    grad = np.zeros(p0.size)
    for j in range(p0.size):
        step = 1e-6 * max(abs(p0[j]), 1e-3)
        dp = np.zeros(p0.size)
        dp[j] = step
        grad[j] = (frac(p0 + dp) - frac(p0 - dp)) / (2 * step)
    var = float(grad @ fit.covariance @ grad)
    return Quantity(f0, math.sqrt(max(var, 0.0)))


# --------------------------------------------------------------------------- significance
@dataclass(frozen=True)
class LineSignificance:
    """Likelihood-ratio significance of a line (frozen).

    ``ts = chi2(area = 0) - chi2(best)`` (= -2 ln lambda); ``z = sqrt(ts)`` (one-sided, area
    >= 0, Wilks/Chernoff). ``area`` is the fitted net area with its Hesse error.
    """

    z: float
    ts: float
    area: Quantity
    fit: FitResult

    def to_dict(self) -> dict[str, Any]:
        return {"z": self.z, "ts": self.ts, "area": self.area.to_dict(), "fit": self.fit.to_dict()}


def line_significance(
    h: Any,
    window: tuple[float, float],
    energy: float,
    *,
    model: str = "gauss_linear",
    fwhm: float | None = None,
    fix: Mapping[str, float] | None = None,
    limits: Mapping[str, tuple[float | None, float | None]] | None = None,
) -> LineSignificance:
    """Significance of a weak line at ``energy`` by the profile likelihood ratio.

    Fits ``model`` with the net area free (>= 0) and with the area fixed at 0; the shape
    parameters are profiled in both. For a weak line give ``fwhm`` (e.g. from
    :meth:`bege_psd.calib.Calibration.fwhm_kev`) and consider fixing ``mu_0`` and ``sigma``
    through ``fix``.

    The background model matters: the 7Be line (477.6 keV) sits on the 137Cs Compton edge
    (477.3 keV), where a linear background (``gauss_linear``) fails the goodness of fit and
    inflates the significance; use ``model="gauss_edge"`` there
    (``MetricsConfig.weak_line_model``). Bin the spectrum on ADC-channel boundaries
    (:func:`bege_psd.spectrum.channel_edges_kev`): fixed keV bins over integer channels
    alternate between holding one and two channels and ruin the fit.
    """
    fixed = dict(fix or {})
    free = fit_peaks(
        h, window, model, [energy], minos=False, fwhm=fwhm, fix=fixed or None, limits=limits
    )
    null_fix = {**fixed, "area_0": 0.0}
    # position and width are meaningless without a peak: hold them at the free fit's values
    null_fix.setdefault("mu_0", free.values["mu_0"])
    null_fix.setdefault("sigma", free.values["sigma"])
    null = fit_peaks(
        h, window, model, [energy], minos=False, fwhm=fwhm, fix=null_fix, limits=limits
    )
    ts = max(null.chi2 - free.chi2, 0.0)
    return LineSignificance(
        z=math.sqrt(ts), ts=ts, area=Quantity(free.areas[0].area, free.areas[0].error), fit=free
    )


# --------------------------------------------------------------------------- MDA
def currie_detection_limit(background_counts: float, *, k: float = 1.645) -> float:
    """Currie's detection limit ``L_D = k^2 + 2 k sqrt(2 B)`` in counts.

    For ``k = 1.645`` (5 % false-positive and false-negative rates) this is the familiar
    ``2.71 + 4.65 sqrt(B)`` (L. A. Currie, Anal. Chem. 40 (1968) 586; paired blank, well-known
    background ``B`` in the peak region).
    """
    if background_counts < 0:
        msg = f"background counts must be >= 0, got {background_counts}"
        raise MetricsError(msg)
    return k * k + 2.0 * k * math.sqrt(2.0 * background_counts)


def currie_mda(
    background_counts: float,
    efficiency: float,
    emission_probability: float,
    live_time_s: float,
    *,
    k: float = 1.645,
) -> float:
    """Minimum detectable activity in Bq: ``L_D / (efficiency x emission_probability x t)``."""
    for name, v in (("efficiency", efficiency), ("emission_probability", emission_probability)):
        if not 0 < v <= 1:
            msg = f"{name} = {v} must be in (0, 1]"
            raise MetricsError(msg)
    if live_time_s <= 0:
        msg = f"live_time_s = {live_time_s} must be positive"
        raise MetricsError(msg)
    return currie_detection_limit(background_counts, k=k) / (
        efficiency * emission_probability * live_time_s
    )


@dataclass(frozen=True)
class MDAComparison:
    """Currie MDA before and after a cut (Bq) and their ratio ``after / before`` (frozen)."""

    mda_before_bq: float
    mda_after_bq: float
    ratio: float
    background_before: float
    background_after: float
    peak_survival: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.__dataclass_fields__}


def mda_before_after(
    background_before: float,
    background_after: float,
    peak_survival: float,
    efficiency: float,
    emission_probability: float,
    live_time_s: float,
    *,
    k: float = 1.645,
) -> MDAComparison:
    """Currie MDA without and with a cut.

    After the cut the background in the peak region is ``background_after`` and the full-energy
    efficiency is ``efficiency x peak_survival`` (the cut removes that share of the line).
    """
    if not 0 < peak_survival <= 1:
        msg = f"peak_survival = {peak_survival} must be in (0, 1]"
        raise MetricsError(msg)
    before = currie_mda(background_before, efficiency, emission_probability, live_time_s, k=k)
    after = currie_mda(
        background_after, efficiency * peak_survival, emission_probability, live_time_s, k=k
    )
    return MDAComparison(
        before, after, after / before, background_before, background_after, peak_survival
    )


def mda_from_spectra(
    h_all: Any,
    h_kept: Any,
    roi: tuple[float, float],
    sidebands: tuple[tuple[float, float], tuple[float, float]],
    peak_survival: float,
    efficiency: float,
    emission_probability: float,
    live_time_s: float,
    *,
    k: float = 1.645,
) -> MDAComparison:
    """Currie MDA before/after a cut with the backgrounds under ``roi`` from side bands.

    The background counts in the ROI of each spectrum come from :func:`signal_to_background`
    (linear interpolation between the two side bands), so a line present in the ROI does not
    inflate its own detection limit.
    """
    b_all = signal_to_background(h_all, roi, sidebands).background.value
    b_kept = signal_to_background(h_kept, roi, sidebands).background.value
    return mda_before_after(
        b_all, b_kept, peak_survival, efficiency, emission_probability, live_time_s, k=k
    )


# --------------------------------------------------------------------------- ROC
def roc_curve(
    scores: ArrayLike, labels: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """ROC curve of ``scores`` (higher = positive) against boolean ``labels``.

    Returns ``(fpr, tpr, thresholds)`` with one point per distinct score, starting at
    ``(0, 0)`` (threshold ``+inf``); a point is "keep ``score >= threshold``". NaN scores are
    rejected (they would otherwise vanish from both rates).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        msg = f"scores ({s.size}) and labels ({y.size}) must have the same length"
        raise MetricsError(msg)
    if np.isnan(s).any():
        msg = f"{int(np.isnan(s).sum())} scores are NaN; remove or score them first"
        raise MetricsError(msg)
    y = y.astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        msg = f"ROC needs both classes; got {n_pos} positives and {n_neg} negatives"
        raise MetricsError(msg)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s_sorted.size - 1]
    tpr = np.r_[0.0, tp[last] / n_pos]
    fpr = np.r_[0.0, fp[last] / n_neg]
    thr = np.r_[np.inf, s_sorted[last]]
    return fpr, tpr, thr


def auc(fpr: ArrayLike, tpr: ArrayLike) -> float:
    """Area under a curve given by ``fpr`` (increasing) and ``tpr`` (trapezoidal rule)."""
    x = np.asarray(fpr, dtype=np.float64)
    y = np.asarray(tpr, dtype=np.float64)
    return float(np.sum(np.diff(x) * 0.5 * (y[1:] + y[:-1])))


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """AUC of ``scores`` for ``labels`` (= P(score_pos > score_neg) + 0.5 P(tie))."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return auc(fpr, tpr)
