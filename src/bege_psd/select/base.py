"""The common interface of every selection (A/E, GMM, ACM).

A selector is trained on, and scores, an *event table*: an :class:`awkward.Array` of records
holding the per-event features of :func:`bege_psd.dsp.features` (``risetime_ns``,
``l1_to_sse``, ``n_peaks_d2``, ``a_over_e``, ...), the calibrated energy ``energy_kev``, and
where a selector needs it (the ACM), the ``waveform``. The score is a float in [0, 1], 1 meaning
multi-site-like (kept); ``mask = score >= threshold``.

Model files are plain data (JSON / npz / ``.keras`` in safe mode), never pickle: a model file is
untrusted input. Each carries ``kind``, the package version and a configuration hash, so that
:func:`load_selector` can dispatch and refuse a mismatched file with a clear message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import __version__
from .._util import stable_hash
from ..config import from_mapping, to_mapping
from ..errors import ModelMismatchError, SelectionError, nearest_names

__all__ = (
    "KINDS",
    "Selector",
    "load_selector",
    "read_model_header",
    "table_columns",
    "threshold_for_kept_fraction",
    "write_model_json",
)

#: ``kind`` written in every model file -> ``module:Class`` that loads it
KINDS: dict[str, str] = {
    "aoe": "bege_psd.select.aoe:AoESelector",
    "gmm": "bege_psd.select.gmm:GMMSelector",
    "acm": "bege_psd.select.acm:ACMSelector",
}


@runtime_checkable
class Selector(Protocol):
    """What A/E, GMM and ACM have in common."""

    #: short name used in reports, file names and friend-tree branches (``score_<name>``)
    name: str
    #: working point: events with ``score >= threshold`` are kept (MSE-like)
    threshold: float

    def fit(self, table: Any, **kwargs: Any) -> Self:
        """Train on an event table; return ``self``."""
        ...

    def score(self, table: Any) -> NDArray[np.float64]:
        """Score in [0, 1] per event (1 = MSE-like); NaN where the event cannot be scored."""
        ...

    def mask(self, table: Any) -> NDArray[np.bool_]:
        """``score >= threshold`` (NaN scores are not kept)."""
        ...

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model (atomically); return the path written."""
        ...

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read a model written by :meth:`save`; raise ModelMismatchError if incompatible."""
        ...


def write_model_json(
    path: str | os.PathLike[str], payload: dict[str, Any], *, allow_nan: bool = False
) -> Path:
    """Write a JSON model (atomically); a path without ``.json`` gets ``.json`` appended."""
    from .._util import atomic_write_text

    p = Path(path)
    if p.suffix != ".json":
        p = p.with_name(p.name + ".json")
    atomic_write_text(p, json.dumps(payload, indent=2, allow_nan=allow_nan))
    return p


def read_model_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the JSON metadata of a model file (``.json``, or ``<path>.json`` beside it)."""
    p = Path(path)
    meta_path = p if p.suffix == ".json" else p.with_name(p.name + ".json")
    if not meta_path.exists():
        meta_path = p.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        msg = f"no model metadata at {meta_path} (expected the JSON written by Selector.save)"
        raise ModelMismatchError(msg) from None
    except json.JSONDecodeError as exc:
        msg = f"{meta_path} is not valid JSON model metadata: {exc}"
        raise ModelMismatchError(msg) from exc
    if not isinstance(meta, dict) or "kind" not in meta:
        msg = f"{meta_path} has no 'kind' field; it was not written by a bege-psd selector"
        raise ModelMismatchError(msg)
    return meta


def load_selector(path: str | os.PathLike[str]) -> Selector:
    """Load any saved selector, dispatching on the ``kind`` in its metadata."""
    import importlib

    meta = read_model_header(path)
    kind = meta["kind"]
    if kind not in KINDS:
        msg = f"{path}: unknown selector kind {kind!r}; known kinds: {', '.join(KINDS)}"
        raise ModelMismatchError(msg)
    module, _, name = KINDS[kind].partition(":")
    cls = getattr(importlib.import_module(module), name)
    selector: Selector = cls.load(path)
    return selector


# ----------------------------------------------------------------------------- shared by the selectors


def _field_names(table: Any) -> list[str]:
    fields = getattr(table, "fields", None)
    if fields is not None:
        return list(fields)
    if isinstance(table, dict):
        return list(table)
    dtype = getattr(table, "dtype", None)
    if dtype is not None and dtype.names:
        return list(dtype.names)
    msg = f"cannot read fields from an object of type {type(table).__name__}; expected an ak.Array of records"
    raise SelectionError(msg)


