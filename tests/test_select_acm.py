"""Tests of the ACM (autoencoder + classifier) on small synthetic pulses.

The pulses are a toy for unit tests only: a single-site event is one charge step, a multi-site
event two steps separated by 40-150 ns; energies sit in the label windows of the paper's Table 1
(MSE pulses in FEP/SEP/multi-Compton, SSE pulses in DEP/single-Compton) plus a uniform part.
"""

from __future__ import annotations

import json
import subprocess
import sys

import awkward as ak
import numpy as np
import pytest

from bege_psd.errors import ConfigError, ModelMismatchError, SelectionError
from bege_psd.select.acm import ACMConfig, ACMSelector, _normalise_numpy, waveforms_to_input
from bege_psd.select.base import Selector, load_selector

pytestmark = pytest.mark.ml

N_SAMPLES = 366
PERIOD_NS = 4.0


def _pulses(rng: np.random.Generator, n: int, mse: np.ndarray, amp: np.ndarray) -> np.ndarray:
    t = np.arange(N_SAMPLES) * PERIOD_NS
    t0 = 400.0 + rng.normal(0, 8, n)
    rise = rng.uniform(120, 260, n)
    frac = np.where(mse, rng.uniform(0.3, 0.7, n), 1.0)
    dt = np.where(mse, rng.uniform(200, 400, n), 0.0)

    def step(t_start: np.ndarray) -> np.ndarray:
        u = (t[None, :] - t_start[:, None]) / rise[:, None]
        return np.clip(u, 0.0, 1.0)

    w = frac[:, None] * step(t0) + (1 - frac)[:, None] * step(t0 + dt)
    w = w * np.exp(-np.clip(t[None, :] - t0[:, None], 0, None) / 50_000.0)
    wf = 1000.0 + amp[:, None] * w + rng.normal(0, 3, (n, N_SAMPLES))
    return np.round(wf).astype(np.int16)


