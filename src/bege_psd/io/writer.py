"""Writing a whole CoMPASS 2.x run folder (what the simulator produces).

Use :func:`write_run` to write ``settings.xml``, ``run.info`` and
``RAW/DataR_CH<ch>@<model>_<serial>_<run_id>.<ext>`` so that :func:`bege_psd.io.read` reads
the folder back; the single-file writers are :func:`bege_psd.io.write_root`,
:func:`bege_psd.io.write_bin` and :func:`bege_psd.io.write_csv`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np

from .._util import atomic_write_text
from .compass_bin import write_bin
from .compass_csv import write_csv
from .compass_root import write_root
from .settings import RunMetadata, run_info_text, settings_xml_text

__all__ = ("data_file_name", "write_run")

log = logging.getLogger(__name__)

_EXTENSIONS = {"root": "root", "bin": "BIN", "csv": "CSV"}


def data_file_name(meta: RunMetadata, channel: int, fmt: str, part: int = 0) -> str:
    """CoMPASS 2.x RAW file name, e.g. ``DataR_CH0@DT5725_1146_run_1.root`` (``_<part>`` for part > 0)."""
    suffix = f"_{part}" if part else ""
    return (
        f"DataR_CH{channel}@{meta.model or 'DT5725'}_{meta.serial_number or 0}_"
        f"{meta.run_id or 'run'}{suffix}.{_EXTENSIONS[fmt]}"
    )


def write_run(
    folder: str | os.PathLike[str],
    events: Any,
    metadata: RunMetadata | None = None,
    fmt: Literal["root", "bin", "csv"] = "root",
    *,
    max_events_per_file: int | None = None,
) -> Path:
    """Write ``events`` as a CoMPASS 2.x run folder and return the folder.

    One RAW file per channel present in ``events`` (in channel order; events keep their order
    within a channel), split into ``_1``, ``_2`` ... continuation files every
    ``max_events_per_file`` events (CSV continuations have no header, like CoMPASS's).
    ``metadata`` fills ``settings.xml`` (sample period, record length, pre-trigger, polarity,
    model, serial number, ADC bits) and ``run.info`` (times, calibration); its
    ``record_length`` defaults to the longest waveform. Every file is written atomically.
    """
    if fmt not in _EXTENSIONS:
        msg = f"write_run: fmt = {fmt!r}; expected one of {sorted(_EXTENSIONS)}"
        raise ValueError(msg)
    if max_events_per_file is not None and max_events_per_file < 1:
        msg = f"write_run: max_events_per_file = {max_events_per_file}; must be at least 1"
        raise ValueError(msg)
    folder = Path(folder)
    meta = metadata or RunMetadata()
    arr = events if isinstance(events, ak.Array) else ak.Array(events)
    has_waves = (
        "waveform" in arr.fields
        and len(arr) > 0
        and int(ak.max(ak.num(arr["waveform"], axis=1))) > 0
    )
    if meta.record_length is None and has_waves:
        meta = dataclasses.replace(meta, record_length=int(ak.max(ak.num(arr["waveform"], axis=1))))
    channels = np.unique(ak.to_numpy(arr["channel"])).astype(int).tolist() if len(arr) else [0]
    writers: dict[str, Callable[..., Path]] = {
        "root": write_root,
        "bin": write_bin,
        "csv": write_csv,
    }
    writer = writers[fmt]
    raw = folder / "RAW"
    raw.mkdir(parents=True, exist_ok=True)
    channel_col = ak.to_numpy(arr["channel"]) if len(arr) else np.zeros(0, np.uint16)
    for ch in channels:
        sub = arr[channel_col == ch] if len(channels) > 1 else arr
        step = max_events_per_file or max(len(sub), 1)
        for part, start in enumerate(range(0, max(len(sub), 1), step)):
            piece = sub[start : start + step]
            name = raw / data_file_name(meta, ch, fmt, part)
            if fmt == "csv":
                write_csv(name, piece, header=part == 0)
            else:
                writer(name, piece)
    atomic_write_text(
        folder / "settings.xml",
        settings_xml_text(meta, file_format=fmt.upper(), waveforms=has_waves),
    )
    atomic_write_text(folder / "run.info", run_info_text(meta, channels=tuple(channels)))
    log.info("wrote %d events as a CoMPASS %s run in %s", len(arr), fmt, folder)
    return folder
