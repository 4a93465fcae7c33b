"""Peak models for HPGe spectra: densities and their bin-integrable antiderivatives.

What to use when
----------------
- ``"gauss_step"`` (the paper's model for 137Cs): Gaussian peak(s) + erfc step + linear
  background. The default for isolated full-energy peaks.
- ``"gauss_step_tail"``: as ``"gauss_step"`` plus a low-side exponential tail (incomplete charge
  collection); use when the residuals show a low-side shoulder.
- ``"gauss_linear"``: Gaussian peak(s) on a linear background, no step (weak lines, escape
  peaks where a step is not resolvable).
- ``"gauss_const"``: Gaussian peak(s) on a constant (the paper's mislabelled-fraction estimate
  under the SEP window).
- ``"gauss_edge"``: Gaussian peak(s) on a linear background plus a smeared Compton edge with its
  own height, position and width (a weak line on a Compton edge: 7Be 477.6 keV sits on the
  137Cs edge at 477.3 keV). Only use it when the window really holds an edge: without one the
  edge parameters are undetermined.

Several peaks in one window share the background, the width ``sigma`` and (with a tail) the
tail parameters; each peak has its own net area ``area_i``, position ``mu_i`` and (with a
step) relative step height ``step_i``.

Conventions (all in the units of the spectrum axis, keV or ADC channels)
-------------------------------------------------------------------------
Per peak ``i`` with net area ``N`` (counts), position ``mu``, width ``sigma``::

    peak(x)  = N * [(1 - eta) * Normal(x; mu, sigma) + eta * EMG_low(x; mu, sigma, tau)]
    step(x)  = h * N / (sigma * sqrt(2 pi)) * 0.5 * erfc((x - mu) / (sqrt(2) sigma))
    bkg(x)   = bkg_lo + (bkg_hi - bkg_lo) * (x - x_lo) / (x_hi - x_lo)     (linear models)
    bkg(x)   = bkg_const                                                (gauss_const)
    edge(x)  = [edge_height + edge_slope (x - edge_pos)] * 0.5 erfc((x - edge_pos) / (sqrt(2) edge_width))
                                                                        (gauss_edge)

``peak`` integrates to ``N`` (the net area), so ``N`` is the fit parameter and Minos gives its
interval directly. ``h`` is the step height relative to the Gaussian peak height (typically
1e-3 to 1e-2); the step counts are background, not part of the net area. ``EMG_low`` is the
exponentially modified Gaussian mirrored to the low-energy side,
``1/(2 tau) exp((x - mu)/tau + sigma^2/(2 tau^2)) erfc(((x - mu)/sigma + sigma/tau)/sqrt 2)``
(RadWare gf3 / HYPERMET family: Phillips & Marlow, NIM 137 (1976) 525). The linear background is
parameterised by its densities (counts per unit of x) at the window edges ``x_lo = x_ref - hw``
and ``x_hi = x_ref + hw``, so that the default limits ``>= 0`` keep it non-negative over the
whole window (a negative expectation would break the Poisson likelihood).

The binned likelihood needs expected counts per bin, i.e. differences of an antiderivative at
the bin edges: :meth:`PeakModel.cdf` returns that antiderivative (its constant is arbitrary,
only differences matter), closed-form for every component:

- step: ``int 0.5 erfc(z/sqrt 2) dz = z Q(z) - phi(z)`` with ``Q = 1 - Phi``;
- sloped edge: ``int z Q(z) dz = z^2/2 Q(z) + (Phi(z) - z phi(z)) / 2``;
- EMG_low: ``Phi(z) + exp(z s + s^2/2 + log Phi(-z - s))`` with ``s = sigma/tau``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

__all__ = ("MODELS", "ModelName", "PeakModel", "make_model")

ModelName = Literal["gauss_step", "gauss_step_tail", "gauss_linear", "gauss_const", "gauss_edge"]

#: model name -> (has_step, has_tail, has_slope, has_edge)
MODELS: dict[str, tuple[bool, bool, bool, bool]] = {
    "gauss_step": (True, False, True, False),
    "gauss_step_tail": (True, True, True, False),
    "gauss_linear": (False, False, True, False),
    "gauss_const": (False, False, False, False),
    "gauss_edge": (False, False, True, True),
}

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _norm_cdf(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(special.ndtr(z), dtype=np.float64)


def _norm_pdf(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.exp(-0.5 * z * z) / _SQRT2PI


def _step_antiderivative(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Antiderivative of ``0.5 erfc(z / sqrt 2)`` in ``z`` (-> 0 for z -> +inf)."""
    return z * _norm_cdf(-z) - _norm_pdf(z)


