"""Per-event pulse-shape features of BEGe waveforms (the paper's Sec. 4.1 and 5.2, made exact).

What to use when
----------------
- The feature table of a chunk of events (as :func:`bege_psd.io.iterate` yields them):
  :func:`features`. It is entry-aligned with the events: every event gets a row.
- The input of the autoencoder (ACM): :func:`acm_input`.
- The mean SSE pulse for ``l1_to_sse``: :class:`bege_psd.dsp.SSETemplate`.
- A single step on a block of traces: :mod:`bege_psd.dsp.kernels`; their twins:
  :mod:`bege_psd.dsp.twins`.

Definitions (all from the trace ``y = sign * (x - baseline_mean)``, ``sign`` = +1 for positive,
-1 for negative polarity, so the pulse always rises):

- ``baseline_mean``, ``baseline_rms`` (about the mean), ``baseline_slope`` (least squares, ADC per
  sample, in the pulse direction) over the first ``baseline_samples`` raw samples.
- ``s`` = Savitzky-Golay smoothing of ``y`` (``smooth_window``, ``smooth_order``); the current
  ``c`` = SG first derivative of ``s`` (``current_window``, ``current_order``), in ADC per sample;
  ``d2`` = SG first derivative of ``c`` (``d2_window``, ``d2_order``). Edges as
  ``scipy.signal.savgol_filter(mode="interp")``.
- ``amplitude`` = max of ``s``. ``t0_ns``, and the 10/50/90 % times: walking back from the
  maximum of ``s``, the first sample below ``level x amplitude``, linearly interpolated to the
  crossing, times the sample period (times count from the first sample of the trace).
  ``risetime_ns`` = t90 - t10, ``rt_10_50_ns``, ``rt_50_90_ns``; ``t0_ns`` = t10.
- ``current_max`` (A) = max of ``c``; ``t_current_max_ns`` its position with parabolic
  interpolation; ``a_over_e`` = A / ``energy_adc`` (no energy correction here; the A/E selector
  corrects for the energy dependence).
- ``n_peaks_d2``: the number of lobes of ``d2Q/dt2``, counted as peaks of ``|d2|`` normalised to
  a maximum of 1, as ``scipy.signal.find_peaks(height=H, distance=d2_peak_distance,
  prominence=d2_peak_prominence)`` with the noise-aware height
  ``H = max(d2_peak_height, d2_peak_nsigma * sigma_d2 / max|d2|)``. ``sigma_d2`` is the RMS of
  ``d2`` over the event's signal-free samples: ``[d2_window // 2, baseline_samples)`` (the
  pre-trigger baseline past the filter edge) and ``[imax + d2_window, n - d2_window // 2)`` (after
  the maximum of ``s``, where the charge is collected); 0 when both are empty. Defaults: 0.1 of
  the maximum, 4 sigma, prominence 0.1, 10 samples. One clean current pulse gives a positive and
  a negative lobe of ``d2``, so a clean single-site event counts 2; each further separated
  current pulse adds up to 2. Why the three criteria: the relative height alone (the authors'
  0.1) counts noise wiggles at low energy (max|d2| is ~12 sigma at 300 keV on the simulated
  runs: 7-15 peaks per event); the prominence merges the shoulder that the slow hole-drift
  current makes on the rising lobe (same sign, no zero crossing) with that lobe. Measured on the
  simulated 232Th and cryoconite runs (60 000 events each, truth ``n_sites``), 300-2700 keV:
  single-site events count 2 in 61-67 % of cases in every energy band (median 2), multi-site
  events 2.6-2.9 on average; AUC of the count alone vs truth 0.59 (232Th) and 0.60
  (cryoconite), from 0.54 and 0.45 with the relative height alone (0.609 and 0.604 on the
  full 300 000-event runs, ``analysis/evaluate_selections.py``). The count separates the classes
  on average, not event by event. Counting sign-alternating lobes instead (merging neighbouring
  peaks of the same sign) gives AUC 0.52: most simulated multi-site currents are a peak preceded
  by a plateau, whose extra lobe has the sign of the main rise (the paper's Sec. 5.2 reason for
  counting |d2| peaks). Smaller d2 windows (11, 13) or a higher order lower the AUC (0.55-0.57). -1 when undefined (no waveform, NaN input, a trace
  shorter than a filter window: then also NO_PULSE).
- ``l1_to_sse``: ``s / amplitude`` resampled so that its 50 % crossing falls on the template's
  index ``pre_samples``, then the mean absolute difference to the template over the samples
  inside the trace (see :mod:`bege_psd.dsp.template`); NaN without a template.
- ``quality`` (:class:`Quality` bits): SATURATED (the trace reaches the ADC limit on the pulse
  side), PILEUP (the current exceeds ``pileup_fraction`` x A further than
  ``pileup_min_separation_ns`` from the main current pulse), BAD_BASELINE (a baseline sample
  beyond ``baseline_spike_nsigma`` RMS, or a drift over the baseline window beyond
  ``baseline_drift_nsigma`` RMS), NO_WAVEFORM, NO_PULSE (amplitude not above
  ``min_amplitude_nsigma`` x RMS), and the CoMPASS flags: DAQ_SATURATION (0x80, 0x400),
  DAQ_PILEUP (0x8000), FAKE (0x8, 0x80000, 0x100000, 0x200000).

NaN in, NaN out; a bad pulse is flagged, never dropped and never an exception.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from ..errors import CompassFormatError, ConfigError
from . import _constants as C
from .config import DSPConfig

if TYPE_CHECKING:
    from .template import SSETemplate

__all__ = ("DAQ_FLAG_MASKS", "Quality", "acm_input", "features", "resolve_polarity")

log = logging.getLogger(__name__)


class Quality(enum.IntFlag):
    """Bits of the ``quality`` feature (uint32). 0 = a clean pulse."""

    SATURATED = C.QUALITY_BITS["SATURATED"]
    PILEUP = C.QUALITY_BITS["PILEUP"]
    BAD_BASELINE = C.QUALITY_BITS["BAD_BASELINE"]
    NO_WAVEFORM = C.QUALITY_BITS["NO_WAVEFORM"]
    DAQ_SATURATION = C.QUALITY_BITS["DAQ_SATURATION"]
    DAQ_PILEUP = C.QUALITY_BITS["DAQ_PILEUP"]
    FAKE = C.QUALITY_BITS["FAKE"]
    NO_PULSE = C.QUALITY_BITS["NO_PULSE"]


#: CoMPASS flag bits (COMPASS-FORMATS.md) mapped onto quality bits
DAQ_FLAG_MASKS: dict[Quality, int] = {
    Quality.DAQ_SATURATION: 0x80 | 0x400,
    Quality.DAQ_PILEUP: 0x8000,
    Quality.FAKE: 0x8 | 0x80000 | 0x100000 | 0x200000,
}

_POLARITIES = ("positive", "negative")


@dataclass(frozen=True)
class _Blocks:
    """The waveforms of a chunk as 2-D blocks of equal length (rows index the events)."""

    n_events: int
    lengths: NDArray[np.int64]
    blocks: list[tuple[NDArray[np.int64] | None, NDArray[Any]]]  # (row indices or None=all, 2-D)


def _source_of(events: Any) -> str | None:
    attrs = getattr(events, "attrs", None) or {}
    src = attrs.get("source_file")
    return str(src) if src is not None else None


def _waveforms_of(events: Any) -> Any:
    """The waveform array of ``events`` (a record array with ``waveform``, or waveforms)."""
    if isinstance(events, np.ndarray):
        if events.ndim != 2:
            msg = f"waveforms must be a 2-D array (events x samples), got shape {events.shape}"
            raise CompassFormatError(msg)
        return events
    arr = events if isinstance(events, ak.Array) else ak.Array(events)
    fields = ak.fields(arr)
    if fields:
        if "waveform" not in fields:
            src = _source_of(arr)
            msg = (
                f"the event table{f' from {src}' if src else ''} has no 'waveform' field; "
                f"fields present: {', '.join(fields)}"
            )
            raise CompassFormatError(msg, path=src)
        return arr["waveform"]
    return arr


def _to_blocks(wf: Any) -> _Blocks:
    if isinstance(wf, np.ndarray):
        n, length = wf.shape
        return _Blocks(n, np.full(n, length, dtype=np.int64), [(None, wf)] if n else [])
    if wf.ndim != 2:
        msg = f"waveforms must be one list of samples per event (var * int16), got type {wf.type}"
        raise CompassFormatError(msg)
    if isinstance(wf.type.content, ak.types.OptionType):  # a missing waveform = no samples
        wf = ak.fill_none(wf, [], axis=0)
    lengths = ak.to_numpy(ak.num(wf, axis=1)).astype(np.int64)
    n = len(lengths)
    flat = ak.to_numpy(ak.flatten(wf, axis=1))
    if n == 0:
        return _Blocks(0, lengths, [])
    uniq = np.unique(lengths)
    if len(uniq) == 1:
        length = int(uniq[0])
        if length == 0:
            return _Blocks(n, lengths, [])
        return _Blocks(n, lengths, [(None, flat.reshape(n, length))])  # a view, no copy
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    blocks: list[tuple[NDArray[np.int64] | None, NDArray[Any]]] = []
    for length in uniq:
        if length == 0:
            continue
        rows = np.nonzero(lengths == length)[0]
        gather = offsets[rows][:, None] + np.arange(length)[None, :]
        blocks.append((rows, flat[gather]))
    return _Blocks(n, lengths, blocks)


def _kernel_dtype(block: NDArray[Any]) -> NDArray[Any]:
    if block.dtype in (np.int16, np.float32, np.float64):
        return block
    return block.astype(np.float64)


def resolve_polarity(waveforms: Any, polarity: str | None, config: DSPConfig | None = None) -> str:
    """``polarity`` if given, else the chunk's ``attrs["polarity"]``, else detected from the
    traces: a majority vote over events of whether the largest excursion from the baseline
    goes up (positive) or down (negative)."""
    attrs = getattr(waveforms, "attrs", None) or {}
    pol = polarity if polarity is not None else attrs.get("polarity")
    if pol is not None:
        if pol not in _POLARITIES:
            msg = f"polarity = {pol!r} is not allowed; allowed values: 'positive', 'negative' or None (auto)"
            raise ConfigError(msg)
        return str(pol)
    cfg = config or DSPConfig()
    blocks = _to_blocks(_waveforms_of(waveforms))
    vote = 0
    for _, block in blocks.blocks:
        nb_ = min(cfg.baseline_samples, block.shape[1])
        base = block[:, :nb_].mean(axis=1)
        up = block.max(axis=1) - base
        down = base - block.min(axis=1)
        vote += int(np.sum(up > down)) - int(np.sum(down > up))
    return "positive" if vote >= 0 else "negative"


def _params(cfg: DSPConfig, period: float) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    fp = np.zeros(13)
    fp[C.FP_PERIOD] = period
    fp[C.FP_LOW], fp[C.FP_MID], fp[C.FP_HIGH] = cfg.rt_low, cfg.rt_mid, cfg.rt_high
    fp[C.FP_D2H] = cfg.d2_peak_height
    fp[C.FP_D2NSIG] = cfg.d2_peak_nsigma
    fp[C.FP_D2PROM] = cfg.d2_peak_prominence
    fp[C.FP_SAT] = 2.0**cfg.adc_bits - 1
    fp[C.FP_SPIKE] = cfg.baseline_spike_nsigma
    fp[C.FP_DRIFT] = cfg.baseline_drift_nsigma
    fp[C.FP_PUF] = cfg.pileup_fraction
    fp[C.FP_PUSEP] = cfg.pileup_min_separation_ns / period
    fp[C.FP_MINAMP] = cfg.min_amplitude_nsigma
    ip = np.array(
        [cfg.baseline_samples, cfg.d2_peak_distance, cfg.template_pre_samples], dtype=np.int64
    )
    return fp, ip


def _filters(
    cfg: DSPConfig,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    from . import kernels as K

    return (
        K.savgol_matrix(cfg.smooth_window, cfg.smooth_order, 0),
        K.savgol_matrix(cfg.current_window, cfg.current_order, 1),
        K.savgol_matrix(cfg.d2_window, cfg.d2_order, 1),
    )


def _field_or(events: Any, name: str, n: int, fill: float) -> NDArray[Any]:
    if isinstance(events, ak.Array) and name in ak.fields(events):
        return np.asarray(ak.to_numpy(ak.fill_none(events[name], fill)))
    return np.full(n, fill)


def _kernel_rows(
    block: NDArray[Any],
    energy: NDArray[np.float64],
    sign: NDArray[np.float64],
    consts: tuple[NDArray[Any], ...],
    out: NDArray[np.float32],
    npeaks: NDArray[np.int32],
    quality: NDArray[np.uint32],
    a: int,
    b: int,
) -> None:
    """Rows a:b of a block through the fused kernel (it releases the GIL)."""
    from . import kernels as K

    kernel: Any = K.features_2d  # numba's stubs do not describe compiled signatures
    kernel(block[a:b], energy[a:b], sign[a:b], *consts, out[a:b], npeaks[a:b], quality[a:b])


def features(
    events: Any,
    config: DSPConfig | None = None,
    *,
    template: SSETemplate | str | os.PathLike[str] | None = None,
    sample_period_ns: float | None = None,
    polarity: str | None = None,
    n_threads: int = 1,
) -> ak.Array:
    """The feature table of a chunk of events (one record per event, same order).

    Parameters
    ----------
    events
        An awkward record array with ``waveform`` (var * int16) and optionally ``energy_adc``
        (for A/E) and ``flags`` (CoMPASS flags), as :func:`bege_psd.io.iterate` yields; or just
        waveforms (a 2-D numpy array or a jagged awkward array).
    config
        :class:`DSPConfig`; the paper's values by default.
    template
        An :class:`~bege_psd.dsp.SSETemplate` (or the path of a saved one) for ``l1_to_sse``.
    sample_period_ns, polarity
        Default to ``events.attrs`` (set by :func:`bege_psd.io.iterate`), else
        ``config.sample_period_ns`` and a polarity detected from the traces.
    n_threads
        Threads over blocks of events (the kernels release the GIL).

    Returns
    -------
    ak.Array
        Records with the fields listed in the module docstring: float32 features,
        ``n_peaks_d2`` int32, ``quality`` uint32 (:class:`Quality`). ``attrs`` are copied.
    """

    cfg = config or DSPConfig()
    attrs = dict(getattr(events, "attrs", None) or {})
    period = float(sample_period_ns or attrs.get("sample_period_ns") or cfg.sample_period_ns)
    if not period > 0:
        msg = f"sample_period_ns = {period!r} must be positive"
        raise ConfigError(msg)
    if n_threads < 1:
        msg = f"n_threads = {n_threads!r} must be at least 1"
        raise ConfigError(msg)
    from .template import SSETemplate

    tmpl_obj: SSETemplate | None = None
    if template is not None:
        tmpl_obj = template if isinstance(template, SSETemplate) else SSETemplate.load(template)

    wf = _waveforms_of(events)
    blocks = _to_blocks(wf)
    n = blocks.n_events
    pol = resolve_polarity(events if isinstance(events, ak.Array) else wf, polarity, cfg)
    sign_value = 1.0 if pol == "positive" else -1.0
    energy = _field_or(events, "energy_adc", n, np.nan).astype(np.float64)
    flags = _field_or(events, "flags", n, 0).astype(np.uint32)

    fp, ip = _params(cfg, period)
    tmpl = np.zeros(0)
    if tmpl_obj is not None:
        tmpl_obj.check_compatible(period, cfg)
        tmpl = np.ascontiguousarray(tmpl_obj.values, dtype=np.float64)
        ip[C.IP_TPRE] = tmpl_obj.pre_samples
    fs, fc, fd = _filters(cfg)

    out = np.full((n, len(C.FEATURE_COLUMNS)), np.nan, dtype=np.float32)
    npeaks = np.full(n, -1, dtype=np.int32)
    quality = np.zeros(n, dtype=np.uint32)
    for bit, mask in DAQ_FLAG_MASKS.items():
        quality[(flags & np.uint32(mask)) != 0] |= np.uint32(bit)
    quality[blocks.lengths == 0] |= np.uint32(Quality.NO_WAVEFORM)

    for rows, block in blocks.blocks:
        block = _kernel_dtype(block)
        m = len(block)
        e_b = energy if rows is None else energy[rows]
        sign = np.full(m, sign_value)
        o_b = np.full((m, len(C.FEATURE_COLUMNS)), np.nan, dtype=np.float32)
        p_b = np.full(m, -1, dtype=np.int32)
        q_b = np.zeros(m, dtype=np.uint32)

        consts = (fs, fc, fd, tmpl, fp, ip)
        run = functools.partial(_kernel_rows, block, e_b, sign, consts, o_b, p_b, q_b)
        if n_threads == 1 or m < 2 * 256:
            run(0, m)
        else:
            step = -(-m // (4 * n_threads))
            with ThreadPoolExecutor(max_workers=n_threads) as pool:
                for f in [pool.submit(run, a, min(m, a + step)) for a in range(0, m, step)]:
                    f.result()
        if rows is None:
            out[:], npeaks[:] = o_b, p_b
            quality |= q_b
        else:
            out[rows], npeaks[rows] = o_b, p_b
            quality[rows] |= q_b

    columns: dict[str, Any] = {name: out[:, k].copy() for k, name in enumerate(C.FEATURE_COLUMNS)}
    columns["n_peaks_d2"] = npeaks
    columns["quality"] = quality
    result = ak.zip(columns, depth_limit=1)
    attrs.setdefault("sample_period_ns", period)
    attrs["polarity"] = pol
    return ak.Array(result, attrs=attrs) if attrs else result


def acm_input(
    waveforms: Any,
    config: DSPConfig | None = None,
    *,
    polarity: str | None = None,
) -> NDArray[np.float32]:
    """The autoencoder input: baseline-subtracted, min-max normalised to [0, 1] and
    down-sampled by ``config.acm_downsample`` (3) with averaging: ``(n, L // 3)`` float32.

    ``waveforms`` is an event table (its ``waveform`` field is used), a jagged awkward array or
    a 2-D array. All non-empty waveforms must have one length; an event without a waveform, a
    flat trace or a trace with NaN gives a NaN row (never a dropped row).
    """
    from . import kernels as K

    cfg = config or DSPConfig()
    wf = _waveforms_of(waveforms)
    blocks = _to_blocks(wf)
    pol = resolve_polarity(waveforms if isinstance(waveforms, ak.Array) else wf, polarity, cfg)
    if len(blocks.blocks) > 1:
        uniq, counts = np.unique(blocks.lengths[blocks.lengths > 0], return_counts=True)
        common = int(uniq[np.argmax(counts)])
        bad = int(np.nonzero((blocks.lengths != common) & (blocks.lengths > 0))[0][0])
        src = _source_of(waveforms)
        attrs = getattr(waveforms, "attrs", None) or {}
        entry = bad + int(attrs.get("entry_start", 0))
        msg = (
            f"acm_input needs waveforms of one length: most have {common} samples but entry "
            f"{entry}{f' of {src}' if src else ''} has {int(blocks.lengths[bad])}"
        )
        raise CompassFormatError(msg, path=src, entry=entry)
    if not blocks.blocks:
        return np.full((blocks.n_events, 0), np.nan, dtype=np.float32)
    rows, block = blocks.blocks[0]
    length = block.shape[1]
    m_out = length // cfg.acm_downsample
    out = np.full((blocks.n_events, m_out), np.nan, dtype=np.float32)
    mean = np.empty(len(block))
    rms = np.empty(len(block))
    slope = np.empty(len(block))
    raw = _kernel_dtype(block)
    K.baseline_2d(raw, cfg.baseline_samples, mean, rms, slope)
    x = block.astype(np.float32)
    sign = np.full(len(block), 1.0 if pol == "positive" else -1.0)
    K.subtract_baseline_2d(x, mean, sign, x)
    K.minmax_normalise_2d(x, x)
    ds = np.empty((len(block), m_out), dtype=np.float32)
    K.downsample_mean_2d(x, ds)
    if rows is None:
        out[:] = ds
    else:
        out[rows] = ds
    return out
