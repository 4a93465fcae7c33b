"""Tests of bege_psd.select.aoe on synthetic A/E tables with a known energy dependence."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest

from bege_psd.config import from_mapping
from bege_psd.errors import ConfigError, ModelMismatchError, SelectionError
from bege_psd.select.aoe import (
    AoEConfig,
    AoESelector,
    net_peak_counts,
    net_survival,
    score_from_classifier,
    threshold_for_kept_fraction,
)
from bege_psd.select.base import Selector, load_selector

MU_A, MU_B = 0.02, 2e-7  # mu(E) = MU_A + MU_B E
P0, P1 = 1e-4, 64.0  # relative width^2 = P0 + P1 / E^2


def make_table(n: int = 60_000, seed: int = 1, *, dep: int = 3000) -> tuple[ak.Array, np.ndarray]:
    """Continuum with 45 % SSE; a DEP line (92 % SSE) on a flat background; a FEP (10 % SSE)."""
    rng = np.random.default_rng(seed)
    e = 300.0 + rng.exponential(900.0, n)
    e = e[e < 2700.0]
    sse = rng.random(e.size) < 0.45
    nf = 3000
    e = np.concatenate([e, rng.normal(1592.5, 0.9, dep), rng.normal(2614.5, 1.1, nf)])
    sse = np.concatenate([sse, rng.random(dep) < 0.92, rng.random(nf) < 0.10])
    mu = MU_A + MU_B * e
    rel = np.sqrt(P0 + P1 / e**2)
    aoe = np.where(sse, rng.normal(mu, rel * mu), mu * (1.0 - rng.uniform(0.02, 0.5, e.size)))
    return ak.zip({"energy_kev": e, "a_over_e": aoe.astype(np.float32)}), sse


@pytest.fixture(scope="module")
def data():
    return make_table()


@pytest.fixture(scope="module")
def fitted(data):
    return AoESelector().fit(data[0])


def test_protocol(fitted):
    assert isinstance(fitted, Selector)
    assert fitted.name == "aoe"


def test_energy_correction_recovers_truth(fitted):
    a, b = fitted.mu_coeffs
    assert a == pytest.approx(MU_A, rel=2e-3)
    assert b == pytest.approx(MU_B, rel=0.1)
    e = np.array([700.0, 1500.0, 2300.0])
    np.testing.assert_allclose(fitted.sigma(e), np.sqrt(P0 + P1 / e**2), rtol=0.08)
    assert fitted.training["n_slices"] >= 20


def test_classifier_is_standard_normal_for_sse(data, fitted):
    table, sse = data
    c = fitted.classifier(table)
    e = np.asarray(table.energy_kev)
    for lo, hi in [(600, 1200), (1200, 2300)]:
        sel = sse & (e >= lo) & (e < hi)
        assert abs(np.mean(c[sel])) < 0.1
        assert np.std(c[sel]) == pytest.approx(1.0, abs=0.08)


def test_score_mapping_low_aoe_is_mse_like(data, fitted):
    table, _ = data
    c = fitted.classifier(table)
    s = fitted.score(table)
    assert np.all((s >= 0) & (s <= 1))
    order = np.argsort(c)
    assert np.all(np.diff(s[order]) <= 0)  # score decreases with A/E
    np.testing.assert_allclose(s, 0.5 - np.arctan(c) / np.pi, rtol=1e-12)
    assert np.max(s) < 1.0  # no saturation: MSE events stay ordered


def test_dep_acceptance_working_point(data, fitted):
    table, sse = data
    e = np.asarray(table.energy_kev)
    cfg = fitted.config
    passed = fitted.sse_pass(table)
    acc, err = net_survival(e, passed, cfg.dep_window_kev, cfg.dep_sidebands_kev)
    assert acc == pytest.approx(0.90, abs=0.01)
    assert err < 0.02
    # the kept (MSE-like) mask is exactly the complement of the GERDA SSE cut
    kept = fitted.mask(table)
    assert np.array_equal(kept, ~passed)
    assert fitted.threshold == pytest.approx(score_from_classifier(fitted.cut_value))
    # the cut keeps SSE and removes MSE as designed
    assert np.mean(passed[sse]) > 0.9
    assert np.mean(passed[~sse]) < 0.1


def test_sse_cut_value_other_acceptance(data, fitted):
    table, _ = data
    e = np.asarray(table.energy_kev)
    c80 = fitted.sse_cut_value(table, 0.8)
    assert c80 > fitted.cut_value
    acc, _ = net_survival(
        e, fitted.sse_pass(table, c80), (1590.0, 1595.0), ((1564.0, 1576.0), (1598.0, 1612.0))
    )
    assert acc == pytest.approx(0.8, abs=0.012)


def test_kept_fraction_mode(data):
    table, _ = data
    cfg = AoEConfig(threshold_mode="kept_fraction", kept_fraction=0.4)
    sel = AoESelector(cfg).fit(table)
    e = np.asarray(table.energy_kev)
    in_range = (e >= 300) & (e <= 2700)
    assert np.mean(sel.mask(table)[in_range]) == pytest.approx(0.4, abs=1e-3)
    other = sel.with_kept_fraction(table, 0.25, (300.0, 700.0))
    r = (e >= 300) & (e <= 700)
    assert np.mean(other.mask(table)[r]) == pytest.approx(0.25, abs=1e-3)
    assert sel.threshold != other.threshold


def test_fixed_mode_and_with_threshold(data, fitted):
    sel = AoESelector(AoEConfig(threshold_mode="fixed", threshold=0.7)).fit(data[0])
    assert sel.threshold == 0.7
    assert fitted.with_threshold(0.3).threshold == 0.3
    assert fitted.threshold != 0.3


def test_net_peak_counts_exact():
    # 100 events in [10, 20]; flat background of 2 per unit in sidebands [0, 5] and [25, 30]
    e = np.concatenate([np.full(100, 15.0), np.linspace(0.1, 4.9, 10), np.linspace(25.1, 29.9, 10)])
    net, err = net_peak_counts(e, (10.0, 20.0), ((0.0, 5.0), (25.0, 30.0)))
    assert net == pytest.approx(100 - 20 * 10 / 10)
    assert err == pytest.approx(np.sqrt(100 + 20 * 1.0**2))
    keep = np.zeros(e.size, dtype=bool)
    keep[:40] = True
    s, ds = net_survival(e, keep, (10.0, 20.0), ((0.0, 5.0), (25.0, 30.0)))
    assert s == pytest.approx(40 / 80)
    assert 0 < ds < 0.2


def test_threshold_for_kept_fraction_counts_nan_in_denominator():
    s = np.array([0.9, 0.8, 0.7, np.nan, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    t = threshold_for_kept_fraction(s, 0.3)
    assert t == 0.7
    assert np.sum(s >= t) == 3
    with pytest.raises(SelectionError):
        threshold_for_kept_fraction(s, 0.0)


def test_nan_and_quality_flagged_events(data, fitted):
    table, _ = data
    aoe = ak.to_numpy(table.a_over_e).copy()
    aoe[:3] = np.nan
    q = np.zeros(aoe.size, dtype=np.uint32)
    q[3:5] = 1
    t2 = ak.with_field(ak.with_field(table, aoe, "a_over_e"), q, "quality")
    s = fitted.score(t2)
    assert np.isnan(s[:5]).all()
    assert np.isfinite(s[5:]).all()
    assert not fitted.mask(t2)[:5].any()
    assert not fitted.sse_pass(t2)[:5].any()


def test_no_dep_gives_clear_error():
    table, _ = make_table(30_000, dep=0)
    with pytest.raises(SelectionError, match=r"net DEP counts.*kept_fraction"):
        AoESelector().fit(table)


def test_too_few_events_for_slices():
    table, _ = make_table(500, dep=10)
    with pytest.raises(SelectionError, match="Compton slices"):
        AoESelector().fit(table)


def test_missing_field(data):
    with pytest.raises(SelectionError, match=r"no field 'aoe'.*a_over_e"):
        AoESelector(AoEConfig(aoe_field="aoe")).fit(data[0])


def test_config_validation():
    with pytest.raises(ConfigError, match="dep_acceptance"):
        from_mapping(AoEConfig, {"dep_acceptance": 1.5})
    with pytest.raises(ConfigError, match="threshold_mode"):
        from_mapping(AoEConfig, {"threshold_mode": "magic"})
    with pytest.raises(ConfigError, match="lower edge"):
        from_mapping(AoEConfig, {"compton_range_kev": [2000.0, 1000.0]})
    cfg = from_mapping(AoEConfig, {"dep_sidebands_kev": [[1570.0, 1580.0], [1600.0, 1610.0]]})
    assert cfg.dep_sidebands_kev == ((1570.0, 1580.0), (1600.0, 1610.0))


def test_save_load_roundtrip_and_mismatch(tmp_path, data, fitted):
    table, _ = data
    path = fitted.save(tmp_path / "aoe.json")
    loaded = load_selector(path)
    assert isinstance(loaded, AoESelector)
    np.testing.assert_array_equal(loaded.score(table), fitted.score(table))
    assert loaded.threshold == fitted.threshold
    assert loaded.cut_value == fitted.cut_value
    with pytest.raises(ModelMismatchError, match="another configuration"):
        AoESelector.load(path, config=AoEConfig(slice_width_kev=20.0))
    meta = json.loads(path.read_text())
    meta["bege_psd_version"] = "9.9"
    path.write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match=r"9\.9"):
        AoESelector.load(path)
    meta["bege_psd_version"] = fitted.to_dict()["bege_psd_version"]
    meta["mu_coeffs"] = [0.02]
    path.write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match="coefficients"):
        AoESelector.load(path)
    with pytest.raises(ModelMismatchError, match="no model metadata"):
        AoESelector.load(tmp_path / "missing.json")


def test_unfitted(data):
    with pytest.raises(SelectionError, match="not fitted"):
        AoESelector().score(data[0])
