"""Tests of bege_psd.select.gmm on synthetic feature tables with known single/multi-site truth."""

from __future__ import annotations

import json
import warnings

import awkward as ak
import numpy as np
import pytest

from bege_psd.config import from_mapping, load_config
from bege_psd.errors import (
    ConfigError,
    ModelMismatchError,
    SelectionError,
    UnderdeterminedComponentWarning,
)
from bege_psd.select.base import Selector, load_selector
from bege_psd.select.gmm import GMMConfig, GMMSelector, gaussian_mixture_posteriors

pytestmark = pytest.mark.ml

FAST = {"silhouette_events": 1500}


def make_table(
    n: int = 20_000,
    seed: int = 2,
    *,
    lines: bool = True,
    swap_windows: bool = False,
    energy_range: tuple[float, float] = (300.0, 2700.0),
) -> tuple[ak.Array, np.ndarray]:
    """SSE/MSE populations in (rise time, L1, n d2 peaks); DEP mostly SSE, FEP mostly MSE."""
    rng = np.random.default_rng(seed)
    e = rng.uniform(*energy_range, n)
    mse = rng.random(n) < 0.5
    if lines:
        nd = nf = 800
        p_dep, p_fep = (0.92, 0.08) if swap_windows else (0.08, 0.92)
        e = np.concatenate([e, rng.normal(1592.5, 0.8, nd), rng.normal(2614.5, 1.0, nf)])
        mse = np.concatenate([mse, rng.random(nd) < p_dep, rng.random(nf) < p_fep])
    m = e.size
    rt = np.where(mse, rng.normal(430, 80, m), rng.normal(250, 50, m))
    l1 = np.where(mse, rng.normal(0.08, 0.02, m), rng.normal(0.045, 0.012, m))
    npk = np.where(mse, 2 + rng.poisson(1.4, m), 2 + rng.poisson(0.15, m)).astype(np.int32)
    table = ak.zip(
        {
            "energy_kev": e,
            "risetime_ns": rt.astype(np.float32),
            "l1_to_sse": l1.astype(np.float32),
            "n_peaks_d2": npk,
            "a_over_e": np.where(mse, rng.normal(0.8, 0.1, m), rng.normal(1.0, 0.02, m)).astype(
                np.float32
            ),
            "quality": np.zeros(m, dtype=np.uint32),
        }
    )
    return table, mse


@pytest.fixture(scope="module")
def th_table():
    return make_table()


@pytest.fixture(scope="module")
def fitted(th_table):
    table, _ = th_table
    return GMMSelector(GMMConfig(**FAST)).fit(table)


def test_selector_protocol(fitted):
    assert isinstance(fitted, Selector)
    assert fitted.name == "gmm"
    assert fitted.threshold == 0.5


def test_separates_populations_and_picks_mse_by_windows(th_table, fitted):
    table, mse = th_table
    s = fitted.score(table)
    assert np.all((s >= 0) & (s <= 1))
    assert np.mean(fitted.mask(table) == mse) > 0.93
    ev = fitted.evidence
    assert ev["decided_by"] == "dep_fep_windows"
    assert ev["problems"] == []
    (k,) = fitted.mse_components
    # the MSE component carries most of the FEP and little of the DEP, and has longer rise time
    assert ev["fep_share"][k] > 0.8
    assert ev["dep_share"][k] < 0.2
    assert ev["risetime_mean"][k] == max(ev["risetime_mean"])
    assert 0.2 < fitted.silhouette < 1.0


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_decision_independent_of_component_order(seed):
    table, mse = make_table(8000, seed=seed + 10)
    sel = GMMSelector(GMMConfig(seed=seed, silhouette_events=0)).fit(table)
    assert np.mean(sel.mask(table) == mse) > 0.9


def test_contradictory_evidence_warns():
    # the DEP window made MSE-like and the FEP SSE-like: windows contradict the rise time
    table, _ = make_table(8000, swap_windows=True)
    with pytest.warns(UnderdeterminedComponentWarning, match="contradictory"):
        sel = GMMSelector(GMMConfig(silhouette_events=0)).fit(table)
    assert sel.evidence["decided_by"] == "dep_fep_windows"
    assert any("contradictory" in p for p in sel.evidence["problems"])


