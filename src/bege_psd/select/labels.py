"""Energy-window labels for supervised training and for evaluation (the paper's Table 1).

With a 232Th source, events in the 208Tl full-energy peak (FEP), single-escape peak (SEP) and a
multi-Compton window are mostly multi-site (MSE, label 1); events in the double-escape peak
(DEP) and a single-Compton window are mostly single-site (SSE, label 0). The labels are noisy
(the 228Ac 1588.2 keV line sits beside the DEP; Compton events leak under every peak), which is
part of why the paper's classifier reaches only ~68 % accuracy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ("LabelConfig", "balanced_indices", "label_events", "window_ids")

MSE, SSE, UNLABELLED = 1, 0, -1


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    """Label windows in keV (paper Table 1). The authors' code used DEP [1587, 1599]."""

    fep: tuple[float, float] = (2609.0, 2621.0)
    sep: tuple[float, float] = (2098.0, 2109.0)
    multi_compton: tuple[float, float] = (2436.0, 2564.0)
    dep: tuple[float, float] = (1590.0, 1595.0)
    single_compton: tuple[float, float] = (2130.0, 2370.0)
    #: the energy range of events used for training and scoring by the ACM
    energy_range: tuple[float, float] = (300.0, 2700.0)
    balance: bool = field(default=True, metadata={"doc": "undersample the larger class"})

    def __post_init__(self) -> None:
        for f in ("fep", "sep", "multi_compton", "dep", "single_compton", "energy_range"):
            lo, hi = getattr(self, f)
            if not lo < hi:
                msg = f"labels.{f} = [{lo}, {hi}]: the lower edge must be below the upper edge"
                raise ValueError(msg)

    @property
    def mse_windows(self) -> dict[str, tuple[float, float]]:
        return {"fep": self.fep, "sep": self.sep, "multi_compton": self.multi_compton}

    @property
    def sse_windows(self) -> dict[str, tuple[float, float]]:
        return {"dep": self.dep, "single_compton": self.single_compton}


def window_ids(energy_kev: ArrayLike, config: LabelConfig | None = None) -> NDArray[np.int8]:
    """Index of the label window of each event: 0 fep, 1 sep, 2 multi_compton, 3 dep,
    4 single_compton, -1 none (windows are closed intervals; the first match wins)."""
    config = config or LabelConfig()
    e = np.asarray(energy_kev, dtype=np.float64)
    out = np.full(e.shape, -1, dtype=np.int8)
    windows = [*config.mse_windows.values(), *config.sse_windows.values()]
    for i, (lo, hi) in reversed(list(enumerate(windows))):
        out[(e >= lo) & (e <= hi)] = i
    return out


def label_events(energy_kev: ArrayLike, config: LabelConfig | None = None) -> NDArray[np.int8]:
    """1 (MSE window), 0 (SSE window) or -1 (no window) per event; NaN energies get -1."""
    ids = window_ids(energy_kev, config)
    out = np.full(ids.shape, UNLABELLED, dtype=np.int8)
    out[(ids >= 0) & (ids <= 2)] = MSE
    out[ids >= 3] = SSE
    return out


def balanced_indices(
    energy_kev: ArrayLike, config: LabelConfig | None = None, *, seed: int = 0
) -> tuple[NDArray[np.int64], NDArray[np.int8]]:
    """Indices of a class-balanced labelled subsample and their labels.

    The larger class is undersampled uniformly, which keeps the proportions between the
    windows of that class (each window loses the same fraction). Returns sorted indices.
    """
    config = config or LabelConfig()
    labels = label_events(energy_kev, config)
    idx_mse = np.flatnonzero(labels == MSE)
    idx_sse = np.flatnonzero(labels == SSE)
    if config.balance:
        rng = np.random.default_rng(seed)
        n = min(idx_mse.size, idx_sse.size)
        idx_mse = rng.choice(idx_mse, size=n, replace=False) if idx_mse.size > n else idx_mse
        idx_sse = rng.choice(idx_sse, size=n, replace=False) if idx_sse.size > n else idx_sse
    idx = np.sort(np.concatenate([idx_mse, idx_sse]))
    return idx, labels[idx]
