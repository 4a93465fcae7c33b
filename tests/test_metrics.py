"""Known answers for every metric on hand-built histograms (bege_psd.metrics)."""

from __future__ import annotations

import math

import hist
import numpy as np
import pytest

from bege_psd.config import from_mapping
from bege_psd.errors import ConfigError
from bege_psd.fit import make_model
from bege_psd.metrics import (
    MetricsConfig,
    MetricsError,
    auc,
    compare_peak_to_compton,
    currie_detection_limit,
    currie_mda,
    line_significance,
    mda_before_after,
    mda_from_spectra,
    mislabelled_fraction,
    peak_to_compton_area,
    peak_to_compton_paper,
    roc_auc,
    roc_curve,
    signal_to_background,
    survival_fraction,
    window_survival,
)
from bege_psd.spectrum import Quantity


def _hist(edges: np.ndarray, values: np.ndarray, variances: np.ndarray | None = None) -> hist.Hist:
    h = hist.Hist(hist.axis.Variable(edges), storage=hist.storage.Weight())
    view = h.view()
    view.value[:] = values
    view.variance[:] = values if variances is None else variances
    return h


def test_peak_to_compton_paper_known_answer() -> None:
    edges = np.arange(300.0, 700.0 + 1e-9, 0.5)
    c = 0.5 * (edges[1:] + edges[:-1])
    vals = np.where((c >= 355) & (c <= 450), 2.0, 0.0)
    vals[np.argmin(np.abs(c - 661.75))] = 50.0
    vals[np.argmin(np.abs(c - 680.25))] = 500.0  # outside the peak window: must be ignored
    h = _hist(edges, vals)
    n_compton = int(np.sum((c >= 355) & (c <= 450)))
    assert n_compton == 190
    r = peak_to_compton_paper(h, (660, 670), (355, 450))
    expected = 50.0 / (2.0 * n_compton)
    assert r.value == pytest.approx(expected)
    assert r.error == pytest.approx(expected * math.sqrt(1 / 50 + 1 / (2.0 * n_compton)))
    # bin-width independent version: area / (counts per keV)
    ra = peak_to_compton_area(h, Quantity(1000.0, 40.0), (355, 450))
    dens = 2.0 * n_compton / 95.0
    assert ra.value == pytest.approx(1000.0 / dens)
    assert ra.error == pytest.approx(
        (1000.0 / dens) * math.hypot(0.04, 1 / math.sqrt(2.0 * n_compton))
    )


def test_survival_fraction_is_binomial_for_counts() -> None:
    f = survival_fraction(Quantity(30.0, math.sqrt(30.0)), Quantity(100.0, 10.0))
    assert f.value == pytest.approx(0.3)
    assert f.error == pytest.approx(math.sqrt(0.3 * 0.7 / 100))
    # all kept -> zero uncertainty, none kept -> zero
    assert survival_fraction((100.0, 10.0), (100.0, 10.0)).error == pytest.approx(0.0)
    assert survival_fraction((0.0, 0.0), (100.0, 10.0)).error == pytest.approx(0.0)
    # net areas: the background-subtraction variance enters
    f2 = survival_fraction((50.0, 10.0), (100.0, 15.0))
    var_r = 15.0**2 - 10.0**2
    assert f2.error == pytest.approx(math.sqrt((50**2 * 100 + 50**2 * var_r) / 100**4))
    with pytest.raises(MetricsError):
        survival_fraction((1.0, 1.0), (0.0, 0.0))


def test_window_survival_on_hists() -> None:
    edges = np.linspace(0, 10, 11)
    h_all = _hist(edges, np.full(10, 40.0))
    h_kept = _hist(edges, np.full(10, 10.0))
    f = window_survival(h_all, h_kept, (2.0, 6.0))  # centres 2.5 .. 5.5 -> 4 bins
    assert f.value == pytest.approx(0.25)
    assert f.error == pytest.approx(math.sqrt(0.25 * 0.75 / 160))


def _cs_spectrum(scale_peak: float, scale_compton: float) -> hist.Hist:
    """Asimov 137Cs spectrum: gauss+step peak at 661.66 keV on a flat continuum."""
    edges = np.arange(300.0, 700.0 + 1e-9, 0.25)
    m = make_model("gauss_step", 1, 662.5, 12.5)
    # no step: a step would extend under the Compton window and scale with the peak
    peak = np.diff(m.cdf(edges, 20000.0, 661.6553, 0.0, 0.55, 0.0, 0.0))
    compton = np.full(edges.size - 1, 40.0)
    return _hist(edges, scale_peak * peak + scale_compton * compton)


