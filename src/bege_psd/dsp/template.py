"""The mean single-site (SSE) pulse and the L1 distance to it (``l1_to_sse``).

What to use when
----------------
- Build a template from a calibrated run: :meth:`SSETemplate.build` with the events and their
  energies in keV; by default it averages the events of the 208Tl double-escape peak window
  [1590, 1595] keV (the paper's SSE-rich region; the authors' code used [1587, 1599]).
- Keep it with the model: :meth:`SSETemplate.save` / :meth:`SSETemplate.load` (one ``.npz``
  holding the values and the provenance as JSON, plus a ``.json`` sidecar for people to read).
- Use it: ``bege_psd.dsp.features(events, template=tmpl)`` fills ``l1_to_sse``.

Alignment: each pulse is baseline-subtracted (polarity-corrected), smoothed with the configured
Savitzky-Golay filter and divided by its maximum; its 50 % crossing ``t50`` (walking back from
the maximum, linear interpolation between samples, so sub-sample) is put on the template index
``pre_samples``: template sample ``k`` is the pulse at ``t50 + k - pre_samples`` (linear
interpolation). The template is the mean of the aligned pulses of the clean events in the
window (quality 0), kept over the index range that at least 90 % of them cover, so it holds no
NaN. The L1 distance of a pulse is the mean absolute difference over the template samples that
fall inside its trace (the authors' "mean over the overlap"). A pulse's distance to a template
built from copies of itself is exactly 0.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._util import atomic_path, atomic_write_text, stable_hash
from ..config import to_mapping
from ..errors import ConfigError, ModelMismatchError, SelectionError
from .config import DSPConfig

__all__ = ("SSETemplate",)

_FORMAT = "bege-psd/sse-template/1"
#: fraction of the selected pulses that must cover a template sample for it to be kept
_COVERAGE = 0.9


def aligned_normalised_pulses(
    waveforms: Any,
    config: DSPConfig | None = None,
    *,
    polarity: str | None = None,
    pre_samples: int | None = None,
    length: int | None = None,
) -> NDArray[np.float64]:
    """The pulses aligned and normalised as the template expects: ``(n, length)`` with the
    50 % crossing on index ``pre_samples`` (NaN outside a trace / for events without a pulse)."""
    from . import kernels as K
    from .features import _kernel_dtype, _to_blocks, _waveforms_of, resolve_polarity

    cfg = config or DSPConfig()
    pre = cfg.template_pre_samples if pre_samples is None else pre_samples
    size = pre + cfg.template_post_samples if length is None else length
    wf = _waveforms_of(waveforms)
    blocks = _to_blocks(wf)
    pol = resolve_polarity(waveforms if isinstance(waveforms, ak.Array) else wf, polarity, cfg)
    out = np.full((blocks.n_events, size), np.nan)
    filt = K.savgol_matrix(cfg.smooth_window, cfg.smooth_order, 0)
    for rows, block in blocks.blocks:
        raw = _kernel_dtype(block)
        m = len(raw)
        mean, rms, slope = np.empty(m), np.empty(m), np.empty(m)
        K.baseline_2d(raw, cfg.baseline_samples, mean, rms, slope)
        y = raw.astype(np.float64)
        K.subtract_baseline_2d(y, mean, np.full(m, 1.0 if pol == "positive" else -1.0), y)
        s = np.empty_like(y)
        K.savgol_2d(y, filt, s)
        t = np.empty((m, 1))
        K.rise_times_2d(s, np.array([cfg.rt_mid]), t)
        amp = np.nanmax(s, axis=1) if s.shape[1] else np.full(m, np.nan)
        aligned = np.empty((m, size))
        K.aligned_pulses_2d(s, amp, t[:, 0], pre, aligned)
        if rows is None:
            out[:] = aligned
        else:
            out[rows] = aligned
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class SSETemplate:
    """A mean SSE pulse: ``values[k]`` is the normalised pulse at ``t50 + k - pre_samples``."""

    values: NDArray[np.float64]
    pre_samples: int
    sample_period_ns: float
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float64)
        if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
            msg = "an SSE template must be a non-empty 1-D array of finite values"
            raise ValueError(msg)
        if not 0 <= self.pre_samples < v.size:
            msg = f"pre_samples = {self.pre_samples} must index the template (size {v.size})"
            raise ValueError(msg)
        object.__setattr__(self, "values", v)

    # ------------------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        waveforms_or_events: Any,
        energy_kev: ArrayLike,
        window_kev: tuple[float, float] = (1590.0, 1595.0),
        config: DSPConfig | None = None,
        *,
        polarity: str | None = None,
        sample_period_ns: float | None = None,
        min_events: int = 10,
    ) -> SSETemplate:
        """The mean aligned pulse of the clean events with ``energy_kev`` in ``window_kev``.

        Events with any quality bit set (saturation, pile-up, bad baseline, no pulse, DAQ
        flags) are left out of the mean; how many were selected and used is in
        ``provenance``. Raises :class:`~bege_psd.errors.SelectionError` when fewer than
        ``min_events`` remain.
        """
        from .features import features

        cfg = config or DSPConfig()
        lo, hi = window_kev
        if not lo < hi:
            msg = f"window_kev = {window_kev!r}: the lower edge must be below the upper edge"
            raise ConfigError(msg)
        e = np.asarray(energy_kev, dtype=np.float64)
        attrs = dict(getattr(waveforms_or_events, "attrs", None) or {})
        n_total = len(waveforms_or_events)
        if e.shape != (n_total,):
            msg = f"energy_kev has shape {e.shape}, expected ({n_total},): one energy per event"
            raise ConfigError(msg)
        selected = np.nonzero((e >= lo) & (e <= hi))[0]
        subset = waveforms_or_events[selected]
        if isinstance(subset, ak.Array) and attrs:
            subset = ak.Array(subset, attrs=attrs)
        feats = features(subset, cfg, sample_period_ns=sample_period_ns, polarity=polarity)
        pol = str(feats.attrs["polarity"])
        period = float(feats.attrs["sample_period_ns"])
        clean = np.asarray(feats["quality"]) == 0
        if clean.sum() < min_events:
            msg = (
                f"only {int(clean.sum())} clean events (of {len(selected)}) in the template window "
                f"[{lo}, {hi}] keV; need at least {min_events}: widen the window or use more data"
            )
            raise SelectionError(msg)
        pulses = aligned_normalised_pulses(subset[np.nonzero(clean)[0]], cfg, polarity=pol)
        coverage = np.isfinite(pulses).mean(axis=0)
        pre = cfg.template_pre_samples
        ok = coverage >= _COVERAGE
        if not ok[pre]:
            msg = "the aligned pulses do not cover their own 50 % crossing; check the polarity"
            raise SelectionError(msg)
        first = pre
        while first > 0 and ok[first - 1]:
            first -= 1
        last = pre
        while last < len(ok) - 1 and ok[last + 1]:
            last += 1
        values = np.nanmean(pulses[:, first : last + 1], axis=0)
        provenance = {
            "format": _FORMAT,
            "window_kev": [float(lo), float(hi)],
            "n_in_window": len(selected),
            "n_used": int(clean.sum()),
            "polarity": pol,
            "alignment": "50% crossing of the smoothed pulse, linear interpolation",
            "coverage_min": _COVERAGE,
            "source_file": attrs.get("source_file"),
            "dsp_config": to_mapping(cfg),
            "dsp_config_hash": stable_hash(to_mapping(cfg)),
            "bege_psd_version": _version(),
            "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        return cls(values, pre - first, period, provenance)

    # ------------------------------------------------------------------------------- using
    def l1(self, pulses: ArrayLike) -> NDArray[np.float64]:
        """L1 distance (mean absolute difference over finite samples) of pulses already
        aligned and normalised in template coordinates (``(n, len(values))`` or 1-D)."""
        p = np.atleast_2d(np.asarray(pulses, dtype=np.float64))
        if p.shape[1] != self.values.size:
            msg = f"pulses have {p.shape[1]} samples, the template has {self.values.size}"
            raise ValueError(msg)
        diff = np.abs(p - self.values[None, :])
        finite = np.isfinite(diff)
        with np.errstate(invalid="ignore"):
            return np.where(
                finite.any(axis=1), np.nansum(diff, axis=1) / finite.sum(axis=1), np.nan
            )

    def check_compatible(self, sample_period_ns: float, config: DSPConfig) -> None:
        """Raise :class:`~bege_psd.errors.ModelMismatchError` when the data's sample period or
        smoothing differs from the one the template was built with."""
        if not np.isclose(sample_period_ns, self.sample_period_ns, rtol=1e-6):
            msg = (
                f"the SSE template was built at {self.sample_period_ns} ns per sample but the "
                f"data have {sample_period_ns} ns; rebuild the template from this run"
            )
            raise ModelMismatchError(msg)
        built = self.provenance.get("dsp_config") or {}
        for key in ("smooth_window", "smooth_order", "rt_mid"):
            if key in built and built[key] != getattr(config, key):
                msg = (
                    f"the SSE template was built with dsp.{key} = {built[key]!r} but the "
                    f"configuration has {getattr(config, key)!r}; rebuild the template"
                )
                raise ModelMismatchError(msg)

    # --------------------------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path`` (.npz: values, pre_samples, sample period, provenance JSON) and a
        ``.json`` sidecar with the provenance, both atomically. Returns the npz path."""
        dest = Path(path)
        meta = {
            "format": _FORMAT,
            "pre_samples": self.pre_samples,
            "sample_period_ns": self.sample_period_ns,
            "n_samples": int(self.values.size),
            "provenance": dict(self.provenance),
        }
        text = json.dumps(meta, indent=2, sort_keys=True, default=str)
        with atomic_path(dest) as tmp, tmp.open("wb") as fh:
            np.savez(fh, values=self.values, metadata=np.array(text))
        atomic_write_text(dest.with_suffix(".json"), text + "\n")
        return dest

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SSETemplate:
        """Read a template written by :meth:`save` (never unpickles)."""
        src = Path(path)
        try:
            with np.load(src, allow_pickle=False) as data:
                names = set(data.files)
                if not {"values", "metadata"} <= names:
                    msg = (
                        f"{src} is not an SSE template: expected arrays 'values' and 'metadata', "
                        f"found {sorted(names)}"
                    )
                    raise ModelMismatchError(msg)
                values = np.array(data["values"], dtype=np.float64)
                meta = json.loads(str(data["metadata"]))
        except FileNotFoundError:
            msg = f"SSE template file {src} does not exist"
            raise ModelMismatchError(msg) from None
        except (OSError, ValueError) as exc:
            if isinstance(exc, ModelMismatchError):
                raise
            msg = f"{src} is not a readable SSE template (.npz written by SSETemplate.save): {exc}"
            raise ModelMismatchError(msg) from exc
        if meta.get("format") != _FORMAT:
            msg = (
                f"{src} has template format {meta.get('format')!r}; this bege-psd reads {_FORMAT!r}"
            )
            raise ModelMismatchError(msg)
        try:
            return cls(
                values,
                int(meta["pre_samples"]),
                float(meta["sample_period_ns"]),
                meta.get("provenance", {}),
            )
        except (KeyError, ValueError) as exc:
            msg = f"{src}: inconsistent SSE template metadata ({exc})"
            raise ModelMismatchError(msg) from exc


def _version() -> str:
    from .. import __version__

    return __version__
