"""Energy spectra as ``hist.Hist`` objects with ``Weight`` storage, and region-of-interest helpers.

What to use when
----------------
- :func:`make_spectrum`: one call from an energy array (+ optional boolean mask and weights) to
  a spectrum in keV or ADC channels.
- :func:`empty_spectrum` + :func:`fill`: streaming, one chunk at a time
  (``for chunk in io.iterate(...): fill(h, chunk.energy_kev, mask)``).
- :func:`adc_spectrum`: one bin per ADC channel, bin ``i`` centred on channel ``i`` (what the
  ``.Spe``/N42 exporters and the paper's peak-to-Compton need).
- :func:`channel_edges_kev`, :func:`kev_spectrum_from_adc`: 1-ADC-channel bins expressed in keV
  through a calibration; use them for peak fits and the paper's peak-to-Compton (fixed keV bins
  over integer channels alternately hold one and two channels).
- :func:`roi_counts`, :func:`roi_mask`: counts (with uncertainty) of the bins whose centres lie
  in an energy window.

Events with NaN or out-of-range energy go to the flow bins (``h.values(flow=True)``), so the
total ``h.sum(flow=True)`` always equals the number (or weight) of filled events: nothing is
dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import hist
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import BegePsdError

__all__ = (
    "Quantity",
    "adc_spectrum",
    "channel_edges_kev",
    "empty_spectrum",
    "fill",
    "kev_spectrum_from_adc",
    "make_spectrum",
    "roi_counts",
    "roi_mask",
)

Unit = Literal["keV", "adc"]


class SpectrumError(BegePsdError, ValueError):
    """Inconsistent input to a spectrum builder (shapes, binning, masks)."""


def _axis(bins: int | ArrayLike, range: tuple[float, float] | None, unit: str) -> Any:
    if unit not in ("keV", "adc"):
        msg = f"unit={unit!r} is not allowed; use 'keV' or 'adc'"
        raise SpectrumError(msg)
    label = "Energy [keV]" if unit == "keV" else "Energy [ADC channel]"
    if isinstance(bins, (int, np.integer)):
        if range is None:
            msg = "make_spectrum needs range=(lo, hi) when bins is a number of bins"
            raise SpectrumError(msg)
        lo, hi = float(range[0]), float(range[1])
        if not (hi > lo and int(bins) > 0):
            msg = f"invalid binning: {bins} bins on ({lo}, {hi}); need bins > 0 and hi > lo"
            raise SpectrumError(msg)
        return hist.axis.Regular(int(bins), lo, hi, name="energy", label=label)
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
        msg = "bins must be a number of bins or a strictly increasing array of >= 2 edges"
        raise SpectrumError(msg)
    return hist.axis.Variable(edges, name="energy", label=label)


def empty_spectrum(
    *,
    bins: int | ArrayLike,
    range: tuple[float, float] | None = None,
    unit: Unit = "keV",
) -> hist.Hist[Any]:
    """An empty 1-D spectrum with ``Weight`` storage (fill it with :func:`fill`)."""
    return hist.Hist(_axis(bins, range, unit), storage=hist.storage.Weight())


def fill(
    h: hist.Hist[Any],
    energy: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    weight: ArrayLike | None = None,
) -> hist.Hist[Any]:
    """Fill ``energy`` (where ``mask`` is true, with optional ``weight``) into ``h`` in place.

    Returns ``h`` so that calls chain. ``mask`` must be boolean and have the same length as
    ``energy``; NaN energies go to the overflow bin.
    """
    e = np.asarray(energy, dtype=np.float64)
    if e.ndim != 1:
        msg = f"energy must be one-dimensional, got shape {e.shape}"
        raise SpectrumError(msg)
    w = None if weight is None else np.asarray(weight, dtype=np.float64)
    if w is not None and w.shape != e.shape:
        msg = f"weight has shape {w.shape}, energy has {e.shape}; they must match"
        raise SpectrumError(msg)
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != np.bool_:
            msg = f"mask must be a boolean array (got dtype {m.dtype}); use score >= threshold"
            raise SpectrumError(msg)
        if m.shape != e.shape:
            msg = f"mask has shape {m.shape}, energy has {e.shape}; they must be entry-aligned"
            raise SpectrumError(msg)
        e = e[m]
        if w is not None:
            w = w[m]
    # boost-histogram puts NaN into the overflow bin; make that explicit and portable
    e = np.where(np.isnan(e), np.inf, e)
    if w is None:
        h.fill(e)
    else:
        h.fill(e, weight=w)
    return h


def make_spectrum(
    energy: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    bins: int | ArrayLike,
    range: tuple[float, float] | None = None,
    unit: Unit = "keV",
    weight: ArrayLike | None = None,
) -> hist.Hist[Any]:
    """Histogram ``energy`` (keV or ADC channels) into a ``Weight``-storage ``hist.Hist``.

    Parameters
    ----------
    energy
        Energies of the events (1-D).
    mask
        Optional boolean selection, entry-aligned with ``energy`` (e.g. ``score >= threshold``).
    bins, range
        Number of regular bins on ``range``, or an array of bin edges (then ``range`` is unused).
    unit
        ``"keV"`` or ``"adc"``; sets the axis label.
    weight
        Optional per-event weights.

    See Also
    --------
    adc_spectrum, empty_spectrum, fill, roi_counts
    """
    h = empty_spectrum(bins=bins, range=range, unit=unit)
    return fill(h, energy, mask, weight=weight)


def adc_spectrum(
    energy_adc: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    n_channels: int = 16384,
    weight: ArrayLike | None = None,
) -> hist.Hist[Any]:
    """One bin per ADC channel: bin ``i`` spans ``[i - 0.5, i + 0.5)`` (centred on channel ``i``)."""
    if n_channels < 1:
        msg = f"n_channels must be positive, got {n_channels}"
        raise SpectrumError(msg)
    return make_spectrum(
        energy_adc, mask, bins=n_channels, range=(-0.5, n_channels - 0.5), unit="adc", weight=weight
    )


def channel_edges_kev(
    to_kev: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    first_channel: int,
    last_channel: int,
) -> NDArray[np.float64]:
    """Edges in keV of 1-ADC-channel bins for channels ``first_channel..last_channel``.

    ``to_kev`` maps ADC channel -> keV (e.g. ``Calibration.apply``); edges sit at half-integer
    channels so that an event of integer channel ``c`` falls in the bin of channel ``c``.
    """
    ch = np.arange(first_channel, last_channel + 2, dtype=np.float64) - 0.5
    edges = np.asarray(to_kev(ch), dtype=np.float64)
    if not np.all(np.diff(edges) > 0):
        msg = "the calibration is not increasing over the requested channels"
        raise SpectrumError(msg)
    return edges


def kev_spectrum_from_adc(
    energy_adc: ArrayLike,
    to_kev: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    mask: ArrayLike | None = None,
    *,
    range_kev: tuple[float, float],
    n_channels: int = 16384,
    weight: ArrayLike | None = None,
) -> hist.Hist[Any]:
    """A keV spectrum whose bins are single ADC channels (the binning fits and the paper need).

    Integer ADC values calibrated to keV sit on a 0.2 keV-ish grid; fixed keV bins over them
    alternately hold one and two channels, a periodic pattern that ruins peak fits. Here bin
    edges are the calibrated half-integer channel boundaries, covering the channels whose
    centres lie in ``range_kev``.
    """
    ch = np.arange(n_channels, dtype=np.float64)
    centres = np.asarray(to_kev(ch), dtype=np.float64)
    inside = np.flatnonzero((centres >= range_kev[0]) & (centres <= range_kev[1]))
    if inside.size == 0:
        msg = f"no ADC channel of 0..{n_channels - 1} falls in {tuple(range_kev)} keV"
        raise SpectrumError(msg)
    edges = channel_edges_kev(to_kev, int(inside[0]), int(inside[-1]))
    e = np.asarray(energy_adc, dtype=np.float64)
    return make_spectrum(np.asarray(to_kev(e), dtype=np.float64), mask, bins=edges, weight=weight)


def roi_mask(h: hist.Hist[Any], window: tuple[float, float]) -> NDArray[np.bool_]:
    """Boolean mask of the bins whose centres lie in ``[lo, hi]``."""
    lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        msg = f"window ({lo}, {hi}) is empty; expected lo < hi"
        raise SpectrumError(msg)
    c = np.asarray(h.axes[0].centers)
    sel: NDArray[np.bool_] = (c >= lo) & (c <= hi)
    return sel


@dataclass(frozen=True)
class Quantity:
    """A value with its standard uncertainty; unpacks as ``value, error = q``."""

    value: float
    error: float

    def __iter__(self) -> Iterator[float]:
        yield self.value
        yield self.error

    @property
    def relative_error(self) -> float:
        return abs(self.error / self.value) if self.value != 0 else float("inf")

    def to_dict(self) -> dict[str, float]:
        return {"value": float(self.value), "error": float(self.error)}


def roi_counts(h: hist.Hist[Any], window: tuple[float, float]) -> Quantity:
    """Summed contents of the bins whose centres lie in ``window``, with ``sqrt(sum w^2)``."""
    sel = roi_mask(h, window)
    if not sel.any():
        msg = f"window {tuple(window)} contains no bin centre of the spectrum"
        raise SpectrumError(msg)
    v = np.asarray(h.values())[sel]
    var = h.variances()
    err2 = float(np.sum(np.asarray(var)[sel])) if var is not None else float(np.sum(v))
    return Quantity(float(np.sum(v)), float(np.sqrt(max(err2, 0.0))))