def test_improvement_factor_with_peak_survival() -> None:
    h_all = _cs_spectrum(1.0, 1.0)
    h_kept = _cs_spectrum(0.5, 0.1)
    cfg = MetricsConfig()
    imp = compare_peak_to_compton(h_all, h_kept, method="paper", config=cfg)
    # peak-window max bin falls from (P + 40) to (0.5 P + 4); Compton by 0.1
    vals = h_all.values()
    c = h_all.axes[0].centers
    p_max = float(vals[(c >= 660) & (c <= 670)].max())
    expected = ((0.5 * (p_max - 40.0) + 4.0) / p_max) / 0.1
    assert imp.factor.value == pytest.approx(expected, rel=1e-9)
    assert imp.compton_survival.value == pytest.approx(0.1)
    assert imp.peak_survival.value == pytest.approx(0.5, rel=1e-4)
    imp_a = compare_peak_to_compton(h_all, h_kept, method="area", config=cfg)
    assert imp_a.factor.value == pytest.approx(5.0, rel=1e-4)
    assert imp_a.ratio_all.value == pytest.approx(20000.0 / 40.0 * 0.25, rel=1e-4)
    assert imp_a.factor.error > 0
    with pytest.raises(MetricsError, match="method"):
        compare_peak_to_compton(h_all, h_kept, method="nope")


def test_signal_to_background_linear_sidebands() -> None:
    edges = np.arange(400.0, 500.0 + 1e-9, 1.0)
    c = 0.5 * (edges[1:] + edges[:-1])
    vals = 10.0 + 0.1 * (c - 400.0)
    vals[np.argmin(np.abs(c - 450.5))] += 100.0
    h = _hist(edges, vals)
    sb = signal_to_background(h, (445.0, 456.0), ((420.0, 440.0), (460.0, 480.0)))
    roi = (c >= 445) & (c <= 456)
    b_true = float(np.sum(10.0 + 0.1 * (c[roi] - 400.0)))
    assert sb.background.value == pytest.approx(b_true)
    assert sb.signal.value == pytest.approx(100.0)
    assert sb.ratio.value == pytest.approx(100.0 / b_true)
    assert sb.signal.error > math.sqrt(b_true + 100.0)


def test_mislabelled_fraction_gauss_plus_constant() -> None:
    edges = np.arange(2098.0, 2109.0 + 1e-9, 0.2)
    m = make_model("gauss_const", 1, 2103.5, 5.5)
    area, const = 2000.0, 7.5  # B = 7.5 * 11 = 82.5 counts
    vals = np.diff(m.cdf(edges, area, 2103.511, 0.8, const))
    h = _hist(edges, vals)
    f = mislabelled_fraction(h, (2098.0, 2109.0), 2103.511)
    s_in = area * m.peak_fraction_in(2098.0, 2109.0, 0, area, 2103.511, 0.8, const)
    assert f.value == pytest.approx(82.5 / (82.5 + s_in), abs=0.01 * f.error)
    assert 0.03 < f.value < 0.05
    assert 0 < f.error < f.value


def test_line_significance_asimov_known_answer() -> None:
    edges = np.arange(468.0, 488.0 + 1e-9, 0.25)
    m = make_model("gauss_linear", 1, 478.0, 10.0)
    pars = (150.0, 477.6035, 0.5, 80.0, 80.0)
    n = np.diff(m.cdf(edges, *pars))
    b = np.diff(m.cdf(edges, 0.0, *pars[1:]))
    h = _hist(edges, n)
    fix = {"mu_0": 477.6035, "sigma": 0.5, "bkg_lo": 80.0, "bkg_hi": 80.0}
    sig = line_significance(h, (468.0, 488.0), 477.6035, fix=fix)
    z_expected = math.sqrt(2.0 * np.sum(n * np.log(n / b) - (n - b)))
    assert sig.z == pytest.approx(z_expected, rel=1e-4)
    assert sig.area.value == pytest.approx(150.0, rel=1e-4)
    # profiling the background can only lower the significance
    free = line_significance(h, (468.0, 488.0), 477.6035, fix={"mu_0": 477.6035, "sigma": 0.5})
    assert free.z < sig.z


