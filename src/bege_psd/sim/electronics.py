"""Read-out electronics of the simulated BEGe: deposits -> digitised waveform, energy, flags.

What to use when
----------------
* ``lib = PulseLibrary.load_or_build(det_cfg)`` (re-exported here from
  :mod:`bege_psd.sim.detector`) -- the pulse library, built once and cached on disk.
* :func:`digitize` -- turn each event's deposits (jagged ``edep_kev``, ``r_mm``, ``z_mm``) into
  a CoMPASS-like record: 366-sample int16 waveform, trapezoid energy in ADC channels, flags.
* :func:`resolution_sigma_kev` -- the energy-resolution model used for ``energy_adc``.
* :func:`noise_traces` -- the waveform noise process alone (for calibration checks).

Model
-----
* Signal: the energy-weighted sum of the deposits' library pulses, each bilinearly
  interpolated in (r, z) with the pulses aligned on their hole collection times (drift time and
  shape interpolated separately). Deposits in the n+ dead layer give no charge; in the
  transition layer below it the charge is reduced linearly with depth and reaches the active
  volume by diffusion, modelled as the deposit's pulse passed through a single-pole delay of
  time constant ``transition_delay_ns * (1 - u)^2`` (``u``: depth fraction across the
  layer). Such surface events have slow pulses and low A/E, as in a real BEGe.
* Preamplifier: single-pole rise (``preamp_rise_ns``, applied to the 1 ns library pulses) and
  exponential decay (``preamp_decay_us``, applied on the sample grid).
* Noise: white Gaussian noise per sample, low-passed by the same preamp rise; its level is
  calibrated so that the trapezoid filter (2 us rise, 1 us flat top) applied to it gives the
  electronic term ``a`` of FWHM^2 = a + b E + c E^2 (see ``ElectronicsConfig.noise_sigma_kev``).
* Trigger: leading edge at ``trigger_fraction`` of the noiseless pulse plus Gaussian jitter,
  latched on the next tick of the 250 MHz ADC clock, whose phase is uniform per event; the
  window starts ``pretrigger_ns`` before the trigger tick.
* Energy: the trapezoid result is computed from the ideal collected charge, smeared with the
  full resolution model (electronic noise + Fano + charge trapping), in channels of
  ``energy_kev_per_channel`` (uint16, ``energy_bits`` wide).
* Flags (CoMPASS bits): 0x400 | 0x80 when the waveform leaves the ADC range, 0x80 when the
  energy exceeds the energy range, 0x8000 for events marked as pile-up by the caller.
"""

from __future__ import annotations

import math
from typing import Any

import awkward as ak
import numba as nb
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import SimulationError
from .config_detector import DetectorConfig, ElectronicsConfig
from .detector import PulseLibrary, charge_collection_efficiency, transition_delay_ns

__all__ = (
    "FLAG_ENERGY_SATURATED",
    "FLAG_INPUT_SATURATED",
    "FLAG_PILEUP",
    "DetectorConfig",
    "ElectronicsConfig",
    "PulseLibrary",
    "digitize",
    "noise_traces",
    "resolution_sigma_kev",
)

#: CoMPASS flag bits set by the simulator.
FLAG_ENERGY_SATURATED = 0x80
FLAG_INPUT_SATURATED = 0x400
FLAG_PILEUP = 0x8000

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def resolution_sigma_kev(energy_kev: ArrayLike, cfg: ElectronicsConfig) -> NDArray[np.float64]:
    """Gaussian sigma (keV) of the measured energy for a collected energy ``energy_kev``."""
    return np.asarray(cfg.fwhm_kev(np.asarray(energy_kev, dtype=np.float64)) / _FWHM_PER_SIGMA)


@nb.njit(cache=True, nogil=True)
def _lowpass_noise(white: NDArray[np.float32], alpha: float) -> None:
    """y[k] = alpha y[k-1] + (1 - alpha) x[k] per row, started in its stationary state."""
    n_ev, n = white.shape
    stat = math.sqrt((1.0 - alpha) / (1.0 + alpha)) if alpha > 0 else 1.0
    for e in range(n_ev):
        # white[e, 0] is N(0, sigma): scale it to the stationary sigma of the filtered process
        y = white[e, 0] * stat
        white[e, 0] = y
        for k in range(1, n):
            y = alpha * y + (1.0 - alpha) * white[e, k]
            white[e, k] = y


