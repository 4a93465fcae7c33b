"""Configuration of the waveform features: :class:`DSPConfig` (TOML section ``[dsp]``).

All windows are in samples, all levels are fractions of the pulse amplitude. The defaults follow
the paper (Baccolo et al., EPJC 2025, Sec. 5.2 and Fig. 10): a Savitzky-Golay smoothing filter of
window 19 and order 2, then a Savitzky-Golay differentiating filter of window 19 and order 13.

The authors' public code (BEGepro, read for facts only, see ``reference/PSD-ANCHORS.md``) uses
other variants; :meth:`DSPConfig.authors_code` approximates them within what the parameters here
can express:

- current (for A and A/E): SG(19, 2) smoothing then an SG(13, 2) first derivative
  (``current_window=13, current_order=2``);
- second derivative: moving average 14, a 2-point difference, moving average 30. Here the second
  derivative is always one SG first-derivative filter applied to the current; a long low-order
  window (``d2_window=31, d2_order=2``) plays the role of the two moving averages (odd windows
  only: the SG filters are centred);
- number of |d2| peaks: ``scipy.signal.find_peaks(height=0.1, distance=10)`` on |d2| normalised to
  a maximum of 1 (``d2_peak_nsigma=0, d2_peak_prominence=0``; the defaults here add a noise floor
  of 4 sigma and a prominence of 0.1, see :mod:`bege_psd.dsp.features`);
- rise time 10-90 % with linear interpolation, 4 ns per sample (the defaults here too);
- L1 distance ("simm"): a mean absolute difference over the overlap after alignment at the
  minimum of d2; here the alignment is at the 50 % crossing with sub-sample interpolation, which
  is less sensitive to noise (see :mod:`bege_psd.dsp.template`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

__all__ = ("DSPConfig",)


@dataclasses.dataclass(frozen=True)
class DSPConfig:
    """Options of :func:`bege_psd.dsp.features`, :func:`~bege_psd.dsp.acm_input` and the SSE
    template. Build it from a TOML table with :func:`bege_psd.config.from_mapping`."""

    #: samples at the start of the trace used for the baseline (mean, RMS, slope)
    baseline_samples: int = field(default=40, metadata={"min": 4, "max": 4096})
    #: Savitzky-Golay smoothing of the charge trace (paper: 19, 2)
    smooth_window: int = field(default=19, metadata={"min": 3, "max": 199, "odd": True})
    smooth_order: int = field(default=2, metadata={"min": 0, "max": 20})
    #: Savitzky-Golay first derivative of the smoothed trace = the current (paper: 19, 13;
    #: authors' code: 13, 2)
    current_window: int = field(default=19, metadata={"min": 3, "max": 199, "odd": True})
    current_order: int = field(default=13, metadata={"min": 1, "max": 20})
    #: Savitzky-Golay first derivative of the current = d2Q/dt2 (used for the peak count)
    d2_window: int = field(default=19, metadata={"min": 3, "max": 199, "odd": True})
    d2_order: int = field(default=2, metadata={"min": 1, "max": 20})
    #: number of |d2| peaks (see :mod:`bege_psd.dsp.features`): a peak counts when its height is
    #: at least max(d2_peak_height x max|d2|, d2_peak_nsigma x sigma_d2) (sigma_d2 = RMS of d2
    #: on the signal-free samples of the event), it is at least d2_peak_distance samples from a
    #: higher counted peak, and its prominence is at least d2_peak_prominence x max|d2|.
    #: Minimum height as a fraction of the maximum of |d2| (authors: 0.1)
    d2_peak_height: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    #: minimum height in units of the event's d2 noise RMS (authors: none, i.e. 0). 4 sigma: on
    #: the simulated runs a 300 keV pulse has max|d2| of ~12 sigma, so the relative 0.1 alone
    #: would count noise wiggles (7-15 peaks per event below 600 keV)
    d2_peak_nsigma: float = field(default=4.0, metadata={"min": 0.0, "max": 1000.0})
    #: minimum prominence (scipy.signal.peak_prominences) as a fraction of max|d2| (authors:
    #: none, i.e. 0). 0.1 merges the shoulder of the slow hole-drift current with the main
    #: rising lobe of the same sign: a clean single-site pulse counts 2
    d2_peak_prominence: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    #: minimum separation of two counted |d2| peaks in samples (authors: 10; find_peaks' distance)
    d2_peak_distance: int = field(default=10, metadata={"min": 1, "max": 4096})
    #: rise-time levels as fractions of the amplitude: low (t0, start), middle, high
    rt_low: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    rt_mid: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    rt_high: float = field(default=0.9, metadata={"min": 0.0, "max": 1.0})
    #: SSE template: samples kept before and after the 50 % crossing
    template_pre_samples: int = field(default=64, metadata={"min": 1, "max": 8192})
    template_post_samples: int = field(default=160, metadata={"min": 1, "max": 8192})
    #: ADC resolution; a trace that reaches the ADC limit on the pulse side is SATURATED
    adc_bits: int = field(default=14, metadata={"min": 8, "max": 16})
    #: BAD_BASELINE when a baseline sample deviates from the mean by more than this many RMS
    baseline_spike_nsigma: float = field(default=5.0, metadata={"min": 1.0})
    #: BAD_BASELINE when |slope| x baseline_samples exceeds this many baseline RMS
    baseline_drift_nsigma: float = field(default=3.0, metadata={"min": 0.0})
    #: PILEUP when the current exceeds this fraction of its maximum ...
    pileup_fraction: float = field(default=0.3, metadata={"min": 0.0, "max": 1.0})
    #: ... further than this from the main current pulse (ns)
    pileup_min_separation_ns: float = field(default=800.0, metadata={"min": 0.0})
    #: NO_PULSE when the amplitude is below this many baseline RMS (or not positive)
    min_amplitude_nsigma: float = field(default=5.0, metadata={"min": 0.0})
    #: down-sampling factor of the ACM input (paper: 3, 366 -> 122 samples)
    acm_downsample: int = field(default=3, metadata={"min": 1, "max": 64})
    #: sample period used when neither the caller nor the chunk's attrs give one
    sample_period_ns: float = field(default=4.0, metadata={"min": 1e-3})

    def __post_init__(self) -> None:
        for name in ("smooth", "current", "d2"):
            w, o = getattr(self, f"{name}_window"), getattr(self, f"{name}_order")
            if o >= w:
                msg = f"dsp.{name}_order = {o} must be smaller than dsp.{name}_window = {w}"
                raise ValueError(msg)
        if not self.rt_low < self.rt_mid < self.rt_high:
            msg = (
                f"dsp rise-time levels must satisfy rt_low < rt_mid < rt_high, got "
                f"{self.rt_low}, {self.rt_mid}, {self.rt_high}"
            )
            raise ValueError(msg)

    @classmethod
    def authors_code(cls, **overrides: Any) -> DSPConfig:
        """The closest configuration to the authors' public code (see the module docstring)."""
        values: dict[str, Any] = {
            "current_window": 13,
            "current_order": 2,
            "d2_window": 31,
            "d2_peak_nsigma": 0.0,
            "d2_peak_prominence": 0.0,
        }
        values.update(overrides)
        return cls(**values)
