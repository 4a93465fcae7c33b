"""bege_psd.dsp.features / acm_input on event tables: definitions, quality flags, layout."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bege_psd.config import from_mapping, load_config
from bege_psd.dsp import DSPConfig, Quality, acm_input, features
from bege_psd.dsp import twins as T
from bege_psd.dsp.testing import synthetic_pulses
from bege_psd.errors import CompassFormatError, ConfigError

FIELDS = {
    "baseline_mean",
    "baseline_rms",
    "baseline_slope",
    "amplitude",
    "t0_ns",
    "risetime_ns",
    "rt_10_50_ns",
    "rt_50_90_ns",
    "current_max",
    "a_over_e",
    "t_current_max_ns",
    "l1_to_sse",
    "n_peaks_d2",
    "quality",
}


def _events(wf, energy=None, flags=None, attrs=None):
    if isinstance(wf, ak.Array):
        wf_list = wf
    elif isinstance(wf, np.ndarray) and wf.ndim == 2:  # regular: no per-event Python loop
        wf_list = ak.unflatten(wf.astype(np.int16).ravel(), wf.shape[1])
    else:
        lengths = [len(w) for w in wf]
        flat = np.concatenate(
            [np.asarray(w, dtype=np.int16) for w in wf] or [np.zeros(0, np.int16)]
        )
        wf_list = ak.unflatten(flat, lengths)
    n = len(wf_list)
    e = np.asarray(energy if energy is not None else np.full(n, 3000), dtype=np.uint16)
    f = np.asarray(flags if flags is not None else np.zeros(n), dtype=np.uint32)
    arr = ak.zip({"energy_adc": e, "flags": f, "waveform": wf_list}, depth_limit=1)
    return ak.Array(arr, attrs=attrs) if attrs else arr


def test_fields_types_and_entry_alignment():
    wf, amp = synthetic_pulses(50, seed=1)
    ev = _events(wf, amp.astype(np.uint16), attrs={"sample_period_ns": 4.0, "polarity": "positive"})
    f = features(ev)
    assert set(ak.fields(f)) == FIELDS
    assert len(f) == 50
    assert f["n_peaks_d2"].type.content.primitive == "int32"
    assert f["quality"].type.content.primitive == "uint32"
    assert f["risetime_ns"].type.content.primitive == "float32"
    assert f.attrs["polarity"] == "positive"
    ref = T.features_reference(wf, amp.astype(np.uint16).astype(float), np.ones(50))
    np.testing.assert_allclose(ak.to_numpy(f["a_over_e"]), ref["a_over_e"], rtol=1e-6)
    assert (ak.to_numpy(f["quality"]) == 0).all()


def test_known_answer_linear_ramp():
    """A noise-free linear ramp over 200 samples of 4 ns: 10-90 % = 640 ns, t0 = 480 ns."""
    x = np.full(600, 1000.0)
    x[100:300] += np.arange(200) * 10.0
    x[300:] += 2000.0
    wf = x[None, :].astype(np.int16)
    # a 3-sample moving average is exact on the ramp and cannot overshoot at its corners
    # and a first-order derivative is a positive-weighted mean of the sample differences
    cfg = DSPConfig(smooth_window=3, smooth_order=1, current_order=1)
    f = features(wf, cfg, sample_period_ns=4.0, polarity="positive")
    np.testing.assert_allclose(f["risetime_ns"][0], 640.0, rtol=1e-6)
    np.testing.assert_allclose(f["rt_10_50_ns"][0], 320.0, rtol=1e-6)
    np.testing.assert_allclose(f["rt_50_90_ns"][0], 320.0, rtol=1e-6)
    np.testing.assert_allclose(f["t0_ns"][0], 480.0, rtol=1e-6)
    np.testing.assert_allclose(f["amplitude"][0], 2000.0, rtol=1e-6)
    np.testing.assert_allclose(f["current_max"][0], 10.0, rtol=1e-5)  # ADC per sample
    f2 = features(wf, cfg, sample_period_ns=2.0, polarity="positive")
    np.testing.assert_allclose(f2["risetime_ns"][0], 320.0, rtol=1e-6)
    # the paper's SG(19, 2) rounds the corners: the amplitude overshoots by ~0.1 %
    fd = features(wf, sample_period_ns=4.0, polarity="positive")
    np.testing.assert_allclose(fd["risetime_ns"][0], 640.0, rtol=2e-3)
    assert 2000.0 <= fd["amplitude"][0] < 2004.0
    assert 10.0 <= fd["current_max"][0] < 11.5  # the (19, 13) derivative rings at sharp corners


def test_d2_peak_count_noise_floor_on_small_pulses():
    """A small pulse (150 ADC, noise 3 ADC: max|d2| near the noise): the noise-aware height
    keeps a one-step pulse at 2 peaks and a two-step pulse at 3 or more; the relative height
    alone (the authors' 0.1) counts noise wiggles."""
    kw = {"amplitude_adc": (150.0, 150.0), "noise_adc": 3.0}
    sse, _ = synthetic_pulses(300, n_sites=1, seed=31, **kw)
    mse, _ = synthetic_pulses(300, n_sites=2, seed=32, **kw)
    ns = ak.to_numpy(features(sse, sample_period_ns=4.0, polarity="positive")["n_peaks_d2"])
    nm = ak.to_numpy(features(mse, sample_period_ns=4.0, polarity="positive")["n_peaks_d2"])
    assert (ns == 2).mean() > 0.95
    assert (nm >= 3).mean() > 0.9
    rel_only = DSPConfig(d2_peak_nsigma=0.0, d2_peak_prominence=0.0)
    nr = ak.to_numpy(
        features(sse, rel_only, sample_period_ns=4.0, polarity="positive")["n_peaks_d2"]
    )
    assert np.median(nr) > 4
    # the noise floor alone (no prominence) already brings the one-step pulses back to 2
    floor_only = DSPConfig(d2_peak_prominence=0.0)
    nf = ak.to_numpy(
        features(sse, floor_only, sample_period_ns=4.0, polarity="positive")["n_peaks_d2"]
    )
    assert np.median(nf) == 2


def test_two_step_pulse_more_d2_peaks_lower_aoe():
    """Same energy: the two-step pulse counts more |d2| peaks and has a lower A/E."""
    kw = {"amplitude_adc": (4000.0, 4000.0), "noise_adc": 2.0}
    sse, _ = synthetic_pulses(200, n_sites=1, seed=21, **kw)
    mse, _ = synthetic_pulses(200, n_sites=2, seed=22, **kw)
    energy = np.full(200, 4000)
    fs = features(_events(sse, energy), sample_period_ns=4.0)
    fm = features(_events(mse, energy), sample_period_ns=4.0)
    ns, nm = ak.to_numpy(fs["n_peaks_d2"]), ak.to_numpy(fm["n_peaks_d2"])
    assert (ns == 2).mean() > 0.97  # one clean current pulse = two lobes of d2
    assert (nm >= 3).mean() > 0.95
    aoe_s, aoe_m = ak.to_numpy(fs["a_over_e"]), ak.to_numpy(fm["a_over_e"])
    assert np.median(aoe_m) < 0.8 * np.median(aoe_s)
    assert np.median(ak.to_numpy(fm["risetime_ns"])) > np.median(ak.to_numpy(fs["risetime_ns"]))
    # the same pair without noise, one pulse each: deterministic
    one, _ = synthetic_pulses(
        1, n_sites=1, seed=5, noise_adc=0.0, **{"amplitude_adc": (4000.0, 4000.0)}
    )
    two, _ = synthetic_pulses(
        1, n_sites=2, seed=5, noise_adc=0.0, **{"amplitude_adc": (4000.0, 4000.0)}
    )
    f1 = features(_events(one, [4000]), sample_period_ns=4.0)
    f2 = features(_events(two, [4000]), sample_period_ns=4.0)
    assert f1["n_peaks_d2"][0] == 2
    assert f2["n_peaks_d2"][0] >= 4
    assert f2["a_over_e"][0] < f1["a_over_e"][0]


def test_polarity_mirror_and_autodetect():
    pos, _ = synthetic_pulses(30, seed=7)
    neg = (16000 - pos.astype(np.int32)).astype(np.int16)
    fp_ = features(_events(pos), sample_period_ns=4.0)
    fn = features(_events(neg), sample_period_ns=4.0)  # no attrs: detected
    assert fp_.attrs["polarity"] == "positive"
    assert fn.attrs["polarity"] == "negative"
    for name in (
        "risetime_ns",
        "amplitude",
        "current_max",
        "baseline_rms",
        "baseline_slope",
        "l1_to_sse",
    ):
        np.testing.assert_allclose(
            ak.to_numpy(fn[name]), ak.to_numpy(fp_[name]), rtol=1e-5, atol=1e-4
        )
    assert ak.to_numpy(fn["n_peaks_d2"]).tolist() == ak.to_numpy(fp_["n_peaks_d2"]).tolist()
    # attrs win over detection; the argument wins over attrs
    forced = features(_events(neg, attrs={"polarity": "positive", "sample_period_ns": 4.0}))
    assert forced.attrs["polarity"] == "positive"
    assert features(_events(neg), polarity="negative").attrs["polarity"] == "negative"
    with pytest.raises(ConfigError, match="polarity"):
        features(_events(neg), polarity="down")


def test_sample_period_from_attrs():
    wf, _ = synthetic_pulses(5, seed=2)
    f4 = features(_events(wf, attrs={"sample_period_ns": 4.0}))
    f2 = features(_events(wf, attrs={"sample_period_ns": 2.0}))
    np.testing.assert_allclose(
        ak.to_numpy(f4["risetime_ns"]), 2 * ak.to_numpy(f2["risetime_ns"]), rtol=1e-6
    )
    np.testing.assert_allclose(
        ak.to_numpy(features(_events(wf))["risetime_ns"]), ak.to_numpy(f4["risetime_ns"])
    )


def test_bad_pulses_become_flags():
    base, _ = synthetic_pulses(7, seed=3, amplitude_adc=(3000.0, 3000.0), length=600)
    wf = [w.copy() for w in base]
    wf[0] = np.minimum(wf[0].astype(np.int32) * 4, 16383).astype(
        np.int16
    )  # clipped at the ADC limit
    later, _ = synthetic_pulses(
        1, seed=4, amplitude_adc=(2000.0, 2000.0), length=600, t_start_ns=(1900.0, 1900.0)
    )
    wf[1] = (wf[1].astype(np.int32) + later[0] - 1500).astype(
        np.int16
    )  # a second step 1.4 us later
    wf[2][10] += 300  # a spike in the baseline
    wf[3] = np.full(600, 1500, dtype=np.int16)  # flat: no pulse
    wf[4] = np.zeros(0, dtype=np.int16)  # no waveform saved
    ev = _events(
        wf, flags=[0, 0, 0, 0, 0, 0x8000 | 0x4000, 0x80 | 0x80000], attrs={"sample_period_ns": 4.0}
    )
    f = features(ev)
    q = ak.to_numpy(f["quality"])
    assert q[0] & Quality.SATURATED
    assert q[1] & Quality.PILEUP
    assert q[2] & Quality.BAD_BASELINE
    assert q[3] & Quality.NO_PULSE
    assert q[4] == Quality.NO_WAVEFORM
    assert q[5] == Quality.DAQ_PILEUP
    assert q[6] == Quality.DAQ_SATURATION | Quality.FAKE
    for i in (0, 1, 2, 3, 5, 6):
        assert not q[i] & Quality.NO_WAVEFORM
    assert np.isnan([f[name][4] for name in ("risetime_ns", "amplitude", "baseline_mean")]).all()
    assert f["n_peaks_d2"][4] == -1
    assert q[5] & ~Quality.DAQ_PILEUP == 0  # a clean trace flagged only by the DAQ


def test_irregular_lengths_grouped():
    rng = np.random.default_rng(9)
    lengths = [366, 200, 8192, 366, 0, 1024, 200]
    wf = []
    for i, n in enumerate(lengths):
        if n == 0:
            wf.append(np.zeros(0, dtype=np.int16))
            continue
        w, _ = synthetic_pulses(
            1, seed=int(rng.integers(1 << 30)), length=n, t_start_ns=(300.0, 350.0)
        )
        wf.append(w[0])
        del i
    ev = _events(wf, attrs={"sample_period_ns": 4.0, "polarity": "positive"})
    f = features(ev)
    assert len(f) == len(lengths)
    for i, w in enumerate(wf):
        if len(w) == 0:
            assert f["quality"][i] == Quality.NO_WAVEFORM
            continue
        single = features(w[None, :], sample_period_ns=4.0, polarity="positive")
        assert f["risetime_ns"][i] == single["risetime_ns"][0]
        assert f["n_peaks_d2"][i] == single["n_peaks_d2"][0]
        assert np.isfinite(f["risetime_ns"][i])


def test_threads_give_identical_results():
    wf, amp = synthetic_pulses(3000, seed=12, n_sites=2)
    ev = _events(wf, amp.astype(np.uint16), attrs={"sample_period_ns": 4.0, "polarity": "positive"})
    f1 = features(ev)
    f2 = features(ev, n_threads=2)
    for name in FIELDS:
        np.testing.assert_array_equal(ak.to_numpy(f1[name]), ak.to_numpy(f2[name]))
    with pytest.raises(ConfigError, match="n_threads"):
        features(ev, n_threads=0)


def test_regular_chunk_is_viewed_not_copied():
    from bege_psd.dsp.features import _to_blocks

    wf, _ = synthetic_pulses(10, seed=1)
    arr = ak.from_numpy(wf)  # a 2-D NumpyArray layout
    jag = ak.Array(list(wf))
    for a in (arr, jag):
        blocks = _to_blocks(a)
        assert len(blocks.blocks) == 1
        assert blocks.blocks[0][0] is None
        np.testing.assert_array_equal(blocks.blocks[0][1], wf)
    # the 2-D block is a view of the awkward buffer, also for a slice of a chunk
    assert np.shares_memory(_to_blocks(jag).blocks[0][1], ak.to_layout(jag).content.data)
    assert np.shares_memory(_to_blocks(arr).blocks[0][1], ak.to_layout(arr).data)
    part = _to_blocks(jag[3:]).blocks[0][1]
    np.testing.assert_array_equal(part, wf[3:])
    assert np.shares_memory(part, ak.to_layout(jag).content.data)


def test_missing_waveform_field_is_a_clear_error():
    ev = ak.Array(
        ak.zip({"energy_adc": np.array([1, 2], dtype=np.uint16)}), attrs={"source_file": "run.root"}
    )
    with pytest.raises(CompassFormatError, match=r"run\.root.*no 'waveform' field.*energy_adc"):
        features(ev)


def test_acm_input():
    wf, _ = synthetic_pulses(20, seed=8, polarity="negative", baseline_adc=14000.0)
    x = acm_input(_events(wf), polarity="negative")
    assert x.shape == (20, 122)
    assert x.dtype == np.float32
    assert np.nanmin(x) >= 0.0
    assert np.nanmax(x) <= 1.0
    assert np.median(x[:, -5:]) > 0.9
    assert np.median(x[:, :5]) < 0.1
    twin = T.downsample_mean_twin(T.minmax_normalise_twin(-(wf.astype(np.float64))), 3)
    np.testing.assert_allclose(x, twin, atol=2e-6)
    # auto polarity and an event without waveform (NaN row, kept)
    wf_list = [*wf[:3], np.zeros(0, dtype=np.int16)]
    y = acm_input(_events(wf_list))
    assert y.shape == (4, 122)
    assert np.isnan(y[3]).all()
    assert np.isfinite(y[:3]).all()
    bad = [wf[0], wf[1][:300], wf[2]]
    with pytest.raises(CompassFormatError, match=r"entry 11 of r\.root has 300"):
        acm_input(_events(bad, attrs={"entry_start": 10, "source_file": "r.root"}))


def test_config_validation():
    cfg = from_mapping(
        DSPConfig, {"smooth_window": 21, "current_window": 13, "current_order": 2}, where="dsp"
    )
    assert cfg.smooth_window == 21
    assert cfg.current_order == 2
    with pytest.raises(ConfigError, match="must be odd"):
        from_mapping(DSPConfig, {"smooth_window": 18}, where="dsp")
    with pytest.raises(ConfigError, match="current_order"):
        from_mapping(DSPConfig, {"current_window": 9, "current_order": 13}, where="dsp")
    with pytest.raises(ConfigError, match="rt_low"):
        from_mapping(DSPConfig, {"rt_low": 0.6}, where="dsp")
    with pytest.raises(ConfigError, match="smooth_window"):
        from_mapping(DSPConfig, {"smoth_window": 19}, where="dsp")
    conf = load_config({"dsp": {"d2_peak_height": 0.2}})
    assert conf.dsp.d2_peak_height == 0.2
    assert conf.dsp.smooth_window == 19
    authors = DSPConfig.authors_code()
    assert (authors.current_window, authors.current_order, authors.d2_window) == (13, 2, 31)
    # the paper's defaults
    d = DSPConfig()
    assert (d.smooth_window, d.smooth_order, d.current_window, d.current_order) == (19, 2, 19, 13)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(0, 1200).map(lambda n: ("noise", n)),
            st.integers(0, 1200).map(lambda n: ("const", n)),
            st.integers(0, 1200).map(lambda n: ("extreme", n)),
        ),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(["positive", "negative", None]),
    st.integers(0, 2**31 - 1),
)
def test_any_trace_gives_a_row_never_an_exception(kinds, polarity, seed):
    """Random noise, flat traces, ADC extremes, empty and very short traces of any length: one
    row per event, the documented dtypes, NO_WAVEFORM exactly for the empty ones, and
    n_peaks_d2 = -1 exactly for traces shorter than the filter windows."""
    rng = np.random.default_rng(seed)
    wf = []
    for kind, n in kinds:
        if kind == "noise":
            wf.append(rng.integers(0, 16384, n).astype(np.int16))
        elif kind == "const":
            wf.append(np.full(n, rng.integers(0, 16384), dtype=np.int16))
        else:
            wf.append(rng.choice(np.array([0, 16383], dtype=np.int16), n))
    f = features(_events(wf, flags=rng.integers(0, 2**21, len(wf))), polarity=polarity)
    assert len(f) == len(wf)
    q = ak.to_numpy(f["quality"])
    assert q.dtype == np.uint32
    empty = np.array([len(w) == 0 for w in wf])
    np.testing.assert_array_equal((q & Quality.NO_WAVEFORM) != 0, empty)
    npk = ak.to_numpy(f["n_peaks_d2"])
    short = np.array([len(w) < 19 for w in wf])  # shorter than the SG windows: undefined
    assert (npk[short] == -1).all()
    assert (npk[~short] >= 0).all()
    assert ((q[short & ~empty] & Quality.NO_PULSE) != 0).all()