def noise_traces(
    n_traces: int, n_samples: int, cfg: ElectronicsConfig, rng: np.random.Generator
) -> NDArray[np.float32]:
    """Waveform noise in keV, shape ``(n_traces, n_samples)``, exactly as :func:`digitize` adds it."""
    white = rng.standard_normal((n_traces, n_samples), dtype=np.float32)
    white *= np.float32(cfg.noise_sigma_kev)
    alpha = math.exp(-cfg.sample_period_ns / cfg.preamp_rise_ns) if cfg.preamp_rise_ns > 0 else 0.0
    _lowpass_noise(white, alpha)
    return white


@nb.njit(cache=True, nogil=True, inline="always")
def _pulse_value(
    table: NDArray[np.float32],
    corners: NDArray[np.int64],
    weights: NDArray[np.float64],
    d: int,
    m: float,
) -> float:
    """Aligned, bilinearly interpolated library pulse of deposit d at aligned index m."""
    n = table.shape[1]
    if m <= 0.0:
        i = 0
        f = 0.0
    elif m >= n - 1:
        i = n - 2
        f = 1.0
    else:
        i = int(m)
        f = m - i
    acc = 0.0
    for c in range(4):
        p = corners[d, c]
        wc = weights[d, c]
        if wc != 0.0:
            acc += wc * ((1.0 - f) * table[p, i] + f * table[p, i + 1])
    return acc


@nb.njit(cache=True, nogil=True)
def _event_signal(
    t: float,
    d0: int,
    d1: int,
    table: NDArray[np.float32],
    corners: NDArray[np.int64],
    weights: NDArray[np.float64],
    t_coll: NDArray[np.float64],
    e_dep: NDArray[np.float64],
    tau_dep: NDArray[np.float64],
    align: float,
    inv_dt: float,
) -> float:
    """Noiseless signal (keV) at time t of the prompt deposits (``tau_dep == 0``) of one event."""
    s = 0.0
    for d in range(d0, d1):
        if e_dep[d] == 0.0 or tau_dep[d] > 0.0:
            continue
        s += e_dep[d] * _pulse_value(table, corners, weights, d, (t - t_coll[d]) * inv_dt + align)
    return s


@nb.njit(cache=True, nogil=True)
def _find_crossing(buf: NDArray[np.float64], n: int, target: float) -> float:
    """Fractional index where ``buf`` first reaches ``target`` (-1 if never)."""
    for k in range(n):
        if buf[k] >= target:
            if k == 0:
                return 0.0
            a = buf[k - 1]
            b = buf[k]
            return k - 1 + ((target - a) / (b - a) if b > a else 0.0)
    return -1.0


@nb.njit(cache=True, nogil=True)
def _add_deposit(
    x: NDArray[np.float64],
    table: NDArray[np.float32],
    corners: NDArray[np.int64],
    weights: NDArray[np.float64],
    d: int,
    energy: float,
    m0: float,
    step: float,
) -> None:
    """x[s] += energy * pulse_d(aligned index m0 + s * step), deposit-outer for speed."""
    n = table.shape[1]
    p0 = corners[d, 0]
    p1 = corners[d, 1]
    p2 = corners[d, 2]
    p3 = corners[d, 3]
    w0 = energy * weights[d, 0]
    w1 = energy * weights[d, 1]
    w2 = energy * weights[d, 2]
    w3 = energy * weights[d, 3]
    n_s = x.shape[0]
    for s in range(n_s):
        m = m0 + s * step
        if m <= 0.0:
            continue
        if m >= n - 1:
            last = (
                w0 * table[p0, n - 1]
                + w1 * table[p1, n - 1]
                + w2 * table[p2, n - 1]
                + w3 * table[p3, n - 1]
            )
            for s2 in range(s, n_s):
                x[s2] += last
            return
        i = int(m)
        f = m - i
        g = 1.0 - f
        x[s] += (
            w0 * (g * table[p0, i] + f * table[p0, i + 1])
            + w1 * (g * table[p1, i] + f * table[p1, i + 1])
            + w2 * (g * table[p2, i] + f * table[p2, i + 1])
            + w3 * (g * table[p3, i] + f * table[p3, i + 1])
        )


