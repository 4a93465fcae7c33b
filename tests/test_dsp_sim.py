"""dsp features on pulses of the physics simulator (bege_psd.sim): kernels equal the scipy
reference, and one-site vs two-site deposits of the same energy separate as they should."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from bege_psd.dsp import features
from bege_psd.dsp import twins as T

sim_el = pytest.importorskip("bege_psd.sim.electronics")
sim_cfg = pytest.importorskip("bege_psd.sim.config_detector")

# the coarse grid the simulator's own tests use: the library builds in seconds
COARSE = sim_cfg.DetectorConfig(field_grid_mm=0.5, library_grid_mm=1.0)


@pytest.fixture(scope="module")
def sim_events(tmp_path_factory):
    lib = sim_el.PulseLibrary.load_or_build(COARSE, cache_dir=tmp_path_factory.mktemp("lib"))
    rng = np.random.default_rng(7)
    n = 150
    e_tot = 1500.0
    r1, z1 = rng.uniform(2, 33, n), rng.uniform(3, 27, n)
    r2, z2 = rng.uniform(2, 33, n), rng.uniform(3, 27, n)
    frac = rng.uniform(0.3, 0.7, n)
    edep = ak.Array([[e_tot] for _ in range(n)] + [[e_tot * f, e_tot * (1 - f)] for f in frac])
    rr = ak.Array([[a] for a in r1] + [[a, b] for a, b in zip(r1, r2, strict=True)])
    zz = ak.Array([[a] for a in z1] + [[a, b] for a, b in zip(z1, z2, strict=True)])
    out = sim_el.digitize(edep, rr, zz, lib, sim_cfg.ElectronicsConfig(), rng)
    cfg = sim_cfg.ElectronicsConfig()
    events = ak.zip(
        {
            "energy_adc": out["energy_adc"],
            "flags": out["flags"],
            "waveform": ak.unflatten(out["waveform"].ravel(), out["waveform"].shape[1]),
        },
        depth_limit=1,
    )
    period = getattr(cfg, "sample_period_ns", 4.0)
    return ak.Array(events, attrs={"sample_period_ns": period}), out, n


def test_kernels_equal_reference_on_simulated_pulses(sim_events):
    events, out, _ = sim_events
    f = features(events)
    pol = f.attrs["polarity"]
    sign = np.full(len(events), 1.0 if pol == "positive" else -1.0)
    ref = T.features_reference(
        out["waveform"],
        out["energy_adc"].astype(float),
        sign,
        sample_period_ns=f.attrs["sample_period_ns"],
    )
    for name in ("risetime_ns", "current_max", "a_over_e", "amplitude", "t0_ns"):
        a, b = ak.to_numpy(f[name]).astype(float), ref[name].astype(float)
        assert np.array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.nanmax(np.abs(b)))
    assert ak.to_numpy(f["n_peaks_d2"]).tolist() == ref["n_peaks_d2"].tolist()


def test_single_vs_two_site_simulated(sim_events):
    events, _, n = sim_events
    f = features(events)
    npk = ak.to_numpy(f["n_peaks_d2"])
    aoe = ak.to_numpy(f["a_over_e"])
    rt = ak.to_numpy(f["risetime_ns"])
    assert np.mean(npk[n:]) > np.mean(npk[:n])
    assert np.median(aoe[n:]) < np.median(aoe[:n])
    assert 50 < np.median(rt[:n]) < 1000  # ns: SSE rise times of a BEGe


@pytest.fixture(scope="module")
def th_run_with_truth(tmp_path_factory):
    """A small simulated 232Th run (coarse grid, as tests/test_sim_run.py) with its truth."""
    from bege_psd import io
    from bege_psd.config import from_mapping
    from bege_psd.sim import read_truth, simulate
    from bege_psd.sim.config import SimConfig
    from bege_psd.sim.run import truth_path

    config = from_mapping(SimConfig, {"detector": {"field_grid_mm": 0.5, "library_grid_mm": 2.0}})
    out = tmp_path_factory.mktemp("runs") / "th"
    simulate("th232", 4000, out, seed=11, config=config, cache_dir=tmp_path_factory.mktemp("c"))
    events = io.read(out)
    meta = io.read_metadata(out)
    truth = read_truth(truth_path(out, next((out / "RAW").glob("*.root")).name))
    energy_kev = ak.to_numpy(events["energy_adc"]) * meta.calibration[1]
    return events, energy_kev, ak.to_numpy(truth["n_sites"])


def test_n_peaks_single_site_counts_two_on_simulated_run(th_run_with_truth):
    """On a simulated run with truth: the median count of true single-site events above
    500 keV is 2 (one current pulse, two lobes of d2) and multi-site events count more on
    average; the default noise floor and prominence matter for both."""
    events, e, n_sites = th_run_with_truth
    npk = ak.to_numpy(features(events)["n_peaks_d2"])
    hi = e > 500.0
    sse, mse = npk[hi & (n_sites == 1)], npk[hi & (n_sites >= 2)]
    assert len(sse) > 100
    assert len(mse) > 100
    assert np.median(sse) == 2
    assert np.mean(sse == 2) > 0.6
    assert np.mean(mse) > np.mean(sse) + 0.2
    # below 500 keV the relative height alone (the authors' definition) counts noise wiggles
    from bege_psd.dsp import DSPConfig

    rel_only = DSPConfig(d2_peak_nsigma=0.0, d2_peak_prominence=0.0)
    npk_rel = ak.to_numpy(features(events, rel_only)["n_peaks_d2"])
    low = (e > 200.0) & (e < 500.0) & (n_sites == 1)
    assert low.sum() > 100
    assert np.median(npk[low]) == 2
    assert np.mean(npk_rel[low]) > np.mean(npk[low]) + 1.5
