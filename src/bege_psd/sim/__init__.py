"""Physics simulator of a BEGe detector that writes CoMPASS runs with truth.

Use :func:`simulate` (``bege-psd simulate``) for a whole run; the stages are
:mod:`bege_psd.sim.sources` (decays -> photons), :mod:`bege_psd.sim.transport` (photons ->
energy deposits), :mod:`bege_psd.sim.detector` (fields, drift, pulse library) and
:mod:`bege_psd.sim.electronics` (deposits -> digitised waveforms), configured by
:class:`bege_psd.sim.config.SimConfig`. Heavy modules are imported on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ("SimConfig", "read_truth", "simulate")


def __getattr__(name: str) -> Any:
    if name in ("simulate", "read_truth"):
        from . import run

        return getattr(run, name)
    if name == "SimConfig":
        from .config import SimConfig

        return SimConfig
    msg = f"module 'bege_psd.sim' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(__all__)