def test_without_lines_decides_by_risetime_quietly():
    table, mse = make_table(8000, lines=False, energy_range=(300.0, 700.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnderdeterminedComponentWarning)
        sel = GMMSelector(GMMConfig(silhouette_events=0)).fit(table)
    assert sel.evidence["decided_by"] == "risetime"
    assert sel.evidence["strength"] > 1.0
    assert np.mean(sel.mask(table) == mse) > 0.9


def test_no_evidence_at_all_warns():
    table, _ = make_table(6000, lines=False, energy_range=(300.0, 700.0))
    cfg = GMMConfig(features=("l1_to_sse", "n_peaks_d2"), silhouette_events=0)
    with pytest.warns(UnderdeterminedComponentWarning, match="no evidence"):
        sel = GMMSelector(cfg).fit(table)
    assert sel.evidence["decided_by"] == "none"


def test_manual_override():
    table, mse = make_table(6000)
    auto = GMMSelector(GMMConfig(silhouette_events=0)).fit(table)
    other = 1 - auto.mse_components[0]
    manual = GMMSelector(GMMConfig(silhouette_events=0, mse_components=(other,))).fit(table)
    assert manual.evidence["decided_by"] == "config"
    assert np.mean(manual.mask(table) == mse) < 0.1


def test_numpy_posteriors_match_sklearn():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, (500, 3)), rng.normal(2, 0.5, (500, 3))])
    gm = GaussianMixture(2, covariance_type="full", random_state=0).fit(x)
    x[3, 1] = np.nan
    args = (gm.weights_, gm.means_, gm.precisions_cholesky_)
    ours = gaussian_mixture_posteriors(x, *args)
    twin = gaussian_mixture_posteriors(x, *args, compiled=False, chunk=77)
    ok = np.isfinite(x).all(axis=1)
    np.testing.assert_allclose(ours[ok], gm.predict_proba(x[ok]), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(twin, ours, rtol=1e-12, atol=1e-14)
    assert np.isnan(ours[3]).all()
    assert np.isnan(twin[3]).all()


def test_subsample_float32_agrees_with_full_sklearn_fit():
    """The fast path (subsample, float32, pre-fit init) assigns like a full float64 fit with
    sklearn's defaults on the same (dequantised) inputs."""
    from sklearn.mixture import GaussianMixture

    table, _ = make_table(40_000, seed=5)
    sel = GMMSelector(GMMConfig(max_fit_events=8000, init_fit_events=2000, silhouette_events=0))
    sel.fit(table)
    assert sel.training["dequantized_features"] == ["n_peaks_d2"]
    x = np.column_stack([ak.to_numpy(table[f]).astype(float) for f in sel.config.features])
    z = (x - x.mean(0)) / x.std(0)
    zq = z.copy()
    zq[:, 2] += (np.random.default_rng(9).random(z.shape[0]) - 0.5) / x[:, 2].std()
    gm = GaussianMixture(2, covariance_type="full", random_state=0).fit(zq)
    ref = gm.predict_proba(z)[:, int(np.argmax(gm.means_[:, 0]))] >= 0.5
    assert sel.training["n_fit"] == 8000
    assert np.mean((sel.score(table) >= 0.5) == ref) >= 0.995


def test_dequantisation_prevents_collapse_on_integer_feature():
    """Without dequantisation one component sits on n_peaks_d2 == 2 exactly (the 'exactly two
    peaks vs more' split); with it the mixture separates SSE from MSE."""
    table, mse = make_table(10_000, seed=4)
    raw = GMMSelector(GMMConfig(dequantize_integers=False, silhouette_events=0)).fit(table)
    deq = GMMSelector(GMMConfig(silhouette_events=0)).fit(table)
    assert min(np.diag(raw.covariances[k])[2] for k in range(2)) < 1e-3
    assert np.mean(deq.mask(table) == mse) > np.mean(raw.mask(table) == mse) + 0.05


def test_nan_and_flagged_events_score_nan_and_are_counted():
    table, _ = make_table(6000)
    rt = ak.to_numpy(table.risetime_ns).copy()
    q = ak.to_numpy(table.quality).copy()
    rt[:5] = np.nan
    q[5:9] = 1 << 3
    table = ak.with_field(ak.with_field(table, rt, "risetime_ns"), q, "quality")
    sel = GMMSelector(GMMConfig(silhouette_events=0)).fit(table)
    assert sel.training["n_unusable"] == 9
    s = sel.score(table)
    assert np.isnan(s[:9]).all()
    assert np.isfinite(s[9:]).all()
    assert not sel.mask(table)[:9].any()


def test_extra_feature_is_one_line_of_config(th_table):
    table, mse = th_table
    cfg = from_mapping(
        GMMConfig, {"features": ["risetime_ns", "l1_to_sse", "n_peaks_d2", "a_over_e"], **FAST}
    )
    sel = GMMSelector(cfg).fit(table)
    assert sel.means.shape == (2, 4)
    assert np.mean(sel.mask(table) == mse) > 0.95


def test_bic_components_map_to_two_classes(th_table):
    table, mse = th_table
    sel = GMMSelector(GMMConfig(bic_max_components=4, silhouette_events=0)).fit(table)
    k = sel.weights.size
    assert set(sel.training["bic"]) == {"2", "3", "4"}
    assert k == int(min(sel.training["bic"], key=lambda c: sel.training["bic"][c]))
    assert 1 <= len(sel.mse_components) < k
    s = sel.score(table)
    assert np.all((s >= 0) & (s <= 1 + 1e-12))
    assert np.mean(sel.mask(table) == mse) > 0.9


def test_kept_fraction(th_table, fitted):
    table, _ = th_table
    sel = fitted.with_kept_fraction(table, 0.3)
    assert fitted.threshold == 0.5  # the original is untouched
    assert abs(np.mean(sel.mask(table)) - 0.3) < 0.01


def test_missing_feature_names_nearest(th_table):
    table, _ = th_table
    with pytest.raises(SelectionError, match=r"no field 'risetime'.*risetime_ns"):
        GMMSelector(GMMConfig(features=("risetime", "l1_to_sse"))).fit(table)


def test_too_few_events():
    table, _ = make_table(10, lines=False)
    with pytest.raises(SelectionError, match="at least"):
        GMMSelector().fit(table)


def test_config_validation(tmp_path):
    with pytest.raises(ConfigError, match="n_components"):
        from_mapping(GMMConfig, {"n_components": 1})
    with pytest.raises(ConfigError, match="covariance_type"):
        from_mapping(GMMConfig, {"covariance_type": "round"})
    with pytest.raises(ConfigError, match=r"threshhold.*threshold"):
        from_mapping(GMMConfig, {"threshhold": 0.4})
    toml = tmp_path / "c.toml"
    toml.write_text('[gmm]\nfeatures = ["risetime_ns", "a_over_e"]\nthreshold = 0.6\n')
    cfg = load_config(toml).section("gmm")
    assert cfg.features == ("risetime_ns", "a_over_e")
    assert cfg.threshold == 0.6


def test_unfitted_selector_errors(th_table):
    with pytest.raises(SelectionError, match="not fitted"):
        GMMSelector().score(th_table[0])


# -- persistence --------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path, th_table, fitted):
    table, _ = th_table
    path = fitted.save(tmp_path / "model")
    assert path.name == "model.json"
    meta = json.loads(path.read_text())
    assert meta["kind"] == "gmm"
    assert meta["config_hash"]
    assert "evidence" in meta
    loaded = GMMSelector.load(path)
    np.testing.assert_array_equal(loaded.score(table), fitted.score(table))
    assert loaded.mse_components == fitted.mse_components
    assert loaded.silhouette == pytest.approx(fitted.silhouette)
    via = load_selector(path)
    assert isinstance(via, GMMSelector)
    assert GMMSelector.load(path, config=fitted.config).threshold == 0.5


def _rewrite(path, **changes):
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_model_file_is_strict_json_without_silhouette(tmp_path, th_table):
    table, _ = th_table
    sel = GMMSelector(GMMConfig(silhouette_events=0)).fit(table)
    path = sel.save(tmp_path / "m.json")
    meta = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert meta["silhouette"] is None
    assert np.isnan(GMMSelector.load(path).silhouette)


def test_load_rejects_other_version(tmp_path, fitted):
    path = fitted.save(tmp_path / "m.json")
    _rewrite(path, bege_psd_version="0.0.1")
    with pytest.raises(ModelMismatchError, match=r"0\.0\.1.*retrain"):
        GMMSelector.load(path)


def test_load_rejects_edited_config(tmp_path, fitted):
    path = fitted.save(tmp_path / "m.json")
    meta = json.loads(path.read_text())
    meta["config"]["threshold"] = 0.9
    path.write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match="modified"):
        GMMSelector.load(path)


def test_load_rejects_other_configuration(tmp_path, fitted):
    path = fitted.save(tmp_path / "m.json")
    with pytest.raises(ModelMismatchError, match="features"):
        GMMSelector.load(path, config=GMMConfig(features=("risetime_ns", "a_over_e")))


def test_load_rejects_bad_parameters(tmp_path, fitted):
    path = fitted.save(tmp_path / "m.json")
    _rewrite(path, means=[[0.0, 1.0]])
    with pytest.raises(ModelMismatchError, match="shapes"):
        GMMSelector.load(path)
    path = fitted.save(tmp_path / "m.json")
    cov = np.asarray(json.loads(path.read_text())["covariances"])
    cov[0] = -np.eye(3)
    _rewrite(path, covariances=cov.tolist())
    with pytest.raises(ModelMismatchError, match="positive definite"):
        GMMSelector.load(path)
    _rewrite(path, kind="aoe")
    with pytest.raises(ModelMismatchError, match="kind"):
        GMMSelector.load(path)
