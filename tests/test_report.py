"""Analysis stage, figures and report on a synthetic results folder (no upstream stages)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bege_psd.config import load_config, to_mapping
from bege_psd.io.friend import write_friend
from bege_psd.pipeline import _after_apply, _Context, _line_stats, _table2
from bege_psd.report import ReportConfig, write_report

EDGES = np.arange(0.0, 3000.5, 0.5)


def _peak(centre: float, area: float, sigma: float = 0.6) -> np.ndarray:
    from scipy.stats import norm

    return area * np.diff(norm.cdf(EDGES, centre, sigma))


def _sample_spectra(rng: np.random.Generator) -> dict[str, np.ndarray]:
    x = 0.5 * (EDGES[1:] + EDGES[:-1])
    compton = np.where(x < 477.7, 40.0, 40.0 * np.exp(-(x - 477.7) / 800)) * (x > 50)
    all_mu = compton + _peak(661.657, 20000) + _peak(477.6035, 300)
    # the cut keeps 15 % of the continuum and 60 % of the peaks
    kept_mu = 0.15 * compton + _peak(661.657, 12000) + _peak(477.6035, 180)
    kept = rng.poisson(kept_mu).astype(float)
    rejected = rng.poisson(all_mu - kept_mu).astype(float)
    return {"edges": EDGES, "all": kept + rejected, "kept_gmm": kept, "rejected_gmm": rejected}


def test_table2_and_lines_measure_the_injected_cut():
    sp = _sample_spectra(np.random.default_rng(3))
    rows = _table2(sp, None)
    assert [r["selection"] for r in rows] == ["original", "gmm"]
    orig, gmm = rows
    # injected: peak survival 0.6, continuum survival 0.15 -> fitted P/C improves by 4
    assert gmm["peak_survival"] == pytest.approx(0.6, abs=4 * gmm["peak_survival_err"] + 0.01)
    assert gmm["pc_fit_kev_improvement"] == pytest.approx(4.0, rel=0.08)
    assert gmm["pc_maxbin_improvement"] == pytest.approx(4.0, rel=0.15)
    assert orig["pc_fit_kev"] == pytest.approx(20000 / 80.0, rel=0.05)  # 40 per 0.5 keV bin
    lines = _line_stats(sp, {"Be-7 477.6": 477.6035, "Cs-137 661.7": 661.657}, 2.0)
    be = lines["gmm"]["Be-7 477.6"]
    assert be["fraction"] == pytest.approx(0.6, abs=3 * be["error"])
    # background drops to 15 %, peak to 60 %: the MDA goes down
    assert lines["gmm"]["Be-7 477.6"]["mda_relative"] < 1.0
    assert (
        lines["gmm"]["Be-7 477.6"]["significance"] > lines["original"]["Be-7 477.6"]["significance"]
    )


@pytest.fixture(scope="module")
def results_folder(tmp_path_factory):
    """A results folder as the apply stage leaves it: spectra, a friend tree, no models."""
    rng = np.random.default_rng(5)
    res = tmp_path_factory.mktemp("report") / "res"
    cfg = load_config({"run": {"results_dir": str(res), "export_formats": []}})
    (res / "spectra").mkdir(parents=True)
    np.savez(res / "spectra" / "sample.npz", **_sample_spectra(rng))
    x = 0.5 * (EDGES[1:] + EDGES[:-1])
    th_mu = 30 * np.exp(-x / 900) + _peak(2614.51, 3000) + _peak(1592.51, 800) + _peak(2103.51, 600)
    th_kept = (
        th_mu * 0.35
        + _peak(2614.51, 1500)
        + _peak(2103.51, 300)
        - 0.35 * (_peak(2614.51, 3000) + _peak(2103.51, 600))
    )
    kept = rng.poisson(np.clip(th_kept, 0, None)).astype(float)
    rej = rng.poisson(np.clip(th_mu - th_kept, 0, None)).astype(float)
    np.savez(
        res / "spectra" / "calibration.npz",
        edges=EDGES,
        all=kept + rej,
        kept_gmm=kept,
        rejected_gmm=rej,
    )
    n = 4000
    energy = np.concatenate(
        [
            rng.uniform(300, 1500, n - 400),
            rng.normal(1592.5, 0.5, 200),
            rng.normal(2614.5, 0.5, 200),
        ]
    )
    score = np.concatenate([rng.uniform(0, 1, n - 400), rng.beta(2, 5, 200), rng.beta(5, 2, 200)])
    write_friend(
        res / "friends" / "calibration_psd.root",
        [
            {
                "energy_kev": energy,
                "risetime_ns": np.where(score > 0.5, 400.0, 200.0) + rng.normal(0, 30, n),
                "score_gmm": score,
                "mask_gmm": score >= 0.5,
            }
        ],
    )
    (res / "config.json").write_text(
        json.dumps({k: to_mapping(cfg.section(k)) for k in ("labels", "report", "run")})
    )
    ctx = _Context(cfg, progress=False, force=True)
    ctx.stamps["apply_calibration"] = ctx.stamps["apply_sample"] = "x"
    results = {
        "simulated": True,
        "runs": {
            "calibration": {"simulated": True, "source": "th232", "n_events": n, "seed": 0},
            "sample": {"simulated": True},
        },
        "selectors": ["gmm"],
        "models": {
            "gmm": {
                "threshold": 0.5,
                "path": "models/gmm.json",
                "config_hash": "abc",
                "versions": {"bege_psd": "0.1"},
            }
        },
        "apply": {
            "sample": {
                "accounting": {
                    "read": 1000,
                    "in_range": 900,
                    "flagged": {"pileup": 3},
                    "kept": {"gmm": 400},
                }
            }
        },
    }
    _after_apply(ctx, {"calibration": None, "sample": None}, results)
    return res, ctx, results


@pytest.mark.filterwarnings("ignore:.*:DeprecationWarning:matplotlib.*")
def test_figures_and_report(results_folder):
    res, ctx, _ = results_folder
    status = {s.name: s.status for s in ctx.stages}
    assert status["analyse"] == "ran"
    assert status["figures"] == "ran", ctx.stages
    assert status["report"] == "ran"
    figs = sorted(p.name for p in (res / "figures").iterdir())
    for stem in (
        "fig04_th232_spectrum_labels",
        "fig07_dep_region_cuts",
        "fig08_working_point_gmm",
        "fig09_roc_labels",
        "fig12_score_distributions",
        "fig13_sample_spectrum_cuts",
        "fig14_be7_closeup",
        "survival_sample",
        "mda_sample",
    ):
        assert f"{stem}.png" in figs, figs
        assert f"{stem}.pdf" in figs, figs
    md = (res / "report.md").read_text()
    html = (res / "report.html").read_text()
    assert "SIMULATED DATA" in md
    assert "SIMULATED DATA" in html
    assert "paper's Table 2" in md
    assert "| GMM |" in md
    assert md.count("![") == len([f for f in figs if f.endswith(".png")])
    assert "data:image/png;base64," in html
    assert "7Be 477.6 keV significance" in md
    assert "pileup: 3" in md
    analysis = json.loads((res / "results_analysis.json").read_text())
    assert analysis["roc_labels"]["gmm"]["auc"] > 0.8  # the DEP/FEP scores were drawn separated


def test_report_alone_and_config(results_folder):
    res, _, results = results_folder
    measured = {
        **results,
        "simulated": False,
        "runs": {"calibration": {"simulated": False, "path": "/data/run_th"}},
    }
    (res / "results.json").write_text(json.dumps(measured))
    md, html = write_report(res, None, ReportConfig(formats=("md",)))
    assert html is None
    assert "SIMULATED DATA" not in md.read_text()
    with pytest.raises(ValueError, match="allowed values: 'md', 'html'"):
        ReportConfig(formats=("pdf",))


def test_cli_report(results_folder):
    from bege_psd.cli import main

    res, _, results = results_folder
    (res / "results.json").write_text(json.dumps(results))
    (res / "report.md").unlink()
    assert main(["report", str(res)]) == 0
    assert (res / "report.md").exists()