def _emg_low_cdf(z: NDArray[np.float64], s: float) -> NDArray[np.float64]:
    """CDF of the low-side EMG in the standardised variable ``z``; ``s = sigma / tau``."""
    log_term = z * s + 0.5 * s * s + special.log_ndtr(-z - s)
    return np.asarray(_norm_cdf(z) + np.exp(np.minimum(log_term, 700.0)), dtype=np.float64)


def _emg_low_pdf(z: NDArray[np.float64], s: float) -> NDArray[np.float64]:
    """Density of the low-side EMG in ``z`` (per unit z); integrates to 1."""
    log_term = z * s + 0.5 * s * s + special.log_ndtr(-z - s)
    return np.asarray(s * np.exp(np.minimum(log_term, 700.0)), dtype=np.float64)


@dataclass(frozen=True)
class PeakModel:
    """A multi-peak model on a shared background, callable as ``cdf(x, *params)``.

    Build it with :func:`make_model`. ``names`` lists the parameters in call order:
    ``area_i``, ``mu_i`` (and ``step_i``) per peak, then ``sigma``, (``tail_frac``,
    ``tail_tau``), then ``bkg_lo``, ``bkg_hi`` (linear models) or ``bkg_const``, then
    (``edge_height``, ``edge_slope``, ``edge_pos``, ``edge_width``).
    """

    kind: str
    n_peaks: int
    x_ref: float
    half_width: float
    has_step: bool
    has_tail: bool
    has_slope: bool
    names: tuple[str, ...]
    has_edge: bool = False

    def _unpack(
        self, params: Sequence[float]
    ) -> tuple[list[tuple[float, float, float]], float, float, float, float, float]:
        peaks, sigma, eta, tau, b0, b1, _ = self._unpack_all(params)
        return peaks, sigma, eta, tau, b0, b1

    def _edge(self, params: Sequence[float]) -> tuple[float, float, float, float] | None:
        if not self.has_edge:
            return None
        return float(params[-4]), float(params[-3]), float(params[-2]), float(params[-1])

    def _unpack_all(
        self, params: Sequence[float]
    ) -> tuple[
        list[tuple[float, float, float]],
        float,
        float,
        float,
        float,
        float,
        tuple[float, float, float, float] | None,
    ]:
        per = 3 if self.has_step else 2
        peaks = []
        for i in range(self.n_peaks):
            area, mu = params[per * i], params[per * i + 1]
            step = params[per * i + 2] if self.has_step else 0.0
            peaks.append((float(area), float(mu), float(step)))
        k = per * self.n_peaks
        sigma = float(params[k])
        k += 1
        eta = tau = 0.0
        if self.has_tail:
            eta, tau = float(params[k]), float(params[k + 1])
            k += 2
        if self.has_slope:
            lo_, hi_ = float(params[k]), float(params[k + 1])
            b0, b1 = 0.5 * (lo_ + hi_), 0.5 * (hi_ - lo_) / self.half_width
        else:
            b0, b1 = float(params[k]), 0.0
        return peaks, sigma, eta, tau, b0, b1, self._edge(params)

    def cdf(self, x: ArrayLike, *params: float) -> NDArray[np.float64]:
        """Antiderivative of the total density at ``x`` (expected counts up to ``x`` + const)."""
        xa = np.asarray(x, dtype=np.float64)
        peaks, sigma, eta, tau, b0, b1 = self._unpack(params)
        dx = xa - self.x_ref
        out = b0 * dx + 0.5 * b1 * dx * dx
        edge = self._edge(params)
        if edge is not None:
            eh, es, ep, ew = edge
            ze = (xa - ep) / ew
            out = out + eh * ew * _step_antiderivative(ze)
            if es != 0.0:
                out = out + es * ew * ew * (
                    0.5 * ze * ze * _norm_cdf(-ze) + 0.5 * (_norm_cdf(ze) - ze * _norm_pdf(ze))
                )
        for area, mu, step in peaks:
            z = (xa - mu) / sigma
            shape = _norm_cdf(z)
            if self.has_tail and eta != 0.0:
                shape = (1.0 - eta) * shape + eta * _emg_low_cdf(z, sigma / tau)
            out = out + area * shape
            if self.has_step and step != 0.0:
                out = out + step * area / _SQRT2PI * _step_antiderivative(z)
        return np.asarray(out, dtype=np.float64)

    def pdf(self, x: ArrayLike, *params: float) -> NDArray[np.float64]:
        """Total density (counts per unit of x) at ``x``."""
        xa = np.asarray(x, dtype=np.float64)
        peaks, sigma, eta, tau, b0, b1 = self._unpack(params)
        out = b0 + b1 * (xa - self.x_ref)
        edge = self._edge(params)
        if edge is not None:
            eh, es, ep, ew = edge
            out = out + (eh + es * (xa - ep)) * 0.5 * special.erfc((xa - ep) / (_SQRT2 * ew))
        for area, mu, step in peaks:
            z = (xa - mu) / sigma
            shape = _norm_pdf(z)
            if self.has_tail and eta != 0.0:
                shape = (1.0 - eta) * shape + eta * _emg_low_pdf(z, sigma / tau)
            out = out + area * shape / sigma
            if self.has_step and step != 0.0:
                out = out + step * area / (sigma * _SQRT2PI) * 0.5 * special.erfc(z / _SQRT2)
        return np.asarray(out, dtype=np.float64)

    def components(self, x: ArrayLike, *params: float) -> dict[str, NDArray[np.float64]]:
        """Densities of the parts: ``peak_i``, ``step_i`` and ``background`` (for plots)."""
        xa = np.asarray(x, dtype=np.float64)
        peaks, sigma, eta, tau, b0, b1 = self._unpack(params)
        out: dict[str, NDArray[np.float64]] = {"background": b0 + b1 * (xa - self.x_ref)}
        edge = self._edge(params)
        if edge is not None:
            eh, es, ep, ew = edge
            out["edge"] = (eh + es * (xa - ep)) * 0.5 * special.erfc((xa - ep) / (_SQRT2 * ew))
        for i, (area, mu, step) in enumerate(peaks):
            z = (xa - mu) / sigma
            shape = _norm_pdf(z)
            if self.has_tail and eta != 0.0:
                shape = (1.0 - eta) * shape + eta * _emg_low_pdf(z, sigma / tau)
            out[f"peak_{i}"] = area * shape / sigma
            if self.has_step:
                out[f"step_{i}"] = step * area / (sigma * _SQRT2PI) * 0.5 * special.erfc(z / _SQRT2)
        return out

    def expected(self, edges: ArrayLike, *params: float) -> NDArray[np.float64]:
        """Expected counts per bin for bin ``edges``."""
        return np.diff(self.cdf(edges, *params))

    def peak_fraction_in(self, lo: float, hi: float, i: int, *params: float) -> float:
        """Fraction of peak ``i``'s net area inside ``[lo, hi]``."""
        peaks, sigma, eta, tau, _, _ = self._unpack(params)
        _, mu, _ = peaks[i]
        z = (np.array([lo, hi]) - mu) / sigma
        shape = _norm_cdf(z)
        if self.has_tail and eta != 0.0:
            shape = (1.0 - eta) * shape + eta * _emg_low_cdf(z, sigma / tau)
        return float(shape[1] - shape[0])


