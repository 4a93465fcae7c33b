"""Energy calibration (ADC channel -> keV) and resolution curve from known gamma lines.

What to use when
----------------
- :func:`calibrate`: the whole chain from an array of ADC energies: peak search, line matching,
  peak fits, a linear or quadratic ADC -> keV fit with covariance, and the resolution curve
  ``FWHM(E) = sqrt(a + b E + c E^2)``. Returns a :class:`Calibration`.
- :meth:`Calibration.from_coefficients`: a calibration from known coefficients (e.g. CoMPASS
  ``run.info``), without uncertainties.
- :func:`find_peaks_adc`: the peak search alone (``scipy.signal.find_peaks`` on a lightly
  smoothed 1-channel spectrum, keeping peaks whose prominence exceeds ``k sqrt(base)``).
- :func:`fit_resolution`: the FWHM curve alone from (E, FWHM, error) points.

The default line lists are in :class:`CalibConfig` (232Th chain and a cryoconite sample), with
energies from the LNHB LARA/DDEP evaluations in ``physics-data/th232_chain_lines.csv`` and
``cryoconite_lines.csv`` (the source rows are quoted next to the constants below).

Conventions: bin ``i`` of the ADC spectrum is centred on channel ``i``; ``apply(adc)`` evaluates
``c0 + c1 adc (+ c2 adc^2)``, the same polynomial CoMPASS and the ``.Spe``/N42 files use.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import BegePsdError, FitQualityWarning

__all__ = (
    "CRYOCONITE_LINES_KEV",
    "TH232_LINES_KEV",
    "CalibConfig",
    "Calibration",
    "CalibrationError",
    "FoundPeaks",
    "calibrate",
    "find_peaks_adc",
    "fit_resolution",
)

log = logging.getLogger(__name__)

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: 232Th-chain full-energy lines for calibration (keV), LNHB LARA/DDEP via
#: physics-data/th232_chain_lines.csv (nuclide,E_keV,dE_keV,I_per_decay_pct,...):
#:   Pb-212,238.632,0.002,43.6 | Ac-228,338.32,0.005,11.4 | Tl-208,583.187,0.002,85.0
#:   Bi-212,727.33,0.009,6.65 | Tl-208,860.53,0.02,12.4 | Ac-228,911.196,0.006,26.2
#:   Ac-228,968.96,0.009,15.9 | Bi-212,1620.738,0.01,1.51 | Tl-208,2614.511,0.01,99.755
#: (escape peaks and the 510.74 keV line next to annihilation are left out on purpose)
TH232_LINES_KEV: tuple[float, ...] = (
    238.632,
    338.32,
    583.187,
    727.33,
    860.53,
    911.196,
    968.96,
    1620.738,
    2614.511,
)

#: Cryoconite-sample lines (keV), LNHB LARA/DDEP via physics-data/cryoconite_lines.csv:
#:   Pb-210,46.539 | Am-241,59.5409 | Pb-214,351.932 | Bi-207,569.698 | Bi-214,609.312
#:   Cs-137,661.6553 | Bi-207,1063.656 | K-40,1460.822 | Bi-214,1764.494
#: (7Be 477.6035 keV is the weak line to find, not a calibration line)
CRYOCONITE_LINES_KEV: tuple[float, ...] = (
    46.539,
    59.5409,
    351.932,
    569.698,
    609.312,
    661.6553,
    1063.656,
    1460.822,
    1764.494,
)


class CalibrationError(BegePsdError, ValueError):
    """The calibration could not be determined (too few peaks found or matched, bad input)."""


@dataclass(frozen=True)
class CalibConfig:
    """Options of :func:`calibrate` (``[calib]`` in the TOML configuration)."""

    source: Literal["th232", "cryoconite", "custom"] = "th232"
    th232_lines_kev: tuple[float, ...] = TH232_LINES_KEV
    cryoconite_lines_kev: tuple[float, ...] = CRYOCONITE_LINES_KEV
    custom_lines_kev: tuple[float, ...] = ()
    order: int = field(default=1, metadata={"choices": (1, 2), "doc": "1 linear, 2 quadratic"})
    model: str = field(
        default="gauss_step",
        metadata={"choices": ("gauss_step", "gauss_step_tail", "gauss_linear")},
    )
    fit_halfwidth_fwhm: float = field(default=3.0, metadata={"min": 1.5, "max": 20.0})
    prominence_sigma: float = field(default=6.0, metadata={"min": 1.0})
    smooth_channels: float = field(default=1.0, metadata={"min": 0.0, "max": 20.0})
    max_peaks: int = field(default=40, metadata={"min": 2, "max": 500})
    pairing_peaks: int = field(
        default=12, metadata={"min": 2, "max": 40, "doc": "strongest peaks tried as anchors"}
    )
    match_tolerance_kev: float = field(default=3.0, metadata={"min": 0.01})
    gain_range_kev_per_adc: tuple[float, float] = (0.005, 20.0)
    max_offset_kev: float = field(default=100.0, metadata={"min": 0.0})
    n_channels: int = field(default=16384, metadata={"min": 16})

    def __post_init__(self) -> None:
        lo, hi = self.gain_range_kev_per_adc
        if not 0 < lo < hi:
            msg = f"calib.gain_range_kev_per_adc = {(lo, hi)!r}: expected 0 < lo < hi"
            raise ValueError(msg)

    @property
    def lines_kev(self) -> tuple[float, ...]:
        """The line list selected by ``source``."""
        return {
            "th232": self.th232_lines_kev,
            "cryoconite": self.cryoconite_lines_kev,
            "custom": self.custom_lines_kev,
        }[self.source]


def _tuple2(a: NDArray[np.float64]) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(x) for x in row) for row in np.atleast_2d(a))


@dataclass(frozen=True)
class Calibration:
    """An ADC -> keV calibration with covariance, per-line residuals and a resolution curve.

    ``coeffs`` are ``(c0, c1[, c2])`` of ``E = c0 + c1 adc + c2 adc^2`` (keV);
    ``covariance`` their covariance (scaled by ``scale_factor^2`` when chi2/ndof > 1, PDG
    style). ``fwhm_coeffs`` are ``(a, b, c)`` of ``FWHM(E)^2 = a + b E + c E^2`` (keV^2, keV,
    1) with ``fwhm_covariance``.
    """

    coeffs: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    lines_kev: tuple[float, ...] = ()
    peaks_adc: tuple[float, ...] = ()
    peaks_adc_err: tuple[float, ...] = ()
    residuals_kev: tuple[float, ...] = ()
    fwhm_coeffs: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fwhm_covariance: tuple[tuple[float, ...], ...] = ((0.0,) * 3,) * 3
    fwhm_points_kev: tuple[float, ...] = ()
    fwhm_points_err_kev: tuple[float, ...] = ()
    chi2: float = 0.0
    ndof: int = 0
    scale_factor: float = 1.0

    @property
    def order(self) -> int:
        return len(self.coeffs) - 1

    @classmethod
    def from_coefficients(cls, c0: float, c1: float, c2: float = 0.0) -> Calibration:
        """A calibration from known coefficients (no uncertainties, no resolution curve)."""
        coeffs = (float(c0), float(c1)) if c2 == 0 else (float(c0), float(c1), float(c2))
        n = len(coeffs)
        return cls(coeffs=coeffs, covariance=_tuple2(np.zeros((n, n))))

    @property
    def compass_coefficients(self) -> tuple[float, float, float]:
        """``(c0, c1, c2)`` padded with zeros (N42 needs exactly three)."""
        c = list(self.coeffs) + [0.0] * (3 - len(self.coeffs))
        return float(c[0]), float(c[1]), float(c[2])

    def apply(self, adc: ArrayLike) -> NDArray[np.float64]:
        """Energy in keV of ADC value(s) ``adc`` (float64)."""
        x = np.asarray(adc, dtype=np.float64)
        out = np.zeros_like(x)
        for k, c in enumerate(self.coeffs):
            out = out + c * x**k
        return out

    def apply_error(self, adc: ArrayLike) -> NDArray[np.float64]:
        """Standard uncertainty (keV) of :meth:`apply` from the coefficient covariance."""
        x = np.asarray(adc, dtype=np.float64)
        jac = np.stack([x**k for k in range(len(self.coeffs))], axis=-1)
        cov = np.asarray(self.covariance)
        var = np.einsum("...i,ij,...j->...", jac, cov, jac)
        return np.asarray(np.sqrt(np.maximum(var, 0.0)), dtype=np.float64)

    def gain(self, adc: ArrayLike) -> NDArray[np.float64]:
        """dE/d(adc) in keV per channel."""
        x = np.asarray(adc, dtype=np.float64)
        out = np.zeros_like(x)
        for k, c in enumerate(self.coeffs[1:], start=1):
            out = out + k * c * x ** (k - 1)
        return out

    def fwhm_kev(self, energy_kev: ArrayLike) -> NDArray[np.float64]:
        """Resolution ``sqrt(a + b E + c E^2)`` in keV (NaN where the radicand is negative)."""
        e = np.asarray(energy_kev, dtype=np.float64)
        a, b, c = self.fwhm_coeffs
        r = a + b * e + c * e * e
        return np.asarray(np.where(r > 0, np.sqrt(np.abs(r)), np.nan), dtype=np.float64)

    def fwhm_kev_error(self, energy_kev: ArrayLike) -> NDArray[np.float64]:
        """Standard uncertainty of :meth:`fwhm_kev` from the curve's covariance."""
        e = np.asarray(energy_kev, dtype=np.float64)
        f = self.fwhm_kev(e)
        jac = np.stack([np.ones_like(e), e, e * e], axis=-1)
        var = np.einsum("...i,ij,...j->...", jac, np.asarray(self.fwhm_covariance), jac)
        return np.asarray(np.sqrt(np.maximum(var, 0.0)) / (2.0 * f), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "coeffs": list(self.coeffs),
            "covariance": [list(r) for r in self.covariance],
            "lines_kev": list(self.lines_kev),
            "peaks_adc": list(self.peaks_adc),
            "peaks_adc_err": list(self.peaks_adc_err),
            "residuals_kev": list(self.residuals_kev),
            "fwhm_coeffs": list(self.fwhm_coeffs),
            "fwhm_covariance": [list(r) for r in self.fwhm_covariance],
            "fwhm_points_kev": list(self.fwhm_points_kev),
            "fwhm_points_err_kev": list(self.fwhm_points_err_kev),
            "chi2": self.chi2,
            "ndof": self.ndof,
            "scale_factor": self.scale_factor,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        """Rebuild a calibration written by :meth:`to_dict`."""
        try:
            coeffs = tuple(float(x) for x in d["coeffs"])
            if len(coeffs) not in (2, 3):
                msg = f"calibration has {len(coeffs)} coefficients; expected 2 or 3"
                raise CalibrationError(msg)
            fc = tuple(float(x) for x in d.get("fwhm_coeffs", (0.0, 0.0, 0.0)))
            return cls(
                coeffs=coeffs,
                covariance=_tuple2(np.asarray(d["covariance"], dtype=float)),
                lines_kev=tuple(float(x) for x in d.get("lines_kev", ())),
                peaks_adc=tuple(float(x) for x in d.get("peaks_adc", ())),
                peaks_adc_err=tuple(float(x) for x in d.get("peaks_adc_err", ())),
                residuals_kev=tuple(float(x) for x in d.get("residuals_kev", ())),
                fwhm_coeffs=(fc[0], fc[1], fc[2]),
                fwhm_covariance=_tuple2(
                    np.asarray(d.get("fwhm_covariance", np.zeros((3, 3))), dtype=float)
                ),
                fwhm_points_kev=tuple(float(x) for x in d.get("fwhm_points_kev", ())),
                fwhm_points_err_kev=tuple(float(x) for x in d.get("fwhm_points_err_kev", ())),
                chi2=float(d.get("chi2", 0.0)),
                ndof=int(d.get("ndof", 0)),
                scale_factor=float(d.get("scale_factor", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError):
                raise
            msg = f"not a calibration dict ({exc!r}); expected keys 'coeffs' and 'covariance'"
            raise CalibrationError(msg) from exc


@dataclass(frozen=True, eq=False)
class FoundPeaks:
    """Peaks found by :func:`find_peaks_adc`: channel, FWHM (channels) and significance."""

    channel: NDArray[np.float64]
    fwhm_channels: NDArray[np.float64]
    significance: NDArray[np.float64]
    height: NDArray[np.float64]


def find_peaks_adc(
    counts: ArrayLike,
    *,
    prominence_sigma: float = 6.0,
    smooth_channels: float = 1.0,
    max_peaks: int = 40,
) -> FoundPeaks:
    """Find peaks in a 1-channel-per-bin spectrum ``counts`` (bin ``i`` = channel ``i``).

    The spectrum is smoothed with a Gaussian of ``smooth_channels``; a local maximum is kept
    when its prominence exceeds ``prominence_sigma x sqrt(base + 1)`` (``base`` = the smoothed
    height minus the prominence, i.e. the local continuum). At most ``max_peaks`` peaks, the
    most significant first.
    """
    from scipy.ndimage import gaussian_filter1d
    from scipy.signal import find_peaks, peak_widths

    c = np.asarray(counts, dtype=np.float64)
    s = gaussian_filter1d(c, smooth_channels) if smooth_channels > 0 else c
    idx, props = find_peaks(s, prominence=prominence_sigma)
    if idx.size == 0:
        return FoundPeaks(*(np.zeros(0) for _ in range(4)))
    prom = props["prominences"]
    base = np.maximum(s[idx] - prom, 0.0)
    # smoothing by a Gaussian of width w reduces the noise by ~ 1/sqrt(2 sqrt(pi) w)
    noise_scale = (
        1.0 / math.sqrt(2.0 * math.sqrt(math.pi) * smooth_channels)
        if smooth_channels > 0.3
        else 1.0
    )
    signif = prom / (np.sqrt(base + 1.0) * noise_scale)
    keep = signif > prominence_sigma
    idx, prom, signif = idx[keep], prom[keep], signif[keep]
    if idx.size == 0:
        return FoundPeaks(*(np.zeros(0) for _ in range(4)))
    widths = peak_widths(s, idx, rel_height=0.5)[0]
    order = np.argsort(-signif)[:max_peaks]
    return FoundPeaks(
        channel=idx[order].astype(np.float64),
        fwhm_channels=np.asarray(widths[order], dtype=np.float64),
        significance=np.asarray(signif[order], dtype=np.float64),
        height=np.asarray(prom[order], dtype=np.float64),
    )


def _match_lines(
    peaks: FoundPeaks, lines: Sequence[float], cfg: CalibConfig
) -> tuple[float, float, list[tuple[float, int]]]:
    """Find the linear map channel -> keV that matches the most lines to found peaks."""
    ch_all = peaks.channel
    sig_all = peaks.significance
    anchors = np.argsort(-sig_all)[: cfg.pairing_peaks]
    lines_arr = np.sort(np.asarray(lines, dtype=np.float64))
    gmin, gmax = cfg.gain_range_kev_per_adc
    best: tuple[int, float, float, float, float] | None = None  # (n, score, -rms, gain, offset)
    # two peaks always match two lines exactly: a credible map must explain a third one
    need = min(3, lines_arr.size)
    order_ch = np.argsort(ch_all)
    ch_sorted = ch_all[order_ch]
    for i, j in itertools.combinations(anchors, 2):
        pi, pj = ch_all[i], ch_all[j]
        if pi == pj:
            continue
        if pi > pj:
            pi, pj = pj, pi
        for a, b in itertools.combinations(range(lines_arr.size), 2):
            gain = (lines_arr[b] - lines_arr[a]) / (pj - pi)
            if not gmin <= gain <= gmax:
                continue
            offset = lines_arr[a] - gain * pi
            if abs(offset) > cfg.max_offset_kev:
                continue
            pred = (lines_arr - offset) / gain  # predicted channels of every line
            k = (
                np.clip(np.searchsorted(ch_sorted, pred), 1, ch_sorted.size - 1)
                if ch_sorted.size > 1
                else np.zeros(pred.size, dtype=int)
            )
            cand = np.stack([ch_sorted[np.maximum(k - 1, 0)], ch_sorted[k]])
            d = np.abs(cand - pred) * gain
            dmin = d.min(axis=0)
            hit = dmin <= cfg.match_tolerance_kev
            n = int(hit.sum())
            if n < need:
                continue
            nearest = np.where(
                np.argmin(d, axis=0) == 0, order_ch[np.maximum(k - 1, 0)], order_ch[k]
            )
            score = float(np.sum(np.log1p(sig_all[nearest[hit]])))
            rms = float(np.sqrt(np.mean(dmin[hit] ** 2)))
            key = (n, score, -rms, gain, offset)
            if best is None or key[:3] > best[:3]:
                best = key
    if best is None:
        msg = (
            f"no linear map matches {need} or more of the lines {list(lines_arr)} keV to the "
            f"{ch_all.size} peaks found (channels {sorted(ch_all.astype(int).tolist())[:20]}); "
            "check the line list, gain_range_kev_per_adc and prominence_sigma"
        )
        raise CalibrationError(msg)
    _, _, _, gain, offset = best
    pred = (lines_arr - offset) / gain
    matches: list[tuple[float, int]] = []
    used: set[int] = set()
    for e, p in zip(lines_arr, pred, strict=True):
        d = np.abs(ch_all - p) * gain
        i = int(np.argmin(d))
        if d[i] <= cfg.match_tolerance_kev and i not in used:
            matches.append((float(e), i))
            used.add(i)
    return gain, offset, matches


def _weighted_polyfit(
    x: NDArray[np.float64], y: NDArray[np.float64], sy: NDArray[np.float64], order: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Weighted least squares ``y = sum c_k x^k``; returns (coeffs, covariance, chi2)."""
    X = np.stack([x**k for k in range(order + 1)], axis=-1)
    w = 1.0 / sy**2
    A = X.T @ (w[:, None] * X)
    cov = np.asarray(np.linalg.inv(A), dtype=np.float64)
    coef = cov @ (X.T @ (w * y))
    chi2 = float(np.sum(w * (y - X @ coef) ** 2))
    return coef, cov, chi2


def fit_resolution(
    energy_kev: ArrayLike, fwhm_kev: ArrayLike, fwhm_err_kev: ArrayLike, *, n_terms: int = 3
) -> tuple[tuple[float, float, float], NDArray[np.float64]]:
    """Fit ``FWHM(E)^2 = a + b E + c E^2`` to measured widths (weighted linear least squares).

    Uses ``n_terms`` (1-3) of ``(a, b, c)``, fewer when there are fewer points; the unused
    terms are 0 with zero variance. Returns ``((a, b, c), covariance 3x3)``; the covariance is
    scaled by chi2/ndof when that exceeds 1.
    """
    e = np.asarray(energy_kev, dtype=np.float64)
    f = np.asarray(fwhm_kev, dtype=np.float64)
    sf = np.asarray(fwhm_err_kev, dtype=np.float64)
    if e.size == 0:
        msg = "fit_resolution needs at least one (E, FWHM) point"
        raise CalibrationError(msg)
    k = max(1, min(n_terms, e.size))
    coef, cov, chi2 = _weighted_polyfit(e, f * f, np.maximum(2.0 * f * sf, 1e-12), k - 1)
    ndof = e.size - k
    if ndof > 0 and chi2 / ndof > 1:
        cov = cov * (chi2 / ndof)
    full = np.zeros(3)
    full[:k] = coef
    fcov = np.zeros((3, 3))
    fcov[:k, :k] = cov
    return (float(full[0]), float(full[1]), float(full[2])), fcov


def calibrate(
    energy_adc: ArrayLike | Any,
    lines_kev: Sequence[float] | None = None,
    *,
    order: int | None = None,
    config: CalibConfig | None = None,
) -> Calibration:
    """Calibrate ADC energies against known lines.

    Parameters
    ----------
    energy_adc
        Per-event ADC energies (e.g. ``events.energy_adc``), or an ADC spectrum with one bin
        per channel (:func:`bege_psd.spectrum.adc_spectrum`, e.g. filled chunk by chunk with
        :func:`bege_psd.spectrum.fill`) so that a large run never sits in memory.
    lines_kev
        Line energies; default: ``config.lines_kev`` (232Th unless configured otherwise).
    order
        1 (linear) or 2 (quadratic); default ``config.order``.
    config
        :class:`CalibConfig`.

    Returns
    -------
    Calibration
        With coefficients, covariance, residuals per matched line and the resolution curve.

    Raises
    ------
    CalibrationError
        When fewer than ``order + 1`` lines can be found and fitted.
    """
    from .fit.peaks import fit_peaks
    from .spectrum import adc_spectrum

    cfg = config or CalibConfig()
    order = cfg.order if order is None else int(order)
    if order not in (1, 2):
        msg = f"order={order} is not allowed; use 1 (linear) or 2 (quadratic)"
        raise CalibrationError(msg)
    lines = tuple(float(x) for x in (lines_kev if lines_kev is not None else cfg.lines_kev))
    if len(lines) < order + 1:
        msg = f"{len(lines)} calibration lines given; order {order} needs at least {order + 1}"
        raise CalibrationError(msg)
    h: Any
    if hasattr(energy_adc, "axes"):  # an ADC spectrum filled chunk by chunk
        h = energy_adc
        centres = np.asarray(h.axes[0].centers, dtype=np.float64)
        if len(h.axes) != 1 or not np.allclose(centres, np.arange(centres.size) + centres[0]):
            msg = "calibrate() needs events or a 1-D spectrum with one bin per ADC channel (adc_spectrum)"
            raise CalibrationError(msg)
        if float(np.sum(h.values())) <= 0:
            msg = "the ADC spectrum given to calibrate() is empty"
            raise CalibrationError(msg)
    else:
        adc = np.asarray(energy_adc, dtype=np.float64).ravel()
        finite = adc[np.isfinite(adc)]
        if finite.size == 0:
            msg = "no finite ADC energies to calibrate"
            raise CalibrationError(msg)
        n_ch = int(min(max(np.max(finite) + 2, 16), max(cfg.n_channels, np.max(finite) + 2)))
        h = adc_spectrum(adc, n_channels=n_ch)
        centres = np.arange(n_ch, dtype=np.float64)
    counts = np.asarray(h.values())
    found = find_peaks_adc(
        counts,
        prominence_sigma=cfg.prominence_sigma,
        smooth_channels=cfg.smooth_channels,
        max_peaks=cfg.max_peaks,
    )
    if found.channel.size < 2:
        msg = f"found {found.channel.size} peak(s) in the ADC spectrum ({float(np.sum(counts)):.0f} events); need >= 2"
        raise CalibrationError(msg)
    # peak positions as ADC channels (the spectrum may start above channel 0)
    found = FoundPeaks(
        found.channel + centres[0], found.fwhm_channels, found.significance, found.height
    )
    gain, offset, matches = _match_lines(found, lines, cfg)
    log.info(
        "line matching: %.5f keV/ch, offset %.3f keV, %d lines matched", gain, offset, len(matches)
    )

    e_line, mu, mu_err, sig, sig_err = [], [], [], [], []
    for e, i in matches:
        ch = found.channel[i]
        fwhm_ch = max(found.fwhm_channels[i], 2.0)
        half = max(cfg.fit_halfwidth_fwhm * fwhm_ch, 8.0)
        window = (ch - half - 0.5, ch + half + 0.5)
        # keep neighbouring found peaks out of the window
        others = found.channel[np.abs(found.channel - ch) > 0.5]
        lo_n = others[others < ch]
        hi_n = others[others > ch]
        if lo_n.size:
            window = (max(window[0], 0.5 * (lo_n.max() + ch)), window[1])
        if hi_n.size:
            window = (window[0], min(window[1], 0.5 * (hi_n.min() + ch)))
        window = (math.floor(window[0]) + 0.5, math.ceil(window[1]) - 0.5)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FitQualityWarning)
                r = fit_peaks(h, window, cfg.model, [float(ch)], minos=False, fwhm=fwhm_ch)
        except BegePsdError as exc:
            log.warning("line %.3f keV at channel %.0f: fit not possible (%s); skipped", e, ch, exc)
            continue
        if (
            not r.valid
            or "mu_0" in r.at_limit
            or "sigma" in r.at_limit
            or r.areas[0].area < 3 * r.areas[0].error
        ):
            log.warning(
                "line %.3f keV at channel %.0f: fit not valid or not significant; skipped", e, ch
            )
            continue
        e_line.append(e)
        mu.append(r.values["mu_0"])
        mu_err.append(r.errors["mu_0"])
        sig.append(r.values["sigma"])
        sig_err.append(r.errors["sigma"])
    if len(e_line) < order + 1:
        msg = (
            f"only {len(e_line)} line(s) could be fitted ({e_line} keV); order {order} needs "
            f"{order + 1}; lines tried: {list(lines)}"
        )
        raise CalibrationError(msg)
    x = np.array(mu)
    sx = np.array(mu_err)
    y = np.array(e_line)
    g = np.full(x.size, gain)
    for _ in range(4):  # effective variance: the channel errors enter through dE/dch
        coef, cov, chi2 = _weighted_polyfit(x, y, np.maximum(g * sx, 1e-9), order)
        g = sum(k * coef[k] * x ** (k - 1) for k in range(1, order + 1))
    ndof = x.size - (order + 1)
    scale = math.sqrt(chi2 / ndof) if ndof > 0 and chi2 > ndof else 1.0
    cov = cov * scale**2
    cal = Calibration(coeffs=tuple(float(c) for c in coef), covariance=_tuple2(cov))
    resid = y - cal.apply(x)
    gx = cal.gain(x)
    fwhm = _FWHM_PER_SIGMA * np.array(sig) * gx
    fwhm_err = _FWHM_PER_SIGMA * np.array(sig_err) * gx
    fcoef, fcov = fit_resolution(y, fwhm, fwhm_err)
    return Calibration(
        coeffs=cal.coeffs,
        covariance=cal.covariance,
        lines_kev=tuple(float(v) for v in y),
        peaks_adc=tuple(float(v) for v in x),
        peaks_adc_err=tuple(float(v) for v in sx),
        residuals_kev=tuple(float(v) for v in resid),
        fwhm_coeffs=fcoef,
        fwhm_covariance=_tuple2(fcov),
        fwhm_points_kev=tuple(float(v) for v in fwhm),
        fwhm_points_err_kev=tuple(float(v) for v in fwhm_err),
        chi2=float(chi2),
        ndof=int(ndof),
        scale_factor=float(scale),
    )
