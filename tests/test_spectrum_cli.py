"""End-to-end tests of ``bege-psd spectrum`` and ``bege-psd fit`` on a generated features file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import uproot

from bege_psd.cli import main
from bege_psd.io.export import read_n42, read_spe


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(12)
    n_peak, n_bkg = 20_000, 60_000
    e = np.concatenate([rng.normal(661.6553, 0.57, n_peak), rng.uniform(300.0, 700.0, n_bkg)])
    score = np.concatenate([rng.uniform(0.3, 1.0, n_peak), rng.uniform(0.0, 0.7, n_bkg)]).astype(
        np.float32
    )
    adc = np.round((e - 1.5) / 0.2).astype(np.uint16)
    path = tmp_path_factory.mktemp("cli") / "features.root"
    with uproot.recreate(path) as f:  # a TTree, as the pipeline writes features
        f.mktree("features", {"energy_kev": "f8", "energy_adc": "u2", "acm_score": "f4"})
        f["features"].extend({"energy_kev": e, "energy_adc": adc, "acm_score": score})
    np.save(path.with_name("mask.npy"), score >= 0.58)
    cal = {"coeffs": [1.5, 0.2], "covariance": [[0.0, 0.0], [0.0, 0.0]]}
    path.with_name("calib.json").write_text(json.dumps(cal))
    return path


def test_spectrum_to_root_with_threshold_mask(
    features: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "kept.root"
    rc = main(
        [
            "spectrum",
            str(features),
            "--mask",
            f"{features}:acm_score",
            "--threshold",
            "0.58",
            "--bins",
            "1600",
            "--range",
            "300",
            "700",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    with uproot.open(out) as f:
        h = f["spectrum"]
        score = uproot.open(features)["features/acm_score"].array(library="np")
        assert h.values(flow=True).sum() == int((score >= 0.58).sum())
    assert "wrote" in capsys.readouterr().out


def test_spectrum_adc_to_n42_and_spe_then_fit(features: Path, tmp_path: Path) -> None:
    common = [
        "--field",
        "energy_adc",
        "--adc",
        "--channels",
        "4096",
        "--calib",
        str(features.with_name("calib.json")),
        "--live-time",
        "1000",
        "--real-time",
        "1010",
        "--mask",
        str(features.with_name("mask.npy")),
    ]
    assert main(["spectrum", str(features), *common, "--out", str(tmp_path / "kept.n42")]) == 0
    assert main(["spectrum", str(features), *common, "--out", str(tmp_path / "kept.spe")]) == 0
    n42, spe = read_n42(tmp_path / "kept.n42"), read_spe(tmp_path / "kept.spe")
    np.testing.assert_array_equal(n42.counts, spe.counts)
    assert n42.coefficients == pytest.approx((1.5, 0.2, 0.0))
    mask = np.load(features.with_name("mask.npy"))
    assert n42.counts.sum() == mask.sum()
    out = tmp_path / "fit.json"
    rc = main(
        [
            "fit",
            str(tmp_path / "kept.n42"),
            "--window",
            "650",
            "675",
            "--peaks",
            "661.66",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    d = json.loads(out.read_text())["result"]
    assert d["valid"]
    # about 6/7 of the 20000 peak events have score >= 0.58
    assert d["areas"][0]["area"] == pytest.approx(20_000 * 0.42 / 0.7, rel=0.05)


def test_fit_cli_on_root_histogram(features: Path, tmp_path: Path) -> None:
    spec = tmp_path / "all.root"
    assert (
        main(
            [
                "spectrum",
                str(features),
                "--bins",
                "1600",
                "--range",
                "300",
                "700",
                "--out",
                str(spec),
            ]
        )
        == 0
    )
    out = tmp_path / "fit.json"
    assert (
        main(["fit", str(spec), "--window", "650", "675", "--peaks", "661.66", "--out", str(out)])
        == 0
    )
    area = json.loads(out.read_text())["result"]["areas"][0]
    assert area["area"] == pytest.approx(20_000, rel=0.03)
    assert (
        area["minos_lower"] < 20_000 < area["minos_upper"]
        or abs(area["area"] - 20_000) < 3 * area["error"]
    )


def test_cli_errors_are_clear(
    features: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        ["spectrum", str(features), "--field", "energy_kevv", "--out", str(tmp_path / "x.root")]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "no branch 'energy_kevv'" in err
    assert "energy_kev" in err
    rc = main(["spectrum", str(features), "--out", str(tmp_path / "x.spe")])
    assert rc == 1
    assert "--live-time" in capsys.readouterr().err
    rc = main(
        [
            "fit",
            str(tmp_path / "missing.root"),
            "--window",
            "1",
            "2",
            "--peaks",
            "1.5",
            "--out",
            str(tmp_path / "f.json"),
        ]
    )
    assert rc == 1
    assert not (tmp_path / "f.json").exists()


def test_spectrum_from_rntuple(tmp_path: Path) -> None:
    path = tmp_path / "rn.root"
    with uproot.recreate(path) as f:
        f["events"] = {"energy_kev": np.array([1.0, 2.0, 2.5])}  # uproot 5.7 writes an RNTuple
    out = tmp_path / "s.root"
    assert main(["spectrum", str(path), "--bins", "3", "--range", "0", "3", "--out", str(out)]) == 0
    with uproot.open(out) as f:
        assert f["spectrum"].values().tolist() == [0.0, 1.0, 2.0]