def test_currie_mda_known_answers() -> None:
    assert currie_detection_limit(0.0) == pytest.approx(1.645**2)
    assert currie_detection_limit(100.0) == pytest.approx(2.706 + 4.653 * 10.0, abs=0.01)
    mda = currie_mda(100.0, 0.05, 0.8501, 86400.0)
    assert mda == pytest.approx(currie_detection_limit(100.0) / (0.05 * 0.8501 * 86400.0))
    cmp_ = mda_before_after(400.0, 25.0, 0.5, 0.05, 0.1044, 86400.0)
    ld_b = 1.645**2 + 2 * 1.645 * math.sqrt(800.0)
    ld_a = 1.645**2 + 2 * 1.645 * math.sqrt(50.0)
    assert cmp_.mda_before_bq == pytest.approx(ld_b / (0.05 * 0.1044 * 86400.0))
    assert cmp_.ratio == pytest.approx((ld_a / 0.5) / ld_b)
    with pytest.raises(MetricsError):
        currie_mda(1.0, 0.0, 0.5, 10.0)
    with pytest.raises(MetricsError):
        mda_before_after(1.0, 1.0, 1.5, 0.1, 0.5, 10.0)


def test_roc_auc_known_answers() -> None:
    fpr, tpr, thr = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert auc(fpr, tpr) == pytest.approx(0.75)
    assert thr[0] == np.inf
    assert fpr[-1] == 1.0
    assert tpr[-1] == 1.0
    assert roc_auc([0, 1, 2, 3], [0, 0, 1, 1]) == 1.0
    assert roc_auc([3, 2, 1, 0], [0, 0, 1, 1]) == 0.0
    assert roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5  # all tied
    with pytest.raises(MetricsError, match="both classes"):
        roc_curve([0.1, 0.2], [1, 1])
    with pytest.raises(MetricsError, match="NaN"):
        roc_curve([np.nan, 0.2], [0, 1])


def test_roc_auc_matches_rank_statistic() -> None:
    rng = np.random.default_rng(4)
    s = np.round(rng.normal(size=400), 1)  # many ties
    y = rng.random(400) < 1 / (1 + np.exp(-2 * s))
    pos, neg = s[y], s[~y]
    mann_whitney = (
        np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])
    ) / (pos.size * neg.size)
    assert roc_auc(s, y) == pytest.approx(mann_whitney, rel=1e-12)


def test_metrics_config_validation() -> None:
    cfg = from_mapping(MetricsConfig, {"ptc_peak_window_kev": [659.0, 671.0]})
    assert cfg.ptc_peak_window_kev == (659.0, 671.0)
    with pytest.raises(ConfigError, match="expected lo < hi"):
        from_mapping(MetricsConfig, {"sep_window_kev": [2109.0, 2098.0]})
    with pytest.raises(ConfigError, match="ptc_model"):
        from_mapping(MetricsConfig, {"ptc_model": "lorentz"})


def test_mda_from_spectra_uses_sideband_background() -> None:
    edges = np.arange(460.0, 496.0 + 1e-9, 0.5)
    c = 0.5 * (edges[1:] + edges[:-1])
    flat_all, flat_kept = np.full(c.size, 40.0), np.full(c.size, 4.0)
    line = np.where(np.abs(c - 477.75) < 0.3, 500.0, 0.0)  # a line in the ROI must not count
    h_all, h_kept = _hist(edges, flat_all + line), _hist(edges, flat_kept + 0.6 * line)
    roi, sb = (476.0, 479.5), ((466.0, 472.0), (484.0, 490.0))
    n_roi = int(np.sum((c >= roi[0]) & (c <= roi[1])))
    cmp_ = mda_from_spectra(h_all, h_kept, roi, sb, 0.6, 0.05, 0.1044, 86400.0)
    assert cmp_.background_before == pytest.approx(40.0 * n_roi)
    assert cmp_.background_after == pytest.approx(4.0 * n_roi)
    assert cmp_.mda_before_bq == pytest.approx(currie_mda(40.0 * n_roi, 0.05, 0.1044, 86400.0))
    assert cmp_.mda_after_bq == pytest.approx(currie_mda(4.0 * n_roi, 0.05 * 0.6, 0.1044, 86400.0))
    assert cmp_.ratio < 1  # the cut pays off here
