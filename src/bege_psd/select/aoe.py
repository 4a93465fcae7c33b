"""The classical A/E cut of GERDA/LEGEND, as a :class:`~bege_psd.select.base.Selector`.

A/E (the current maximum over the energy) is nearly constant for single-site events (SSE) in a
BEGe and lower for multi-site events (MSE). Its mean and width drift with energy, so the raw
ratio is first corrected (Budjáš et al., JINST 4 (2009) P10007; the procedure of the LEGEND
calibration, see ``shared/reference/PSD-ANCHORS.md`` section 1.2):

1. Compton-continuum slices (default 40 keV wide between 600 and 2350 keV, skipping +-5 keV
   around known lines): in each slice the A/E distribution is fitted with a Gaussian (the SSE
   band) plus an erfc step (the MSE tail below it) by a binned extended likelihood (iminuit).
2. ``mu(E) = a + b E`` is fitted to the band positions, and the relative width to
   ``sigma(E)^2 = p0 + p1 / E^2`` (non-negative least squares).
3. The classifier is ``c = (A/E / mu(E) - 1) / sigma(E)``: the SSE band becomes N(0, 1).

Two ways to use the result
--------------------------
- GERDA-style SSE cut (what the literature quotes): keep ``c > c_low``, with ``c_low`` set so
  that 90 % of the DEP net counts (sideband-subtracted) pass. :meth:`AoESelector.sse_cut_value`
  returns ``c_low``; the survival fractions of the DEP/SEP/FEP/Compton quoted by GERDA (SEP
  5-15 %, FEP 8-18 %, Compton 25-50 %) refer to *this* cut.
- MSE-keeping score (what this package uses to suppress the Compton continuum): the score is
  ``F(-c)`` with ``F`` the standard Cauchy CDF, ``score = 1/2 - arctan(c) / pi``, so low A/E
  means a high score and ``c = 0`` (the SSE band centre) scores 0.5. A Cauchy rather than a
  normal CDF because MSE events sit tens of sigma below the band, where a normal CDF rounds to
  exactly 1.0 in float64 and the events could no longer be ordered for a kept-fraction
  threshold; the map is strictly monotone for any finite ``c``, so a cut on the score is a cut
  on ``c``. The working point ``threshold = F(-c_low)`` keeps exactly the events the GERDA cut
  rejects (``c <= c_low``): the *complement*; at "90 % DEP acceptance" this mask keeps about
  10 % of the DEP.
  Alternatively the threshold is set for a target kept fraction in an energy range
  (:meth:`AoESelector.with_kept_fraction`), to compare A/E with GMM and ACM at the same number
  of kept events, as the paper's authors did.

Helpers reused by other selections: :func:`table_columns`, :func:`threshold_for_kept_fraction`,
:func:`net_peak_counts` and :func:`net_survival` (sideband-subtracted peak counts).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import __version__
from .._util import stable_hash
from ..config import to_mapping
from ..errors import ModelMismatchError, SelectionError
from .base import (  # generic event-table and model-file helpers, re-exported here
    _check_header,
    _config_from_meta,
    _quality_ok,
    read_model_header,
    table_columns,
    threshold_for_kept_fraction,
    write_model_json,
)

__all__ = (
    "AoEConfig",
    "AoESelector",
    "net_peak_counts",
    "net_survival",
    "score_from_classifier",
    "table_columns",
    "threshold_for_kept_fraction",
)

log = logging.getLogger(__name__)

#: version of the on-disk model layout written by :meth:`AoESelector.save`
FORMAT_VERSION = 1

#: gamma lines (keV) skipped when choosing Compton slices: 232Th chain (228Ac, 212Pb, 212Bi,
#: 208Tl, including SEP/DEP) and common cryoconite / background lines (137Cs, 40K, 214Bi, 60Co)
DEFAULT_EXCLUDED_LINES_KEV: tuple[float, ...] = (
    583.2, 609.3, 661.7, 727.3, 763.1, 785.4, 794.9, 860.6, 911.2, 964.8, 969.0, 1078.6,
    1093.9, 1120.3, 1173.2, 1238.1, 1332.5, 1460.8, 1512.7, 1580.5, 1588.2, 1592.5, 1620.7,
    1630.6, 1764.5, 2103.5, 2204.1,
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class AoEConfig:
    """Options of the A/E selection (TOML section ``[aoe]``)."""

    aoe_field: str = field(default="a_over_e", metadata={"doc": "event-table field holding A/E"})
    compton_range_kev: tuple[float, float] = (600.0, 2350.0)
    slice_width_kev: float = field(default=40.0, metadata={"min": 1.0})
    min_slice_events: int = field(default=300, metadata={"min": 20})
    excluded_lines_kev: tuple[float, ...] = DEFAULT_EXCLUDED_LINES_KEV
    exclude_half_width_kev: float = field(default=5.0, metadata={"min": 0.0})
    mu_model: Literal["linear", "constant"] = "linear"
    #: how :meth:`AoESelector.fit` sets the working point
    threshold_mode: Literal["dep_acceptance", "kept_fraction", "fixed"] = "dep_acceptance"
    dep_acceptance: float = field(default=0.9, metadata={"min": 0.01, "max": 0.999})
    kept_fraction: float = field(default=0.35, metadata={"min": 0.001, "max": 1.0})
    kept_fraction_range_kev: tuple[float, float] = (300.0, 2700.0)
    threshold: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    #: DEP peak window and sidebands (keV) for the net (sideband-subtracted) acceptance; the
    #: left sideband stops above the 228Ac 1580.5 keV line and below 1588.2 keV
    dep_window_kev: tuple[float, float] = (1590.0, 1595.0)
    dep_sidebands_kev: tuple[tuple[float, float], ...] = ((1564.0, 1576.0), (1598.0, 1612.0))
    min_dep_net_counts: float = field(default=20.0, metadata={"min": 1.0})
    #: events whose ``quality`` has any of these bits set are not used and score NaN
    quality_mask: int = field(default=0xFFFFFFFF, metadata={"min": 0})

    def __post_init__(self) -> None:
        for name in ("compton_range_kev", "kept_fraction_range_kev", "dep_window_kev"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                msg = f"aoe.{name} = [{lo}, {hi}]: the lower edge must be below the upper edge"
                raise ValueError(msg)
        for lo, hi in self.dep_sidebands_kev:
            if not lo < hi:
                msg = f"aoe.dep_sidebands_kev has [{lo}, {hi}]: lower edge must be below upper"
                raise ValueError(msg)


# ----------------------------------------------------------------------------- helpers


def net_peak_counts(
    energy_kev: ArrayLike,
    window_kev: tuple[float, float],
    sidebands_kev: Sequence[tuple[float, float]],
    mask: ArrayLike | None = None,
) -> tuple[float, float]:
    """Sideband-subtracted counts in ``window_kev`` (flat background), and its 1-sigma error.

    The background density is the sidebands' total count over their total width, scaled to the
    window width. ``mask`` selects the events counted (e.g. those kept by a cut).
    """
    e = np.asarray(energy_kev, dtype=np.float64)
    if mask is not None:
        e = e[np.asarray(mask, dtype=bool)]
    lo, hi = window_kev
    n_peak = float(np.count_nonzero((e >= lo) & (e <= hi)))
    n_side = 0.0
    w_side = 0.0
    for a, b in sidebands_kev:
        n_side += float(np.count_nonzero((e >= a) & (e <= b)))
        w_side += b - a
    scale = (hi - lo) / w_side if w_side > 0 else 0.0
    net = n_peak - n_side * scale
    err = math.sqrt(n_peak + n_side * scale**2)
    return net, err


def net_survival(
    energy_kev: ArrayLike,
    keep: ArrayLike,
    window_kev: tuple[float, float],
    sidebands_kev: Sequence[tuple[float, float]],
) -> tuple[float, float]:
    """Fraction of the net peak counts kept by the mask ``keep``, and its error.

    Kept and rejected net counts are independent Poisson-based estimates, so the error is
    propagated from both (it stays finite at survival 0 or 1 when there is background).
    """
    keep = np.asarray(keep, dtype=bool)
    k, dk = net_peak_counts(energy_kev, window_kev, sidebands_kev, keep)
    r, dr = net_peak_counts(energy_kev, window_kev, sidebands_kev, ~keep)
    tot = k + r
    if tot <= 0:
        return float("nan"), float("nan")
    err = math.sqrt((r * dk) ** 2 + (k * dr) ** 2) / tot**2
    return k / tot, err


# ----------------------------------------------------------------------------- slice fits


def _phi(t: NDArray[np.float64]) -> NDArray[np.float64]:
    from scipy.special import ndtr

    return np.asarray(ndtr(t), dtype=np.float64)


def _step_antiderivative(t: NDArray[np.float64]) -> NDArray[np.float64]:
    """G(t) with G' = 1 - Phi(t): G(t) = t (1 - Phi(t)) - phi(t)."""
    return np.asarray(t * (1.0 - _phi(t)) - np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi))