@nb.njit(cache=True, nogil=True)
def _digitize_kernel(
    offsets: NDArray[np.int64],
    e_dep: NDArray[np.float64],
    tau_dep: NDArray[np.float64],
    corners: NDArray[np.int64],
    weights: NDArray[np.float64],
    t_coll: NDArray[np.float64],
    table: NDArray[np.float32],
    align: float,
    dt_lib: float,
    phase: NDArray[np.float64],
    jitter: NDArray[np.float64],
    e_total: NDArray[np.float64],
    period: float,
    n_pre: int,
    trig_frac: float,
    trig_threshold: float,
    decay_alpha: float,
    t_max: float,
    n_buf: int,
    partner: NDArray[np.int64],
    partner_delay: NDArray[np.float64],
    noise: NDArray[np.float32],
    baseline: float,
    adc_per_kev: float,
    adc_max: int,
    ideal: NDArray[np.float64],
    waveform: NDArray[np.int16],
    clipped: NDArray[np.bool_],
    t_trigger: NDArray[np.float64],
    triggered: NDArray[np.bool_],
) -> None:
    """Per event: find the trigger, then fill the noiseless window ``ideal`` (keV).

    Prompt events are evaluated only where needed (coarse-then-fine crossing search, then the
    window). Events with slow deposits (transition layer, ``tau_dep > 0``) are evaluated on a
    buffer from the interaction on, where each slow deposit's pulse is delayed by a
    single-pole response of its own time constant.
    """
    n_ev = offsets.shape[0] - 1
    n_s = waveform.shape[1]
    keep_ideal = ideal.shape[0] == n_ev
    inv_dt = 1.0 / dt_lib
    step = period * inv_dt
    buf = np.zeros(n_buf)
    tmp = np.zeros(n_buf)
    x = np.zeros(n_s)
    for ev in range(n_ev):
        d0 = offsets[ev]
        d1 = offsets[ev + 1]
        etot = e_total[ev]
        ph = phase[ev]
        target = trig_frac * etot
        can_trigger = etot > 0.0 and etot >= trig_threshold
        slow = False
        for d in range(d0, d1):
            if tau_dep[d] > 0.0 and e_dep[d] > 0.0:
                slow = True
        t_cross = 0.0
        triggered[ev] = False
        if slow:
            for k in range(n_buf):
                buf[k] = 0.0
            for d in range(d0, d1):
                if e_dep[d] == 0.0:
                    continue
                m0 = (ph - t_coll[d]) * inv_dt + align  # buffer sample k: t = ph + k period
                if tau_dep[d] <= 0.0:
                    _add_deposit(buf, table, corners, weights, d, e_dep[d], m0, step)
                    continue
                for k in range(n_buf):
                    tmp[k] = 0.0
                _add_deposit(tmp, table, corners, weights, d, e_dep[d], m0, step)
                a = math.exp(-period / tau_dep[d])
                y = 0.0
                for k in range(n_buf):
                    y = a * y + (1.0 - a) * tmp[k]
                    buf[k] += y
            if can_trigger:
                kc = _find_crossing(buf, n_buf, target)
                if kc >= 0.0:
                    t_cross = ph + kc * period
                    triggered[ev] = True
        elif can_trigger:
            # coarse search (8 ticks) for the crossing, then tick by tick
            k = 0
            coarse = 8
            prev_k = 0
            prev_v = 0.0
            found = False
            while ph + k * period <= t_max:
                v = _event_signal(
                    ph + k * period,
                    d0,
                    d1,
                    table,
                    corners,
                    weights,
                    t_coll,
                    e_dep,
                    tau_dep,
                    align,
                    inv_dt,
                )
                if v >= target:
                    found = True
                    break
                prev_k = k
                prev_v = v
                k += coarse
            if found:
                kk = prev_k
                pv = prev_v
                v1 = pv
                while kk < k:
                    v1 = _event_signal(
                        ph + (kk + 1) * period,
                        d0,
                        d1,
                        table,
                        corners,
                        weights,
                        t_coll,
                        e_dep,
                        tau_dep,
                        align,
                        inv_dt,
                    )
                    if v1 >= target:
                        break
                    kk += 1
                    pv = v1
                if kk == 0 and pv >= target:
                    frac = 0.0
                else:
                    frac = (target - pv) / (v1 - pv) if v1 > pv else 0.0
                t_cross = ph + (kk + frac) * period
                triggered[ev] = True
        # the trigger is latched on the next clock tick after the (jittered) crossing
        tj = t_cross + jitter[ev] if triggered[ev] else 0.0
        k_cross = math.ceil((tj - ph) / period)
        t_trigger[ev] = ph + k_cross * period
        k_start = k_cross - n_pre
        if slow:
            for s in range(n_s):
                k = k_start + s
                if k < 0:
                    x[s] = 0.0
                elif k < n_buf:
                    x[s] = buf[k]
                else:
                    x[s] = buf[n_buf - 1]
        else:
            for s in range(n_s):
                x[s] = 0.0
            t0 = ph + k_start * period
            for d in range(d0, d1):
                if e_dep[d] == 0.0:
                    continue
                _add_deposit(
                    x, table, corners, weights, d, e_dep[d], (t0 - t_coll[d]) * inv_dt + align, step
                )
        # a piled-up neighbour: its prompt signal, shifted by its interaction-time offset
        j = partner[ev]
        if j >= 0:
            t0p = ph + k_start * period - partner_delay[ev]
            for d in range(offsets[j], offsets[j + 1]):
                if e_dep[d] == 0.0:
                    continue
                _add_deposit(
                    x,
                    table,
                    corners,
                    weights,
                    d,
                    e_dep[d],
                    (t0p - t_coll[d]) * inv_dt + align,
                    step,
                )
        # preamp decay (CR) on the sample grid (the first sample enters as a step), noise, ADC
        prev_x = 0.0
        y = 0.0
        clip = False
        for s in range(n_s):
            y = x[s] if s == 0 else decay_alpha * y + (x[s] - prev_x)
            prev_x = x[s]
            if keep_ideal:
                ideal[ev, s] = y
            a = round(baseline + adc_per_kev * (y + noise[ev, s]))
            if a < 0:
                a = 0
                clip = True
            elif a > adc_max:
                a = adc_max
                clip = True
            waveform[ev, s] = a
        clipped[ev] = clip


