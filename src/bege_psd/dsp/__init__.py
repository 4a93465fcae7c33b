"""Pulse-shape features of BEGe waveforms as numba kernels.

What to use when
----------------
- Features of a chunk of events (rise times, A/E, L1 to the SSE template, |d2| peak count,
  baseline, quality flags): :func:`features`.
- The autoencoder input (normalised, down-sampled by 3): :func:`acm_input`.
- The mean SSE pulse: :class:`SSETemplate` (build / save / load / l1).
- Options: :class:`DSPConfig` (TOML section ``[dsp]``); quality bits: :class:`Quality`.
- From the command line: ``bege-psd features SOURCE --out FILE``.
- Single kernels and their numpy twins: :mod:`bege_psd.dsp.kernels`, :mod:`bege_psd.dsp.twins`.

The numba kernels (:mod:`bege_psd.dsp.kernels`) are imported, compiled and cached on first use,
so importing this package (e.g. to read a ``[dsp]`` configuration) stays cheap.
"""

from __future__ import annotations

from .config import DSPConfig
from .features import Quality, acm_input, features
from .template import SSETemplate

__all__ = ("DSPConfig", "Quality", "SSETemplate", "acm_input", "features")


def __dir__() -> tuple[str, ...]:
    return __all__
