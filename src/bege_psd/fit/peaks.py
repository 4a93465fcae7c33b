"""Binned maximum-likelihood peak fits with net areas, Hesse errors and Minos intervals.

What to use when
----------------
- :func:`fit_peaks` fits one window of a spectrum (a ``hist.Hist`` or ``(counts, edges)``)
  with one of the models of :mod:`bege_psd.fit.models`; several peaks in one window share the
  background (e.g. the DEP at 1592.5 keV beside 228Ac 1588.2 keV).
- :class:`FitResult` holds everything a spectroscopist quotes: values, Hesse errors, Minos
  intervals of the net areas, covariance, validity, chi2/ndof and p-value;
  :meth:`FitResult.to_dict` gives a JSON-ready dict (:func:`bege_psd.io.export.write_fit_json`
  writes it).

The cost is :class:`iminuit.cost.ExtendedBinnedNLL` on the bin-integrated model (the model's
antiderivative evaluated at the bin edges), so the fit is unbiased at low counts (Dembinski,
Schmelling & Waldi, NIM A 940 (2019) 135). Its minimum is the Baker-Cousins likelihood chi2
(NIM 221 (1984) 437), which gives the goodness of fit. A spectrum with ``Weight`` storage whose
variances differ from its values is fitted with the Bohm-Zech scaled likelihood (iminuit's
weighted-histogram path).

Failure policy
--------------
- Set-up errors (empty or too narrow window, a peak outside the window, unknown parameter
  names in ``fix``/``limits``) raise :class:`~bege_psd.errors.FitError`.
- A fit whose minimum is not valid (MIGRAD did not converge even after a SIMPLEX restart, or
  the covariance is not accurate) returns a result with ``valid=False`` and emits a
  :class:`~bege_psd.errors.FitQualityWarning`; with ``strict=True`` it raises ``FitError``.
- A valid fit with a peak position or width at its limit, or a p-value below ``1e-6``, is
  returned with ``valid=True`` and a ``FitQualityWarning``; ``at_limit`` lists such parameters.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from ..errors import FitError, FitQualityWarning, nearest_names
from .models import MODELS, PeakModel, make_model

__all__ = ("FitResult", "PeakArea", "fit_peaks", "histogram_arrays")

log = logging.getLogger(__name__)

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_WARN_PVALUE = 1e-6


@dataclass(frozen=True)
class PeakArea:
    """Net area of one peak: value, Hesse error and Minos interval (absolute bounds)."""

    energy: float
    area: float
    error: float
    minos_lower: float | None = None
    minos_upper: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "energy": self.energy,
            "area": self.area,
            "error": self.error,
            "minos_lower": self.minos_lower,
            "minos_upper": self.minos_upper,
        }


@dataclass(frozen=True, eq=False)
class FitResult:
    """Result of :func:`fit_peaks` (frozen).

    ``values``/``errors`` map parameter names (see :mod:`bege_psd.fit.models`) to best values
    and Hesse errors; ``minos`` maps a parameter to its absolute Minos interval
    ``(lower, upper)``; ``covariance`` is ordered as ``names`` (zero rows for fixed
    parameters). ``areas`` has one :class:`PeakArea` per requested peak.
    """

    model: str
    window: tuple[float, float]
    peaks: tuple[float, ...]
    names: tuple[str, ...]
    values: Mapping[str, float]
    errors: Mapping[str, float]
    minos: Mapping[str, tuple[float, float]]
    covariance: NDArray[np.float64]
    valid: bool
    chi2: float
    ndof: int
    pvalue: float
    areas: tuple[PeakArea, ...]
    x_ref: float
    half_width: float
    fixed: tuple[str, ...] = ()
    at_limit: tuple[str, ...] = ()
    nfcn: int = 0
    edges: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    counts: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    @property
    def model_function(self) -> PeakModel:
        """The fitted :class:`~bege_psd.fit.models.PeakModel` (call with ``*self.parameters``)."""
        return make_model(self.model, len(self.peaks), self.x_ref, self.half_width)

    @property
    def parameters(self) -> tuple[float, ...]:
        """Best-fit values in model call order."""
        return tuple(self.values[n] for n in self.names)

    def expected(self, edges: ArrayLike | None = None) -> NDArray[np.float64]:
        """Expected counts per bin of the best fit (default: the fitted bins)."""
        e = self.edges if edges is None else np.asarray(edges, dtype=np.float64)
        return self.model_function.expected(e, *self.parameters)

    def cov(self, a: str, b: str) -> float:
        """Covariance between parameters ``a`` and ``b``."""
        return float(self.covariance[self.names.index(a), self.names.index(b)])

    @property
    def fwhm(self) -> tuple[float, float]:
        """Gaussian FWHM and its error, in axis units."""
        return _FWHM_PER_SIGMA * self.values["sigma"], _FWHM_PER_SIGMA * self.errors["sigma"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no numpy types)."""
        return {
            "model": self.model,
            "window": list(self.window),
            "peaks": list(self.peaks),
            "names": list(self.names),
            "values": {k: float(v) for k, v in self.values.items()},
            "errors": {k: float(v) for k, v in self.errors.items()},
            "minos": {k: [float(v[0]), float(v[1])] for k, v in self.minos.items()},
            "covariance": np.asarray(self.covariance, dtype=float).tolist(),
            "valid": bool(self.valid),
            "chi2": float(self.chi2),
            "ndof": int(self.ndof),
            "pvalue": float(self.pvalue),
            "areas": [a.to_dict() for a in self.areas],
            "x_ref": self.x_ref,
            "half_width": self.half_width,
            "fixed": list(self.fixed),
            "at_limit": list(self.at_limit),
            "fwhm": list(self.fwhm),
        }


