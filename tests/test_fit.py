"""Tests of bege_psd.fit: model integrals, toy-MC coverage, multiplets, failure policy."""

from __future__ import annotations

import json

import hist
import numpy as np
import pytest
from scipy import integrate

from bege_psd.errors import FitError, FitQualityWarning
from bege_psd.fit import fit_peaks, make_model

TRUTH = {
    "area_0": 2000.0,
    "mu_0": 661.66,
    "step_0": 0.03,
    "sigma": 0.6,
    "bkg_lo": 46.0,
    "bkg_hi": 34.0,
}
EDGES = np.linspace(650.0, 674.0, 97)  # 0.25 keV bins


@pytest.mark.parametrize(
    "kind", ["gauss_step", "gauss_step_tail", "gauss_linear", "gauss_const", "gauss_edge"]
)
def test_cdf_is_antiderivative_of_pdf(kind: str) -> None:
    m = make_model(kind, 2, x_ref=100.0, half_width=7.0)
    rng = np.random.default_rng(3)
    vals = {"area": 500.0, "mu": 98.0, "step": 0.05}
    params = []
    for name in m.names:
        base = name.split("_")[0]
        if name.startswith("mu_"):
            params.append(98.0 + 3.0 * int(name[-1]))
        elif base in vals:
            params.append(vals[base] * (1 + 0.1 * rng.random()))
        elif name == "sigma":
            params.append(0.8)
        elif name == "tail_frac":
            params.append(0.2)
        elif name == "tail_tau":
            params.append(1.5)
        elif name.startswith("edge"):
            params.append(
                {"edge_height": 30.0, "edge_slope": 2.0, "edge_pos": 99.0, "edge_width": 1.5}[name]
            )
        elif name.startswith("bkg"):
            params.append(20.0 + 5 * rng.random())
        else:
            raise AssertionError(name)
    a, b = 90.0, 107.0
    numeric, _ = integrate.quad(
        lambda x: float(m.pdf(x, *params)), a, b, points=[98, 101], limit=200
    )
    cdf = m.cdf(np.array([a, b]), *params)
    assert cdf[1] - cdf[0] == pytest.approx(numeric, rel=1e-7)


def test_peak_component_integrates_to_net_area() -> None:
    m = make_model("gauss_step_tail", 1, x_ref=0.0)
    p = (1234.0, 0.0, 0.05, 1.0, 0.3, 2.0, 0.0, 0.0)
    peak, _ = integrate.quad(
        lambda x: float(m.components(x, *p)["peak_0"]), -80, 40, points=[0], limit=400
    )
    assert peak == pytest.approx(1234.0, rel=1e-6)
    assert m.peak_fraction_in(-80, 40, 0, *p) == pytest.approx(1.0, abs=1e-9)


def _toy_coverage(n_toys: int, seed: int) -> tuple[float, float, float]:
    model = make_model("gauss_step", 1, 662.0, 12.0)
    mu = model.expected(EDGES, *TRUTH.values())
    rng = np.random.default_rng(seed)
    pulls, cover = [], 0
    for _ in range(n_toys):
        n = rng.poisson(mu).astype(float)
        r = fit_peaks((n, EDGES), (650.0, 674.0), "gauss_step", [661.5])
        assert r.valid
        a = r.areas[0]
        pulls.append((a.area - TRUTH["area_0"]) / a.error)
        assert a.minos_lower is not None
        assert a.minos_upper is not None
        cover += a.minos_lower <= TRUTH["area_0"] <= a.minos_upper
    return float(np.mean(pulls)), float(np.std(pulls, ddof=1)), cover / n_toys


def test_toy_mc_coverage_500() -> None:
    """500 toys of Gaussian + step on a linear background: pulls and Minos 68 % coverage.

    Takes about 15 s on one core, so it runs in the default suite. The issue's coverage band
    65-71 % is +-1.4 sigma of the binomial spread for 500 toys (0.021), so some seeds fail by
    chance: with ``benchmarks/fit_coverage.py --toys 500`` seeds 1-10 passed all three
    criteria 9 times (seed 2: coverage 0.636); the seed here is fixed to 1, the first tried.
    """
    mean, width, coverage = _toy_coverage(500, seed=1)
    assert abs(mean) < 0.1
    assert 0.9 < width < 1.1
    assert 0.65 <= coverage <= 0.71


@pytest.mark.slow
def test_toy_mc_coverage_2000() -> None:
    mean, width, coverage = _toy_coverage(2000, seed=7)
    assert abs(mean) < 0.06
    assert 0.94 < width < 1.06
    assert 0.66 <= coverage <= 0.705


def test_doublet_dep_beside_ac228() -> None:
    """DEP 1592.5 keV beside 228Ac 1588.2 keV share one background."""
    edges = np.arange(1578.0, 1603.0 + 1e-9, 0.25)
    m = make_model("gauss_step", 2, 1590.5, 12.5)
    truth = (800.0, 1588.2, 0.01, 1500.0, 1592.5, 0.01, 0.9, 65.0, 55.0)
    rng = np.random.default_rng(11)
    n = rng.poisson(m.expected(edges, *truth)).astype(float)
    r = fit_peaks((n, edges), (1578.0, 1603.0), "gauss_step", [1588.2, 1592.5])
    assert r.valid
    for i, true_area in enumerate((800.0, 1500.0)):
        assert abs(r.areas[i].area - true_area) < 4 * r.areas[i].error
    assert abs(r.values["mu_1"] - 1592.5) < 4 * r.errors["mu_1"]
    assert r.cov("area_0", "area_1") == r.cov("area_1", "area_0")
    json.dumps(r.to_dict())


