"""End-to-end simulated runs: CoMPASS files + truth, on a coarse detector grid (fast)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import uproot

from bege_psd import io
from bege_psd.cli import main
from bege_psd.config import from_mapping
from bege_psd.errors import SimulationError
from bege_psd.sim import read_truth, simulate
from bege_psd.sim.config import SimConfig
from bege_psd.sim.run import classify, truth_path
from bege_psd.sim.transport import ELECTRON_MASS_KEV, Deposits

COARSE = {"detector": {"field_grid_mm": 0.5, "library_grid_mm": 2.0}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("libcache")


@pytest.fixture(scope="module")
def config():
    return from_mapping(SimConfig, COARSE)


@pytest.fixture(scope="module")
def th_run(tmp_path_factory, cache, config):
    out = tmp_path_factory.mktemp("runs") / "th"
    simulate("th232", 3000, out, seed=7, config=config, cache_dir=cache)
    return out


def _digest(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_run_layout_and_truth_alignment(th_run):
    events = io.read(th_run)
    meta = io.read_metadata(th_run)
    tfile = truth_path(th_run, "DataR_CH0@DT5725_1146_run.root")
    assert tfile.exists()
    truth = read_truth(tfile)
    assert len(events) == len(truth) == 3000
    ts = events["timestamp_ps"].to_numpy()
    assert ts.dtype == np.uint64
    assert np.all(np.diff(ts.astype(np.int64)) >= 0)
    assert meta.live_time_s > 0
    assert meta.calibration == pytest.approx((0.0, 0.2, 0.0))
    assert meta.sample_period_ns == 4.0
    assert meta.record_length == 366
    # every waveform has the full window
    assert set(np.unique(np.asarray([len(w) for w in events["waveform"][:50]]))) == {366}
    # the calibrated energy follows the true energy for events away from the dead layer
    e_cal = events["energy_adc"].to_numpy() * meta.calibration[1]
    e_true = truth["energy_true_kev"].to_numpy()
    r = truth["r_mm"]
    z = truth["z_mm"]
    import awkward as ak

    inner = ak.to_numpy(ak.all((r < 38.0) & (z > 2.0) & (z < 28.0), axis=1))
    diff = e_cal[inner] - e_true[inner]
    assert np.median(np.abs(diff)) < 1.0
    assert np.all(e_true > 0)
    with uproot.open(tfile) as f:
        assert f["Truth"].classname == "TTree"
        assert f["Truth"].num_entries == 3000


def test_truth_process_codes(th_run):
    truth = read_truth(truth_path(th_run, "DataR_CH0@DT5725_1146_run.root"))
    proc = truth["process"].to_numpy()
    e = truth["energy_true_kev"].to_numpy()
    e0 = truth["primary_energy_kev"].to_numpy()
    assert set(np.unique(proc)) <= {0, 1, 2, 3, 4}
    fep = proc == 1
    assert fep.sum() > 100
    np.testing.assert_allclose(e[fep], e0[fep], atol=2e-3)
    assert np.all(e[proc == 4] < e0[proc == 4])
    assert np.all(truth["n_sites"].to_numpy() >= 1)
    # 2614.5 keV full-energy events are mostly multi-site
    f2614 = fep & (np.abs(e - 2614.511) < 0.01)
    if f2614.sum() >= 10:
        assert np.mean(truth["n_sites"].to_numpy()[f2614] > 1) > 0.6


def test_same_seed_same_bytes(tmp_path, cache, config, th_run):
    again = tmp_path / "th"
    simulate("th232", 3000, again, seed=7, config=config, cache_dir=cache)
    assert _digest(again) == _digest(th_run)
    other = tmp_path / "th_other"
    simulate("th232", 3000, other, seed=8, config=config, cache_dir=cache)
    d = _digest(other)
    assert (
        d["RAW/DataR_CH0@DT5725_1146_run.root"]
        != _digest(th_run)["RAW/DataR_CH0@DT5725_1146_run.root"]
    )


def test_bin_run_and_cryoconite(tmp_path, cache, config):
    out = simulate(
        "cryoconite", 1500, tmp_path / "cryo", fmt="bin", seed=3, config=config, cache_dir=cache
    )
    events = io.read(out)
    truth = read_truth(truth_path(out, "DataR_CH0@DT5725_1146_run.BIN"))
    assert len(events) == len(truth) == 1500
    e0 = truth["primary_energy_kev"].to_numpy()
    # 661.66 keV photons of 137Cs and 46.5 keV of 210Pb are in a cryoconite spectrum
    assert np.any(np.abs(e0 - 661.655) < 0.01)
    assert np.any(np.abs(e0 - 46.539) < 0.01)


def test_pileup_flag_at_high_rate(tmp_path, cache):
    cfg = from_mapping(SimConfig, {**COARSE, "source": {"activity_bq": 1e5, "distance_mm": 0.0}})
    out = simulate("th232", 1000, tmp_path / "hot", seed=1, config=cfg, cache_dir=cache)
    flags = io.read(out)["flags"].to_numpy()
    pile = (flags & 0x8000) != 0
    assert 0.05 < pile.mean() < 1.0


def test_cli_simulate(tmp_path, cache):
    cfg = tmp_path / "sim.toml"
    cfg.write_text("[sim.detector]\nfield_grid_mm = 0.5\nlibrary_grid_mm = 2.0\n")
    rc = main(["-q", "simulate", "--source", "background", "--events", "200", "--out", str(tmp_path / "bg"),
               "--config", str(cfg), "--cache-dir", str(cache), "--seed", "2"])  # fmt: skip
    assert rc == 0
    assert len(io.read(tmp_path / "bg")) == 200


def test_bad_arguments(tmp_path, config, cache):
    with pytest.raises(SimulationError, match="th232"):
        simulate("co60", 10, tmp_path / "x", config=config, cache_dir=cache)
    with pytest.raises(SimulationError, match="n_events"):
        simulate("th232", 0, tmp_path / "x", config=config, cache_dir=cache)
    with pytest.raises(SimulationError, match="fmt"):
        simulate("th232", 10, tmp_path / "x", fmt="csv", config=config, cache_dir=cache)  # type: ignore[arg-type]


def test_classify_codes():
    """One event per process: FEP, SEP, DEP, partial, summing of two photons, X-ray escape."""
    e_prim = np.array([2614.5, 2614.5, 2614.5, 2614.5, 583.19, 2614.5, 100.0])
    event = np.array([0, 1, 2, 3, 4, 4, 5])
    edep = np.array(
        [
            2614.5,
            2614.5 - ELECTRON_MASS_KEV,
            2614.5 - 2 * ELECTRON_MASS_KEV,
            1000.0,
            583.19,
            5.0,
            100.0 - 9.876,
        ]
    )
    pair = np.array([False, True, True, False, False, False, False])
    dep = Deposits(
        np.zeros(7, np.int64),
        np.zeros(0),
        np.zeros(0),
        np.zeros(0),
        np.zeros(0),
        np.zeros(0, np.int64),
        edep,
        pair,
        np.zeros(7, np.int32),
    )
    proc, n_hit, e0 = classify(dep, e_prim, event, 6)
    np.testing.assert_array_equal(proc, [1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(n_hit, [1, 1, 1, 1, 2, 1])
    assert e0[4] == 583.19


def test_source_that_never_triggers_is_an_error(tmp_path, cache):
    cfg = from_mapping(
        SimConfig,
        {**COARSE, "electronics": {"trigger_threshold_kev": 5000.0}, "max_decays_per_chunk": 2000},
    )
    with pytest.raises(SimulationError, match="trigger_threshold_kev"):
        simulate("background", 10, tmp_path / "never", config=cfg, cache_dir=cache)
