"""The paper's unsupervised selection: a Gaussian mixture on standardised pulse-shape features.

What it does
------------
:class:`GMMSelector` fits a scikit-learn ``GaussianMixture`` (2 components, full covariance by
default) to standardised features (default: ``risetime_ns``, ``l1_to_sse``, ``n_peaks_d2``;
adding ``a_over_e`` is one line: ``features = [..., "a_over_e"]``). The score of an event is the
posterior probability of the multi-site (MSE) component(s); the default threshold is 0.5.

Which component is MSE is decided from physics, not by hand (the paper's authors answered a
prompt). Two pieces of evidence are computed and stored with the model (``evidence``):

1. *DEP vs FEP*: the share of the 208Tl double-escape-peak window (mostly single-site) and of
   the 2614.5 keV full-energy-peak window (mostly multi-site) carried by each component
   (posterior-weighted). The MSE component is the one whose FEP share exceeds its DEP share most,
   i.e. keeping it removes more of the DEP relative to the FEP. Needs a 232Th/228Th run.
2. *Rise time*: the MSE component has the longer mean 10-90 % rise time (MSE pulses are the sum
   of several drifts arriving at different times).

Window evidence decides when available (enough events in both windows), rise time otherwise. A
:class:`~bege_psd.errors.UnderdeterminedComponentWarning` is issued when the two disagree or the
deciding one is weak. ``mse_components`` in the config overrides the decision.

With ``bic_max_components > 2`` the number of components is chosen by BIC (2..max) and every
component is mapped to MSE or SSE by the same evidence, component by component.

Speed
-----
The mixture is fitted on a random subsample (``max_fit_events``, default 100 000) in float32,
starting from the parameters of a quick fit on 20 000 events (``init_fit_events``), and scored
on all events by a vectorised numpy evaluation of the stored parameters (no scikit-learn needed
to score). On 1.5 M events this is several times faster than scikit-learn's default fit on
all events, with the same hard assignment for > 99.5 % of the events (``benchmarks/bench_gmm.py``).

Integer-valued features (the number of d2 peaks) are dequantised for the fit only: uniform
noise of one unit width is added, because otherwise a component can collapse onto the single
value ``n_peaks_d2 == 2`` (a near-zero variance, hence an unbounded likelihood), and the mixture
then separates "exactly two peaks" from "more" instead of SSE from MSE. Scoring uses the values
as they are.

Model files are plain JSON (parameters, feature scaling, evidence, version, config hash); never
pickle.

Measured on the simulated runs (``analysis/evaluate_selections.py``: train on 300 000 232Th
events, apply to 300 000 cryoconite events; AUC vs truth ``n_sites >= 2`` in 300-2700 / 300-700
keV; 137Cs peak-to-Compton factor, paper's definition, interpolated at 49.5 % peak survival):

==============================  ===========  ===========  ===========
selection                       AUC 232Th    AUC cryo.    factor@49.5%
==============================  ===========  ===========  ===========
default (rt, L1, n_peaks_d2)    0.704        0.694        1.67
+ ``a_over_e`` (4th feature)    0.671        0.666        1.67
+ corrected A/E classifier      0.675        0.672        1.73
``covariance_type="diag"``      0.703        0.716        1.94
A/E alone (for comparison)      0.686        0.702        2.43
==============================  ===========  ===========  ===========

(with the noise-aware ``n_peaks_d2`` of :mod:`bege_psd.dsp`; with the relative-height-only count
the default GMM had 0.679 / 0.618 / 0.68.) The better GMM option on these runs is the paper's
three features with diagonal covariances (``[gmm] covariance_type = "diag"``); adding A/E as a
fourth feature does not help. No GMM variant reaches A/E's peak-to-Compton gain on the
simulated cryoconite run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, Self

import numba
import numpy as np
from numpy.typing import NDArray

from .. import __version__
from .._util import stable_hash
from ..config import to_mapping
from ..errors import ModelMismatchError, SelectionError, UnderdeterminedComponentWarning
from .base import (
    _check_header,
    _config_from_meta,
    _quality_ok,
    read_model_header,
    table_columns,
    threshold_for_kept_fraction,
    write_model_json,
)

__all__ = ("GMMConfig", "GMMSelector", "gaussian_mixture_posteriors")

log = logging.getLogger(__name__)

#: version of the on-disk model layout written by :meth:`GMMSelector.save`
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class GMMConfig:
    """Options of the Gaussian-mixture selection (TOML section ``[gmm]``)."""

    features: tuple[str, ...] = ("risetime_ns", "l1_to_sse", "n_peaks_d2")
    n_components: int = field(default=2, metadata={"min": 2, "max": 20})
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    #: choose the number of components by BIC between 2 and this (0: use n_components)
    bic_max_components: int = field(default=0, metadata={"min": 0, "max": 20})
    threshold: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    #: events used for training: energy window (keV)
    energy_range_kev: tuple[float, float] = (300.0, 2700.0)
    #: fit on a random subsample of this many events (0: all); scoring always uses all
    max_fit_events: int = field(default=100_000, metadata={"min": 0})
    #: first fit a smaller subsample of this many events and start the main fit from its
    #: parameters (a good initialisation: the main fit converges in a few EM steps); 0: off
    init_fit_events: int = field(default=0, metadata={"min": 0})
    #: integer-valued features (``n_peaks_d2``) get uniform noise of one unit width in the fit
    #: (not when scoring), so that a component cannot collapse onto a single integer value
    dequantize_integers: bool = True
    dtype: Literal["float32", "float64"] = "float32"
    init_params: Literal["kmeans", "k-means++", "random", "random_from_data"] = "kmeans"
    n_init: int = field(default=1, metadata={"min": 1})
    max_iter: int = field(default=200, metadata={"min": 1})
    tol: float = field(default=1e-3, metadata={"min": 0.0})
    seed: int = 0
    #: DEP and FEP windows (keV) for the evidence of which component is MSE
    dep_window_kev: tuple[float, float] = (1590.0, 1595.0)
    fep_window_kev: tuple[float, float] = (2609.0, 2621.0)
    min_window_events: int = field(default=30, metadata={"min": 1})
    #: |log(FEP share / DEP share)| difference below this is "weak" evidence (log(1.25))
    min_log_ratio: float = field(default=0.223, metadata={"min": 0.0})
    #: rise-time difference of the component means below this many pooled sigma is "weak"
    min_risetime_separation: float = field(default=0.2, metadata={"min": 0.0})
    #: field used for the rise-time evidence
    risetime_field: str = "risetime_ns"
    #: indices of the MSE components, overriding the automatic decision (empty: automatic)
    mse_components: tuple[int, ...] = ()
    #: silhouette score on a stratified subsample of this many events (0: skip)
    silhouette_events: int = field(default=10_000, metadata={"min": 0})
    #: events whose ``quality`` has any of these bits set are not used and score NaN
    quality_mask: int = field(default=0xFFFFFFFF, metadata={"min": 0})

    def __post_init__(self) -> None:
        if not self.features:
            msg = "gmm.features is empty: give at least one feature field"
            raise ValueError(msg)
        if len(set(self.features)) != len(self.features):
            msg = f"gmm.features {list(self.features)} lists a feature twice"
            raise ValueError(msg)
        for name in ("energy_range_kev", "dep_window_kev", "fep_window_kev"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                msg = f"gmm.{name} = [{lo}, {hi}]: the lower edge must be below the upper edge"
                raise ValueError(msg)
        if self.bic_max_components == 1:
            msg = "gmm.bic_max_components = 1: use 0 (off) or >= 2"
            raise ValueError(msg)


def _precision_cholesky(cov: NDArray[np.float64]) -> NDArray[np.float64]:
    """Upper-triangular ``U`` with ``U U^T = cov^-1`` for each (d, d) covariance in ``cov``."""
    out = np.empty_like(cov)
    eye = np.eye(cov.shape[-1])
    for k in range(cov.shape[0]):
        try:
            low = np.linalg.cholesky(cov[k])
        except np.linalg.LinAlgError as exc:
            msg = f"covariance of component {k} is not positive definite"
            raise SelectionError(msg) from exc
        from scipy.linalg import solve_triangular

        out[k] = solve_triangular(low, eye, lower=True).T
    return out


@numba.njit(
    "void(float64[:, :], float64[:], float64[:, :], float64[:, :, :], float64[:, :])",
    nogil=True,
    cache=True,
)
def _posteriors_kernel(
    x: NDArray[np.float64],
    log_norm: NDArray[np.float64],
    means: NDArray[np.float64],
    prec_chol: NDArray[np.float64],
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; compared with the numpy twin in the tests
    n, d = x.shape
    k_comp = means.shape[0]
    logp = np.empty(k_comp)
    for i in range(n):
        finite = True
        for j in range(d):
            if not np.isfinite(x[i, j]):
                finite = False
        if not finite:
            for k in range(k_comp):
                out[i, k] = np.nan
            continue
        top = -np.inf
        for k in range(k_comp):
            q = 0.0
            for c in range(d):  # y_c = sum_j (x_j - mu_j) U[j, c], U upper triangular
                y = 0.0
                for j in range(c + 1):
                    y += (x[i, j] - means[k, j]) * prec_chol[k, j, c]
                q += y * y
            logp[k] = log_norm[k] - 0.5 * q
            top = max(top, logp[k])
        total = 0.0
        for k in range(k_comp):
            logp[k] = np.exp(logp[k] - top)
            total += logp[k]
        for k in range(k_comp):
            out[i, k] = logp[k] / total


def _log_norm(weights: NDArray[np.float64], prec_chol: NDArray[np.float64]) -> NDArray[np.float64]:
    d = prec_chol.shape[-1]
    log_det = np.array([np.sum(np.log(np.diag(u))) for u in prec_chol])
    return np.asarray(np.log(weights) + log_det - 0.5 * d * math.log(2.0 * math.pi))


def gaussian_mixture_posteriors(
    x: NDArray[np.floating[Any]],
    weights: NDArray[np.float64],
    means: NDArray[np.float64],
    prec_chol: NDArray[np.float64],
    *,
    compiled: bool = True,
    chunk: int = 500_000,
) -> NDArray[np.float64]:
    """Posterior probability of each component, shape (n, K), for full-covariance parameters.

    ``prec_chol[k]`` is upper triangular with ``prec_chol[k] @ prec_chol[k].T`` the precision
    matrix (scikit-learn's ``precisions_cholesky_``). Rows with a non-finite feature get NaN.
    ``compiled=True`` uses a numba kernel (one pass, no temporaries); ``False`` its plain-numpy
    twin, evaluated in chunks of ``chunk`` rows to bound memory.
    """
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    mu = np.ascontiguousarray(means, dtype=np.float64)
    u = np.ascontiguousarray(prec_chol, dtype=np.float64)
    log_norm = _log_norm(w, u)
    n = x64.shape[0]
    out = np.empty((n, w.size))
    if compiled:
        _posteriors_kernel(x64, log_norm, mu, u, out)
        return out
    for start in range(0, n, chunk):
        xs = x64[start : start + chunk]
        logp = np.empty((xs.shape[0], w.size))
        for k in range(w.size):
            y = (xs - mu[k]) @ u[k]
            logp[:, k] = log_norm[k] - 0.5 * np.einsum("ij,ij->i", y, y)
        with np.errstate(invalid="ignore"):
            top = logp.max(axis=1, keepdims=True)
            p = np.exp(logp - top)
            p /= p.sum(axis=1, keepdims=True)
        out[start : start + chunk] = p
    return out


def _full_covariances(gm: Any, d: int) -> NDArray[np.float64]:
    """Covariances of a fitted sklearn mixture as (K, d, d), whatever its covariance_type."""
    cov = np.asarray(gm.covariances_, dtype=np.float64)
    k = gm.weights_.size
    match gm.covariance_type:
        case "full":
            return cov
        case "tied":
            return np.broadcast_to(cov, (k, d, d)).copy()
        case "diag":
            return np.stack([np.diag(c) for c in cov])
        case _:  # spherical
            return np.stack([np.eye(d) * c for c in cov])


class GMMSelector:
    """Unsupervised Gaussian-mixture selection; score = posterior of the MSE component(s).

    Parameters
    ----------
    config
        :class:`GMMConfig`; defaults when ``None``.

    Attributes set by :meth:`fit` (or :meth:`load`): ``weights``, ``means``, ``covariances``
    (in standardised feature units), ``scaler_mean``, ``scaler_scale``, ``mse_components``,
    ``evidence`` (a dict: what decided which component is MSE), ``silhouette``, ``training``.

    Examples
    --------
    >>> sel = GMMSelector().fit(table)             # doctest: +SKIP
    >>> sel.evidence["decided_by"], sel.silhouette  # doctest: +SKIP
    >>> kept = sel.mask(table)                      # MSE-like events
    """

    name = "gmm"

    def __init__(self, config: GMMConfig | None = None) -> None:
        self.config = config or GMMConfig()
        self.threshold: float = self.config.threshold
        self.weights: NDArray[np.float64] | None = None
        self.means: NDArray[np.float64] | None = None
        self.covariances: NDArray[np.float64] | None = None
        self._prec_chol: NDArray[np.float64] | None = None
        self.scaler_mean: NDArray[np.float64] | None = None
        self.scaler_scale: NDArray[np.float64] | None = None
        self.mse_components: tuple[int, ...] = ()
        self.evidence: dict[str, Any] = {}
        self.silhouette: float = float("nan")
        self.training: dict[str, Any] = {}

    # -- data --------------------------------------------------------------------------
    def _matrix(self, table: Any) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        cols = table_columns(table, self.config.features, where="GMM selector")
        x = np.column_stack([cols[f] for f in self.config.features])
        ok = np.all(np.isfinite(x), axis=1) & _quality_ok(
            table, self.config.quality_mask, x.shape[0]
        )
        return x, ok

    # -- fitting -----------------------------------------------------------------------
    def fit(self, table: Any, **kwargs: Any) -> Self:
        """Fit the mixture on ``table`` (events in ``energy_range_kev`` with finite features)."""
        if kwargs:
            msg = f"GMMSelector.fit: unexpected keyword arguments {sorted(kwargs)}"
            raise TypeError(msg)
        from ..errors import require

        mixture = require("sklearn.mixture", "ml")
        cfg = self.config
        x, ok = self._matrix(table)
        e = table_columns(table, ["energy_kev"], where="GMM selector")["energy_kev"]
        in_range = (e >= cfg.energy_range_kev[0]) & (e <= cfg.energy_range_kev[1])
        train = ok & in_range
        n_train = int(train.sum())
        d = x.shape[1]
        if n_train < 10 * (cfg.n_components + d):
            msg = (
                f"GMM training needs finite features {list(cfg.features)} and energy in "
                f"{list(cfg.energy_range_kev)} keV for at least {10 * (cfg.n_components + d)} events; "
                f"got {n_train} of {e.size} ({int((~ok).sum())} with NaN features or quality flags)"
            )
            raise SelectionError(msg)
        xt = x[train]
        mean = xt.mean(axis=0)
        scale = xt.std(axis=0)
        if np.any(scale == 0):
            const = [f for f, s in zip(cfg.features, scale, strict=True) if s == 0]
            msg = f"GMM features {const} are constant over the training events; drop them"
            raise SelectionError(msg)
        z = (xt - mean) / scale
        rng = np.random.default_rng(cfg.seed)
        if cfg.max_fit_events and n_train > cfg.max_fit_events:
            sub = np.sort(rng.choice(n_train, size=cfg.max_fit_events, replace=False))
        else:
            sub = np.arange(n_train)
        z_fit = np.array(z[sub], dtype=np.dtype(cfg.dtype))
        integer_features = [
            f
            for j, f in enumerate(cfg.features)
            if np.all(xt[sub[:10_000], j] == np.round(xt[sub[:10_000], j]))
        ]
        if cfg.dequantize_integers and integer_features:
            for f in integer_features:
                j = cfg.features.index(f)
                z_fit[:, j] += (rng.random(z_fit.shape[0]) - 0.5).astype(z_fit.dtype) / scale[j]
        n_init_fit = cfg.init_fit_events if 0 < cfg.init_fit_events < z_fit.shape[0] else 0

        def make(k: int, start: Any = None) -> Any:
            kw: dict[str, Any] = {}
            if start is not None and cfg.covariance_type == "full":
                kw = {"weights_init": start.weights_, "means_init": start.means_,
                      "precisions_init": start.precisions_}  # fmt: skip
            return mixture.GaussianMixture(  # type: ignore[attr-defined]
                n_components=k,
                covariance_type=cfg.covariance_type,
                init_params=cfg.init_params,
                n_init=cfg.n_init if start is None else 1,
                max_iter=cfg.max_iter,
                tol=cfg.tol,
                random_state=cfg.seed,
                **kw,
            )

        def fit_k(k: int) -> Any:
            if n_init_fit:
                pre = make(k).fit(z_fit[rng.choice(z_fit.shape[0], n_init_fit, replace=False)])
                return make(k, pre).fit(z_fit)
            return make(k).fit(z_fit)

        bic: dict[int, float] = {}
        with warnings.catch_warnings(record=True) as caught:
            # sklearn's ConvergenceWarning: recorded in `training` and logged, not raised
            warnings.simplefilter("always")
            if cfg.bic_max_components >= 2:
                models = {}
                for k in range(2, cfg.bic_max_components + 1):
                    models[k] = fit_k(k)
                    bic[k] = float(models[k].bic(z_fit))
                best = min(bic, key=lambda k: bic[k])
                gm = models[best]
                log.info("GMM: BIC chose %d components (%s)", best, bic)
            else:
                gm = fit_k(cfg.n_components)
        for w in caught:
            log.warning("GaussianMixture: %s", w.message)
        self.weights = np.asarray(gm.weights_, dtype=np.float64)
        self.means = np.asarray(gm.means_, dtype=np.float64)
        self.covariances = _full_covariances(gm, d)
        self._prec_chol = _precision_cholesky(self.covariances)
        self.scaler_mean = mean
        self.scaler_scale = scale
        self.training = {
            "n_events": int(e.size),
            "n_train": n_train,
            "n_fit": int(z_fit.shape[0]),
            "n_unusable": int((~ok).sum()),
            "n_outside_energy_range": int((ok & ~in_range).sum()),
            "converged": bool(gm.converged_),
            "n_iter": int(gm.n_iter_),
            "bic": {str(k): v for k, v in bic.items()},
            "lower_bound": float(gm.lower_bound_),
        }
        self.training["dequantized_features"] = integer_features if cfg.dequantize_integers else []
        # evidence from the fit subsample (component means) plus every DEP/FEP window event
        e_train = e[train]
        windows = ((e_train >= cfg.dep_window_kev[0]) & (e_train <= cfg.dep_window_kev[1])) | (
            (e_train >= cfg.fep_window_kev[0]) & (e_train <= cfg.fep_window_kev[1])
        )
        ev_idx = np.union1d(sub, np.flatnonzero(windows))
        resp = gaussian_mixture_posteriors(z[ev_idx], self.weights, self.means, self._prec_chol)
        self.mse_components, self.evidence = self._decide(resp, xt[ev_idx], e_train[ev_idx])
        self.threshold = cfg.threshold
        if cfg.silhouette_events:
            in_sub = np.searchsorted(ev_idx, sub)
            self.silhouette = self._silhouette(z[sub], resp[in_sub], rng)
        log.info(
            "GMM fitted: %d components, MSE = %s (decided by %s), silhouette %.3f",
            self.weights.size, list(self.mse_components), self.evidence.get("decided_by"),
            self.silhouette,
        )  # fmt: skip
        return self

    def _decide(
        self, resp: NDArray[np.float64], x: NDArray[np.float64], e: NDArray[np.float64]
    ) -> tuple[tuple[int, ...], dict[str, Any]]:
        """Which components are MSE, with the evidence (see the module docstring)."""
        cfg = self.config
        k_comp = resp.shape[1]
        ev: dict[str, Any] = {}
        in_dep = (e >= cfg.dep_window_kev[0]) & (e <= cfg.dep_window_kev[1])
        in_fep = (e >= cfg.fep_window_kev[0]) & (e <= cfg.fep_window_kev[1])
        n_dep, n_fep = int(in_dep.sum()), int(in_fep.sum())
        ev["n_dep_window"], ev["n_fep_window"] = n_dep, n_fep
        window_ok = n_dep >= cfg.min_window_events and n_fep >= cfg.min_window_events
        log_ratio = None
        if window_ok:
            dep_share = resp[in_dep].sum(axis=0) / n_dep
            fep_share = resp[in_fep].sum(axis=0) / n_fep
            eps = 0.5 / max(n_dep, n_fep)
            log_ratio = np.log((fep_share + eps) / (dep_share + eps))
            ev["dep_share"] = dep_share.tolist()
            ev["fep_share"] = fep_share.tolist()
            ev["log_fep_over_dep"] = log_ratio.tolist()
        rt_means = None
        if cfg.risetime_field in cfg.features:
            j = cfg.features.index(cfg.risetime_field)
            w = resp.sum(axis=0)
            rt_means = (resp * x[:, j : j + 1]).sum(axis=0) / np.maximum(w, 1e-300)
            rt_var = (resp * (x[:, j : j + 1] - rt_means) ** 2).sum(axis=0) / np.maximum(w, 1e-300)
            ev["risetime_mean"] = rt_means.tolist()
            ev["risetime_std"] = np.sqrt(rt_var).tolist()
        # also record every feature's component means (original units), for the report
        w = resp.sum(axis=0)
        ev["feature_means"] = {
            f: ((resp * x[:, i : i + 1]).sum(axis=0) / np.maximum(w, 1e-300)).tolist()
            for i, f in enumerate(cfg.features)
        }
        ev["component_weights"] = (w / w.sum()).tolist()

        if cfg.mse_components:
            bad = [c for c in cfg.mse_components if not 0 <= c < k_comp]
            if bad:
                msg = f"gmm.mse_components {bad} out of range for {k_comp} components"
                raise SelectionError(msg)
            ev["decided_by"] = "config"
            return tuple(sorted(cfg.mse_components)), ev

        def rt_class() -> NDArray[np.bool_] | None:
            if rt_means is None:
                return None
            if k_comp == 2:
                return np.asarray(np.arange(2) == int(np.argmax(rt_means)))
            return np.asarray(rt_means > np.average(rt_means, weights=w))

        problems: list[str] = []
        rt_mse = rt_class()
        if log_ratio is not None:
            is_mse = (
                (np.arange(k_comp) == int(np.argmax(log_ratio))) if k_comp == 2 else log_ratio > 0
            )
            if not is_mse.any() or is_mse.all():  # >2 components all on one side
                is_mse = log_ratio >= np.median(log_ratio)
                problems.append("all components on one side of FEP/DEP parity; split at the median")
            decided_by = "dep_fep_windows"
            strength = float(log_ratio[is_mse].min() - log_ratio[~is_mse].max())
            ev["strength"] = strength
            if strength < cfg.min_log_ratio:
                problems.append(
                    f"weak DEP/FEP evidence: log(FEP share/DEP share) separation {strength:.3f} "
                    f"< {cfg.min_log_ratio}"
                )
            if rt_mse is not None and not np.array_equal(rt_mse, is_mse):
                problems.append(
                    "contradictory evidence: the DEP/FEP windows and the mean rise times point "
                    "to different MSE components"
                )
        elif rt_mse is not None:
            is_mse = rt_mse
            decided_by = "risetime"
            assert rt_means is not None
            pooled = float(np.sqrt(np.average(np.asarray(ev["risetime_std"]) ** 2, weights=w)))
            sep = float((rt_means[is_mse].min() - rt_means[~is_mse].max()) / max(pooled, 1e-300))
            ev["strength"] = sep
            if sep < cfg.min_risetime_separation:
                problems.append(
                    f"weak rise-time evidence: component means differ by {sep:.3f} pooled sigma"
                )
            log.info(
                "GMM: fewer than %d events in the DEP (%d) or FEP (%d) window; MSE component "
                "chosen by rise time", cfg.min_window_events, n_dep, n_fep,
            )  # fmt: skip
        else:
            is_mse = np.arange(k_comp) == int(np.argmax(ev["component_weights"]))
            decided_by = "none"
            problems.append(
                f"no evidence: fewer than {cfg.min_window_events} events in the DEP/FEP windows "
                f"and no {cfg.risetime_field!r} feature; the largest component was called MSE"
            )
        ev["decided_by"] = decided_by
        ev["problems"] = problems
        for p in problems:
            warnings.warn(
                f"GMM MSE component: {p}. Check evidence or set gmm.mse_components.",
                UnderdeterminedComponentWarning,
                stacklevel=3,
            )
        return tuple(int(i) for i in np.flatnonzero(is_mse)), ev

    def _silhouette(
        self, z: NDArray[np.float64], resp: NDArray[np.float64], rng: np.random.Generator
    ) -> float:
        """Silhouette of the MSE/SSE classes on a stratified subsample (class proportions kept)."""
        from sklearn.metrics import silhouette_score

        n_target = self.config.silhouette_events
        cls = self._class_score(resp) >= self.threshold
        idx_all = []
        n = z.shape[0]
        for value in (True, False):
            members = np.flatnonzero(cls == value)
            take = round(n_target * members.size / n) if n > n_target else members.size
            if take:
                idx_all.append(rng.choice(members, size=min(take, members.size), replace=False))
        idx = np.concatenate(idx_all) if idx_all else np.array([], dtype=np.int64)
        labels = cls[idx]
        if np.unique(labels).size < 2:
            log.warning("GMM silhouette undefined: all sampled events fall in one class")
            return float("nan")
        return float(silhouette_score(z[idx], labels))

    # -- scoring -----------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.weights is None:
            msg = "this GMMSelector is not fitted yet: call fit(table) or GMMSelector.load(path)"
            raise SelectionError(msg)

    def _class_score(self, resp: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(resp[:, list(self.mse_components)].sum(axis=1))

    def posteriors(self, table: Any) -> NDArray[np.float64]:
        """Posterior of every component, shape (n, K); NaN rows for unusable events."""
        self._require_fitted()
        assert self.scaler_mean is not None
        assert self.scaler_scale is not None
        assert self.weights is not None
        assert self.means is not None
        assert self._prec_chol is not None
        x, ok = self._matrix(table)
        out = np.full((x.shape[0], self.weights.size), np.nan)
        z = (x[ok] - self.scaler_mean) / self.scaler_scale
        out[ok] = gaussian_mixture_posteriors(z, self.weights, self.means, self._prec_chol)
        return out

    def score(self, table: Any) -> NDArray[np.float64]:
        """Posterior probability of the MSE component(s), in [0, 1]; NaN for unusable events
        (non-finite feature or a flagged ``quality`` bit)."""
        return self._class_score(self.posteriors(table))

    def mask(self, table: Any) -> NDArray[np.bool_]:
        """Kept (MSE-like) events: ``score >= threshold``; NaN scores are not kept."""
        s = self.score(table)
        return np.asarray(np.isfinite(s) & (s >= self.threshold))

    def with_threshold(self, threshold: float) -> Self:
        """A copy of this selector with another working point."""
        new = type(self)(self.config)
        new.__dict__.update(self.__dict__)
        new.evidence = dict(self.evidence)
        new.training = dict(self.training)
        new.threshold = float(threshold)
        return new

    def with_kept_fraction(
        self, table: Any, fraction: float, energy_range_kev: tuple[float, float] | None = None
    ) -> Self:
        """A copy whose threshold keeps ``fraction`` of ``table``'s events in the energy range."""
        e = table_columns(table, ["energy_kev"])["energy_kev"]
        t = threshold_for_kept_fraction(
            self.score(table), fraction, energy_kev=e,
            energy_range_kev=energy_range_kev or self.config.energy_range_kev,
        )  # fmt: skip
        return self.with_threshold(t)

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The model as plain JSON-ready data."""
        self._require_fitted()
        assert self.weights is not None
        assert self.means is not None
        assert self.covariances is not None
        assert self.scaler_mean is not None
        assert self.scaler_scale is not None
        cfg = to_mapping(self.config)
        return {
            "kind": "gmm",
            "format_version": FORMAT_VERSION,
            "bege_psd_version": __version__,
            "config": cfg,
            "config_hash": stable_hash(cfg),
            "threshold": self.threshold,
            "features": list(self.config.features),
            "scaler_mean": self.scaler_mean.tolist(),
            "scaler_scale": self.scaler_scale.tolist(),
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "covariances": self.covariances.tolist(),
            "mse_components": list(self.mse_components),
            "evidence": self.evidence,
            "silhouette": self.silhouette if math.isfinite(self.silhouette) else None,
            "training": self.training,
            "score_definition": "sum of posteriors of mse_components; 1 = MSE-like",
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as JSON (atomically); a non-``.json`` path gets ``.json`` appended."""
        return write_model_json(path, self.to_dict(), allow_nan=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str], config: GMMConfig | None = None) -> Self:
        """Read a model written by :meth:`save`.

        Raises :class:`ModelMismatchError` for another kind, format or package version, a
        configuration hash that does not match (the file was edited, or differs from ``config``
        when given), or parameters with inconsistent shapes or non-finite values.
        """
        meta = read_model_header(path)
        stored = _check_header(meta, "gmm", path, FORMAT_VERSION)
        file_cfg: GMMConfig = _config_from_meta(GMMConfig, stored, path, config)
        sel = cls(file_cfg)
        d = len(file_cfg.features)
        try:
            weights = np.asarray(meta["weights"], dtype=np.float64)
            means = np.asarray(meta["means"], dtype=np.float64)
            cov = np.asarray(meta["covariances"], dtype=np.float64)
            mu = np.asarray(meta["scaler_mean"], dtype=np.float64)
            sc = np.asarray(meta["scaler_scale"], dtype=np.float64)
            mse = tuple(int(i) for i in meta["mse_components"])
            thr = float(meta["threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"{path}: malformed GMM model parameters ({exc!r})"
            raise ModelMismatchError(msg) from exc
        k = weights.size
        shapes_ok = (
            weights.shape == (k,) and means.shape == (k, d) and cov.shape == (k, d, d)
            and mu.shape == (d,) and sc.shape == (d,) and k >= 2
        )  # fmt: skip
        if not shapes_ok:
            msg = (
                f"{path}: GMM parameter shapes do not fit {k} components x {d} features "
                f"(weights {weights.shape}, means {means.shape}, covariances {cov.shape}, "
                f"scaler {mu.shape}/{sc.shape})"
            )
            raise ModelMismatchError(msg)
        arrays_finite = all(np.all(np.isfinite(a)) for a in (weights, means, cov, mu, sc))
        if not arrays_finite or np.any(weights <= 0) or np.any(sc <= 0) or not 0 <= thr <= 1:
            msg = f"{path}: GMM parameters contain non-finite, non-positive weights/scales or a bad threshold"
            raise ModelMismatchError(msg)
        if not mse or any(not 0 <= i < k for i in mse):
            msg = f"{path}: mse_components {list(mse)} invalid for {k} components"
            raise ModelMismatchError(msg)
        try:
            prec = _precision_cholesky(cov)
        except SelectionError as exc:
            msg = f"{path}: {exc}"
            raise ModelMismatchError(msg) from exc
        sel.weights, sel.means, sel.covariances, sel._prec_chol = weights, means, cov, prec
        sel.scaler_mean, sel.scaler_scale = mu, sc
        sel.mse_components = mse
        sel.threshold = thr
        sel.evidence = dict(meta.get("evidence", {}))
        sil = meta.get("silhouette")
        sel.silhouette = float(sil) if sil is not None else float("nan")
        sel.training = dict(meta.get("training", {}))
        return sel
