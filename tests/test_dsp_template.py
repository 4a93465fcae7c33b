"""The SSE template (build, L1, save/load) and the ``bege-psd features`` command."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot

from bege_psd.dsp import DSPConfig, SSETemplate, features
from bege_psd.dsp.template import aligned_normalised_pulses
from bege_psd.dsp.testing import synthetic_pulses
from bege_psd.errors import ModelMismatchError, SelectionError


def _events(wf, energy_adc=3000, attrs=None):
    n = len(wf)
    arr = ak.zip(
        {
            "energy_adc": np.full(n, energy_adc, dtype=np.uint16),
            "flags": np.zeros(n, dtype=np.uint32),
            "waveform": ak.unflatten(np.asarray(wf, dtype=np.int16).ravel(), np.shape(wf)[1]),
        },
        depth_limit=1,
    )
    return ak.Array(arr, attrs=attrs or {"sample_period_ns": 4.0, "polarity": "positive"})


def test_l1_of_template_to_itself_is_zero():
    one, _ = synthetic_pulses(1, seed=3)
    ev = _events(np.repeat(one, 12, axis=0))
    energy = np.full(12, 1592.0)
    tmpl = SSETemplate.build(ev, energy)
    assert tmpl.provenance["n_used"] == 12
    np.testing.assert_allclose(tmpl.l1(tmpl.values), [0.0], atol=0)
    f = features(ev, template=tmpl)
    np.testing.assert_allclose(ak.to_numpy(f["l1_to_sse"]), 0.0, atol=1e-7)
    # the template is the normalised pulse: 0.5 at its 50 % crossing, about 1 on the flat top
    assert tmpl.values[tmpl.pre_samples] == pytest.approx(0.5, abs=1e-12)
    assert tmpl.values[-1] == pytest.approx(1.0, abs=0.03)  # max of a noisy trace, 50 us decay


def test_template_from_window_and_mse_distance():
    sse, _ = synthetic_pulses(300, seed=4, n_sites=1)
    mse, _ = synthetic_pulses(300, seed=5, n_sites=2)
    ev = _events(np.vstack([sse, mse]))
    rng = np.random.default_rng(0)
    energy = np.concatenate([rng.uniform(1590, 1595, 300), rng.uniform(2000, 2100, 300)])
    tmpl = SSETemplate.build(ev, energy, window_kev=(1590.0, 1595.0))
    assert tmpl.provenance["n_in_window"] == 300
    assert tmpl.provenance["window_kev"] == [1590.0, 1595.0]
    f = features(ev, template=tmpl)
    l1 = ak.to_numpy(f["l1_to_sse"])
    assert np.isfinite(l1).all()
    assert np.median(l1[300:]) > 2 * np.median(l1[:300])
    # the kernel's L1 equals SSETemplate.l1 on the aligned pulses
    pulses = aligned_normalised_pulses(
        ev[:20], pre_samples=tmpl.pre_samples, length=tmpl.values.size
    )
    np.testing.assert_allclose(l1[:20], tmpl.l1(pulses), rtol=1e-5)
    with pytest.raises(SelectionError, match="clean events"):
        SSETemplate.build(ev, energy, window_kev=(3000.0, 3001.0))


def test_save_load_roundtrip_and_mismatch(tmp_path):
    sse, _ = synthetic_pulses(40, seed=6)
    ev = _events(sse)
    tmpl = SSETemplate.build(ev, np.full(40, 1592.0))
    path = tmpl.save(tmp_path / "sse.npz")
    meta = json.loads((tmp_path / "sse.json").read_text())
    assert meta["provenance"]["n_used"] == 40
    assert meta["pre_samples"] == tmpl.pre_samples
    back = SSETemplate.load(path)
    np.testing.assert_array_equal(back.values, tmpl.values)
    assert back.pre_samples == tmpl.pre_samples
    assert back.sample_period_ns == 4.0
    assert back.provenance["dsp_config"]["smooth_window"] == 19
    a = ak.to_numpy(features(ev, template=tmpl)["l1_to_sse"])
    b = ak.to_numpy(features(ev, template=path)["l1_to_sse"])
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ModelMismatchError, match=r"2\.0 ns"):
        features(_events(sse, attrs={"sample_period_ns": 2.0}), template=tmpl)
    with pytest.raises(ModelMismatchError, match="smooth_window"):
        features(ev, DSPConfig(smooth_window=21), template=tmpl)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ModelMismatchError, match="expected arrays 'values' and 'metadata'"):
        SSETemplate.load(tmp_path / "other.npz")
    with pytest.raises(ModelMismatchError, match="does not exist"):
        SSETemplate.load(tmp_path / "missing.npz")


def test_features_cli_writes_aligned_tree(tmp_path):
    from bege_psd import io
    from bege_psd.cli import main

    wf, _amp = synthetic_pulses(250, seed=7, n_sites=1)
    wf2, _ = synthetic_pulses(50, seed=8, n_sites=2)
    allwf = np.vstack([wf, wf2])
    n = len(allwf)
    events = ak.zip(
        {
            "board": np.zeros(n, np.uint16),
            "channel": np.zeros(n, np.uint16),
            "timestamp_ps": np.arange(n, dtype=np.uint64) * 1_000_000,
            "energy_adc": np.full(n, 3000, np.uint16),
            "flags": np.where(np.arange(n) == 5, 0x8000, 0).astype(np.uint32),
            "waveform": ak.unflatten(allwf.ravel(), allwf.shape[1]),
        },
        depth_limit=1,
    )
    run = io.write_run(tmp_path / "run", events, io.RunMetadata(polarity="positive"))
    tmpl = SSETemplate.build(_events(wf), np.full(len(wf), 1592.0))
    tpath = tmpl.save(tmp_path / "sse.npz")
    out = tmp_path / "feat.root"
    rc = main(
        ["features", str(run), "--out", str(out), "--template", str(tpath), "--step-size", "70"]
    )
    assert rc == 0
    with uproot.open(out) as f:
        t = f["Features"]
        assert t.num_entries == n
        arrays = t.arrays(library="np")
    direct = features(io.read(run), template=tmpl)
    for name in ("risetime_ns", "l1_to_sse", "n_peaks_d2", "quality", "a_over_e"):
        np.testing.assert_array_equal(arrays[name], ak.to_numpy(direct[name]))
    assert arrays["quality"][5] & 32  # DAQ_PILEUP from the flags
    assert arrays["n_peaks_d2"].dtype == np.int32
    assert arrays["quality"].dtype == np.uint32
    assert not list(tmp_path.glob(".feat.root*"))  # no partial file left