def test_hist_input_and_weighted_storage() -> None:
    model = make_model("gauss_linear", 1, 662.0, 12.0)
    mu = model.expected(EDGES, 3000.0, 661.66, 0.6, 30.0, 30.0)
    rng = np.random.default_rng(5)
    n = rng.poisson(mu)
    centres = 0.5 * (EDGES[1:] + EDGES[:-1])
    h = hist.Hist(hist.axis.Variable(EDGES), storage=hist.storage.Weight())
    h.fill(np.repeat(centres, n))
    r1 = fit_peaks(h, (650, 674), "gauss_linear", [661.7])
    hw = hist.Hist(hist.axis.Variable(EDGES), storage=hist.storage.Weight())
    hw.fill(np.repeat(centres, n), weight=2.0)
    r2 = fit_peaks(hw, (650, 674), "gauss_linear", [661.7])
    # same relative precision, doubled area (Bohm-Zech scaled likelihood)
    assert r2.areas[0].area == pytest.approx(2 * r1.areas[0].area, rel=1e-4)
    assert r2.areas[0].error / r2.areas[0].area == pytest.approx(
        r1.areas[0].error / r1.areas[0].area, rel=1e-3
    )
    assert r1.ndof == len(centres) - 5


def test_fixed_parameters_and_limits() -> None:
    model = make_model("gauss_const", 1, 662.0, 12.0)
    mu = model.expected(EDGES, 1000.0, 661.66, 0.6, 20.0)
    n = np.random.default_rng(2).poisson(mu).astype(float)
    r = fit_peaks(
        (n, EDGES), (650, 674), "gauss_const", [661.7], fix={"sigma": 0.6, "mu_0": 661.66}
    )
    assert r.values["sigma"] == 0.6
    assert r.errors["sigma"] == 0.0
    assert set(r.fixed) == {"sigma", "mu_0"}
    assert r.ndof == 96 - 2
    r2 = fit_peaks(
        (n, EDGES),
        (650, 674),
        "gauss_const",
        [661.7],
        limits={"area_0": (None, None), "bkg_const": (None, None)},
    )
    assert r2.valid


def test_setup_errors() -> None:
    n = np.ones(96)
    with pytest.raises(FitError, match="outside the fit window"):
        fit_peaks((n, EDGES), (650, 660), "gauss_step", [661.7])
    with pytest.raises(FitError, match="fewer than"):
        fit_peaks((n, EDGES), (650, 651), "gauss_step", [650.5])
    with pytest.raises(FitError, match="unknown peak model"):
        fit_peaks((n, EDGES), (650, 674), "gauss_stp", [661.7])
    with pytest.raises(FitError, match="unknown parameter 'sigm'"):
        fit_peaks((n, EDGES), (650, 674), "gauss_step", [661.7], fix=["sigm"])
    with pytest.raises(FitError, match="no counts"):
        fit_peaks((np.zeros(96), EDGES), (650, 674), "gauss_step", [661.7])


def test_non_convergence_flags_or_raises() -> None:
    model = make_model("gauss_step", 1, 662.0, 12.0)
    n = np.random.default_rng(1).poisson(model.expected(EDGES, *TRUTH.values())).astype(float)
    with pytest.warns(FitQualityWarning, match="did not converge"):
        r = fit_peaks((n, EDGES), (650, 674), "gauss_step", [661.7], ncall=3)
    assert not r.valid
    assert r.minos == {}
    with pytest.raises(FitError, match="did not converge"):
        fit_peaks((n, EDGES), (650, 674), "gauss_step", [661.7], ncall=3, strict=True)


def test_low_side_tail_model_recovers_area() -> None:
    m = make_model("gauss_step_tail", 1, 662.0, 12.0)
    truth = (20000.0, 661.66, 0.01, 0.6, 0.25, 1.2, 40.0, 35.0)
    n = np.random.default_rng(21).poisson(m.expected(EDGES, *truth)).astype(float)
    r = fit_peaks((n, EDGES), (650, 674), "gauss_step_tail", [661.7])
    assert r.valid
    assert abs(r.areas[0].area - 20000.0) < 3 * r.areas[0].error
    assert abs(r.values["tail_frac"] - 0.25) < 4 * r.errors["tail_frac"]
    assert r.pvalue > 1e-3
    # without the tail the same data fit much worse (the case for the tail model)
    with pytest.warns(FitQualityWarning, match="poor goodness of fit"):
        r0 = fit_peaks((n, EDGES), (650, 674), "gauss_step", [661.7])
    assert r0.chi2 - r.chi2 > 100


def test_weak_line_on_compton_edge() -> None:
    """7Be 477.6 keV on the 137Cs Compton edge (477.3 keV): the edge model is needed."""
    edges = np.arange(468.0, 488.0 + 1e-9, 0.2)
    m = make_model("gauss_edge", 1, 478.0, 10.0)
    truth = (150.0, 477.6035, 0.55, 150.0, 140.0, 200.0, 6.0, 477.8, 0.6)
    n = np.random.default_rng(8).poisson(m.expected(edges, *truth)).astype(float)
    r = fit_peaks((n, edges), (468.0, 488.0), "gauss_edge", [477.6035], fix={"sigma": 0.55})
    assert r.valid
    assert r.pvalue > 1e-3
    assert abs(r.areas[0].area - 150.0) < 3 * r.areas[0].error
    assert abs(r.values["edge_pos"] - 477.8) < 4 * r.errors["edge_pos"]
    # a linear background cannot follow the edge: it fails the goodness of fit
    with pytest.warns(FitQualityWarning, match="poor goodness of fit"):
        fit_peaks((n, edges), (468.0, 488.0), "gauss_linear", [477.6035], fix={"sigma": 0.55})
