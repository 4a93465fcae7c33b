"""Figures: the "Simulation" label, PNG + PDF output, content of the scan and ROC plots."""

from __future__ import annotations

import numpy as np
import pytest

from bege_psd import plot

pytestmark = pytest.mark.filterwarnings("ignore:.*:DeprecationWarning:matplotlib.*")


def _texts(fig):
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


@pytest.mark.parametrize("simulated", [True, False])
def test_simulation_label(simulated):
    edges = np.arange(0.0, 11.0)
    fig = plot.spectrum_comparison(
        {"original": np.ones(10), "acm": np.full(10, 0.5)}, edges, (0, 10), simulated=simulated
    )
    assert ("Simulation" in _texts(fig)) is simulated
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["Original", "ACM"]


def test_save_png_pdf(tmp_path):
    fig = plot.roc_curves({"gmm": {"fpr": [0, 0.5, 1], "tpr": [0, 0.9, 1], "auc": 0.7}})
    paths = plot.save_figure(fig, tmp_path / "roc")
    assert [p.name for p in paths] == ["roc.png", "roc.pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG"
    assert paths[1].read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "roc.pdf",
        "roc.png",
    ]  # no temp files left


def test_scan_and_features_plot_their_data():
    scan = [
        {"threshold": t, "kept_fraction": 1 - t, "tl_pc": 1 + t, "tl_pc_err": 0.1}
        for t in np.linspace(0, 1, 5)
    ]
    fig = plot.working_point_scan(scan, 0.58, selector="acm")
    ax, ax2 = fig.axes
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1, 1.25, 1.5, 1.75, 2])
    np.testing.assert_allclose(ax2.lines[0].get_ydata(), [1, 0.75, 0.5, 0.25, 0])
    rng = np.random.default_rng(1)
    sse = {"risetime_ns": rng.normal(200, 20, 500), "n_peaks_d2": rng.integers(2, 3, 500)}
    mse = {"risetime_ns": rng.normal(400, 50, 500), "n_peaks_d2": rng.integers(3, 6, 500)}
    fig = plot.feature_distributions(sse, mse)
    assert [a.get_xlabel() for a in fig.axes] == ["risetime_ns", "n_peaks_d2"]