def histogram_arrays(
    h: Any,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None, NDArray[np.float64]]:
    """``(values, variances or None, edges)`` of a 1-D histogram or a ``(counts, edges)`` tuple."""
    if isinstance(h, tuple):
        if len(h) == 2:
            vals, edges = h
            var = None
        elif len(h) == 3:
            vals, var, edges = h
        else:
            msg = "a histogram tuple must be (counts, edges) or (values, variances, edges)"
            raise FitError(msg)
        v = np.asarray(vals, dtype=np.float64)
        e = np.asarray(edges, dtype=np.float64)
        va = None if var is None else np.asarray(var, dtype=np.float64)
    else:
        if len(h.axes) != 1:
            msg = f"expected a 1-D histogram, got {len(h.axes)} axes"
            raise FitError(msg)
        v = np.asarray(h.values(), dtype=np.float64)
        var_raw = h.variances()
        va = None if var_raw is None else np.asarray(var_raw, dtype=np.float64)
        e = np.asarray(h.axes[0].edges, dtype=np.float64)
    if e.shape != (v.size + 1,):
        msg = f"histogram has {v.size} bins but {e.size} edges; expected {v.size + 1}"
        raise FitError(msg)
    return v, va, e


def _select_window(edges: NDArray[np.float64], window: tuple[float, float]) -> tuple[int, int]:
    lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        msg = f"fit window ({lo}, {hi}) is empty; expected lo < hi"
        raise FitError(msg)
    tol = 1e-9 * max(1.0, abs(hi), abs(lo))
    i0 = int(np.searchsorted(edges, lo - tol, side="left"))
    i1 = int(np.searchsorted(edges, hi + tol, side="right")) - 1
    return i0, i1  # bins i0 .. i1-1 lie fully inside the window


