"""Tests of the simulated detector physics (fields, drift, pulse library) and electronics.

A coarse grid (0.5 mm field, 1 mm library) keeps the library build to a few seconds; the
physics checks (weighting potential, depletion, rise times, A/E of one- vs two-site events)
run on it.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import awkward as ak
import numpy as np
import pytest

from bege_psd.config import from_mapping
from bege_psd.errors import ConfigError, SimulationError
from bege_psd.sim import detector as det
from bege_psd.sim.config_detector import DetectorConfig, ElectronicsConfig
from bege_psd.sim.electronics import (
    FLAG_ENERGY_SATURATED,
    FLAG_INPUT_SATURATED,
    FLAG_PILEUP,
    PulseLibrary,
    digitize,
    noise_traces,
)

COARSE = DetectorConfig(field_grid_mm=0.5, library_grid_mm=1.0)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("libcache")


@pytest.fixture(scope="module")
def field() -> det.FieldSolution:
    return det.solve_fields(COARSE)


@pytest.fixture(scope="module")
def lib(cache_dir) -> PulseLibrary:
    return PulseLibrary.load_or_build(COARSE, cache_dir=cache_dir)


def jag(values: list[list[float]]) -> ak.Array:
    return ak.Array(values)


def one_site(lib: PulseLibrary, energy: float, r: float, z: float, seed: int = 0, **kw):
    return digitize(
        jag([[energy]]),
        jag([[r]]),
        jag([[z]]),
        lib,
        ElectronicsConfig(**kw),
        np.random.default_rng(seed),
        return_ideal=True,
    )


def max_current(ideal: np.ndarray) -> np.ndarray:
    d = np.diff(ideal, axis=1)
    k = np.ones(5) / 5
    return np.array([np.convolve(row, k, "valid").max() for row in d])


# ---------------------------------------------------------------------------------- config
def test_resolution_coefficients_match_the_paper_fit():
    cfg = ElectronicsConfig()
    a, b, c = cfg.resolution_coefficients
    # physics-data/NOTES.md section 4.2
    assert a == pytest.approx(0.62258, rel=1e-3)
    assert b == pytest.approx(1.66477e-3, rel=1e-3)
    assert c == pytest.approx(2.24791e-7, rel=1e-2)
    np.testing.assert_allclose(
        cfg.fwhm_kev(np.array([59.54, 661.66, 1332.49])), [0.85, 1.35, 1.80], rtol=1e-9
    )


def test_config_validation_names_the_problem():
    with pytest.raises(ConfigError, match="wrap_around_radius_mm"):
        DetectorConfig(pplus_radius_mm=20.0, wrap_around_radius_mm=15.0)
    with pytest.raises(ConfigError, match="multiple of field_grid_mm"):
        DetectorConfig(field_grid_mm=0.3)
    with pytest.raises(ConfigError, match="bias_v"):
        from_mapping(DetectorConfig, {"bias_v": -5.0}, where="detector")
    with pytest.raises(ConfigError, match="unknown configuration key"):
        from_mapping(ElectronicsConfig, {"preamp_rise": 30.0}, where="electronics")
    with pytest.raises(ConfigError, match="FWHM"):
        ElectronicsConfig(resolution_fwhm_kev=(0.85, 3.0, 0.85))
    cfg = from_mapping(
        ElectronicsConfig, {"resolution_fwhm_kev": [0.9, 1.4, 1.9], "polarity": "negative"}
    )
    assert cfg.resolution_fwhm_kev == (0.9, 1.4, 1.9)


# ---------------------------------------------------------------------------------- fields
def test_weighting_potential_boundaries_and_range(field):
    w = field.weighting
    assert np.all(w[field.kind == det._PPLUS] == 1.0)
    assert np.all(w[field.kind == det._NPLUS] == 0.0)
    assert w.min() >= -1e-9
    assert w.max() <= 1.0 + 1e-9
    # the weighting potential is concentrated near the contact: W falls off along the axis
    axis = w[0, :]
    assert np.all(np.diff(axis) < 1e-9)
    assert axis[len(axis) // 2] < 0.25


def test_full_depletion_at_default_bias(field):
    assert field.depleted
    assert 500.0 < field.depletion_voltage_v < COARSE.bias_v
    assert field.potential_v.min() >= -1e-6
    assert 2.0 < field.capacitance_pf < 40.0


def test_depletion_voltage_is_the_depletion_threshold(field):
    vdep = field.depletion_voltage_v
    below = det.solve_fields(dataclasses.replace(COARSE, bias_v=0.9 * vdep))
    above = det.solve_fields(dataclasses.replace(COARSE, bias_v=1.1 * vdep))
    assert not below.depleted
    assert above.depleted
    with pytest.raises(SimulationError, match="not fully depleted"):
        PulseLibrary.build(dataclasses.replace(COARSE, bias_v=0.9 * vdep), field=below)


def test_field_solution_converges_with_grid(field):
    finer = det.solve_fields(dataclasses.replace(COARSE, field_grid_mm=0.25))
    assert finer.depletion_voltage_v == pytest.approx(field.depletion_voltage_v, rel=0.05)
    assert finer.capacitance_pf == pytest.approx(field.capacitance_pf, rel=0.05)


def test_sor_kernel_matches_python_twin():
    cfg = DetectorConfig(
        radius_mm=6.0,
        height_mm=4.0,
        pplus_radius_mm=1.0,
        wrap_around_radius_mm=3.0,
        field_grid_mm=0.5,
        library_grid_mm=1.0,
    )
    kind = det._node_kinds(13, 9, 0.5, cfg)
    rhs = np.full((13, 9), 0.01)
    v1 = np.where(kind == det._NPLUS, 1.0, 0.0)
    v2 = v1.copy()
    n1 = det._sor_kernel(v1, kind, rhs, 1.5, 1e-10, 10000)
    n2 = det._sor_kernel.py_func(v2, kind, rhs, 1.5, 1e-10, 10000)
    assert n1 == n2 > 0
    np.testing.assert_allclose(v1, v2, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------- drift
def test_drift_velocity_matches_adl_table():
    # physics-data/NOTES.md section 3.1 (mm/ns), <100>/<111> averaged
    v = det.drift_velocity_mm_per_ns(np.array([1000.0, 3000.0]), "h")
    np.testing.assert_allclose(v, [(0.094 + 0.073) / 2, (0.106 + 0.090) / 2], rtol=0.03)
    ve = det.drift_velocity_mm_per_ns(1000.0, "e")
    assert float(ve) == pytest.approx((0.113 + 0.088) / 2, rel=0.03)
    for e in (50.0, 700.0, 5000.0):
        assert det._speed(e, det._ADL2006, 2) == pytest.approx(
            float(det.drift_velocity_mm_per_ns(e, "h")), rel=1e-12
        )


def test_drift_signal_shockley_ramo(field):
    t, q, th, te = det.drift_signal(field, COARSE, 25.0, 20.0)
    assert q[0] == pytest.approx(0.0, abs=1e-9)
    assert q[-1] == pytest.approx(1.0, abs=1e-9)
    assert 200.0 < th < 1000.0
    assert 0 < te < th  # electrons reach the nearby n+ surface first
    # holes dominate: most of the charge is induced in the last part of the hole drift
    assert q[np.searchsorted(t, 0.5 * th)] < 0.3


def test_library_pulses_and_rise_times(lib):
    final = lib.pulses[:, -1]
    np.testing.assert_allclose(final, 1.0, atol=1e-4)
    assert lib.t_collect_ns.reshape(lib.nr, lib.nz)[0, 0] == 0.0
    rt = lib.risetimes_ns(30.0)
    rr, zz = np.meshgrid(lib.r_mm, lib.z_mm, indexing="ij")
    active = det.charge_collection_efficiency(rr, zz, COARSE) > 0
    x = rt[active]
    w = (rr + 0.25 * lib.dr_mm)[active]  # volume weight of a ring
    order = np.argsort(x)
    cw = np.cumsum(w[order]) / w.sum()
    median = x[order][np.searchsorted(cw, 0.5)]
    assert 200.0 <= median <= 450.0
    inside = w[(x >= 100.0) & (x <= 700.0)].sum() / w.sum()
    assert inside >= 0.95


def test_library_cache_roundtrip_and_rebuild(tmp_path, caplog):
    cfg = dataclasses.replace(COARSE, library_grid_mm=2.0)
    a = PulseLibrary.load_or_build(cfg, cache_dir=tmp_path)
    files = list(tmp_path.glob("pulse_library_*.npz"))
    assert len(files) == 1
    assert PulseLibrary.config_hash(cfg) in files[0].name
    b = PulseLibrary.load_or_build(cfg, cache_dir=tmp_path)
    np.testing.assert_array_equal(a.pulses, b.pulses)
    assert b.depletion_voltage_v == a.depletion_voltage_v
    assert PulseLibrary.config_hash(
        dataclasses.replace(cfg, bias_v=3900.0)
    ) != PulseLibrary.config_hash(cfg)
    with pytest.raises(SimulationError, match="built for configuration hash"):
        PulseLibrary.load(files[0], dataclasses.replace(cfg, bias_v=3900.0))
    files[0].write_bytes(b"not a library")
    with pytest.raises(SimulationError, match="unreadable"):
        PulseLibrary.load(files[0], cfg)
    with caplog.at_level(logging.WARNING, logger="bege_psd.sim.detector"):
        c = PulseLibrary.load_or_build(cfg, cache_dir=tmp_path)
    assert "rebuilding" in caplog.text
    np.testing.assert_array_equal(a.pulses, c.pulses)


# ---------------------------------------------------------------------------------- electronics
def test_digitize_output_contract_and_determinism(lib):
    rng = np.random.default_rng(5)
    n = 300
    nd = rng.integers(1, 5, n)
    m = int(nd.sum())
    e = ak.unflatten(rng.uniform(20, 700, m), nd)
    r = ak.unflatten(40 * np.sqrt(rng.uniform(0, 1, m)), nd)
    z = ak.unflatten(rng.uniform(0, 30, m), nd)
    a = digitize(e, r, z, lib, ElectronicsConfig(), np.random.default_rng(1))
    b = digitize(e, r, z, lib, ElectronicsConfig(), np.random.default_rng(1))
    c = digitize(e, r, z, lib, ElectronicsConfig(), np.random.default_rng(2))
    assert a["waveform"].shape == (n, 366)
    assert a["waveform"].dtype == np.int16
    assert a["energy_adc"].dtype == np.uint16
    assert a["energy_collected_kev"].dtype == np.float64
    assert a["flags"].dtype == np.uint32
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["waveform"], c["waveform"])
    # collected energy never exceeds deposited, and the trapezoid energy follows it
    assert np.all(a["energy_collected_kev"] <= ak.to_numpy(ak.sum(e, axis=1)) + 1e-9)
    trig = a["triggered"]
    diff = a["energy_adc"][trig] * 0.2 - a["energy_collected_kev"][trig]
    assert np.abs(diff).max() < 10.0


def test_dead_layer_and_empty_events(lib):
    out = digitize(
        jag([[500.0], [], [500.0]]),
        jag([[39.9], [], [10.0]]),
        jag([[15.0], [], [29.8]]),
        lib,
        ElectronicsConfig(),
        np.random.default_rng(0),
    )
    np.testing.assert_array_equal(out["energy_collected_kev"], [0.0, 0.0, 0.0])
    assert not out["triggered"].any()
    assert out["waveform"].shape == (3, 366)


def test_transition_layer_collects_partially(cache_dir):
    cfg = dataclasses.replace(COARSE, transition_layer_mm=1.0)
    eff = det.charge_collection_efficiency(
        np.array([39.9, 39.0, 38.8, 20.0]), np.array([15.0] * 4), cfg
    )
    np.testing.assert_allclose(eff, [0.0, 0.3, 0.5, 1.0], atol=1e-9)


def test_trigger_and_window(lib):
    cfg = ElectronicsConfig()
    out = one_site(lib, 1000.0, 30.0, 25.0)
    ideal = out["ideal_kev"][0]
    n_pre = round(cfg.pretrigger_ns / cfg.sample_period_ns)
    # the 10 % crossing sits at the trigger sample (within the jitter and one clock tick)
    cross = np.argmax(ideal >= 0.1 * ideal.max())
    assert abs(cross - n_pre) <= 2
    assert ideal.max() == pytest.approx(1000.0, rel=0.03)  # < 3 % preamp decay in the window
    wf = out["waveform"][0].astype(float)
    assert abs(np.mean(wf[:50]) - cfg.baseline_adc) < 5
    assert out["trigger_delay_ns"][0] > 200.0
    neg = one_site(lib, 1000.0, 30.0, 25.0, polarity="negative", baseline_adc=14000.0)
    assert neg["waveform"][0].min() < 14000 - 0.9 * 1000.0 / cfg.waveform_kev_per_adc


def test_two_site_event_has_lower_current_per_energy(lib):
    # bulk positions: within a few mm of the p+ contact a single site has A/E *above* the band
    # (the weighting field is strong along the whole short hole path), as in a real BEGe
    cases = [
        ((30.0, 25.0), (10.0, 20.0)),
        ((35.0, 10.0), (5.0, 28.0)),
        ((20.0, 15.0), (38.0, 28.0)),
    ]
    lower = 0
    for (r1, z1), (r2, z2) in cases:
        single1 = one_site(lib, 1000.0, r1, z1)["ideal_kev"]
        single2 = one_site(lib, 1000.0, r2, z2)["ideal_kev"]
        double = digitize(
            jag([[500.0, 500.0]]),
            jag([[r1, r2]]),
            jag([[z1, z2]]),
            lib,
            ElectronicsConfig(),
            np.random.default_rng(0),
            return_ideal=True,
        )["ideal_kev"]
        a1, a2, ad = max_current(single1)[0], max_current(single2)[0], max_current(double)[0]
        lower += ad < 0.8 * min(a1, a2)
    assert lower == len(cases)


def test_two_site_population_has_lower_a_over_e(lib):
    rng = np.random.default_rng(11)
    n = 2000
    r1 = 40 * np.sqrt(rng.uniform(0.0, 0.95, n))
    z1 = rng.uniform(1.0, 29.0, n)
    s = digitize(
        ak.unflatten(np.full(n, 1000.0), 1),
        ak.unflatten(r1, 1),
        ak.unflatten(z1, 1),
        lib,
        ElectronicsConfig(),
        rng,
        return_ideal=True,
    )
    r2 = 40 * np.sqrt(rng.uniform(0.0, 0.95, (n, 2)))
    z2 = rng.uniform(1.0, 29.0, (n, 2))
    sep = np.hypot(r2[:, 0] - r2[:, 1], z2[:, 0] - z2[:, 1])
    d = digitize(
        ak.unflatten(np.full(2 * n, 500.0), 2),
        ak.unflatten(r2.ravel(), 2),
        ak.unflatten(z2.ravel(), 2),
        lib,
        ElectronicsConfig(),
        rng,
        return_ideal=True,
    )
    a_s = max_current(s["ideal_kev"]) / s["energy_collected_kev"]
    a_d = max_current(d["ideal_kev"]) / d["energy_collected_kev"]
    cut = np.percentile(a_s, 10)  # 90 % single-site acceptance
    far = sep > 10.0
    assert np.mean(a_d[far] > cut) < 0.35
    assert np.median(a_d) < 0.9 * np.median(a_s)


def test_energy_resolution_matches_model(lib):
    rng = np.random.default_rng(3)
    n = 4000
    cfg = ElectronicsConfig()
    out = digitize(
        ak.unflatten(np.full(n, 1332.49), 1),
        ak.unflatten(np.full(n, 20.0), 1),
        ak.unflatten(np.full(n, 15.0), 1),
        lib,
        cfg,
        rng,
    )
    e = out["energy_adc"] * cfg.energy_kev_per_channel
    sigma = 1.80 / 2.3548
    assert np.std(e) == pytest.approx(sigma, rel=0.06)
    assert np.mean(e) == pytest.approx(1332.49, abs=0.05)


def test_noise_calibration_reproduces_electronic_resolution():
    cfg = ElectronicsConfig()
    tr = noise_traces(400, 2000, cfg, np.random.default_rng(4)).astype(np.float64)
    k = round(cfg.trapezoid_rise_us * 1000 / cfg.sample_period_ns)
    g = round(cfg.trapezoid_flat_us * 1000 / cfg.sample_period_ns)
    c = np.cumsum(np.pad(tr, ((0, 0), (1, 0))), axis=1)
    mean_lo = (c[:, k] - c[:, 0]) / k
    mean_hi = (c[:, 2 * k + g] - c[:, k + g]) / k
    sigma_trap = np.std(mean_hi - mean_lo)
    a = cfg.resolution_coefficients[0]
    assert sigma_trap == pytest.approx(math.sqrt(a) / 2.3548, rel=0.08)
    # per-sample baseline noise is what a spectroscopist would see: ~1-2 keV
    assert 0.5 < np.std(tr) < 3.0


def test_saturation_and_pileup_flags(lib):
    out = digitize(
        jag([[1000.0], [3600.0], [7000.0]]),
        jag([[20.0]] * 3),
        jag([[15.0]] * 3),
        lib,
        ElectronicsConfig(),
        np.random.default_rng(0),
        pileup=np.array([True, False, False]),
    )
    f = out["flags"]
    assert f[0] == FLAG_PILEUP
    assert f[1] & FLAG_INPUT_SATURATED
    assert f[1] & FLAG_ENERGY_SATURATED
    assert out["energy_adc"][2] == 2**15 - 1
    assert f[2] & FLAG_ENERGY_SATURATED
    assert out["waveform"][1].max() == 2**14 - 1


def test_bad_input_names_event_and_deposit(lib):
    cfg = ElectronicsConfig()
    rng = np.random.default_rng(0)
    with pytest.raises(SimulationError, match=r"event 1, deposit 1: r_mm"):
        digitize(
            jag([[1.0], [1.0, 2.0]]),
            jag([[1.0], [1.0, 45.0]]),
            jag([[1.0], [1.0, 2.0]]),
            lib,
            cfg,
            rng,
        )
    with pytest.raises(SimulationError, match=r"event 0, deposit 0: energy"):
        digitize(jag([[np.nan]]), jag([[1.0]]), jag([[1.0]]), lib, cfg, rng)
    with pytest.raises(SimulationError, match="same structure"):
        digitize(jag([[1.0], [1.0]]), jag([[1.0], [1.0, 2.0]]), jag([[1.0], [1.0]]), lib, cfg, rng)
    with pytest.raises(SimulationError, match="pileup mask"):
        digitize(
            jag([[1.0]]), jag([[1.0]]), jag([[1.0]]), lib, cfg, rng, pileup=np.array([True, False])
        )


def test_window_matches_numpy_reference(lib):
    """The numba window fill equals a plain-numpy evaluation of the aligned bilinear model."""
    cfg = ElectronicsConfig()
    e, r, z = [700.0, 300.0], [22.3, 7.7], [13.1, 26.4]
    out = digitize(
        jag([e]), jag([r]), jag([z]), lib, cfg, np.random.default_rng(9), return_ideal=True
    )
    table = lib.filtered(cfg.preamp_rise_ns).astype(np.float64)
    n_pre = round(cfg.pretrigger_ns / cfg.sample_period_ns)
    t = out["trigger_delay_ns"][0] + (np.arange(cfg.n_samples) - n_pre) * cfg.sample_period_ns
    x = np.zeros_like(t)
    for ek, rk, zk in zip(e, r, z, strict=True):
        fx, fz = rk / lib.dr_mm, zk / lib.dz_mm
        i, j = int(fx), int(fz)
        fx, fz = fx - i, fz - j
        nodes = [
            (i, j, (1 - fx) * (1 - fz)),
            (i + 1, j, fx * (1 - fz)),
            (i, j + 1, (1 - fx) * fz),
            (i + 1, j + 1, fx * fz),
        ]
        t_coll = sum(w * lib.t_collect_ns[a * lib.nz + b] for a, b, w in nodes)
        m = (t - t_coll) / lib.dt_ns + lib.align_index
        grid = np.arange(table.shape[1])
        for a, b, w in nodes:
            x += ek * w * np.interp(m, grid, table[a * lib.nz + b], left=0.0)
    alpha = math.exp(-cfg.sample_period_ns / (cfg.preamp_decay_us * 1000))
    y = np.empty_like(x)
    y[0] = x[0]
    for s in range(1, len(x)):
        y[s] = alpha * y[s - 1] + x[s] - x[s - 1]
    np.testing.assert_allclose(out["ideal_kev"][0], y, atol=1e-6 * 1000)


def test_transition_layer_pulses_are_slow(lib):
    """A deposit in the transition layer is partly collected and arrives late: low A/E, long rise."""
    cfg = ElectronicsConfig()
    tl = dataclasses.replace(COARSE, transition_layer_mm=0.6, transition_delay_ns=1000.0)
    lib_tl = PulseLibrary(
        tl,
        lib.pulses,
        lib.t_collect_ns,
        lib.t_electron_ns,
        lib.nr,
        lib.nz,
        lib.dt_ns,
        lib.align_index,
        lib.depletion_voltage_v,
        lib.capacitance_pf,
    )
    depth = tl.dead_layer_mm + 0.3  # half-way through the transition layer
    r_surf, z = 40.0 - depth, 15.0
    surf = digitize(
        jag([[1000.0]]),
        jag([[r_surf]]),
        jag([[z]]),
        lib_tl,
        cfg,
        np.random.default_rng(0),
        return_ideal=True,
    )
    bulk = digitize(
        jag([[1000.0]]),
        jag([[38.0]]),
        jag([[z]]),
        lib_tl,
        cfg,
        np.random.default_rng(0),
        return_ideal=True,
    )
    assert surf["energy_collected_kev"][0] == pytest.approx(500.0, rel=1e-6)
    assert bulk["energy_collected_kev"][0] == pytest.approx(1000.0)
    assert surf["triggered"][0]
    a_surf = max_current(surf["ideal_kev"])[0] / surf["energy_collected_kev"][0]
    a_bulk = max_current(bulk["ideal_kev"])[0] / bulk["energy_collected_kev"][0]
    assert a_surf < 0.5 * a_bulk

    def rise(x: np.ndarray) -> float:
        x = x / x.max()
        return float(np.argmax(x >= 0.9) - np.argmax(x >= 0.1)) * cfg.sample_period_ns

    assert rise(surf["ideal_kev"][0]) > 1.5 * rise(bulk["ideal_kev"][0])
    np.testing.assert_allclose(
        det.transition_delay_ns(np.array([r_surf, 38.0]), np.array([z, z]), tl), [250.0, 0.0]
    )


def test_bulk_single_sites_have_nearly_constant_a_over_e(lib):
    """The BEGe funnel: away from the p+ contact every SSE has about the same current maximum."""
    rng = np.random.default_rng(21)
    n = 1500
    r = 40 * np.sqrt(rng.uniform(0.0, 0.95, n))
    z = rng.uniform(2.0, 28.0, n)
    far = np.hypot(r, z) > 18.0
    r, z = r[far], z[far]
    out = digitize(
        ak.unflatten(np.full(r.size, 1000.0), 1),
        ak.unflatten(r, 1),
        ak.unflatten(z, 1),
        lib,
        ElectronicsConfig(),
        rng,
        return_ideal=True,
    )
    a = max_current(out["ideal_kev"]) / out["energy_collected_kev"]
    p5, p50, p95 = np.percentile(a, [5, 50, 95])
    assert (p95 - p5) / p50 < 0.12


def test_library_build_with_progress_bar(tmp_path):
    cfg = dataclasses.replace(COARSE, library_grid_mm=4.0)
    lib = PulseLibrary.load_or_build(cfg, cache_dir=tmp_path, progress=True)
    assert lib.pulses.shape[0] == lib.nr * lib.nz == 11 * 9
    summary = lib.summary()
    assert summary["hole_drift_max_ns"] > summary["hole_drift_min_ns"] >= 0.0


def test_capacitance_energy_method_agrees_with_gauss_flux(field):
    """C = eps * int |grad W|^2 dV agrees with the charge eps * flux(grad W) on the contacts."""
    h = COARSE.field_grid_mm
    w = field.weighting
    r = np.arange(w.shape[0]) * h
    ring = np.where(r > 0, 2 * np.pi * r * h, np.pi * (h / 2) ** 2)
    eps_pf_per_mm = COARSE.eps_r * 8.8541878128e-12 * 1e12 * 1e-3
    on_pplus = field.kind[:, 0] == det._PPLUS
    on_bottom_nplus = field.kind[:, 0] == det._NPLUS
    q_pplus = eps_pf_per_mm * np.sum(((w[:, 0] - w[:, 1]) / h * ring)[on_pplus])
    q_nplus = eps_pf_per_mm * (
        np.sum((w[-2, :] - w[-1, :]) / h * 2 * np.pi * COARSE.radius_mm * h)
        + np.sum((w[:, -2] - w[:, -1]) / h * ring)
        + np.sum(((w[:, 1] - w[:, 0]) / h * ring)[on_bottom_nplus])
    )
    assert q_pplus == pytest.approx(q_nplus, rel=0.08)
    assert field.capacitance_pf == pytest.approx(q_nplus, rel=0.12)


def test_pileup_partner_adds_the_neighbour_pulse(lib):
    cfg = ElectronicsConfig()
    e, r, z = jag([[1000.0], [600.0]]), jag([[25.0], [15.0]]), jag([[20.0], [25.0]])
    alone = digitize(e, r, z, lib, cfg, np.random.default_rng(0), return_ideal=True)
    piled = digitize(
        e,
        r,
        z,
        lib,
        cfg,
        np.random.default_rng(0),
        return_ideal=True,
        pileup_partner=np.array([1, -1]),
        pileup_delay_ns=np.array([600.0, np.nan]),
    )
    assert piled["flags"][0] == FLAG_PILEUP
    assert piled["flags"][1] == 0
    np.testing.assert_array_equal(piled["ideal_kev"][1], alone["ideal_kev"][1])
    extra = piled["ideal_kev"][0] - alone["ideal_kev"][0]
    # the neighbour arrives 600 ns after this event's interaction: nothing before, ~600 keV after
    t = (
        alone["trigger_delay_ns"][0]
        + (np.arange(cfg.n_samples) - round(cfg.pretrigger_ns / 4.0)) * 4.0
    )
    assert np.all(np.abs(extra[t < 570.0]) < 1e-6)  # (the cloud smearing starts a few ns early)
    assert extra[-1] == pytest.approx(600.0, rel=0.03)
    # the trigger and the energy are the event's own
    assert piled["trigger_delay_ns"][0] == alone["trigger_delay_ns"][0]
    assert piled["energy_adc"][0] == alone["energy_adc"][0]
    with pytest.raises(SimulationError, match="event 1: pileup_partner = 1"):
        digitize(
            e,
            r,
            z,
            lib,
            cfg,
            np.random.default_rng(0),
            pileup_partner=np.array([-1, 1]),
            pileup_delay_ns=np.zeros(2),
        )
    with pytest.raises(SimulationError, match="together"):
        digitize(e, r, z, lib, cfg, np.random.default_rng(0), pileup_partner=np.array([-1, -1]))
