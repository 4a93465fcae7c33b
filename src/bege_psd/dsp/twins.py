"""Plain numpy / scipy twins of the numba kernels in :mod:`bege_psd.dsp.kernels`.

What to use when
----------------
- Tests: each kernel is compared with its twin here (same definitions, written independently,
  one event at a time, with ``scipy.signal.savgol_filter`` and ``scipy.signal.find_peaks``).
- Benchmarks: :func:`features_reference` is the "straightforward scipy implementation" the numba
  path is measured against.
- Never in production: these are one to two orders of magnitude slower.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.signal import find_peaks, savgol_filter

from ._constants import FEATURE_COLUMNS, QUALITY_BITS
from .config import DSPConfig

__all__ = (
    "baseline_twin",
    "count_peaks_twin",
    "current_max_twin",
    "d2_noise_rms_twin",
    "downsample_mean_twin",
    "features_reference",
    "l1_aligned_twin",
    "minmax_normalise_twin",
    "rise_times_twin",
    "savgol_twin",
    "subtract_baseline_twin",
)

F64 = NDArray[np.float64]


def savgol_twin(x: NDArray[Any], window: int, order: int, deriv: int = 0) -> F64:
    """``scipy.signal.savgol_filter(mode="interp")`` row by row; NaN rows and rows shorter
    than the window give NaN."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    out = np.full(x.shape, np.nan)
    for r, row in enumerate(x):
        if row.size >= window and not np.isnan(row).any():
            out[r] = savgol_filter(row, window, order, deriv=deriv)
    return out


def baseline_twin(x: NDArray[Any], nbase: int) -> tuple[F64, F64, F64]:
    """Mean, RMS about the mean and ``np.polyfit`` slope of the first ``nbase`` samples."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    m = min(nbase, x.shape[1])
    mean = np.full(len(x), np.nan)
    rms = np.full(len(x), np.nan)
    slope = np.full(len(x), np.nan)
    for r, row in enumerate(x):
        b = row[:m]
        if m >= 2 and not np.isnan(b).any():
            mean[r] = b.mean()
            rms[r] = b.std()
            slope[r] = np.polyfit(np.arange(m), b, 1)[0]
    return mean, rms, slope


def subtract_baseline_twin(x: NDArray[Any], mean: NDArray[Any], sign: NDArray[Any]) -> F64:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    out = np.asarray(sign, dtype=np.float64)[:, None] * (x - np.asarray(mean)[:, None])
    return np.asarray(out, dtype=np.float64)


def minmax_normalise_twin(x: NDArray[Any]) -> F64:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    out = np.full(x.shape, np.nan)
    for r, row in enumerate(x):
        lo, hi = row.min(), row.max()
        if hi > lo:  # False for NaN rows and flat rows
            out[r] = (row - lo) / (hi - lo)
    return out


def downsample_mean_twin(x: NDArray[Any], factor: int) -> F64:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    m = x.shape[1] // factor
    return np.asarray(x[:, : m * factor].reshape(len(x), m, factor).mean(axis=2), dtype=np.float64)


def _crossing(s: F64, imax: int, level: float) -> float:
    below = np.nonzero(s[:imax] < level)[0]
    if below.size == 0:
        return np.nan
    i = int(below[-1])
    return float(i + (level - s[i]) / (s[i + 1] - s[i]))


def rise_times_twin(s: NDArray[Any], levels: NDArray[Any]) -> F64:
    s = np.atleast_2d(np.asarray(s, dtype=np.float64))
    out = np.full((len(s), len(levels)), np.nan)
    for r, row in enumerate(s):
        imax = int(np.argmax(row))
        amp = row[imax]
        if np.isnan(row).any() or not amp > 0:
            continue
        out[r] = [_crossing(row, imax, lev * amp) for lev in levels]
    return out


def _parabolic(x: F64, i: int) -> float:
    if i <= 0 or i >= x.size - 1:
        return 0.0
    den = x[i - 1] - 2 * x[i] + x[i + 1]
    return float(0.5 * (x[i - 1] - x[i + 1]) / den) if den < 0 else 0.0


def current_max_twin(c: NDArray[Any]) -> tuple[F64, F64]:
    c = np.atleast_2d(np.asarray(c, dtype=np.float64))
    amax = np.full(len(c), np.nan)
    tmax = np.full(len(c), np.nan)
    for r, row in enumerate(c):
        if np.isnan(row).any():
            continue
        i = int(np.argmax(row))
        amax[r] = row[i]
        tmax[r] = i + _parabolic(row, i)
    return amax, tmax


def count_peaks_twin(
    x: NDArray[Any], height: float, distance: int, prominence: float = 0.0
) -> NDArray[np.int32]:
    """``len(find_peaks(row, height=, distance=, prominence=)[0])`` per row; -1 for NaN rows."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    out = np.full(len(x), -1, dtype=np.int32)
    for r, row in enumerate(x):
        if not np.isnan(row).any():
            out[r] = len(
                find_peaks(row, height=height, distance=distance, prominence=prominence)[0]
            )
    return out


