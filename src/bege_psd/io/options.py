"""Options of the CoMPASS readers (configuration section ``[io]``).

Use :class:`ReadOptions` to configure :func:`bege_psd.io.read` / :func:`bege_psd.io.iterate`
from a TOML file (``[io]`` table, validated by :func:`bege_psd.config.from_mapping`); the
same names can be passed as keyword arguments to the readers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Literal

__all__ = ("ReadOptions",)


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How to read a CoMPASS run.

    Nothing is dropped unless ``drop_flagged`` or ``on_error = "skip"`` asks for it, and then
    every dropped or skipped event is counted in the chunk ``attrs`` (``"dropped"``,
    ``"skipped"``).
    """

    step_size: int = field(
        default=100_000, metadata={"min": 1, "doc": "events per chunk yielded by iterate()"}
    )
    sample_period_ns: float | None = field(
        default=None,
        metadata={"min": 0.001, "doc": "override settings.xml sampleTime (ns per sample)"},
    )
    polarity: Literal["positive", "negative"] | None = field(
        default=None, metadata={"doc": "override settings.xml SRV_PARAM_CH_POLARITY"}
    )
    on_error: Literal["raise", "skip"] = field(
        default="raise",
        metadata={"doc": "'skip' reads the good part of a damaged file and counts what it skipped"},
    )
    drop_flagged: bool = field(
        default=False,
        metadata={"doc": "drop saturated, pile-up and fake events (counted in attrs['dropped'])"},
    )
    format: Literal["auto", "root", "bin", "csv"] = field(
        default="auto", metadata={"doc": "file format when a run folder holds several"}
    )
    stage: Literal["auto", "raw", "unfiltered", "filtered"] = field(
        default="auto", metadata={"doc": "which sub-folder of a run folder to read"}
    )
    tree: str | None = field(
        default=None, metadata={"doc": "ROOT tree name (default: Data_R, Data, Data_F)"}
    )
    bin_v1_layout: Literal["auto", "psd", "pha"] = field(
        default="auto", metadata={"doc": "record layout of header-less CoMPASS 1.x BIN files"}
    )
    check_lengths: bool = field(
        default=True,
        metadata={"doc": "require one waveform length per channel within a file (0 allowed)"},
    )

    def __post_init__(self) -> None:
        if self.step_size < 1:
            msg = f"io.step_size = {self.step_size}: must be at least 1"
            raise ValueError(msg)
        if self.sample_period_ns is not None and not self.sample_period_ns > 0:
            msg = f"io.sample_period_ns = {self.sample_period_ns}: must be positive"
            raise ValueError(msg)