def make_model(kind: str, n_peaks: int, x_ref: float = 0.0, half_width: float = 1.0) -> PeakModel:
    """Build a :class:`PeakModel` of ``kind`` (see :data:`MODELS`) with ``n_peaks`` peaks.

    ``x_ref`` and ``half_width`` fix the window ``[x_ref - half_width, x_ref + half_width]``
    at whose edges the linear background parameters ``bkg_lo``/``bkg_hi`` are defined.
    """
    from ..errors import FitError, nearest_names

    if kind not in MODELS:
        msg = f"unknown peak model {kind!r}; known models (nearest first): {', '.join(nearest_names(kind, MODELS, n=0))}"
        raise FitError(msg)
    if not half_width > 0:
        msg = f"half_width must be positive, got {half_width}"
        raise FitError(msg)
    if n_peaks < 1:
        msg = f"a peak model needs at least one peak, got n_peaks={n_peaks}"
        raise FitError(msg)
    has_step, has_tail, has_slope, has_edge = MODELS[kind]
    names: list[str] = []
    for i in range(n_peaks):
        names += [f"area_{i}", f"mu_{i}"]
        if has_step:
            names.append(f"step_{i}")
    names.append("sigma")
    if has_tail:
        names += ["tail_frac", "tail_tau"]
    if has_slope:
        names += ["bkg_lo", "bkg_hi"]
    else:
        names.append("bkg_const")
    if has_edge:
        names += ["edge_height", "edge_slope", "edge_pos", "edge_width"]
    return PeakModel(
        kind=kind,
        n_peaks=n_peaks,
        x_ref=float(x_ref),
        half_width=float(half_width),
        has_step=has_step,
        has_tail=has_tail,
        has_slope=has_slope,
        names=tuple(names),
        has_edge=has_edge,
    )
