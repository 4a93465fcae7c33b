"""``bege-psd train`` / ``bege-psd apply`` for the GMM and A/E selections (real files, uproot)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from bege_psd.cli import main
from bege_psd.select.aoe import AoESelector
from bege_psd.select.cli import read_event_table
from bege_psd.select.gmm import GMMSelector

pytestmark = pytest.mark.ml


def _features(n: int = 12_000, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    e = rng.uniform(300.0, 2700.0, n)
    mse = rng.random(n) < 0.5
    e[:600] = rng.normal(1592.5, 0.8, 600)
    mse[:600] = rng.random(600) < 0.1
    e[600:1200] = rng.normal(2614.5, 1.0, 600)
    mse[600:1200] = rng.random(600) < 0.9
    mu = 0.02 * (1 + 1e-5 * e)
    return {
        "energy_kev": e,
        "risetime_ns": np.where(mse, rng.normal(430, 80, n), rng.normal(250, 50, n)).astype(
            np.float32
        ),
        "l1_to_sse": np.where(mse, rng.normal(0.08, 0.02, n), rng.normal(0.045, 0.012, n)).astype(
            np.float32
        ),
        "n_peaks_d2": np.where(mse, 2 + rng.poisson(1.4, n), 2 + rng.poisson(0.15, n)).astype(
            np.int32
        ),
        "a_over_e": np.where(
            mse, mu * rng.uniform(0.5, 0.97, n), rng.normal(mu, 0.012 * mu)
        ).astype(np.float32),
    }


@pytest.fixture(scope="module")
def feature_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("feat")
    cols = _features()
    npz = d / "features.npz"
    np.savez(npz, **cols)
    root = d / "features.root"
    with uproot.recreate(root) as f:
        f.mktree("Features", {k: v.dtype for k, v in cols.items()})
        f["Features"].extend(cols)
    return npz, root


def test_read_event_table_formats(feature_files, tmp_path):
    npz, root = feature_files
    a, b = read_event_table(npz), read_event_table(root)
    assert len(a) == len(b) == 12_000
    np.testing.assert_array_equal(ak.to_numpy(a.risetime_ns), ak.to_numpy(b.risetime_ns))
    bad = tmp_path / "x.parquet"
    bad.write_text("")
    from bege_psd.errors import SelectionError

    with pytest.raises(SelectionError, match="unsupported"):
        read_event_table(bad)


def test_train_apply_gmm(feature_files, tmp_path):
    npz, root = feature_files
    cfg = tmp_path / "c.toml"
    cfg.write_text("[gmm]\nsilhouette_events = 1000\n")
    model = tmp_path / "gmm.json"
    assert main(["train", "gmm", str(npz), "--out", str(model), "--config", str(cfg)]) == 0
    out = tmp_path / "scores.root"
    assert main(["apply", str(model), str(root), "--out", str(out)]) == 0
    sel = GMMSelector.load(model)
    assert sel.config.silhouette_events == 1000
    expected = sel.score(read_event_table(root))
    with uproot.open(out) as f:
        t = f["PSD"]
        np.testing.assert_allclose(t["score_gmm"].array(library="np"), expected)
        np.testing.assert_array_equal(t["mask_gmm"].array(library="np"), expected >= 0.5)
    out_npz = tmp_path / "scores.npz"
    assert main(["apply", str(model), str(npz), "--out", str(out_npz)]) == 0
    with np.load(out_npz) as z:
        np.testing.assert_allclose(z["score_gmm"], expected)


def test_train_apply_aoe_csv(feature_files, tmp_path):
    npz, _ = feature_files
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[aoe]\nthreshold_mode = "kept_fraction"\nkept_fraction = 0.3\nmin_slice_events = 100\nslice_width_kev = 100.0\n'
    )
    model = tmp_path / "aoe.json"
    assert main(["train", "aoe", str(npz), "--out", str(model), "--config", str(cfg)]) == 0
    out = tmp_path / "s.csv"
    assert main(["apply", str(model), str(npz), "--out", str(out)]) == 0
    rows = np.genfromtxt(out, delimiter=",", names=True)
    assert rows.dtype.names == ("entry", "score_aoe", "mask_aoe")
    assert rows["mask_aoe"].mean() == pytest.approx(0.3, abs=0.002)
    sel = AoESelector.load(model)
    np.testing.assert_allclose(rows["score_aoe"], sel.score(read_event_table(npz)), rtol=1e-8)


def test_cli_errors_are_reported(feature_files, tmp_path, capsys):
    npz, _ = feature_files
    rc = main(["apply", str(tmp_path / "nope.json"), str(npz), "--out", str(tmp_path / "o.npz")])
    assert rc == 1
    assert "no model metadata" in capsys.readouterr().err
    rc = main(["train", "gmm", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "m.json")])
    assert rc == 1
    assert "does not exist" in capsys.readouterr().err
