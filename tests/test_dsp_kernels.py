"""Each numba kernel of bege_psd.dsp.kernels against its numpy/scipy twin (and scipy itself)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import find_peaks, savgol_filter

from bege_psd.dsp import DSPConfig
from bege_psd.dsp import kernels as K
from bege_psd.dsp import twins as T
from bege_psd.dsp.features import _filters, _params
from bege_psd.dsp.testing import synthetic_pulses

DTYPES = [np.float32, np.float64]


def _blocks(dtype):
    """Random noise and realistic pulses (1 and 2 sites), baseline-subtracted, as dtype."""
    rng = np.random.default_rng(11)
    noise = rng.normal(0, 1, size=(8, 366))
    sse, _ = synthetic_pulses(8, n_sites=1, seed=1)
    mse, _ = synthetic_pulses(8, n_sites=2, seed=2)
    pulses = np.vstack([sse, mse]).astype(np.float64) - 1500.0
    return [noise.astype(dtype), pulses.astype(dtype)]


def _close(a, b, rel=1e-6):
    """Equal to ``rel`` of the largest magnitude of the reference (NaN where NaN)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    scale = max(np.nanmax(np.abs(b)), 1e-30)
    np.testing.assert_allclose(a, b, rtol=0, atol=rel * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("window", "order", "deriv"), [(19, 2, 0), (19, 13, 1), (13, 2, 1), (31, 2, 1), (7, 3, 2)]
)
def test_savgol_equals_scipy(dtype, window, order, deriv):
    filt = K.savgol_matrix(window, order, deriv)
    for x in _blocks(dtype):
        out = np.empty_like(x)
        K.savgol_2d(x, filt, out)
        assert out.dtype == dtype
        ref = savgol_filter(x.astype(np.float64), window, order, deriv=deriv, axis=1)
        _close(out, ref)
        _close(out, T.savgol_twin(x, window, order, deriv))


