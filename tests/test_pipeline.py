"""The whole chain on tiny simulated runs: stages, friend-tree alignment, accounting, resume."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot

from bege_psd.config import load_config
from bege_psd.errors import ConfigError
from bege_psd.pipeline import run_pipeline

N_CAL, N_SAMPLE = 25000, 5000


def _config(tmp, **run):
    return {
        "run": {
            "calibration_events": N_CAL,
            "sample_events": N_SAMPLE,
            "data_dir": str(tmp / "runs"),
            "results_dir": str(tmp / "res"),
            "selectors": ["aoe", "gmm"],
            "chunk_size": 10000,
            "export_formats": [],
            **run,
        },
        "sim": {"detector": {"field_grid_mm": 0.5, "library_grid_mm": 2.0}},
        # a tiny run has too few DEP events for the DEP-acceptance working point
        "aoe": {
            "threshold_mode": "kept_fraction",
            "slice_width_kev": 200.0,
            "min_slice_events": 50,
        },
        "report": {"embed_images": False},
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipe")
    mp = pytest.MonkeyPatch()
    mp.setenv("BEGE_PSD_CACHE", str(tmp / "cache"))
    mp.setenv("CI", "1")
    raw = _config(tmp)
    res = run_pipeline(load_config(raw), progress=False)
    yield tmp, raw, res
    mp.undo()


@pytest.mark.filterwarnings("ignore:.*:DeprecationWarning:matplotlib.*")
def test_chain_runs_every_stage(tiny):
    _, _, res = tiny
    status = {s.name: s.status for s in res.stages}
    for name in (
        "simulate_calibration",
        "simulate_sample",
        "calibrate",
        "template",
        "features_calibration",
        "features_sample",
        "train_aoe",
        "train_gmm",
        "apply_calibration",
        "apply_sample",
        "analyse",
        "figures",
    ):
        assert status[name] == "ran", (name, res.stages)
    assert res.report_md is not None
    assert res.report_html is not None
    md = res.report_md.read_text()
    assert "SIMULATED DATA" in md
    assert "| GMM |" in md
    assert "| A/E |" in md
    assert (res.results_dir / "figures" / "fig13_sample_spectrum_cuts.pdf").exists()


def test_friend_tree_is_entry_aligned_and_accounted(tiny):
    _, _, res = tiny
    results = json.loads((res.results_dir / "results.json").read_text())
    for which, n in (("calibration", N_CAL), ("sample", N_SAMPLE)):
        run_dir = results["runs"][which]["path"]
        raw = next(
            p
            for p in (res.results_dir.parent / "runs").rglob("RAW/*.root")
            if str(p).startswith(run_dir)
        )
        with uproot.open(raw) as f:
            energy_adc = f["Data_R"]["Energy"].array(library="np")
        with uproot.open(res.results_dir / "friends" / f"{which}_psd.root") as f:
            psd = f["PSD"].arrays(library="np")
        assert len(psd["entry"]) == len(energy_adc) == n
        np.testing.assert_array_equal(psd["entry"], np.arange(n))
        # energy_kev of row i is the calibrated energy of input entry i (monotone map)
        order = np.argsort(energy_adc, kind="stable")
        assert np.all(np.diff(psd["energy_kev"][order]) >= -1e-6)
        for sel in ("aoe", "gmm"):
            thr = results["models"][sel]["threshold"]
            score = psd[f"score_{sel}"]
            with np.errstate(invalid="ignore"):
                np.testing.assert_array_equal(psd[f"mask_{sel}"], score >= np.float32(thr))
            assert np.all(
                np.isnan(score[psd["quality"] != 0]) | (psd["quality"][psd["quality"] != 0] == 0)
            )
        acc = results["apply"][which]["accounting"]
        assert acc["read"] == n
        lo, hi = 300.0, 2700.0
        assert acc["in_range"] == int(np.sum((psd["energy_kev"] >= lo) & (psd["energy_kev"] <= hi)))
        for sel in ("aoe", "gmm"):
            in_range = (psd["energy_kev"] >= lo) & (psd["energy_kev"] <= hi)
            assert acc["kept"][sel] == int(np.sum(psd[f"mask_{sel}"] & in_range))
            assert acc["scored"][sel] == int(np.sum(np.isfinite(psd[f"score_{sel}"]) & in_range))
        with np.load(res.results_dir / "spectra" / f"{which}.npz") as z:
            for sel in ("aoe", "gmm"):
                np.testing.assert_array_equal(z[f"kept_{sel}"] + z[f"rejected_{sel}"], z["all"])
            inside = np.sum((psd["energy_kev"] >= 0) & (psd["energy_kev"] < z["edges"][-1]))
            assert z["all"].sum() == inside


@pytest.mark.dask
def test_apply_on_dask_equals_local(tiny):
    """``[run] executor = "dask"`` (LocalCluster, 2 workers): the apply stage computes features,
    energies and scores on the workers, and its friend trees and spectra equal the local ones
    bit for bit (the models, features and calibration are the copied local ones)."""
    import shutil

    tmp, raw, res = tiny
    local = tmp / "res_local_copy"
    shutil.copytree(res.results_dir, local)
    cfg = {
        **raw,
        "run": {
            **raw["run"],
            "results_dir": str(local),
            "figures": False,
            "executor": "dask",
            "dask_workers": 2,
        },
    }
    before = {}
    for which in ("calibration", "sample"):
        with uproot.open(local / "friends" / f"{which}_psd.root") as f:
            before[which] = f["PSD"].arrays(library="np")
        with np.load(local / "spectra" / f"{which}.npz") as z:
            before[which + "_spectra"] = {k: z[k] for k in z.files}
    out = run_pipeline(load_config(cfg), progress=False)
    status = {s.name: s.status for s in out.stages}
    for name in ("features_calibration", "features_sample", "train_aoe", "train_gmm"):
        assert status[name] == "skipped", (name, status)
    assert status["apply_calibration"] == status["apply_sample"] == "ran"
    # the workers compute the sample's features: its local features stage is not run
    assert "dask" in {s.name: s.detail for s in out.stages}["features_sample"]
    assert out.results["apply"]["sample"]["executor"] == "dask"
    for which in ("calibration", "sample"):
        with uproot.open(local / "friends" / f"{which}_psd.root") as f:
            after = f["PSD"].arrays(library="np")
        assert set(after) == set(before[which])
        for sel in ("aoe", "gmm"):
            assert np.isfinite(after[f"score_{sel}"]).sum() > 0
            np.testing.assert_array_equal(after[f"score_{sel}"], before[which][f"score_{sel}"])
            np.testing.assert_array_equal(after[f"mask_{sel}"], before[which][f"mask_{sel}"])
        for name in ("energy_kev", "entry", "flags", "quality"):
            np.testing.assert_array_equal(after[name], before[which][name])
        with np.load(local / "spectra" / f"{which}.npz") as z:
            spectra = {k: z[k] for k in z.files}
        assert set(spectra) == set(before[which + "_spectra"])
        for key, counts in spectra.items():
            np.testing.assert_array_equal(counts, before[which + "_spectra"][key], err_msg=key)
        assert spectra["all"].sum() > 0
    assert (
        out.results["apply"]["sample"]["accounting"] == res.results["apply"]["sample"]["accounting"]
    )


def test_executor_is_validated(tmp_path):
    import argparse

    from bege_psd.pipeline_cli import register, run_overrides

    with pytest.raises(ConfigError, match=r"run\.executor.*'spark'.*'local', 'dask'"):
        load_config({"run": {"executor": "spark"}})
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["run", "c.toml", "--scheduler", "tcp://h:8786"])
    assert run_overrides(args) == {"executor": "dask", "scheduler": "tcp://h:8786"}
    args = parser.parse_args(["run", "c.toml", "--executor", "local", "--results-dir", "r"])
    assert run_overrides(args) == {"executor": "local", "results_dir": "r"}
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "c.toml", "--executor", "spark"])


def test_resume_skips_what_matches(tiny):
    tmp, raw, _ = tiny
    again = run_pipeline(load_config(raw), progress=False)
    status = {s.name: s.status for s in again.stages}
    assert all(v == "skipped" for k, v in status.items() if k != "report"), status
    # a new GMM configuration retrains the GMM and re-applies, but keeps features and A/E
    raw2 = {**raw, "gmm": {"threshold": 0.6}, "run": {**raw["run"], "figures": False}}
    third = run_pipeline(load_config(raw2), progress=False)
    status = {s.name: s.status for s in third.stages}
    assert status["features_calibration"] == "skipped"
    assert status["train_aoe"] == "skipped"
    assert status["train_gmm"] == "ran"
    assert status["apply_sample"] == "ran"
    assert json.loads((tmp / "res" / "results.json").read_text())["models"]["gmm"][
        "threshold"
    ] == pytest.approx(0.6)


def test_bad_config_names_key_and_values(tmp_path):
    with pytest.raises(
        ConfigError, match=r"run.selectors.*'svm'.*allowed values: 'aoe', 'gmm', 'acm'"
    ):
        load_config({"run": {"selectors": ["gmm", "svm"]}})
    with pytest.raises(ConfigError, match=r"run\.chunk_size = 0 is below the allowed minimum 1"):
        load_config({"run": {"chunk_size": 0}})
    with pytest.raises(ConfigError, match=r"run\.calibration_run.*does not exist"):
        run_pipeline(
            {
                "run": {
                    "calibration_run": str(tmp_path / "nope"),
                    "results_dir": str(tmp_path / "r"),
                }
            },
            progress=False,
        )


def test_cli_run_prints_report(tiny, capsys):
    from bege_psd.cli import main

    tmp, raw, _ = tiny
    # the config names another folder; --results-dir overrides it
    raw = {**raw, "run": {**raw["run"], "figures": False, "results_dir": str(tmp / "not_used")}}
    toml = _to_toml(raw)
    path = tmp / "cfg.toml"
    path.write_text(toml)
    assert main(["-q", "run", str(path), "--results-dir", str(tmp / "res")]) == 0
    out = capsys.readouterr().out
    assert f"report: {(tmp / 'res' / 'report.html').resolve()}" in out
    assert not (tmp / "not_used").exists()


def _to_toml(raw):
    out = []
    for section, table in raw.items():
        flat = {k: v for k, v in table.items() if not isinstance(v, dict)}
        out.append(f"[{section}]")
        out.extend(f"{k} = {json.dumps(v)}" for k, v in flat.items())
        for key, sub in table.items():
            if isinstance(sub, dict):
                out.append(f"[{section}.{key}]")
                out.extend(f"{k} = {json.dumps(v)}" for k, v in sub.items())
    return "\n".join(out) + "\n"


@pytest.mark.ml
def test_acm_in_the_chain(tiny):
    tmp, raw, _ = tiny
    raw = {
        **raw,
        "run": {
            **raw["run"],
            "selectors": ["acm"],
            "results_dir": str(tmp / "res_acm"),
            "acm_train_max_events": 3000,
        },
        "acm": {"ae_max_events": 2000, "ae_epochs": 1, "clf_epochs": 2, "threads": 2},
    }
    res = run_pipeline(load_config(raw), progress=False)
    status = {s.name: s.status for s in res.stages}
    assert status["simulate_calibration"] == "skipped"  # same runs as the other tests
    assert status["train_acm"] == "ran", res.stages
    with uproot.open(res.results_dir / "friends" / "sample_psd.root") as f:
        psd = f["PSD"].arrays(["score_acm", "energy_kev"], library="ak")
    score = ak.to_numpy(psd.score_acm)
    e = ak.to_numpy(psd.energy_kev)
    inside = (e >= 300) & (e <= 2700)
    # scored in range (unless flagged), NaN outside, never outside [0, 1]
    assert np.all(np.isnan(score[~inside]))
    assert np.nanmin(score) >= 0
    assert np.nanmax(score) <= 1
    assert np.isfinite(score[inside]).mean() > 0.8
    assert "ACM" in res.report_md.read_text()


@pytest.mark.slow
@pytest.mark.ml
def test_bigger_chain_improves_peak_to_compton(tmp_path, monkeypatch):
    """Demo-sized run (all three selectors): every stage runs and every cut improves the
    137Cs peak-to-Compton ratio while keeping a reasonable part of the peak."""
    monkeypatch.setenv("CI", "1")
    raw = _config(
        tmp_path,
        calibration_events=150_000,
        sample_events=100_000,
        selectors=["aoe", "gmm", "acm"],
        chunk_size=50_000,
        acm_train_max_events=40_000,
        export_formats=["root", "n42", "spe"],
    )
    raw["aoe"] = {}
    raw["acm"] = {"ae_max_events": 20_000, "ae_epochs": 10, "clf_epochs": 30, "threads": 2}
    res = run_pipeline(load_config(raw), progress=False)
    assert not res.missing, res.stages
    table2 = {r["selection"]: r for r in res.results["analysis"]["table2"]}
    for sel in ("aoe", "gmm", "acm"):
        assert table2[sel]["pc_fit_kev_improvement"] > 1.0, table2[sel]
        assert 0.2 < table2[sel]["peak_survival"] <= 1.0
        assert res.results["analysis"]["roc_truth"][sel]["auc"] > 0.6
    assert (res.results_dir / "export" / "sample_kept_acm.n42").exists()


def test_given_run_paths_and_simulation_label(tiny):
    """Runs given by path are used as they are; a run without the simulator's truth file is
    treated as measured (no SIMULATED DATA label), one with it as simulated."""
    import shutil

    tmp, raw, res = tiny
    results = json.loads((res.results_dir / "results.json").read_text())
    cal = results["runs"]["calibration"]["path"]
    measured = tmp / "measured_sample"
    shutil.copytree(results["runs"]["sample"]["path"], measured)
    for truth in measured.rglob("*_truth.root"):
        truth.unlink()
    cfg = {
        **raw,
        "run": {
            **raw["run"],
            "calibration_run": cal,
            "sample_run": str(measured),
            "results_dir": str(tmp / "res_given"),
            "selectors": ["gmm"],
            "figures": False,
        },
    }
    out = run_pipeline(load_config(cfg), progress=False)
    status = {s.name: s.status for s in out.stages}
    assert "simulate_calibration" not in status
    assert status["apply_sample"] == "ran"
    runs = out.results["runs"]
    assert runs["calibration"]["simulated"] is True
    assert runs["sample"]["simulated"] is False
    md = out.report_md.read_text()
    assert "SIMULATED DATA: the calibration run(s) are simulated" in md  # models trained on it
    assert out.results["apply"]["sample"]["accounting"]["read"] == N_SAMPLE
