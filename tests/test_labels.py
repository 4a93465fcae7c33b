from __future__ import annotations

import numpy as np
import pytest

from bege_psd.select.labels import LabelConfig, balanced_indices, label_events, window_ids


def test_windows_and_labels():
    e = np.array([2615.0, 2100.0, 2500.0, 1592.0, 2200.0, 1000.0, np.nan, 2609.0, 2621.0])
    assert window_ids(e).tolist() == [0, 1, 2, 3, 4, -1, -1, 0, 0]
    assert label_events(e).tolist() == [1, 1, 1, 0, 0, -1, -1, 1, 1]


def test_balanced_keeps_window_proportions():
    rng = np.random.default_rng(1)
    e = np.concatenate(
        [
            rng.uniform(2609, 2621, 4000),  # fep (MSE)
            rng.uniform(2436, 2564, 2000),  # multi-compton (MSE)
            rng.uniform(1590, 1595, 1000),  # dep (SSE)
            rng.uniform(2130, 2370, 500),  # single-compton (SSE)
        ]
    )
    idx, lab = balanced_indices(e, seed=3)
    assert (lab == 1).sum() == (lab == 0).sum() == 1500
    ids = window_ids(e[idx])
    frac_fep = (ids == 0).sum() / (lab == 1).sum()
    assert frac_fep == pytest.approx(4000 / 6000, abs=0.04)
    assert np.all(np.diff(idx) > 0)


def test_bad_window():
    with pytest.raises(ValueError, match=r"labels\.dep"):
        LabelConfig(dep=(1595.0, 1590.0))