def _fit_band(values: NDArray[np.float64]) -> dict[str, float] | None:
    """Fit the SSE band (Gaussian) + MSE tail (erfc step) of A/E values of one slice."""
    from iminuit import Minuit
    from iminuit.cost import ExtendedBinnedNLL

    v = values[np.isfinite(values)]
    if v.size < 20:
        return None
    lo, hi = np.quantile(v, [0.01, 0.999])
    if not hi > lo:
        return None
    counts, edges = np.histogram(v, bins=120, range=(lo, hi))
    kernel = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 9.0
    smooth = np.convolve(counts, kernel, mode="same")
    i_mode = int(np.argmax(smooth))
    centres = 0.5 * (edges[1:] + edges[:-1])
    mode = float(centres[i_mode])
    above = np.flatnonzero(smooth[i_mode:] < 0.5 * smooth[i_mode])
    hwhm = float(centres[i_mode + above[0]] - mode) if above.size else float(hi - mode)
    sigma0 = max(hwhm / 1.1774, (edges[1] - edges[0]))
    rlo, rhi = mode - 4.0 * sigma0, mode + 5.0 * sigma0
    sel = v[(v >= rlo) & (v <= rhi)]
    if sel.size < 20:
        return None
    n_bins = int(np.clip(sel.size // 20, 20, 100))
    n, xe = np.histogram(sel, bins=n_bins, range=(rlo, rhi))

    def cdf(x: NDArray[np.float64], n_sig: float, n_bkg: float, mu: float, sigma: float) -> Any:
        t = (x - mu) / sigma
        g = _step_antiderivative(t)
        g_lo = _step_antiderivative(np.array([(rlo - mu) / sigma]))[0]
        g_hi = _step_antiderivative(np.array([(rhi - mu) / sigma]))[0]
        norm = g_hi - g_lo
        return n_sig * _phi(t) + n_bkg * (g - g_lo) / norm

    cost = ExtendedBinnedNLL(n, xe, cdf)
    m = Minuit(cost, n_sig=0.7 * sel.size, n_bkg=0.3 * sel.size, mu=mode, sigma=sigma0)
    m.limits["n_sig"] = (0.0, 2.0 * sel.size)
    m.limits["n_bkg"] = (0.0, 2.0 * sel.size)
    m.limits["mu"] = (rlo, rhi)
    m.limits["sigma"] = (0.05 * sigma0, 5.0 * sigma0)
    try:
        m.migrad()
        m.hesse()
    except (RuntimeError, ValueError):  # pragma: no cover - iminuit failure modes
        return None
    if not m.valid:
        return None
    return {
        "mu": float(m.values["mu"]),
        "mu_err": float(m.errors["mu"]),
        "sigma": float(m.values["sigma"]),
        "sigma_err": float(m.errors["sigma"]),
        "n_sig": float(m.values["n_sig"]),
        "n_bkg": float(m.values["n_bkg"]),
    }


def _nnls_width(
    e: NDArray[np.float64], rel: NDArray[np.float64], err: NDArray[np.float64]
) -> tuple[float, float]:
    """Fit rel^2 = p0 + p1 / E^2 with p0, p1 >= 0 (weighted NNLS)."""
    from scipy.optimize import nnls

    y = rel**2
    yerr = np.maximum(2.0 * rel * err, 1e-12)
    a = np.column_stack([np.ones_like(e), 1.0 / e**2]) / yerr[:, None]
    p, _ = nnls(a, y / yerr)
    return float(p[0]), float(p[1])


# ----------------------------------------------------------------------------- selector


def score_from_classifier(c: ArrayLike) -> NDArray[np.float64]:
    """``1/2 - arctan(c) / pi``: the standard Cauchy CDF of ``-c``; strictly decreasing in ``c``."""
    return np.asarray(0.5 - np.arctan(np.asarray(c, dtype=np.float64)) / np.pi)


class AoESelector:
    """A/E corrected for its energy dependence; score ``1/2 - arctan(c)/pi`` (1 = low A/E = MSE-like).

    Parameters
    ----------
    config
        :class:`AoEConfig`; defaults when ``None``.

    Examples
    --------
    >>> sel = AoESelector().fit(table)                       # doctest: +SKIP
    >>> c_low = sel.sse_cut_value(table)                     # GERDA-style low cut, 90 % DEP
    >>> kept = sel.mask(table)                               # MSE-like events (c <= c_low)
    >>> sel_matched = sel.with_kept_fraction(table, 0.35)    # same kept fraction as a GMM
    """

    name = "aoe"

    def __init__(self, config: AoEConfig | None = None) -> None:
        self.config = config or AoEConfig()
        self.threshold: float = self.config.threshold
        self.mu_coeffs: tuple[float, float] | None = None  # (a, b): mu(E) = a + b E
        self.sigma_coeffs: tuple[float, float] | None = None  # (p0, p1): rel^2 = p0 + p1/E^2
        self.slices: list[dict[str, float]] = []
        self.cut_value: float | None = None  # c_low of the GERDA-style SSE cut, if determined
        self.training: dict[str, Any] = {}

    # -- fitting -----------------------------------------------------------------------
    def _columns(
        self, table: Any
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
        cols = table_columns(table, [self.config.aoe_field, "energy_kev"], where="A/E selector")
        aoe, e = cols[self.config.aoe_field], cols["energy_kev"]
        usable = (
            np.isfinite(aoe)
            & np.isfinite(e)
            & (e > 0)
            & _quality_ok(table, self.config.quality_mask, e.size)
        )
        return aoe, e, usable

    def fit(self, table: Any, **kwargs: Any) -> Self:
        """Fit mu(E) and sigma(E) of the SSE band on Compton slices, then set the threshold."""
        if kwargs:
            msg = f"AoESelector.fit: unexpected keyword arguments {sorted(kwargs)}"
            raise TypeError(msg)
        cfg = self.config
        aoe, e, usable = self._columns(table)
        lo, hi = cfg.compton_range_kev
        edges = np.arange(lo, hi + 1e-9, cfg.slice_width_kev)
        lines = np.asarray(cfg.excluded_lines_kev, dtype=np.float64)
        near_line = np.zeros(e.size, dtype=bool)
        for line in lines:
            near_line |= np.abs(e - line) <= cfg.exclude_half_width_kev
        base = usable & ~near_line
        slices: list[dict[str, float]] = []
        for a, b in itertools.pairwise(edges):
            sel = base & (e >= a) & (e < b)
            n = int(np.count_nonzero(sel))
            if n < cfg.min_slice_events:
                continue
            res = _fit_band(aoe[sel])
            if res is None:
                log.debug("A/E band fit failed in slice [%g, %g] keV (%d events)", a, b, n)
                continue
            res.update(energy_kev=float(np.mean(e[sel])), n_events=float(n))
            slices.append(res)
        if len(slices) < 2:
            msg = (
                f"A/E energy correction needs at least 2 Compton slices with >= "
                f"{cfg.min_slice_events} events and a converged band fit in "
                f"{list(cfg.compton_range_kev)} keV; got {len(slices)} (of {usable.sum()} usable "
                "events). Use a longer run, wider aoe.slice_width_kev or a lower aoe.min_slice_events."
            )
            raise SelectionError(msg)
        es = np.array([s["energy_kev"] for s in slices])
        mus = np.array([s["mu"] for s in slices])
        mu_err = np.maximum(np.array([s["mu_err"] for s in slices]), 1e-12 * np.abs(mus).max())
        if cfg.mu_model == "linear":
            b1, a0 = np.polyfit(es, mus, 1, w=1.0 / mu_err)
            self.mu_coeffs = (float(a0), float(b1))
        else:
            w = 1.0 / mu_err**2
            self.mu_coeffs = (float(np.sum(w * mus) / np.sum(w)), 0.0)
        mu_fit = self.mu_coeffs[0] + self.mu_coeffs[1] * es
        rel = np.array([s["sigma"] for s in slices]) / mu_fit
        rel_err = np.maximum(np.array([s["sigma_err"] for s in slices]) / mu_fit, 1e-6 * rel.max())
        self.sigma_coeffs = _nnls_width(es, rel, rel_err)
        if self.sigma_coeffs[0] <= 0 and self.sigma_coeffs[1] <= 0:
            msg = "A/E width fit gave zero width at all energies; the A/E values look degenerate"
            raise SelectionError(msg)
        self.slices = slices
        self.training = {
            "n_events": int(e.size),
            "n_usable": int(usable.sum()),
            "n_slices": len(slices),
        }
        log.info(
            "A/E correction from %d slices: mu(E) = %.6g + %.6g E, rel. sigma^2 = %.3g + %.3g/E^2",
            len(slices), *self.mu_coeffs, *self.sigma_coeffs,
        )  # fmt: skip
        if cfg.threshold_mode == "dep_acceptance":
            self.cut_value = self.sse_cut_value(table, cfg.dep_acceptance)
            self.threshold = float(score_from_classifier(self.cut_value))
        elif cfg.threshold_mode == "kept_fraction":
            self.threshold = threshold_for_kept_fraction(
                self.score(table),
                cfg.kept_fraction,
                energy_kev=e,
                energy_range_kev=cfg.kept_fraction_range_kev,
            )
        else:
            self.threshold = cfg.threshold
        return self

    def _require_fitted(self) -> tuple[tuple[float, float], tuple[float, float]]:
        if self.mu_coeffs is None or self.sigma_coeffs is None:
            msg = "this AoESelector is not fitted yet: call fit(table) or AoESelector.load(path)"
            raise SelectionError(msg)
        return self.mu_coeffs, self.sigma_coeffs

    # -- scoring -----------------------------------------------------------------------
    def mu(self, energy_kev: ArrayLike) -> NDArray[np.float64]:
        """The fitted SSE-band position ``mu(E)`` of A/E."""
        (a, b), _ = self._require_fitted()
        return a + b * np.asarray(energy_kev, dtype=np.float64)

    def sigma(self, energy_kev: ArrayLike) -> NDArray[np.float64]:
        """The fitted relative SSE-band width ``sigma(E)`` (a fraction of ``mu(E)``)."""
        _, (p0, p1) = self._require_fitted()
        e = np.asarray(energy_kev, dtype=np.float64)
        return np.sqrt(p0 + p1 / e**2)

    def classifier(self, table: Any) -> NDArray[np.float64]:
        """``(A/E / mu(E) - 1) / sigma(E)``: N(0, 1) for SSE; NaN where it cannot be computed."""
        self._require_fitted()
        aoe, e, usable = self._columns(table)
        c = np.full(e.size, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            c[usable] = (aoe[usable] / self.mu(e[usable]) - 1.0) / self.sigma(e[usable])
        return c

    def score(self, table: Any) -> NDArray[np.float64]:
        """``1/2 - arctan(c)/pi`` in (0, 1): 1 = low A/E = MSE-like; NaN for unusable events."""
        return score_from_classifier(self.classifier(table))

    def mask(self, table: Any) -> NDArray[np.bool_]:
        """Kept (MSE-like) events: ``score >= threshold``; NaN scores are not kept."""
        s = self.score(table)
        return np.asarray(np.isfinite(s) & (s >= self.threshold))

    # -- working points ----------------------------------------------------------------
    def sse_cut_value(
        self,
        table: Any,
        acceptance: float = 0.9,
        *,
        dep_window_kev: tuple[float, float] | None = None,
        sidebands_kev: Sequence[tuple[float, float]] | None = None,
    ) -> float:
        """The GERDA low cut ``c_low``: ``c > c_low`` keeps ``acceptance`` of the DEP net counts.

        Net counts are sideband-subtracted (flat background from ``sidebands_kev``). The
        largest cut value whose net acceptance is still >= ``acceptance`` is returned.
        """
        cfg = self.config
        window = dep_window_kev or cfg.dep_window_kev
        sides = tuple(sidebands_kev or cfg.dep_sidebands_kev)
        if not 0.0 < acceptance < 1.0:
            msg = f"DEP acceptance {acceptance} must be strictly between 0 and 1"
            raise SelectionError(msg)
        c = self.classifier(table)
        e = table_columns(table, ["energy_kev"])["energy_kev"]
        in_peak = (e >= window[0]) & (e <= window[1])
        in_side = np.zeros(e.size, dtype=bool)
        w_side = 0.0
        for a, b in sides:
            in_side |= (e >= a) & (e <= b)
            w_side += b - a
        scale = (window[1] - window[0]) / w_side
        # events with NaN classifier never pass the SSE cut; they stay in the denominator
        c_peak = np.sort(np.where(np.isfinite(c[in_peak]), c[in_peak], -np.inf))
        c_side = np.sort(np.where(np.isfinite(c[in_side]), c[in_side], -np.inf))
        net_total = c_peak.size - scale * c_side.size
        if net_total < cfg.min_dep_net_counts:
            msg = (
                f"only {net_total:.1f} net DEP counts in {list(window)} keV (sideband-subtracted; "
                f"need >= {cfg.min_dep_net_counts}): cannot set the A/E cut by DEP acceptance. "
                "Use aoe.threshold_mode = 'kept_fraction' or a 232Th/228Th calibration run."
            )
            raise SelectionError(msg)
        cand = c_peak[np.isfinite(c_peak)]
        # passing (c >= cand) in the peak and in the sidebands, for every candidate cut
        pass_peak = c_peak.size - np.searchsorted(c_peak, cand, side="left")
        pass_side = c_side.size - np.searchsorted(c_side, cand, side="left")
        acc = (pass_peak - scale * pass_side) / net_total
        ok = np.flatnonzero(acc >= acceptance)
        if ok.size == 0:
            msg = f"no A/E cut reaches {acceptance:.3f} DEP net acceptance"
            raise SelectionError(msg)
        i = ok[-1]
        # cut between this candidate and the next lower one: pass means c > c_low
        c_low = float(cand[i - 1] + cand[i]) / 2.0 if i > 0 else float(cand[i]) - 1e-9
        log.info("A/E low cut %.3f sigma at %.1f %% DEP net acceptance (%.0f net DEP counts)",
                 c_low, 100 * acc[i], net_total)  # fmt: skip
        return c_low

    def sse_pass(self, table: Any, cut_value: float | None = None) -> NDArray[np.bool_]:
        """The GERDA-style SSE selection ``c > c_low`` (the complement of :meth:`mask` at the
        DEP-acceptance working point, apart from NaN-classifier events, which neither keeps)."""
        c_low = self.cut_value if cut_value is None else cut_value
        if c_low is None:
            msg = "no SSE cut value: pass cut_value or fit with threshold_mode='dep_acceptance'"
            raise SelectionError(msg)
        c = self.classifier(table)
        return np.asarray(np.isfinite(c) & (c > c_low))

    def with_threshold(self, threshold: float) -> Self:
        """A copy of this selector with another working point."""
        new = self._copy()
        new.threshold = float(threshold)
        return new

    def with_kept_fraction(
        self, table: Any, fraction: float, energy_range_kev: tuple[float, float] | None = None
    ) -> Self:
        """A copy whose threshold keeps ``fraction`` of ``table``'s events in the energy range."""
        e = table_columns(table, ["energy_kev"])["energy_kev"]
        t = threshold_for_kept_fraction(
            self.score(table), fraction, energy_kev=e,
            energy_range_kev=energy_range_kev or self.config.kept_fraction_range_kev,
        )  # fmt: skip
        return self.with_threshold(t)

    def _copy(self) -> Self:
        new = type(self)(self.config)
        new.__dict__.update(dict(self.__dict__.items()))
        new.slices = [dict(s) for s in self.slices]
        new.training = dict(self.training)
        return new

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The model as plain JSON-ready data."""
        mu, sig = self._require_fitted()
        cfg = to_mapping(self.config)
        return {
            "kind": "aoe",
            "format_version": FORMAT_VERSION,
            "bege_psd_version": __version__,
            "config": cfg,
            "config_hash": stable_hash(cfg),
            "threshold": self.threshold,
            "mu_coeffs": list(mu),
            "sigma_coeffs": list(sig),
            "cut_value": self.cut_value,
            "slices": self.slices,
            "training": self.training,
            "score_definition": "1/2 - arctan(c)/pi, c = (A/E / mu(E) - 1) / sigma(E); 1 = MSE-like",
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as JSON (atomically); a non-``.json`` path gets ``.json`` appended."""
        return write_model_json(path, self.to_dict(), allow_nan=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str], config: AoEConfig | None = None) -> Self:
        """Read a model written by :meth:`save`.

        Raises :class:`ModelMismatchError` for another kind, format or package version, a
        configuration hash that does not match (the file was edited, or differs from
        ``config`` when given), or malformed parameters.
        """
        meta = read_model_header(path)
        stored = _check_header(meta, "aoe", path, FORMAT_VERSION)
        file_cfg = _config_from_meta(AoEConfig, stored, path, config)
        sel = cls(file_cfg)
        try:
            mu = tuple(float(x) for x in meta["mu_coeffs"])
            sig = tuple(float(x) for x in meta["sigma_coeffs"])
            thr = float(meta["threshold"])
            cut = None if meta.get("cut_value") is None else float(meta["cut_value"])
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"{path}: malformed A/E model parameters ({exc!r})"
            raise ModelMismatchError(msg) from exc
        if len(mu) != 2 or len(sig) != 2 or not all(map(math.isfinite, (*mu, *sig, thr))):
            msg = f"{path}: A/E model needs 2 finite mu and 2 finite sigma coefficients"
            raise ModelMismatchError(msg)
        sel.mu_coeffs = (mu[0], mu[1])
        sel.sigma_coeffs = (sig[0], sig[1])
        sel.threshold = thr
        sel.cut_value = cut
        sel.slices = list(meta.get("slices", []))
        sel.training = dict(meta.get("training", {}))
        return sel


# ----------------------------------------------------------------------------- shared model I/O
