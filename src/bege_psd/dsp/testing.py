"""Synthetic BEGe-like charge pulses for tests and benchmarks (not a detector simulation).

What to use when
----------------
- Unit tests and benchmarks of the feature kernels that need realistic-looking traces with a
  known number of steps: :func:`synthetic_pulses`.
- Physically simulated pulses (fields, drift, Shockley-Ramo): :mod:`bege_psd.sim`.

Each site contributes a charge step whose current is a Gaussian of width ``sigma_ns`` (an erf
step), the sum is passed through a single-pole preamplifier rise (10-90 % rise ``preamp_rise_ns``)
and an exponential decay, then white Gaussian noise, a baseline offset, rounding to int16 and
clipping to the ADC range are applied.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import erf

__all__ = ("synthetic_pulses",)


def synthetic_pulses(
    n: int,
    *,
    length: int = 366,
    n_sites: int = 1,
    seed: int | np.random.Generator = 0,
    amplitude_adc: tuple[float, float] = (800.0, 6000.0),
    noise_adc: float = 3.0,
    baseline_adc: float = 1500.0,
    polarity: str = "positive",
    t_start_ns: tuple[float, float] = (480.0, 560.0),
    sigma_ns: tuple[float, float] = (15.0, 45.0),
    site_separation_ns: tuple[float, float] = (120.0, 360.0),
    preamp_rise_ns: float = 30.0,
    decay_us: float = 50.0,
    sample_period_ns: float = 4.0,
    adc_bits: int = 14,
) -> tuple[NDArray[np.int16], NDArray[np.float64]]:
    """``n`` traces of ``length`` samples with ``n_sites`` charge steps each.

    Returns the int16 traces and the true total amplitude in ADC (before noise). With several
    sites, the energy is split at random (each site gets at least 25 %) and the sites follow one
    another at ``site_separation_ns`` intervals.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    t = np.arange(length) * sample_period_ns
    amp = rng.uniform(*amplitude_adc, size=n)
    q = np.zeros((n, length))
    t_site = rng.uniform(*t_start_ns, size=n)
    fractions = rng.dirichlet(np.full(n_sites, 4.0), size=n) if n_sites > 1 else np.ones((n, 1))
    if n_sites > 1:
        fractions = 0.25 + (1 - 0.25 * n_sites) * fractions
    for k in range(n_sites):
        if k:
            t_site = t_site + rng.uniform(*site_separation_ns, size=n)
        sig = rng.uniform(*sigma_ns, size=n)
        q += (
            fractions[:, k : k + 1]
            * 0.5
            * (1.0 + erf((t[None, :] - t_site[:, None]) / (np.sqrt(2) * sig[:, None])))
        )
    # single-pole preamplifier rise: tau = rise(10-90 %) / ln 9
    alpha = 1.0 - np.exp(-sample_period_ns / (preamp_rise_ns / np.log(9.0)))
    out = np.empty_like(q)
    acc = q[:, 0].copy()
    for i in range(length):
        acc += alpha * (q[:, i] - acc)
        out[:, i] = acc
    out *= np.exp(-t[None, :] / (decay_us * 1e3))
    sign = 1.0 if polarity == "positive" else -1.0
    trace = baseline_adc + sign * amp[:, None] * out + rng.normal(0.0, noise_adc, size=(n, length))
    trace = np.clip(np.rint(trace), 0, 2**adc_bits - 1)
    return trace.astype(np.int16), amp
