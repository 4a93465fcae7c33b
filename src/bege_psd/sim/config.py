"""Configuration of a simulated run (TOML table ``[sim]``).

:class:`SimConfig` composes the detector (:class:`~bege_psd.sim.config_detector.DetectorConfig`,
table ``[sim.detector]``), the electronics (``[sim.electronics]``), the source geometry and
strength (:class:`~bege_psd.sim.sources.SourceConfig`, ``[sim.source]``), the photon transport
(:class:`~bege_psd.sim.transport.TransportConfig`, ``[sim.transport]``) and the run options
below. Build it from a TOML file with ``bege_psd.config.load_config(path).sim`` or from a
mapping with ``bege_psd.config.from_mapping(SimConfig, mapping)``; every key is validated.

Example::

    [sim]
    chunk_events = 20000
    [sim.source]
    distance_mm = 100.0
    activity_bq = 1000.0
    [sim.detector]
    library_grid_mm = 1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config_detector import DetectorConfig, ElectronicsConfig
from .sources import SourceConfig
from .transport import TransportConfig

__all__ = ("DetectorConfig", "ElectronicsConfig", "SimConfig", "SourceConfig", "TransportConfig")


@dataclass(frozen=True)
class SimConfig:
    """Everything a simulated run depends on; the defaults describe the paper's set-up."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    electronics: ElectronicsConfig = field(default_factory=ElectronicsConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    chunk_events: int = field(
        default=20_000,
        metadata={
            "min": 100,
            "max": 10_000_000,
            "doc": "recorded events simulated per chunk (memory)",
        },
    )
    max_decays_per_chunk: int = field(default=5_000_000, metadata={"min": 1000})
    pileup_window_ns: float = field(
        default=3000.0,
        metadata={
            "min": 0.0,
            "doc": "events closer than this to a neighbour get the pile-up flag (trapezoid length)",
        },
    )
    run_id: str = field(default="run", metadata={"doc": "CoMPASS run name used in the file names"})
    write_waveforms: bool = True