def d2_noise_rms_twin(d2: NDArray[Any], imax: int, nbase: int, d2_window: int) -> float:
    """RMS of ``d2`` over its signal-free samples: ``[d2_window // 2, nbase)`` (the baseline
    past the filter edge) and ``[imax + d2_window, n - d2_window // 2)`` (after the charge
    maximum); 0 when both are empty."""
    n = len(d2)
    hd = d2_window // 2
    v = np.concatenate([d2[hd : min(nbase, n)], d2[imax + d2_window : n - hd]])
    return float(np.sqrt(np.mean(v * v))) if v.size else 0.0


def l1_aligned_twin(
    s: NDArray[Any], t_align: NDArray[Any], template: NDArray[Any], pre: int
) -> F64:
    s = np.atleast_2d(np.asarray(s, dtype=np.float64))
    template = np.asarray(template, dtype=np.float64)
    out = np.full(len(s), np.nan)
    for r, row in enumerate(s):
        amp = row.max()
        if np.isnan(row).any() or np.isnan(t_align[r]) or not amp > 0:
            continue
        pos = t_align[r] + np.arange(template.size) - pre
        inside = (pos >= 0) & (pos <= row.size - 1)
        if inside.any():
            v = np.interp(pos[inside], np.arange(row.size), row) / amp
            out[r] = np.abs(v - template[inside]).mean()
    return out