def test_savgol_matrix_centre_row_is_savgol_coeffs():
    from scipy.signal import savgol_coeffs

    m = K.savgol_matrix(19, 2, 1)
    np.testing.assert_allclose(m[9], savgol_coeffs(19, 2, deriv=1, use="dot"), atol=1e-14)
    with pytest.raises(ValueError, match="odd"):
        K.savgol_matrix(18, 2)
    with pytest.raises(ValueError, match="order"):
        K.savgol_matrix(5, 5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_in_nan_out(dtype):
    x = _blocks(dtype)[1].copy()
    x[3, 100] = np.nan
    filt = K.savgol_matrix(19, 2, 0)
    out = np.empty_like(x)
    K.savgol_2d(x, filt, out)
    assert np.isnan(out[3]).all()
    assert np.isfinite(np.delete(out, 3, axis=0)).all()
    mean, rms, slope = (np.empty(len(x)) for _ in range(3))
    x[5, 2] = np.nan  # inside the baseline window
    K.baseline_2d(x, 40, mean, rms, slope)
    assert np.isnan([mean[5], rms[5], slope[5]]).all()
    assert np.isfinite(mean[3])  # the NaN of row 3 is after the baseline window
    norm = np.empty_like(x)
    K.minmax_normalise_2d(x, norm)
    assert np.isnan(norm[3]).all()
    assert np.isfinite(norm[0]).all()
    rt = np.empty((len(x), 3))
    K.rise_times_2d(x, np.array([0.1, 0.5, 0.9]), rt)
    assert np.isnan(rt[3]).all()
    amax, tmax = np.empty(len(x)), np.empty(len(x))
    K.current_max_2d(x, amax, tmax)
    assert np.isnan([amax[3], tmax[3]]).all()
    npk = np.empty(len(x), dtype=np.int32)
    K.count_peaks_2d(x, 0.0, 1, 0.0, npk)
    assert npk[3] == -1
    assert (np.delete(npk, [3, 5]) >= 0).all()


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_baseline_equals_twin(dtype):
    wf, _ = synthetic_pulses(20, seed=3)
    x = wf.astype(dtype)
    mean, rms, slope = (np.empty(len(x)) for _ in range(3))
    K.baseline_2d(x, 40, mean, rms, slope)
    m2, r2, s2 = T.baseline_twin(x, 40)
    np.testing.assert_allclose(mean, m2, rtol=1e-12)
    np.testing.assert_allclose(rms, r2, rtol=1e-9)
    np.testing.assert_allclose(slope, s2, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_subtract_normalise_downsample_equal_twins(dtype):
    wf, _ = synthetic_pulses(10, seed=4, polarity="negative", baseline_adc=14000.0)
    x = wf.astype(dtype)
    mean = x[:, :40].astype(np.float64).mean(axis=1)
    sign = -np.ones(len(x))
    y = np.empty_like(x)
    K.subtract_baseline_2d(x, mean, sign, y)
    _close(y, T.subtract_baseline_twin(x, mean, sign))
    assert np.median(y[:, -20:]) > 500  # the pulse now rises
    norm = np.empty_like(y)
    K.minmax_normalise_2d(y, norm)
    _close(norm, T.minmax_normalise_twin(y))
    assert norm.min() == 0.0
    assert norm.max() == 1.0
    ds = np.empty((len(x), 122), dtype=dtype)
    K.downsample_mean_2d(norm, ds)
    _close(ds, T.downsample_mean_twin(norm, 3))
    flat = np.ones((1, 366), dtype=dtype)
    K.minmax_normalise_2d(flat, flat)
    assert np.isnan(flat).all()  # a flat trace cannot be normalised


@pytest.mark.parametrize("dtype", DTYPES)
def test_rise_times_and_current_max_equal_twins(dtype):
    x = _blocks(dtype)[1]
    levels = np.array([0.1, 0.5, 0.9])
    rt = np.empty((len(x), 3))
    K.rise_times_2d(x, levels, rt)
    _close(rt, T.rise_times_twin(x, levels), rel=1e-9)
    amax, tmax = np.empty(len(x)), np.empty(len(x))
    K.current_max_2d(x, amax, tmax)
    a2, t2 = T.current_max_twin(x)
    _close(amax, a2, rel=1e-12)
    _close(tmax, t2, rel=1e-9)


def test_rise_time_of_linear_ramp():
    """Known answer: a ramp from sample 100 to 300 rises 10-90 % in 160 samples."""
    x = np.zeros((1, 400))
    x[0, 100:300] = np.arange(200) / 200.0
    x[0, 300:] = 1.0
    rt = np.empty((1, 3))
    K.rise_times_2d(x, np.array([0.1, 0.5, 0.9]), rt)
    np.testing.assert_allclose(rt[0], [120.0, 200.0, 280.0], atol=1e-12)


def test_count_peaks_equals_find_peaks_on_pulses():
    cfg = DSPConfig()
    for x in _blocks(np.float64):
        d2 = np.abs(T.savgol_twin(T.savgol_twin(x, 19, 2, 0), 19, 2, 2))
        d2 /= d2.max(axis=1, keepdims=True)
        for height, distance, prom in [
            (0.1, 10, 0.0),
            (0.0, 1, 0.0),
            (0.3, 3, 0.0),
            (0.05, 25, 0.0),
            (0.1, 10, 0.1),
            (0.0, 1, 0.05),
            (0.05, 3, 0.3),
        ]:
            out = np.empty(len(x), dtype=np.int32)
            K.count_peaks_2d(d2, height, distance, prom, out)
            ref = [
                len(find_peaks(r, height=height, distance=distance, prominence=prom)[0]) for r in d2
            ]
            assert out.tolist() == ref
            assert out.tolist() == T.count_peaks_twin(d2, height, distance, prom).tolist()
    assert cfg.d2_peak_distance == 10


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=3, max_size=80),
    st.integers(0, 6),
    st.integers(1, 12),
    st.integers(0, 6),
)
def test_count_peaks_property(values, height, distance, prominence):
    """Plateaus, ties, the distance rule and prominences behave as scipy.signal.find_peaks."""
    x = np.asarray(values, dtype=np.float64)[None, :]
    _, props = find_peaks(x[0], height=height)
    if len(np.unique(props["peak_heights"])) < len(props["peak_heights"]):
        distance = 1  # with tied heights the distance rule depends on the sort order
    out = np.empty(1, dtype=np.int32)
    K.count_peaks_2d(x, float(height), distance, float(prominence), out)
    ref = find_peaks(x[0], height=height, distance=distance, prominence=prominence)[0]
    assert out[0] == len(ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_l1_and_alignment_equal_twins(dtype):
    x = _blocks(dtype)[1]
    rng = np.random.default_rng(5)
    t_align = rng.uniform(100, 200, len(x))
    t_align[2] = np.nan
    template = np.clip(np.linspace(-0.2, 1.4, 120), 0, 1)
    out = np.empty(len(x))
    K.l1_aligned_2d(x, t_align, template, 40, out)
    _close(out, T.l1_aligned_twin(x, t_align, template, 40), rel=1e-9)
    amp = x.max(axis=1).astype(np.float64)
    aligned = np.empty((len(x), 120))
    K.aligned_pulses_2d(x, amp, t_align, 40, aligned)
    for r in (0, 5):
        pos = t_align[r] + np.arange(120) - 40
        inside = (pos >= 0) & (pos <= x.shape[1] - 1)
        ref = np.interp(pos[inside], np.arange(x.shape[1]), x[r].astype(np.float64)) / amp[r]
        np.testing.assert_allclose(
            aligned[r, inside], ref, rtol=1e-6 if dtype == np.float32 else 1e-12
        )
        assert np.isnan(aligned[r, ~inside]).all()
    assert np.isnan(aligned[2]).all()


@pytest.mark.parametrize("wf_dtype", [np.int16, np.float32, np.float64])
@pytest.mark.parametrize("n_sites", [1, 2, 3])
def test_fused_features_equal_scipy_reference(wf_dtype, n_sites):
    cfg = DSPConfig()
    wf, amp = synthetic_pulses(60, n_sites=n_sites, seed=10 + n_sites)
    x = wf.astype(wf_dtype)
    energy = amp * 1.7
    energy[0] = 0.0  # no energy -> NaN A/E
    sign = np.ones(len(x))
    template = np.clip((np.arange(200) - 64) / 60.0 + 0.5, 0, 1)
    fs, fc, fd = _filters(cfg)
    fp, ip = _params(cfg, 4.0)
    out = np.empty((len(x), len(K.FEATURE_COLUMNS)), dtype=np.float32)
    npk = np.empty(len(x), dtype=np.int32)
    qual = np.zeros(len(x), dtype=np.uint32)
    K.features_2d(x, energy, sign, fs, fc, fd, template, fp, ip, out, npk, qual)
    ref = T.features_reference(x, energy, sign, cfg, sample_period_ns=4.0, template=template)
    for k, name in enumerate(K.FEATURE_COLUMNS):
        _close(out[:, k], ref[name], rel=1e-6)
    assert np.isnan(out[0, K.FEATURE_COLUMNS.index("a_over_e")])
    assert npk.tolist() == ref["n_peaks_d2"].tolist()
    assert qual.tolist() == ref["quality"].tolist()
    # the parallel kernel (numba threading layer) gives the same
    out2, npk2, qual2 = np.empty_like(out), np.empty_like(npk), np.zeros_like(qual)
    K.features_2d_parallel(x, energy, sign, fs, fc, fd, template, fp, ip, out2, npk2, qual2)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(npk2, npk)


def test_fused_features_nan_row():
    cfg = DSPConfig()
    x, amp = synthetic_pulses(3, seed=1)
    x = x.astype(np.float32)
    x[1, 200] = np.nan
    fs, fc, fd = _filters(cfg)
    fp, ip = _params(cfg, 4.0)
    out = np.empty((3, len(K.FEATURE_COLUMNS)), dtype=np.float32)
    npk = np.empty(3, dtype=np.int32)
    qual = np.zeros(3, dtype=np.uint32)
    K.features_2d(x, amp, np.ones(3), fs, fc, fd, np.zeros(0), fp, ip, out, npk, qual)
    assert np.isnan(out[1]).all()
    assert npk[1] == -1
    assert np.isfinite(out[[0, 2], :11]).all()
    assert (npk[[0, 2]] == 2).all()
    assert np.isnan(out[:, -1]).all()  # no template, no L1


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 20).map(lambda h: 2 * h + 1),
    st.integers(0, 6),
    st.integers(0, 2),
    st.integers(0, 200),
    st.integers(0, 2**31 - 1),
)
def test_savgol_property(window, order, deriv, extra, seed):
    """Any odd window, order < window, derivative 0-2, length >= window: equals scipy."""
    order = min(order, window - 1)
    x = np.random.default_rng(seed).normal(size=(2, window + extra))
    out = np.empty_like(x)
    K.savgol_2d(x, K.savgol_matrix(window, order, deriv), out)
    ref = savgol_filter(x, window, order, deriv=deriv, axis=1)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9 * max(1.0, np.abs(ref).max()))