def _starting_values(
    model: PeakModel,
    centres: NDArray[np.float64],
    widths: NDArray[np.float64],
    counts: NDArray[np.float64],
    peaks: Sequence[float],
    fwhm: float | None,
) -> tuple[dict[str, float], float]:
    dens = counts / widths
    bw = float(np.median(widths))
    span = float(centres[-1] - centres[0] + widths[-1])
    if fwhm is not None and fwhm > 0:
        sigma0 = fwhm / _FWHM_PER_SIGMA
    else:
        sigma0 = _guess_sigma(centres, dens, peaks, bw, span)
    sigma0 = float(np.clip(sigma0, 0.5 * bw, span / 6.0))
    # background from bins away from every peak
    away = np.ones(centres.size, dtype=bool)
    for e in peaks:
        away &= np.abs(centres - e) > 3.5 * sigma0
    if away.sum() < 4:
        k = max(2, centres.size // 8)
        away = np.zeros(centres.size, dtype=bool)
        away[:k] = True
        away[-k:] = True
    xs, ys = centres[away] - model.x_ref, dens[away]
    if model.has_slope and np.unique(xs).size >= 2:
        b1, b0 = np.polyfit(xs, ys, 1)
    else:
        b1, b0 = 0.0, float(np.mean(ys))
    if model.has_step:
        # rough step start: the drop of the side-band level from the low to the high side
        left = ys[xs < 0].mean() if np.any(xs < 0) else b0
        right = ys[xs > 0].mean() if np.any(xs > 0) else b0
    else:
        left = right = 0.0
    net = dens - (b0 + b1 * (centres - model.x_ref))
    start: dict[str, float] = {}
    heights = []
    for e in peaks:
        near = np.abs(centres - e) <= 0.5 * sigma0 + 0.5 * bw
        heights.append(max(float(net[near].max()) if near.any() else 0.0, 0.0))
    union = np.zeros(centres.size, dtype=bool)
    for e in peaks:
        union |= np.abs(centres - e) <= 3.0 * sigma0
    total_net = max(float(np.sum(net[union] * widths[union])), 1.0)
    hsum = sum(heights) or 1.0
    for i, e in enumerate(peaks):
        share = heights[i] / hsum if sum(heights) > 0 else 1.0 / len(peaks)
        start[f"area_{i}"] = max(total_net * share, 1.0)
        mu = float(e)
        others = [p for j, p in enumerate(peaks) if j != i]
        if all(abs(p - e) > 4.0 * sigma0 for p in others):
            near = np.abs(centres - e) <= 2.0 * sigma0 + bw
            if near.any():
                idx = np.flatnonzero(near)
                mu = float(centres[idx[np.argmax(dens[idx])]])
        start[f"mu_{i}"] = mu
        if model.has_step:
            peak_height = start[f"area_{i}"] / (sigma0 * math.sqrt(2.0 * math.pi))
            step = (left - right) / max(peak_height * len(peaks), 1e-12)
            start[f"step_{i}"] = float(np.clip(step, 0.002, 0.3))
    start["sigma"] = sigma0
    if model.has_tail:
        start["tail_frac"] = 0.1
        start["tail_tau"] = 2.0 * sigma0
    # never start on the >= 0 limit: Minuit's bound transform has no gradient there
    floor = max(1e-3 * float(np.mean(dens)), 1e-9)
    if model.has_slope:
        start["bkg_lo"] = max(float(b0 - b1 * model.half_width), floor)
        start["bkg_hi"] = max(float(b0 + b1 * model.half_width), floor)
    else:
        start["bkg_const"] = max(float(b0), floor)
    if model.has_edge:
        start.update(_edge_start(model, centres, dens, peaks, sigma0, bw, floor))
        # the edge carries the drop: start the linear part flat at the high-side level
        high = dens[centres > start["edge_pos"] + 2 * start["edge_width"]]
        level = max(float(np.mean(high)) if high.size else float(b0), floor)
        start["bkg_lo"] = start["bkg_hi"] = level
    return start, sigma0


def _edge_start(
    model: PeakModel,
    centres: NDArray[np.float64],
    dens: NDArray[np.float64],
    peaks: Sequence[float],
    sigma0: float,
    bw: float,
    floor: float,
) -> dict[str, float]:
    """Start values of a Compton edge: steepest smoothed drop outside the peaks."""
    from scipy.ndimage import gaussian_filter1d

    keep = np.ones(centres.size, dtype=bool)
    for e in peaks:
        keep &= np.abs(centres - e) > 3.0 * sigma0
    d = np.interp(centres, centres[keep], dens[keep]) if keep.sum() >= 2 else dens
    smooth = gaussian_filter1d(d, max(1.0, 1.5 * sigma0 / bw))
    grad = np.gradient(smooth, centres)
    i = int(np.argmin(grad[2:-2])) + 2 if grad.size > 4 else int(np.argmin(grad))
    pos = float(centres[i])
    width = max(2.0 * sigma0, 2.0 * bw)
    left = d[centres < pos - width]
    right = d[centres > pos + width]
    drop = (float(np.mean(left)) if left.size else float(d[0])) - (
        float(np.mean(right)) if right.size else float(d[-1])
    )
    return {
        "edge_height": max(drop, floor),
        "edge_slope": 0.0,
        "edge_pos": pos,
        "edge_width": width,
    }


def _guess_sigma(
    centres: NDArray[np.float64],
    dens: NDArray[np.float64],
    peaks: Sequence[float],
    bw: float,
    span: float,
) -> float:
    """Half-maximum width around the highest requested peak above a min-based background."""
    base = float(np.percentile(dens, 10))
    best = max(peaks, key=lambda e: float(np.interp(e, centres, dens)))
    i = int(np.argmin(np.abs(centres - best)))
    lo_i = max(0, i - 3)
    i = lo_i + int(np.argmax(dens[lo_i : i + 4]))
    half = base + 0.5 * (dens[i] - base)
    if dens[i] <= base:
        return 2.0 * bw
    left = i
    while left > 0 and dens[left] > half:
        left -= 1
    right = i
    while right < dens.size - 1 and dens[right] > half:
        right += 1
    fwhm = max(float(centres[right] - centres[left]) - bw, bw)
    return min(fwhm / _FWHM_PER_SIGMA, span / 6.0)


def fit_peaks(
    h: Any,
    window: tuple[float, float] | Sequence[float],
    model: str = "gauss_step",
    peaks: Sequence[float] = (),
    *,
    minos: bool = True,
    fix: Mapping[str, float] | Sequence[str] | None = None,
    limits: Mapping[str, tuple[float | None, float | None]] | None = None,
    start: Mapping[str, float] | None = None,
    fwhm: float | None = None,
    strict: bool = False,
    ncall: int | None = None,
) -> FitResult:
    """Fit peaks at ``peaks`` (axis units) inside ``window`` of the spectrum ``h``.

    Parameters
    ----------
    h
        A 1-D ``hist.Hist`` (any storage; ``Weight`` storage enables the weighted path) or a
        ``(counts, edges)`` / ``(values, variances, edges)`` tuple.
    window
        ``(lo, hi)`` in axis units; the bins lying fully inside are fitted.
    model
        ``"gauss_step"``, ``"gauss_step_tail"``, ``"gauss_linear"``, ``"gauss_const"`` or
        ``"gauss_edge"`` (see :mod:`bege_psd.fit.models`).
    peaks
        Approximate peak positions; one peak per entry (at least one).
    minos
        Compute Minos intervals of the net areas (``area_i``).
    fix
        Parameters to fix: names (fixed at their start values) or ``{name: value}``. Fixing an
        ``area_i`` at 0 also fixes ``step_i`` (it has no effect then).
    limits
        ``{name: (lo, hi)}`` overriding the default limits (``None`` = unbounded). Defaults:
        ``area_i >= 0``; ``mu_i`` within 3 sigma (at least 2 bins) of its start; ``sigma`` in
        ``[0.2, 5] x`` its start; ``step_i`` in ``[0, 1]``; ``tail_frac`` in ``[0, 0.9]``;
        ``tail_tau`` in ``[0.2, 20] x sigma`` start; ``edge_pos`` in the window,
        ``edge_width`` in ``[0.3 sigma, window / 2]``; background parameters ``>= 0`` (pass
        ``limits={"bkg_lo": (None, None), ...}`` for background-subtracted spectra).
    start
        Starting values overriding the automatic ones.
    fwhm
        A guess of the FWHM (axis units) for the start value of ``sigma``; by default it is
        estimated from the half-maximum width of the highest peak.
    strict
        Raise :class:`~bege_psd.errors.FitError` instead of returning ``valid=False``.
    ncall
        Call limit passed to MIGRAD.

    Returns
    -------
    FitResult

    Notes
    -----
    Bin calibrated integer ADC data on channel boundaries
    (:func:`bege_psd.spectrum.kev_spectrum_from_adc`): fixed keV bins alternately hold one and
    two channels, and the resulting periodic pattern ruins the goodness of fit.

    Raises
    ------
    FitError
        On set-up errors, or a non-converged fit with ``strict=True``.

    See Also
    --------
    bege_psd.metrics.survival_fraction, bege_psd.metrics.peak_to_compton_area
    """
    from iminuit import Minuit
    from iminuit.cost import ExtendedBinnedNLL

    if model not in MODELS:
        make_model(model, 1)  # raises with the list of models
    peaks = tuple(float(p) for p in peaks)
    if not peaks:
        msg = "fit_peaks needs at least one peak position in peaks=[...]"
        raise FitError(msg)
    values, variances, edges = histogram_arrays(h)
    lo, hi = float(window[0]), float(window[1])
    i0, i1 = _select_window(edges, (lo, hi))
    if i1 <= i0:
        msg = f"fit window ({lo}, {hi}) holds no full bin of the spectrum"
        raise FitError(msg)
    x_lo, x_hi = float(edges[i0]), float(edges[i1])
    m_model = make_model(model, len(peaks), 0.5 * (x_lo + x_hi), 0.5 * (x_hi - x_lo))
    n_bins = i1 - i0
    if n_bins < len(m_model.names) + 2:
        msg = (
            f"fit window ({lo}, {hi}) holds {max(n_bins, 0)} full bins of the spectrum, fewer "
            f"than the {len(m_model.names) + 2} needed for model {model!r} with {len(peaks)} "
            f"peak(s); widen the window or use finer bins"
        )
        raise FitError(msg)
    for e in peaks:
        if not lo < e < hi:
            msg = f"peak at {e} lies outside the fit window ({lo}, {hi})"
            raise FitError(msg)
    xe = edges[i0 : i1 + 1]
    n = values[i0:i1]
    if not np.all(np.isfinite(n)):
        msg = f"spectrum has non-finite bin contents in the fit window ({lo}, {hi})"
        raise FitError(msg)
    weighted = False
    if variances is not None:
        var = variances[i0:i1]
        weighted = not np.allclose(var, n, rtol=1e-9, atol=1e-12)
    if float(np.sum(n)) <= 0:
        msg = f"fit window ({lo}, {hi}) holds no counts"
        raise FitError(msg)

    centres = 0.5 * (xe[1:] + xe[:-1])
    widths = np.diff(xe)
    starts, sigma0 = _starting_values(m_model, centres, widths, n, peaks, fwhm)
    bw = float(np.median(widths))
    if start:
        _check_names(start, m_model.names, "start")
        starts.update({k: float(v) for k, v in start.items()})
    sigma0 = starts["sigma"]

    data = np.stack([n, variances[i0:i1]], axis=-1) if weighted and variances is not None else n
    cost = ExtendedBinnedNLL(data, xe, m_model.cdf, name=list(m_model.names))
    m = Minuit(cost, *[starts[k] for k in m_model.names], name=m_model.names)

    default_limits: dict[str, tuple[float | None, float | None]] = {}
    for i in range(len(peaks)):
        default_limits[f"area_{i}"] = (0.0, None)
        dmu = max(3.0 * sigma0, 2.0 * bw)
        mu0 = starts[f"mu_{i}"]
        default_limits[f"mu_{i}"] = (max(lo, mu0 - dmu), min(hi, mu0 + dmu))
        if m_model.has_step:
            default_limits[f"step_{i}"] = (0.0, 1.0)
    default_limits["sigma"] = (0.2 * sigma0, 5.0 * sigma0)
    for k in ("bkg_lo", "bkg_hi", "bkg_const"):
        if k in m_model.names:
            default_limits[k] = (0.0, None)
    if m_model.has_edge:
        default_limits["edge_height"] = (0.0, None)
        default_limits["edge_pos"] = (lo, hi)
        default_limits["edge_width"] = (0.3 * sigma0, 0.5 * (hi - lo))
    if m_model.has_tail:
        default_limits["tail_frac"] = (0.0, 0.9)
        default_limits["tail_tau"] = (0.2 * sigma0, 20.0 * sigma0)
    if limits:
        _check_names(limits, m_model.names, "limits")
        default_limits.update(limits)
    for k, (a, b) in default_limits.items():
        m.limits[k] = (-np.inf if a is None else a, np.inf if b is None else b)
        v = m.values[k]
        if a is not None and v < a:
            m.values[k] = a
        if b is not None and v > b:
            m.values[k] = b

    fixed: list[str] = []
    if fix:
        if isinstance(fix, Mapping):
            _check_names(fix, m_model.names, "fix")
            for k, v in fix.items():
                m.values[k] = float(v)
                fixed.append(k)
        else:
            _check_names(fix, m_model.names, "fix")
            fixed.extend(fix)
        for i in range(len(peaks)):
            zero_area = f"area_{i}" in fixed and m.values[f"area_{i}"] == 0.0
            if m_model.has_step and zero_area and f"step_{i}" not in fixed:
                fixed.append(f"step_{i}")
        for k in fixed:
            m.fixed[k] = True

    if m.nfit == 0:  # everything fixed: evaluate the likelihood only
        valid = True
        fval = float(cost(*[m.values[k] for k in m_model.names]))
    else:
        m.migrad(ncall=ncall)
        if not m.valid:
            log.debug("MIGRAD not valid for window %s; retrying after SIMPLEX", (lo, hi))
            m.simplex(ncall=ncall).migrad(ncall=ncall)
        m.hesse()
        valid = bool(m.valid and m.fmin is not None and m.fmin.has_accurate_covar)
        fval = float(m.fval)

    minos_out: dict[str, tuple[float, float]] = {}
    if minos and valid:
        for i in range(len(peaks)):
            name = f"area_{i}"
            if name in fixed:
                continue
            try:
                m.minos(name)
            except RuntimeError as exc:
                log.debug("Minos failed for %s: %s", name, exc)
                continue
            me = m.merrors[name]
            if me.is_valid or (me.lower_valid and me.upper_valid):
                minos_out[name] = (m.values[name] + me.lower, m.values[name] + me.upper)
            else:
                # a bound hit by the interval (e.g. area >= 0) is still a usable interval
                lower = m.values[name] + me.lower if me.lower_valid else m.limits[name][0]
                upper = m.values[name] + me.upper if me.upper_valid else np.nan
                minos_out[name] = (float(lower), float(upper))

    vals = {k: float(m.values[k]) for k in m_model.names}
    errs = {k: float(m.errors[k]) if k not in fixed else 0.0 for k in m_model.names}
    npar = len(m_model.names)
    cov = np.zeros((npar, npar))
    if m.nfit > 0 and m.covariance is not None:
        cov = np.array(m.covariance, dtype=np.float64)
        for j, k in enumerate(m_model.names):
            if k in fixed:
                cov[j, :] = 0.0
                cov[:, j] = 0.0
    chi2 = fval
    ndof = int(n_bins - m.nfit)
    pvalue = float(stats.chi2.sf(chi2, ndof)) if ndof > 0 else float("nan")

    at_limit: list[str] = []
    for k in m_model.names:
        if k in fixed:
            continue
        a, b = m.limits[k]
        v, e = vals[k], max(errs[k], 1e-12)
        if (np.isfinite(a) and v - a < 1e-3 * e) or (np.isfinite(b) and b - v < 1e-3 * e):
            at_limit.append(k)

    where = f"fit of {model!r} in window ({lo}, {hi}) with peaks {list(peaks)}"
    if not valid:
        msg = f"{where} did not converge (EDM {m.fmin.edm if m.fmin else float('nan'):.3g}); result has valid=False"
        if strict:
            raise FitError(msg)
        warnings.warn(msg, FitQualityWarning, stacklevel=2)
    else:
        suspicious = [k for k in at_limit if k.startswith(("mu_", "sigma"))]
        if suspicious:
            msg = f"{where}: parameters at their limits: {', '.join(suspicious)}"
            warnings.warn(msg, FitQualityWarning, stacklevel=2)
        if ndof > 0 and pvalue < _WARN_PVALUE:
            msg = f"{where}: poor goodness of fit, chi2/ndof = {chi2:.1f}/{ndof} (p = {pvalue:.2g})"
            warnings.warn(msg, FitQualityWarning, stacklevel=2)

    areas = []
    for i, e in enumerate(peaks):
        name = f"area_{i}"
        interval = minos_out.get(name)
        areas.append(
            PeakArea(
                energy=e,
                area=vals[name],
                error=errs[name],
                minos_lower=None if interval is None else interval[0],
                minos_upper=None if interval is None else interval[1],
            )
        )
    return FitResult(
        model=model,
        window=(lo, hi),
        peaks=peaks,
        names=m_model.names,
        values=vals,
        errors=errs,
        minos=minos_out,
        covariance=cov,
        valid=valid,
        chi2=chi2,
        ndof=ndof,
        pvalue=pvalue,
        areas=tuple(areas),
        x_ref=m_model.x_ref,
        half_width=m_model.half_width,
        fixed=tuple(fixed),
        at_limit=tuple(at_limit),
        nfcn=int(m.nfcn),
        edges=np.asarray(xe, dtype=np.float64).copy(),
        counts=np.asarray(n, dtype=np.float64).copy(),
    )


def _check_names(keys: Any, names: Sequence[str], what: str) -> None:
    for k in keys:
        if k not in names:
            msg = (
                f"unknown parameter {k!r} in {what}=; parameters of this model (nearest first): "
                f"{', '.join(nearest_names(k, names, n=0))}"
            )
            raise FitError(msg)