def features_reference(
    waveforms: NDArray[Any],
    energy_adc: NDArray[Any],
    sign: NDArray[Any],
    config: DSPConfig | None = None,
    *,
    sample_period_ns: float = 4.0,
    template: NDArray[Any] | None = None,
) -> dict[str, NDArray[Any]]:
    """The full feature set, one event at a time with numpy and scipy.signal.

    The same definitions as :func:`bege_psd.dsp.kernels.features_2d` (see
    :mod:`bege_psd.dsp.features`), written the straightforward way: ``savgol_filter`` three
    times, ``find_peaks`` on |d2|, a Python loop over events. Returns the feature columns plus
    ``n_peaks_d2`` and ``quality`` (kernel bits only, no DAQ flags).
    """
    cfg = config or DSPConfig()
    wf = np.asarray(waveforms)
    n_ev, n = wf.shape
    period = float(sample_period_ns)
    tmpl = None if template is None or len(template) == 0 else np.asarray(template, np.float64)
    cols = {name: np.full(n_ev, np.nan) for name in FEATURE_COLUMNS}
    npk = np.full(n_ev, -1, dtype=np.int32)
    qual = np.zeros(n_ev, dtype=np.uint32)
    sat_level = 2.0**cfg.adc_bits - 1
    m = min(cfg.baseline_samples, n)
    for r in range(n_ev):
        x = wf[r].astype(np.float64)
        sg = float(sign[r])
        if n == 0:
            qual[r] |= QUALITY_BITS["NO_WAVEFORM"]
            continue
        if np.isnan(x).any() or np.isnan(sg):
            continue
        q = 0
        if (sg > 0 and x.max() >= sat_level) or (sg < 0 and x.min() <= 0):
            q |= QUALITY_BITS["SATURATED"]
        base = x[:m]
        mean = base.mean()
        rms = base.std()
        tc = np.arange(m) - 0.5 * (m - 1)
        slope = np.dot(tc, base - mean) / np.dot(tc, tc)  # least squares, = np.polyfit(...)[0]
        cols["baseline_mean"][r] = mean
        cols["baseline_rms"][r] = rms
        cols["baseline_slope"][r] = sg * slope
        if np.abs(base - mean).max() > cfg.baseline_spike_nsigma * rms or (
            abs(slope) * m > cfg.baseline_drift_nsigma * rms
        ):
            q |= QUALITY_BITS["BAD_BASELINE"]
        y = sg * (x - mean)
        if n < max(cfg.smooth_window, cfg.current_window, cfg.d2_window):
            qual[r] = q | QUALITY_BITS["NO_PULSE"]
            continue
        s = savgol_filter(y, cfg.smooth_window, cfg.smooth_order)
        c = savgol_filter(s, cfg.current_window, cfg.current_order, deriv=1)
        d2 = savgol_filter(c, cfg.d2_window, cfg.d2_order, deriv=1)
        imax = int(np.argmax(s))
        amp = s[imax]
        cols["amplitude"][r] = amp
        if not (amp > 0 and amp > cfg.min_amplitude_nsigma * rms):
            q |= QUALITY_BITS["NO_PULSE"]
        t_mid = np.nan
        if amp > 0:
            t_low = _crossing(s, imax, cfg.rt_low * amp)
            t_mid = _crossing(s, imax, cfg.rt_mid * amp)
            t_high = _crossing(s, imax, cfg.rt_high * amp)
            cols["t0_ns"][r] = t_low * period
            cols["risetime_ns"][r] = (t_high - t_low) * period
            cols["rt_10_50_ns"][r] = (t_mid - t_low) * period
            cols["rt_50_90_ns"][r] = (t_high - t_mid) * period
        ic = int(np.argmax(c))
        a = c[ic]
        cols["current_max"][r] = a
        cols["a_over_e"][r] = a / energy_adc[r] if energy_adc[r] > 0 else np.nan
        cols["t_current_max_ns"][r] = (ic + _parabolic(c, ic)) * period
        if tmpl is not None and amp > 0 and not np.isnan(t_mid):
            pos = t_mid + np.arange(tmpl.size) - cfg.template_pre_samples
            inside = (pos >= 0) & (pos <= n - 1)
            if inside.any():
                v = np.interp(pos[inside], np.arange(n), s) / amp
                cols["l1_to_sse"][r] = np.abs(v - tmpl[inside]).mean()
        ad = np.abs(d2)
        dmax = ad.max()
        if dmax > 0:
            sigma = d2_noise_rms_twin(d2, imax, m, cfg.d2_window)
            height = max(cfg.d2_peak_height, cfg.d2_peak_nsigma * sigma / dmax)
            pk = find_peaks(
                ad / dmax,
                height=height,
                distance=cfg.d2_peak_distance,
                prominence=cfg.d2_peak_prominence,
            )[0]
            npk[r] = len(pk)
        else:
            npk[r] = 0
        if a > 0:
            thr = cfg.pileup_fraction * a
            left = ic
            while left > 0 and c[left - 1] > thr:
                left -= 1
            right = ic
            while right < n - 1 and c[right + 1] > thr:
                right += 1
            sep = cfg.pileup_min_separation_ns / period
            idx = np.arange(n)
            far = (idx < left - sep) | (idx > right + sep)
            if (c[far] > thr).any():
                q |= QUALITY_BITS["PILEUP"]
        qual[r] = q
    out: dict[str, NDArray[Any]] = {k: v.astype(np.float32) for k, v in cols.items()}
    out["n_peaks_d2"] = npk
    out["quality"] = qual
    return out