def table_columns(
    table: Any, names: Sequence[str], *, where: str = "selector", dtype: Any = np.float64
) -> dict[str, NDArray[Any]]:
    """Flat numpy columns ``names`` of an event table (ak.Array of records, dict, structured array).

    Raises :class:`SelectionError` naming the missing field and the nearest existing ones.
    """
    available = _field_names(table)
    out: dict[str, NDArray[Any]] = {}
    for name in names:
        if name not in available:
            msg = (
                f"{where}: the event table has no field {name!r}; fields present (nearest "
                f"first): {', '.join(nearest_names(name, available, n=8)) or '(none)'}"
            )
            raise SelectionError(msg)
        col = table[name]
        if not isinstance(col, np.ndarray):
            import awkward as ak

            try:
                col = ak.to_numpy(col)
            except ValueError as exc:
                msg = f"{where}: field {name!r} is not a flat per-event number ({exc})"
                raise SelectionError(msg) from exc
        out[name] = np.asarray(col, dtype=dtype)
    return out


def _quality_ok(table: Any, mask_bits: int, n: int) -> NDArray[np.bool_]:
    if "quality" not in _field_names(table) or mask_bits == 0:
        return np.ones(n, dtype=bool)
    q = table_columns(table, ["quality"], dtype=np.uint64)["quality"]
    return np.asarray((q & np.uint64(mask_bits)) == 0)


def threshold_for_kept_fraction(
    score: ArrayLike,
    fraction: float,
    *,
    energy_kev: ArrayLike | None = None,
    energy_range_kev: tuple[float, float] | None = None,
) -> float:
    """The threshold ``t`` such that a fraction ``fraction`` of the events has ``score >= t``.

    Only events with a finite score (and, if given, energy inside ``energy_range_kev``) count;
    NaN-scored events are never kept and count in the denominator. Ties at ``t`` (e.g. GMM
    posteriors saturated at 1.0) make the achieved fraction larger than asked; check it.
    """
    s = np.asarray(score, dtype=np.float64)
    if energy_kev is not None and energy_range_kev is not None:
        e = np.asarray(energy_kev, dtype=np.float64)
        s = s[(e >= energy_range_kev[0]) & (e <= energy_range_kev[1])]
    if not 0.0 < fraction <= 1.0:
        msg = f"kept fraction {fraction} must be in (0, 1]"
        raise SelectionError(msg)
    n_total = s.size
    finite = np.sort(s[np.isfinite(s)])[::-1]
    if finite.size == 0:
        msg = "no event with a finite score in the range: cannot set a kept-fraction threshold"
        raise SelectionError(msg)
    k = max(1, min(finite.size, round(fraction * n_total)))
    return float(finite[k - 1])


def _check_header(
    meta: dict[str, Any], kind: str, path: Any, format_version: int
) -> dict[str, Any]:
    """Check kind, format and package version of a model file; return its stored config."""
    if meta.get("kind") != kind:
        msg = f"{path}: model kind is {meta.get('kind')!r}, expected {kind!r}"
        raise ModelMismatchError(msg)
    if meta.get("format_version") != format_version:
        msg = (
            f"{path}: model format version {meta.get('format_version')!r}, this bege-psd reads "
            f"version {format_version}; retrain the model with this version"
        )
        raise ModelMismatchError(msg)
    if meta.get("bege_psd_version") != __version__:
        msg = (
            f"{path}: written by bege-psd {meta.get('bege_psd_version')!r}, this is {__version__}; "
            "models are not portable across versions: retrain it"
        )
        raise ModelMismatchError(msg)
    cfg = meta.get("config")
    if not isinstance(cfg, dict):
        msg = f"{path}: model has no 'config' table"
        raise ModelMismatchError(msg)
    if stable_hash(cfg) != meta.get("config_hash"):
        msg = (
            f"{path}: the stored configuration does not match its hash {meta.get('config_hash')!r}; "
            "the file was modified after it was written"
        )
        raise ModelMismatchError(msg)
    return cfg


def _config_from_meta(cls: type[Any], stored: dict[str, Any], path: Any, config: Any) -> Any:
    from ..errors import ConfigError

    try:
        file_cfg = from_mapping(cls, stored, where=cls.__name__)
    except ConfigError as exc:
        msg = f"{path}: the stored configuration is not valid for this version: {exc}"
        raise ModelMismatchError(msg) from exc
    if config is not None:
        want = to_mapping(config)
        if stable_hash(want) != stable_hash(to_mapping(file_cfg)):
            diff = sorted(k for k in want if want[k] != to_mapping(file_cfg).get(k))
            msg = (
                f"{path}: model was trained with another configuration (hash "
                f"{stable_hash(to_mapping(file_cfg))} vs {stable_hash(want)}); differing keys: "
                f"{', '.join(diff)}"
            )
            raise ModelMismatchError(msg)
    return file_cfg
