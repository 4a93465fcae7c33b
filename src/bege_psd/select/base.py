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
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelMismatchError

__all__ = ("KINDS", "Selector", "load_selector", "read_model_header", "write_model_json")

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