def _to_flat(name: str, arr: Any) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Flatten a jagged (n_events * var * float) array; return values and counts."""
    try:
        a = ak.Array(arr) if not isinstance(arr, ak.Array) else arr
        counts = ak.to_numpy(ak.num(a, axis=1)).astype(np.int64)
        flat = ak.to_numpy(ak.flatten(a, axis=1)).astype(np.float64)
    except Exception as exc:
        msg = (
            f"digitize: {name} must be a jagged array of numbers (n_events * var * float64): {exc}"
        )
        raise SimulationError(msg) from exc
    return flat, counts


def _first_bad(mask: NDArray[np.bool_], offsets: NDArray[np.int64]) -> tuple[int, int]:
    idx = int(np.flatnonzero(mask)[0])
    ev = int(np.searchsorted(offsets, idx, side="right") - 1)
    return ev, idx - int(offsets[ev])


def digitize(
    edep_kev: Any,
    r_mm: Any,
    z_mm: Any,
    lib: PulseLibrary,
    elec_cfg: ElectronicsConfig,
    rng: np.random.Generator,
    *,
    pileup: NDArray[np.bool_] | None = None,
    pileup_partner: NDArray[np.int64] | None = None,
    pileup_delay_ns: NDArray[np.float64] | None = None,
    return_ideal: bool = False,
) -> dict[str, NDArray[Any]]:
    """Digitise events given as jagged arrays of energy deposits.

    Parameters
    ----------
    edep_kev, r_mm, z_mm
        Jagged arrays (``n_events * var * float64``): energy of each deposit (keV), its distance
        from the crystal axis (mm) and its height above the p+ contact face (mm, 0 <= z <=
        height; the entrance window facing the source is at ``z = height_mm``).
    lib
        The pulse library (:meth:`PulseLibrary.load_or_build`).
    elec_cfg
        Electronics configuration.
    rng
        Random generator; the same generator state gives identical output.
    pileup
        Optional boolean mask of events the caller identified as piled up (flag 0x8000).
    pileup_partner, pileup_delay_ns
        Optional, together: for each event the index of another event of this call whose
        pulse overlaps it (-1 for none) and the partner's interaction time minus this event's
        (ns, may be negative). The partner's signal (transition-layer deposits without their
        delay) is added to this event's window and the event gets flag 0x8000; its trigger and trapezoid energy stay its own.
    return_ideal
        Also return ``ideal_kev``: the noiseless window (float64, keV, after the preamp, before
        baseline, polarity and ADC) -- for plots and tests.

    Returns
    -------
    dict
        ``waveform`` (n, n_samples) int16, ``energy_adc`` (n,) uint16, ``energy_collected_kev``
        (n,) float64 (after dead/transition layers), ``flags`` (n,) uint32,
        ``trigger_delay_ns`` (n,) float64 (trigger time after the interaction; add it to the
        interaction time for the timestamp), ``triggered`` (n,) bool (False when the collected
        energy is below ``trigger_threshold_kev``: a real DAQ would not record the event; its
        window then starts ``pretrigger_ns`` before the interaction). Every input event has an
        output row; nothing is dropped.

    Raises
    ------
    SimulationError
        If the arrays do not line up, or a deposit is NaN, negative or outside the crystal
        (the message names the event and deposit index).
    """
    cfg = lib.config
    e_flat, counts = _to_flat("edep_kev", edep_kev)
    r_flat, counts_r = _to_flat("r_mm", r_mm)
    z_flat, counts_z = _to_flat("z_mm", z_mm)
    if not (np.array_equal(counts, counts_r) and np.array_equal(counts, counts_z)):
        bad = (
            int(np.flatnonzero((counts != counts_r) | (counts != counts_z))[0])
            if counts.shape == counts_r.shape == counts_z.shape
            else -1
        )
        msg = "digitize: edep_kev, r_mm and z_mm must have the same structure; " + (
            f"event {bad} has {counts[bad]}, {counts_r[bad]}, {counts_z[bad]} deposits"
            if bad >= 0
            else f"got {counts.size}, {counts_r.size}, {counts_z.size} events"
        )
        raise SimulationError(msg)
    n_ev = counts.size
    offsets = np.zeros(n_ev + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    tol = 1e-9
    checks = (
        (~np.isfinite(e_flat) | (e_flat < 0), "energy must be finite and >= 0 keV"),
        (
            ~np.isfinite(r_flat) | (r_flat < -tol) | (r_flat > cfg.radius_mm + tol),
            f"r_mm must be in [0, {cfg.radius_mm}]",
        ),
        (
            ~np.isfinite(z_flat) | (z_flat < -tol) | (z_flat > cfg.height_mm + tol),
            f"z_mm must be in [0, {cfg.height_mm}]",
        ),
    )
    for mask, what in checks:
        if mask.any():
            ev, dep = _first_bad(mask, offsets)
            i = int(offsets[ev]) + dep
            msg = (
                f"digitize: event {ev}, deposit {dep}: {what} "
                f"(edep_kev={e_flat[i]!r}, r_mm={r_flat[i]!r}, z_mm={z_flat[i]!r})"
            )
            raise SimulationError(msg)
    r_flat = np.clip(r_flat, 0.0, cfg.radius_mm)
    z_flat = np.clip(z_flat, 0.0, cfg.height_mm)

    # collected charge per deposit; transition-layer deposits arrive late (diffusion)
    e_coll = e_flat * charge_collection_efficiency(r_flat, z_flat, cfg)
    tau_dep = transition_delay_ns(r_flat, z_flat, cfg)
    e_total = np.bincount(
        np.repeat(np.arange(n_ev), counts), weights=e_coll, minlength=n_ev
    ).astype(np.float64)

    # bilinear corners and weights
    x = r_flat / lib.dr_mm
    y = z_flat / lib.dz_mm
    i0 = np.clip(np.floor(x).astype(np.int64), 0, lib.nr - 2)
    j0 = np.clip(np.floor(y).astype(np.int64), 0, lib.nz - 2)
    fx = np.clip(x - i0, 0.0, 1.0)
    fy = np.clip(y - j0, 0.0, 1.0)
    p00 = i0 * lib.nz + j0
    corners = np.stack([p00, p00 + lib.nz, p00 + 1, p00 + lib.nz + 1], axis=1)
    weights = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1)
    t_coll = (
        np.einsum("dc,dc->d", weights, lib.t_collect_ns[corners]) if e_flat.size else np.zeros(0)
    )

    table = lib.filtered(elec_cfg.preamp_rise_ns)
    period = elec_cfg.sample_period_ns
    n_s = elec_cfg.n_samples
    n_pre = round(elec_cfg.pretrigger_ns / period)

    partner = np.full(n_ev, -1, dtype=np.int64)
    partner_delay = np.zeros(n_ev, dtype=np.float64)
    if (pileup_partner is None) != (pileup_delay_ns is None):
        msg = "digitize: pileup_partner and pileup_delay_ns must be given together"
        raise SimulationError(msg)
    if pileup_partner is not None and pileup_delay_ns is not None:
        partner = np.asarray(pileup_partner, dtype=np.int64)
        partner_delay = np.asarray(pileup_delay_ns, dtype=np.float64)
        if partner.shape != (n_ev,) or partner_delay.shape != (n_ev,):
            msg = f"digitize: pileup_partner/pileup_delay_ns have shapes {partner.shape}/{partner_delay.shape}, expected ({n_ev},)"
            raise SimulationError(msg)
        bad_p = (partner < -1) | (partner >= n_ev) | (partner == np.arange(n_ev))
        bad_p |= (partner >= 0) & ~np.isfinite(partner_delay)
        if bad_p.any():
            ev = int(np.flatnonzero(bad_p)[0])
            msg = (
                f"digitize: event {ev}: pileup_partner = {partner[ev]} with delay {partner_delay[ev]!r} ns; "
                f"expected -1 or another event index in [0, {n_ev}) and a finite delay"
            )
            raise SimulationError(msg)

    # random numbers, in a fixed order: clock phase, trigger jitter, energy smearing, noise
    phase = rng.uniform(0.0, period, n_ev)
    jitter = (
        rng.normal(0.0, elec_cfg.trigger_jitter_ns, n_ev)
        if elec_cfg.trigger_jitter_ns > 0
        else np.zeros(n_ev)
    )
    e_meas = e_total + resolution_sigma_kev(e_total, elec_cfg) * rng.standard_normal(n_ev)
    noise = noise_traces(n_ev, n_s, elec_cfg, rng)

    ideal = np.empty((n_ev if return_ideal else 0, n_s), dtype=np.float64)
    waveform = np.empty((n_ev, n_s), dtype=np.int16)
    clipped = np.empty(n_ev, dtype=np.bool_)
    t_trigger = np.empty(n_ev, dtype=np.float64)
    triggered = np.empty(n_ev, dtype=np.bool_)
    decay_alpha = math.exp(-period / (elec_cfg.preamp_decay_us * 1000.0))
    t_max = (
        float(lib.t_collect_ns.max() + (table.shape[1] - lib.align_index) * lib.dt_ns) + 2 * period
    )
    n_buf = int((t_max + 4.0 * cfg.transition_delay_ns + (n_s + 2) * period) / period) + 1
    sign = 1.0 if elec_cfg.polarity == "positive" else -1.0
    adc_max = 2**elec_cfg.adc_bits - 1
    if adc_max > np.iinfo(np.int16).max:
        msg = f"digitize: adc_bits = {elec_cfg.adc_bits} does not fit the int16 waveform"
        raise SimulationError(msg)
    _digitize_kernel(
        offsets,
        e_coll,
        tau_dep,
        corners,
        weights,
        t_coll,
        table,
        float(lib.align_index),
        lib.dt_ns,
        phase,
        jitter,
        e_total,
        period,
        n_pre,
        elec_cfg.trigger_fraction,
        elec_cfg.trigger_threshold_kev,
        decay_alpha,
        t_max,
        n_buf,
        partner,
        partner_delay,
        noise,
        float(elec_cfg.baseline_adc),
        sign / elec_cfg.waveform_kev_per_adc,
        adc_max,
        ideal,
        waveform,
        clipped,
        t_trigger,
        triggered,
    )

    # trapezoid energy in channels
    e_max = 2**elec_cfg.energy_bits - 1
    ch = np.rint(e_meas / elec_cfg.energy_kev_per_channel)
    e_over = ch > e_max
    energy_adc = np.clip(ch, 0, e_max).astype(np.uint16)

    flags = np.zeros(n_ev, dtype=np.uint32)
    flags[clipped] |= np.uint32(FLAG_INPUT_SATURATED | FLAG_ENERGY_SATURATED)
    flags[e_over] |= np.uint32(FLAG_ENERGY_SATURATED)
    if pileup is not None:
        pu = np.asarray(pileup, dtype=bool)
        if pu.shape != (n_ev,):
            msg = f"digitize: pileup mask has shape {pu.shape}, expected ({n_ev},)"
            raise SimulationError(msg)
        flags[pu] |= np.uint32(FLAG_PILEUP)
    flags[partner >= 0] |= np.uint32(FLAG_PILEUP)

    out: dict[str, NDArray[Any]] = {
        "waveform": waveform,
        "energy_adc": energy_adc,
        "energy_collected_kev": e_total.astype(np.float64),
        "flags": flags,
        "trigger_delay_ns": t_trigger,
        "triggered": triggered,
    }
    if return_ideal:
        out["ideal_kev"] = ideal
    return out
