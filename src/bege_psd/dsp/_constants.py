"""Names and bit values shared by the kernels and the Python layer (no numba import here)."""

from __future__ import annotations

#: float columns written by :func:`features_2d`, in order
FEATURE_COLUMNS: tuple[str, ...] = (
    "baseline_mean",
    "baseline_rms",
    "baseline_slope",
    "amplitude",
    "t0_ns",
    "risetime_ns",
    "rt_10_50_ns",
    "rt_50_90_ns",
    "current_max",
    "a_over_e",
    "t_current_max_ns",
    "l1_to_sse",
)

#: quality bits set by the kernel (the same values as :class:`bege_psd.dsp.Quality`)
QUALITY_BITS: dict[str, int] = {
    "SATURATED": 1,
    "PILEUP": 2,
    "BAD_BASELINE": 4,
    "NO_WAVEFORM": 8,
    "DAQ_SATURATION": 16,
    "DAQ_PILEUP": 32,
    "FAKE": 64,
    "NO_PULSE": 128,
}

# indices into the float / int parameter vectors of features_2d
(
    FP_PERIOD,
    FP_LOW,
    FP_MID,
    FP_HIGH,
    FP_D2H,
    FP_SAT,
    FP_SPIKE,
    FP_DRIFT,
    FP_PUF,
    FP_PUSEP,
    FP_MINAMP,
    FP_D2NSIG,
    FP_D2PROM,
) = range(13)
IP_NBASE, IP_D2DIST, IP_TPRE = range(3)
