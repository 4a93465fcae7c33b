"""numba kernels for the waveform features (one algorithm per function, 2-D blocks).

What to use when
----------------
- Per-event features of a run: :func:`bege_psd.dsp.features` (it calls :func:`features_2d`).
- A single processing step on a block of waveforms (rows = events): the ``*_2d`` kernels here.
- Checking a kernel: :mod:`bege_psd.dsp.twins` holds a plain numpy/scipy twin of each one.

Every public kernel is ``numba.njit`` with explicit float32/float64 signatures (``int16`` too for
raw traces), ``nogil=True`` (so a thread pool over blocks scales) and ``cache=True``; it works
on a 2-D block, one row per event, and writes into output arrays the caller allocates. A row
that contains a NaN gives NaN outputs (NaN in -> NaN out); integer outputs use -1 for "undefined".

Savitzky-Golay filters
----------------------
:func:`savgol_matrix` builds, once per configuration, the ``(w, w)`` matrix whose row ``i`` maps
a window of ``w`` samples to the (derivative of the) least-squares polynomial at position ``i``
of that window. Row ``w // 2`` is the usual centred filter (``scipy.signal.savgol_coeffs``); the
other rows implement scipy's ``mode="interp"`` edges: the first and last ``w // 2`` outputs come
from the polynomial fitted to the first and last ``w`` samples. A trace shorter than the window
gives NaN. The derivative is per sample (multiply by 1/period for per-ns units).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numpy.typing import NDArray

from ._constants import (
    FEATURE_COLUMNS,
    FP_D2H,
    FP_D2NSIG,
    FP_D2PROM,
    FP_DRIFT,
    FP_HIGH,
    FP_LOW,
    FP_MID,
    FP_MINAMP,
    FP_PERIOD,
    FP_PUF,
    FP_PUSEP,
    FP_SAT,
    FP_SPIKE,
    IP_D2DIST,
    IP_NBASE,
    IP_TPRE,
    QUALITY_BITS,
)

__all__ = (
    "FEATURE_COLUMNS",
    "QUALITY_BITS",
    "aligned_pulses_2d",
    "baseline_2d",
    "count_peaks_2d",
    "current_max_2d",
    "downsample_mean_2d",
    "features_2d",
    "features_2d_parallel",
    "l1_aligned_2d",
    "minmax_normalise_2d",
    "rise_times_2d",
    "savgol_2d",
    "savgol_matrix",
    "subtract_baseline_2d",
)


_NF = len(FEATURE_COLUMNS)
_Q_SAT = np.uint32(QUALITY_BITS["SATURATED"])
_Q_PILEUP = np.uint32(QUALITY_BITS["PILEUP"])
_Q_BASELINE = np.uint32(QUALITY_BITS["BAD_BASELINE"])
_Q_NOWF = np.uint32(QUALITY_BITS["NO_WAVEFORM"])
_Q_NOPULSE = np.uint32(QUALITY_BITS["NO_PULSE"])


def savgol_matrix(window: int, order: int, deriv: int = 0) -> NDArray[np.float64]:
    """The ``(window, window)`` Savitzky-Golay matrix (see the module docstring).

    The centre row comes from ``scipy.signal.savgol_coeffs`` and the edge rows from the same
    ``np.polyfit`` / ``np.polyval`` steps as ``savgol_filter(mode="interp")``, so the filter
    equals scipy's to rounding (for high orders, e.g. (19, 13), both differ from the exact
    least-squares filter at the 1e-7 relative level: scipy's fits are not exact there).

    ``out[i] @ x[k : k + window]`` is the ``deriv``-th derivative (per sample) at position
    ``k + i`` of the polynomial of degree ``order`` fitted by least squares to those samples.
    """
    if window < 1 or window % 2 == 0:
        msg = f"Savitzky-Golay window must be a positive odd number of samples, got {window}"
        raise ValueError(msg)
    if not 0 <= order < window:
        msg = f"Savitzky-Golay order must be in [0, window), got order {order} for window {window}"
        raise ValueError(msg)
    from scipy.signal import savgol_coeffs

    half = window // 2
    mat = np.empty((window, window))
    # centre row: the coefficients savgol_filter convolves with (use="conv", reversed to dot
    # form; use="dot" differs from them by ~1e-5 for (19, 13): scipy solves each badly conditioned)
    mat[half] = savgol_coeffs(window, order, deriv=deriv, use="conv")[::-1]
    # edge rows: what savgol_filter(mode="interp") computes, applied to the unit vectors
    # (np.polyfit is linear in the samples, so one fit of the identity gives every row)
    fit = np.polyfit(np.arange(window, dtype=np.float64), np.eye(window), order)  # (order+1, w)
    for j in range(window):
        poly = np.polyder(fit[:, j], deriv) if deriv else fit[:, j]
        edge = np.polyval(poly, np.arange(window, dtype=np.float64))
        mat[:half, j] = edge[:half]
        mat[half + 1 :, j] = edge[half + 1 :]
    return np.ascontiguousarray(mat)


# ---------------------------------------------------------------------------------- row cores
@nb.njit(nogil=True, cache=True)
def _has_nan(x):  # type: ignore[no-untyped-def]
    # an explicit loop: numba does not compile any() over a generator
    for i in range(x.shape[0]):  # noqa: SIM110
        if math.isnan(x[i]):
            return True
    return False


# reassociation lets LLVM vectorise the dot products (about 2x); no "nnan"/"ninf" flags, so NaN
# tests elsewhere stay valid. The sums differ from scipy's by rounding only (~1e-16 relative).
@nb.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _savgol_row(x, filt, out):  # type: ignore[no-untyped-def]
    """out = SG(x); x and out are float64 1-D of the same length; filt from savgol_matrix."""
    n = x.shape[0]
    w = filt.shape[0]
    h = w // 2
    if n < w:
        out[:] = np.nan
        return
    coef = filt[h]
    for i in range(h, n - h):
        acc = 0.0
        for j in range(w):
            acc += coef[j] * x[i - h + j]
        out[i] = acc
    # interp edges: polynomial fitted to the first and the last window
    for i in range(h):
        acc_l = 0.0
        acc_r = 0.0
        for j in range(w):
            acc_l += filt[i, j] * x[j]
            acc_r += filt[h + 1 + i, j] * x[n - w + j]
        out[i] = acc_l
        out[n - h + i] = acc_r


@nb.njit(nogil=True, cache=True)
def _baseline_row(x, nbase):  # type: ignore[no-untyped-def]
    """Mean, RMS (about the mean) and least-squares slope (per sample) of x[:nbase]."""
    m = min(nbase, x.shape[0])
    if m < 2:
        return np.nan, np.nan, np.nan
    s = 0.0
    for i in range(m):
        s += x[i]
    mean = s / m
    ss = 0.0
    sxy = 0.0
    tc = 0.5 * (m - 1)
    for i in range(m):
        d = x[i] - mean
        ss += d * d
        sxy += (i - tc) * d
    sxx = m * (m * m - 1) / 12.0
    return mean, math.sqrt(ss / m), sxy / sxx


@nb.njit(nogil=True, cache=True)
def _crossing_before(s, imax, level):  # type: ignore[no-untyped-def]
    """Walking back from imax, the interpolated position where s rises through level."""
    for i in range(imax - 1, -1, -1):
        if s[i] < level:
            return i + (level - s[i]) / (s[i + 1] - s[i])
    return np.nan


@nb.njit(nogil=True, cache=True)
def _argmax(x):  # type: ignore[no-untyped-def]
    best = 0
    for i in range(1, x.shape[0]):
        if x[i] > x[best]:
            best = i
    return best


@nb.njit(nogil=True, cache=True)
def _parabolic_offset(x, i):  # type: ignore[no-untyped-def]
    if i <= 0 or i >= x.shape[0] - 1:
        return 0.0
    den = x[i - 1] - 2.0 * x[i] + x[i + 1]
    if den < 0.0:
        return 0.5 * (x[i - 1] - x[i + 1]) / den
    return 0.0


@nb.njit(nogil=True, cache=True)
def _prominence(x, p):  # type: ignore[no-untyped-def]
    """Prominence of the peak at p as scipy.signal.peak_prominences (wlen=None): walk out on
    each side while the signal is not higher than the peak; the peak height minus the higher
    of the two minima found."""
    n = x.shape[0]
    h = x[p]
    left_min = h
    i = p
    while i >= 0 and x[i] <= h:
        left_min = min(left_min, x[i])
        i -= 1
    right_min = h
    i = p
    while i < n and x[i] <= h:
        right_min = min(right_min, x[i])
        i += 1
    return h - max(left_min, right_min)


@nb.njit(nogil=True, cache=True)
def _count_peaks_row(x, height, distance, prominence, peaks, keep):  # type: ignore[no-untyped-def]
    """Number of peaks as
    ``scipy.signal.find_peaks(x, height=height, distance=distance, prominence=prominence)``.

    Local maxima (a flat top counts once), those with x >= height, then the distance rule:
    from the highest down, a kept peak removes every peak closer than ``distance`` samples;
    then, of the peaks left, those with a prominence >= ``prominence`` (no test when
    ``prominence <= 0``: a prominence is never negative). ``peaks`` (length >= len(x)) and
    ``keep`` (length >= 2 len(x)) are int64 scratch arrays.
    """
    n = x.shape[0]
    npk = 0
    i = 1
    while i < n - 1:
        if x[i - 1] < x[i]:
            ahead = i + 1
            while ahead < n - 1 and x[ahead] == x[i]:
                ahead += 1
            if x[ahead] < x[i]:
                mid = (i + ahead - 1) // 2
                if x[mid] >= height:
                    peaks[npk] = mid
                    npk += 1
                i = ahead
        i += 1
    for k in range(npk):
        keep[k] = 1
    if npk >= 2 and distance > 1:
        # order = the peaks sorted by height, ascending (insertion sort: npk is small, and for
        # fewer than 17 elements numpy's argsort is an insertion sort too, so ties resolve the
        # same way)
        order = keep[n:]
        for k in range(npk):
            h = x[peaks[k]]
            j = k
            while j > 0 and x[peaks[order[j - 1]]] > h:
                order[j] = order[j - 1]
                j -= 1
            order[j] = k
        for r in range(npk - 1, -1, -1):
            j = order[r]
            if keep[j] == 0:
                continue
            k = j - 1
            while k >= 0 and peaks[j] - peaks[k] < distance:
                keep[k] = 0
                k -= 1
            k = j + 1
            while k < npk and peaks[k] - peaks[j] < distance:
                keep[k] = 0
                k += 1
    total = 0
    for k in range(npk):
        if keep[k] and (prominence <= 0.0 or _prominence(x, peaks[k]) >= prominence):
            total += 1
    return total


@nb.njit(nogil=True, cache=True)
def _l1_row(s, amp, t_align, template, pre):  # type: ignore[no-untyped-def]
    """Mean |s(t_align + k - pre)/amp - template[k]| over the samples inside the trace."""
    n = s.shape[0]
    acc = 0.0
    cnt = 0
    for k in range(template.shape[0]):
        pos = t_align + (k - pre)
        if pos < 0.0 or pos > n - 1:
            continue
        i0 = int(pos)
        if i0 >= n - 1:
            v = s[n - 1]
        else:
            f = pos - i0
            v = s[i0] + f * (s[i0 + 1] - s[i0])
        acc += abs(v / amp - template[k])
        cnt += 1
    if cnt == 0:
        return np.nan
    return acc / cnt


@nb.njit(nogil=True, cache=True)
def _features_row(x, energy, sign, fs, fc, fd, template, fp, ip, y, s, c, d2, peaks, keep, out):  # type: ignore[no-untyped-def]
    """All features of one trace; returns (n_peaks_d2, quality bits). ``out`` gets _NF floats."""
    n = x.shape[0]
    for k in range(out.shape[0]):
        out[k] = np.nan
    q = np.uint32(0)
    if n == 0:
        return -1, q | _Q_NOWF
    for i in range(n):
        y[i] = x[i]
    if _has_nan(y[:n]) or math.isnan(sign):
        return -1, q
    yv = y[:n]
    sv = s[:n]
    cv = c[:n]
    dv = d2[:n]
    # saturation: the ADC limit on the pulse side
    if sign > 0:
        hi = yv[0]
        for i in range(n):
            hi = max(hi, yv[i])
        if hi >= fp[FP_SAT]:
            q |= _Q_SAT
    else:
        lo = yv[0]
        for i in range(n):
            lo = min(lo, yv[i])
        if lo <= 0.0:
            q |= _Q_SAT
    nbase = ip[IP_NBASE]
    mean, rms, slope = _baseline_row(yv, nbase)
    out[0] = mean
    out[1] = rms
    out[2] = sign * slope
    m = min(nbase, n)
    dev = 0.0
    for i in range(m):
        dev = max(dev, abs(yv[i] - mean))
    if dev > fp[FP_SPIKE] * rms or abs(slope) * m > fp[FP_DRIFT] * rms:
        q |= _Q_BASELINE
    for i in range(n):
        yv[i] = sign * (yv[i] - mean)
    _savgol_row(yv, fs, sv)
    _savgol_row(sv, fc, cv)
    _savgol_row(cv, fd, dv)
    if n < fs.shape[0] or n < fc.shape[0] or n < fd.shape[0]:
        return -1, q | _Q_NOPULSE
    period = fp[FP_PERIOD]
    imax = _argmax(sv)
    amp = sv[imax]
    out[3] = amp
    if not (amp > 0.0 and amp > fp[FP_MINAMP] * rms):
        q |= _Q_NOPULSE
    t_mid = np.nan
    if amp > 0.0:
        t_low = _crossing_before(sv, imax, fp[FP_LOW] * amp)
        t_mid = _crossing_before(sv, imax, fp[FP_MID] * amp)
        t_high = _crossing_before(sv, imax, fp[FP_HIGH] * amp)
        out[4] = t_low * period
        out[5] = (t_high - t_low) * period
        out[6] = (t_mid - t_low) * period
        out[7] = (t_high - t_mid) * period
    ic = _argmax(cv)
    a = cv[ic]
    out[8] = a
    out[9] = a / energy if energy > 0.0 else np.nan
    out[10] = (ic + _parabolic_offset(cv, ic)) * period
    if template.shape[0] > 0 and amp > 0.0 and not math.isnan(t_mid):
        out[11] = _l1_row(sv, amp, t_mid, template, ip[IP_TPRE])
    # number of peaks of |d2Q/dt2|, normalised to a maximum of 1; the noise RMS of d2 on the
    # signal-free samples: the baseline (past the filter edge) and after the charge maximum
    hd = fd.shape[0] // 2
    ss = 0.0
    cnt = 0
    for i in range(hd, m):
        ss += dv[i] * dv[i]
        cnt += 1
    for i in range(imax + fd.shape[0], n - hd):
        ss += dv[i] * dv[i]
        cnt += 1
    sigma = math.sqrt(ss / cnt) if cnt > 0 else 0.0
    dmax = 0.0
    for i in range(n):
        dv[i] = abs(dv[i])
        dmax = max(dmax, dv[i])
    npk = 0
    if dmax > 0.0:
        for i in range(n):
            dv[i] = dv[i] / dmax
        height = max(fp[FP_D2H], fp[FP_D2NSIG] * sigma / dmax)
        npk = _count_peaks_row(dv, height, ip[IP_D2DIST], fp[FP_D2PROM], peaks, keep)
    # pile-up: current above a fraction of its maximum far from the main current pulse
    if a > 0.0:
        thr = fp[FP_PUF] * a
        left = ic
        while left > 0 and cv[left - 1] > thr:
            left -= 1
        right = ic
        while right < n - 1 and cv[right + 1] > thr:
            right += 1
        sep = fp[FP_PUSEP]
        for i in range(n):
            if (i < left - sep or i > right + sep) and cv[i] > thr:
                q |= _Q_PILEUP
                break
    return npk, q


# ------------------------------------------------------------------------------ public kernels
def _sigs(template: str, types: tuple[str, ...] = ("float32", "float64")) -> list[str]:
    return [template.format(t=t) for t in types]


@nb.njit(_sigs("void({t}[:, :], float64[:, :], {t}[:, :])"), nogil=True, cache=True)
def savgol_2d(x, filt, out):  # type: ignore[no-untyped-def]
    """Savitzky-Golay filter each row of ``x`` with ``filt`` (:func:`savgol_matrix`) into out."""
    n = x.shape[1]
    buf = np.empty(n)
    res = np.empty(n)
    for r in range(x.shape[0]):
        for i in range(n):
            buf[i] = x[r, i]
        if _has_nan(buf):
            res[:] = np.nan
        else:
            _savgol_row(buf, filt, res)
        for i in range(n):
            out[r, i] = res[i]


@nb.njit(
    _sigs(
        "void({t}[:, :], int64, float64[:], float64[:], float64[:])",
        ("int16", "float32", "float64"),
    ),
    nogil=True,
    cache=True,
)
def baseline_2d(x, nbase, mean, rms, slope):  # type: ignore[no-untyped-def]
    """Mean, RMS about the mean and least-squares slope (ADC/sample) of the first nbase samples."""
    n = x.shape[1]
    buf = np.empty(n)
    for r in range(x.shape[0]):
        for i in range(n):
            buf[i] = x[r, i]
        if _has_nan(buf[: min(nbase, n)]):
            mean[r] = rms[r] = slope[r] = np.nan
        else:
            mean[r], rms[r], slope[r] = _baseline_row(buf, nbase)


@nb.njit(
    _sigs("void({t}[:, :], float64[:], float64[:], {t}[:, :])", ("float32", "float64")),
    nogil=True,
    cache=True,
)
def subtract_baseline_2d(x, mean, sign, out):  # type: ignore[no-untyped-def]
    """out = sign * (x - mean) row by row (sign = +1 positive, -1 negative polarity)."""
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[r, i] = sign[r] * (x[r, i] - mean[r])


@nb.njit(_sigs("void({t}[:, :], {t}[:, :])"), nogil=True, cache=True)
def minmax_normalise_2d(x, out):  # type: ignore[no-untyped-def]
    """Scale each row to [0, 1] (min -> 0, max -> 1); a flat or NaN row gives NaN."""
    for r in range(x.shape[0]):
        lo = np.inf
        hi = -np.inf
        bad = False
        for i in range(x.shape[1]):
            v = x[r, i]
            if math.isnan(v):
                bad = True
                break
            lo = min(lo, v)
            hi = max(hi, v)
        if bad or not hi > lo:
            for i in range(x.shape[1]):
                out[r, i] = np.nan
            continue
        inv = 1.0 / (float(hi) - float(lo))
        for i in range(x.shape[1]):
            out[r, i] = (float(x[r, i]) - float(lo)) * inv


@nb.njit(_sigs("void({t}[:, :], {t}[:, :])"), nogil=True, cache=True)
def downsample_mean_2d(x, out):  # type: ignore[no-untyped-def]
    """Average consecutive groups of ``x.shape[1] // out.shape[1]`` samples (a trailing
    remainder is dropped): 366 -> 122 with out of width 122."""
    m = out.shape[1]
    f = x.shape[1] // m
    for r in range(x.shape[0]):
        for j in range(m):
            acc = 0.0
            for k in range(f):
                acc += x[r, j * f + k]
            out[r, j] = acc / f


@nb.njit(_sigs("void({t}[:, :], float64[:], float64[:, :])"), nogil=True, cache=True)
def rise_times_2d(s, levels, out):  # type: ignore[no-untyped-def]
    """Crossing positions (samples, linear interpolation) of ``levels`` x max of each row,
    found by walking back from the maximum; NaN when the trace starts above a level."""
    n = s.shape[1]
    buf = np.empty(n)
    for r in range(s.shape[0]):
        for i in range(n):
            buf[i] = s[r, i]
        imax = _argmax(buf)
        amp = buf[imax]
        for k in range(levels.shape[0]):
            if _has_nan(buf) or not amp > 0.0:
                out[r, k] = np.nan
            else:
                out[r, k] = _crossing_before(buf, imax, levels[k] * amp)


@nb.njit(_sigs("void({t}[:, :], float64[:], float64[:])"), nogil=True, cache=True)
def current_max_2d(c, amax, tmax):  # type: ignore[no-untyped-def]
    """Maximum of each row and its position in samples (parabolic interpolation)."""
    n = c.shape[1]
    buf = np.empty(n)
    for r in range(c.shape[0]):
        for i in range(n):
            buf[i] = c[r, i]
        if _has_nan(buf):
            amax[r] = tmax[r] = np.nan
            continue
        i = _argmax(buf)
        amax[r] = buf[i]
        tmax[r] = i + _parabolic_offset(buf, i)


@nb.njit(_sigs("void({t}[:, :], float64, int64, float64, int32[:])"), nogil=True, cache=True)
def count_peaks_2d(x, height, distance, prominence, out):  # type: ignore[no-untyped-def]
    """Peaks per row as ``len(scipy.signal.find_peaks(row, height, distance=distance,
    prominence=prominence)[0])``; -1 for a row with NaN."""
    n = x.shape[1]
    buf = np.empty(n)
    peaks = np.empty(n, dtype=np.int64)
    keep = np.empty(2 * n, dtype=np.int64)
    for r in range(x.shape[0]):
        for i in range(n):
            buf[i] = x[r, i]
        if _has_nan(buf):
            out[r] = -1
        else:
            out[r] = _count_peaks_row(buf, height, distance, prominence, peaks, keep)


@nb.njit(
    _sigs("void({t}[:, :], float64[:], float64[:], int64, float64[:])"), nogil=True, cache=True
)
def l1_aligned_2d(s, t_align, template, pre, out):  # type: ignore[no-untyped-def]
    """L1 distance of each row, normalised by its maximum and aligned so that sample
    ``t_align`` falls on template index ``pre``, to the template (mean over the overlap)."""
    n = s.shape[1]
    buf = np.empty(n)
    for r in range(s.shape[0]):
        for i in range(n):
            buf[i] = s[r, i]
        amp = buf[_argmax(buf)] if n else np.nan
        if _has_nan(buf) or math.isnan(t_align[r]) or not amp > 0.0:
            out[r] = np.nan
        else:
            out[r] = _l1_row(buf, amp, t_align[r], template, pre)


_FEAT_SIG = (
    "void({t}[:, :], float64[:], float64[:], float64[:, :], float64[:, :], float64[:, :], "
    "float64[:], float64[:], int64[:], float32[:, :], int32[:], uint32[:])"
)


@nb.njit(_sigs(_FEAT_SIG, ("int16", "float32", "float64")), nogil=True, cache=True)
def features_2d(x, energy, sign, fs, fc, fd, template, fp, ip, out, npeaks, quality):  # type: ignore[no-untyped-def]
    """All features of a block of equal-length traces (rows = events) in one pass.

    ``energy`` (ADC, for A/E) and ``sign`` (+1 positive, -1 negative polarity) are per row;
    ``fs, fc, fd`` are the smoothing, current and d2 Savitzky-Golay matrices; ``template`` the
    SSE template (empty: no L1); ``fp`` / ``ip`` the float / int parameters (``FP_*``,
    ``IP_*`` indices). Writes ``out[:, k]`` = :data:`FEATURE_COLUMNS` ``[k]``, ``npeaks`` and
    ``quality`` (bits :data:`QUALITY_BITS`; quality is OR-ed into what the caller put there).
    """
    n = x.shape[1]
    y = np.empty(n)
    s = np.empty(n)
    c = np.empty(n)
    d2 = np.empty(n)
    peaks = np.empty(n, dtype=np.int64)
    keep = np.empty(2 * n, dtype=np.int64)
    for r in range(x.shape[0]):
        npk, q = _features_row(
            x[r], energy[r], sign[r], fs, fc, fd, template, fp, ip, y, s, c, d2, peaks, keep, out[r]
        )
        npeaks[r] = npk
        quality[r] |= q


@nb.njit(_sigs(_FEAT_SIG, ("int16", "float32", "float64")), parallel=True, nogil=True, cache=True)
def features_2d_parallel(x, energy, sign, fs, fc, fd, template, fp, ip, out, npeaks, quality):  # type: ignore[no-untyped-def]
    """:func:`features_2d` parallelised with numba's own threading layer (``prange`` over
    blocks of 256 rows; ``numba.set_num_threads`` sets the number of threads)."""
    n = x.shape[1]
    nrows = x.shape[0]
    block = 256
    nblocks = (nrows + block - 1) // block
    for b in nb.prange(nblocks):
        y = np.empty(n)
        s = np.empty(n)
        c = np.empty(n)
        d2 = np.empty(n)
        peaks = np.empty(n, dtype=np.int64)
        keep = np.empty(2 * n, dtype=np.int64)
        for r in range(b * block, min(nrows, (b + 1) * block)):
            npk, q = _features_row(
                x[r],
                energy[r],
                sign[r],
                fs,
                fc,
                fd,
                template,
                fp,
                ip,
                y,
                s,
                c,
                d2,
                peaks,
                keep,
                out[r],
            )
            npeaks[r] = npk
            quality[r] |= q


@nb.njit(
    _sigs("void({t}[:, :], float64[:], float64[:], int64, float64[:, :])"), nogil=True, cache=True
)
def aligned_pulses_2d(s, amp, t_align, pre, out):  # type: ignore[no-untyped-def]
    """``out[r, k] = s[r](t_align[r] + k - pre) / amp[r]`` (linear interpolation); NaN outside
    the trace, for NaN inputs and for a non-positive amplitude. Used to build the SSE template."""
    n = s.shape[1]
    for r in range(s.shape[0]):
        ok = amp[r] > 0.0 and not math.isnan(t_align[r])
        for k in range(out.shape[1]):
            pos = t_align[r] + (k - pre)
            if not ok or pos < 0.0 or pos > n - 1:
                out[r, k] = np.nan
                continue
            i0 = int(pos)
            if i0 >= n - 1:
                v = float(s[r, n - 1])
            else:
                v = s[r, i0] + (pos - i0) * (s[r, i0 + 1] - s[r, i0])
            out[r, k] = v / amp[r]