def make_table(n: int = 480, seed: int = 0) -> ak.Array:
    rng = np.random.default_rng(seed)
    windows_mse = [(2609, 2621), (2098, 2109), (2436, 2564)]
    windows_sse = [(1590, 1595), (2130, 2370)]
    n_lab = n // 3
    e_mse = np.concatenate([rng.uniform(lo, hi, n_lab // 3) for lo, hi in windows_mse])
    e_sse = np.concatenate([rng.uniform(lo, hi, n_lab // 2) for lo, hi in windows_sse])
    n_free = n - e_mse.size - e_sse.size
    e_free = rng.uniform(300, 2700, n_free)
    energy = np.concatenate([e_mse, e_sse, e_free])
    mse = np.concatenate(
        [np.ones(e_mse.size, bool), np.zeros(e_sse.size, bool), rng.random(n_free) < 0.5]
    )
    wf = _pulses(rng, energy.size, mse, amp=energy * 3.0)
    order = rng.permutation(energy.size)
    table = ak.zip(
        {
            "energy_kev": energy[order],
            "waveform": ak.from_regular(wf[order], axis=1),
        },
        depth_limit=1,
    )
    table = ak.Array(table, attrs={"polarity": "positive", "source_file": "synthetic"})
    return table, mse[order]


SMALL = ACMConfig(
    ae_epochs=3,
    clf_epochs=40,
    ae_batch_size=64,
    clf_batch_size=32,
    threads=1,
    clf_learning_rate=5e-3,
    ae_learning_rate=5e-3,
)


@pytest.fixture(scope="module")
def trained():
    table, truth = make_table()
    sel = ACMSelector(SMALL).fit(table)
    return sel, table, truth


def test_import_does_not_load_tensorflow():
    code = (
        "import sys, bege_psd.select.acm, bege_psd.select; "
        "sys.exit(int('tensorflow' in sys.modules or 'keras' in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_normalisation_matches_paper_recipe():
    rng = np.random.default_rng(1)
    wf = (100 + 500 * (np.arange(366) > 100) + rng.normal(0, 1, (4, 366))).astype(np.int16)
    x = _normalise_numpy(wf, polarity="positive", baseline_samples=40, downsample=3)
    assert x.shape == (4, 122)
    assert np.nanmin(x) >= 0.0
    assert np.nanmax(x) <= 1.0
    # each output is the mean of three consecutive normalised samples
    xb = wf[0].astype(np.float64) - wf[0, :40].mean()
    xn = (xb - xb.min()) / (xb.max() - xb.min())
    np.testing.assert_allclose(x[0], xn.reshape(122, 3).mean(axis=1), atol=1e-6)
    # negative polarity flips; auto detects it
    neg = (2000 - (wf - 100)).astype(np.int16)
    np.testing.assert_allclose(
        _normalise_numpy(neg, polarity="negative", baseline_samples=40, downsample=3), x, atol=1e-5
    )
    np.testing.assert_allclose(
        _normalise_numpy(neg, polarity="auto", baseline_samples=40, downsample=3), x, atol=1e-5
    )


def test_empty_flat_and_ragged_waveforms():
    wf = ak.Array([[1, 2, 3, 9, 9, 9], [], [5, 5, 5, 5, 5, 5]])
    x, ok = waveforms_to_input(wf, ACMConfig(baseline_samples=2), polarity="positive")
    assert x.shape == (3, 2)
    assert ok.tolist() == [True, False, False]
    assert np.isnan(x[1]).all()
    assert np.isnan(x[2]).all()
    with pytest.raises(SelectionError, match=r"entry 1 has 4 samples"):
        waveforms_to_input(ak.Array([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4]]), source="run.root")


def test_config_validation():
    assert ACMConfig.from_mapping({"threshold": 0.6}).threshold == 0.6
    with pytest.raises(ConfigError, match="threshold"):
        ACMConfig.from_mapping({"threshold": 1.5})
    with pytest.raises(ConfigError, match="bottleneck"):
        ACMConfig.from_mapping({"bottlenek": 4})
    with pytest.raises(ConfigError, match="polarity"):
        ACMConfig.from_mapping({"polarity": "up"})


def test_fit_scores_and_separates(trained):
    sel, table, truth = trained
    assert isinstance(sel, Selector)
    assert sel.threshold == pytest.approx(0.58)
    tr = sel.training
    assert tr is not None
    assert len(tr.ae_history["val_loss"]) == 3
    s = sel.score(table)
    assert s.shape == (len(table),)
    assert np.all((s >= 0) & (s <= 1))
    # toy pulses are cleanly separable: the classifier must find it on the validation set
    assert tr.val_accuracy_05 > 0.8
    auc_like = np.mean(s[truth][:, None] > s[~truth][None, :])
    assert auc_like > 0.85
    m = sel.mask(table)
    assert m.dtype == bool
    assert m.sum() == np.sum(s >= 0.58)


def test_out_of_range_and_missing_waveform_get_nan(trained):
    sel, table, _ = trained
    sub = table[:4]
    energy = ak.to_numpy(sub["energy_kev"]).copy()
    energy[0] = 100.0
    energy[1] = 2800.0
    wf = ak.to_list(sub["waveform"])
    wf[2] = []
    t2 = ak.zip(
        {"energy_kev": energy, "waveform": ak.values_astype(ak.Array(wf), np.int16)}, depth_limit=1
    )
    s = sel.score(t2)
    assert np.isnan(s[:3]).all()
    assert np.isfinite(s[3])
    assert not sel.mask(t2)[:3].any()
    pred = sel.predict(t2)
    assert pred["latent"].shape == (4, 5)
    assert np.isnan(pred["latent"][0]).all()
    assert np.isfinite(pred["mse"][3])


def test_missing_fields_error(trained):
    sel, _table, _ = trained
    with pytest.raises(SelectionError, match="waveform"):
        sel.score(ak.zip({"energy_kev": np.array([1000.0])}))


def test_save_load_roundtrip_and_mismatch(trained, tmp_path):
    sel, table, _ = trained
    path = sel.save(tmp_path / "acm")
    assert path.name == "acm.keras"
    assert path.exists()
    meta = json.loads((tmp_path / "acm.keras.json").read_text())
    assert meta["kind"] == "acm"
    assert meta["n_input"] == 122
    assert meta["label_windows"]["dep"] == [1590.0, 1595.0]
    assert len(meta["latent_mean"]) == 5
    assert "val_loss" in meta["training_history"]["ae_history"]
    assert not list(tmp_path.glob("*.part*"))

    loaded = load_selector(path)
    assert isinstance(loaded, ACMSelector)
    np.testing.assert_allclose(loaded.score(table), sel.score(table), rtol=1e-5, atol=1e-6)

    with pytest.raises(ModelMismatchError, match="different \\[acm\\] configuration"):
        ACMSelector.load(path, config=ACMConfig())

    meta["config"]["acm"]["bottleneck"] = 4
    (tmp_path / "acm.keras.json").write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match="config_hash"):
        ACMSelector.load(path)

    other = sel.save(tmp_path / "b.keras")
    (tmp_path / "acm.keras.json").write_text((tmp_path / "b.keras.json").read_text())
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelMismatchError, match="SHA-256"):
        ACMSelector.load(path)
    assert other.exists()


def test_untrained_errors():
    with pytest.raises(SelectionError, match="not trained"):
        ACMSelector().score(make_table(30)[0])


def test_training_is_reproducible():
    table, _ = make_table(240, seed=5)
    cfg = ACMConfig(ae_epochs=2, clf_epochs=2, ae_batch_size=64, threads=1)
    a = ACMSelector(cfg).fit(table).score(table)
    b = ACMSelector(cfg).fit(table).score(table)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_numpy_twin_matches_dsp_acm_input():
    dsp = pytest.importorskip("bege_psd.dsp")
    if not hasattr(dsp, "acm_input"):
        pytest.skip("bege_psd.dsp.acm_input not available")
    rng = np.random.default_rng(7)
    mse = rng.random(50) < 0.5
    wf = _pulses(rng, 50, mse, amp=rng.uniform(900, 8000, 50))
    ours = _normalise_numpy(wf, polarity="positive", baseline_samples=40, downsample=3)
    np.testing.assert_allclose(dsp.acm_input(wf, polarity="positive"), ours, atol=1e-5)
    # the selector's path (which prefers dsp.acm_input) gives the same rows
    x, ok = waveforms_to_input(ak.from_regular(wf, axis=1), polarity="positive")
    assert ok.all()
    np.testing.assert_allclose(x, ours, atol=1e-5)
