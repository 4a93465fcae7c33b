"""Internal: the column chunk every format reader yields, and its conversion to awkward.

A reader yields :class:`RawChunk` objects (numpy columns in event-model names and native
dtypes, the waveforms as offsets + int16 content); :func:`to_awkward` builds the ``ak.Array``
without copying the columns.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from ..errors import BegePsdWarning

__all__ = (
    "FIELD_DTYPES",
    "FIELD_ORDER",
    "ProbeCodeWarning",
    "RawChunk",
    "event_columns",
    "to_awkward",
    "waveform_parts",
)

#: event-model fields in output order, and their dtypes
FIELD_DTYPES: dict[str, Any] = {
    "board": np.uint16,
    "channel": np.uint16,
    "timestamp_ps": np.uint64,
    "energy_adc": np.uint16,
    "energy_short": np.uint16,
    "energy_cal": np.float64,
    "flags": np.uint32,
}
FIELD_ORDER: tuple[str, ...] = (*FIELD_DTYPES, "waveform")


class ProbeCodeWarning(BegePsdWarning):
    """A waveform's probe code is not 1, so the trace may not be the raw input signal."""


@dataclasses.dataclass
class RawChunk:
    """Columns of ``entry_stop - entry_start`` consecutive events of one file."""

    path: str
    entry_start: int
    entry_stop: int
    columns: dict[str, NDArray[Any]]
    wf_offsets: NDArray[np.int64]
    wf_content: NDArray[np.int16]
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    skipped: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return self.entry_stop - self.entry_start


def empty_waveforms(n: int) -> tuple[NDArray[np.int64], NDArray[np.int16]]:
    return np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int16)


def check_probe(
    path: str,
    probe: NDArray[Any] | None,
    entry_start: int,
    has_wave: NDArray[np.bool_] | None = None,
) -> None:
    """Warn (once per call) when a saved waveform has a probe code other than 1."""
    if probe is None or probe.size == 0:
        return
    bad = probe != 1
    if has_wave is not None:
        bad &= has_wave
    if np.any(bad):
        i = int(np.argmax(bad))
        msg = (
            f"{path}: entry {entry_start + i}: waveform probe code {int(probe[i])} (expected 1, the "
            f"raw input trace); {int(np.count_nonzero(bad))} events in entries "
            f"[{entry_start}, {entry_start + probe.size}) have another code"
        )
        warnings.warn(msg, ProbeCodeWarning, stacklevel=3)


def to_awkward(chunk: RawChunk, attrs: dict[str, Any] | None = None) -> ak.Array:
    """Assemble the event record array of ``chunk`` (zero-copy for the numpy columns)."""
    n = len(chunk)
    names: list[str] = []
    contents: list[ak.contents.Content] = []
    for name in FIELD_DTYPES:
        if name in chunk.columns:
            col = np.ascontiguousarray(chunk.columns[name], dtype=FIELD_DTYPES[name])
            names.append(name)
            contents.append(ak.contents.NumpyArray(col))
    wf = ak.contents.ListOffsetArray(
        ak.index.Index64(np.asarray(chunk.wf_offsets, dtype=np.int64)),
        ak.contents.NumpyArray(np.asarray(chunk.wf_content, dtype=np.int16)),
    )
    names.append("waveform")
    contents.append(wf)
    for name, value in chunk.extras.items():
        names.append(name)
        contents.append(ak.to_layout(value))
    record = ak.contents.RecordArray(contents, names, length=n)
    return ak.Array(record, attrs=attrs)


def waveform_parts(waveform: Any) -> tuple[NDArray[np.int64], NDArray[np.int16]]:
    """``(offsets starting at 0, int16 content)`` of a jagged waveform array."""
    wf = ak.to_packed(ak.values_astype(ak.Array(waveform), np.int16))
    counts = ak.to_numpy(ak.num(wf, axis=1)).astype(np.int64)
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    content = ak.to_numpy(ak.flatten(wf, axis=1)) if counts.size else np.zeros(0, np.int16)
    return offsets, np.ascontiguousarray(content, dtype=np.int16)


def event_columns(
    events: Any,
) -> tuple[dict[str, NDArray[Any]], NDArray[np.int64], NDArray[np.int16], dict[str, NDArray[Any]]]:
    """Split an event array (or a mapping of columns) into scalar columns, waveforms and extras.

    ``board``, ``channel``, ``timestamp_ps``, ``energy_adc`` and ``flags`` are required;
    ``energy_short``, ``energy_cal`` and ``waveform`` are optional; other one-dimensional
    numeric fields are returned as extras.
    """
    arr = events if isinstance(events, ak.Array) else ak.Array(events)
    fields = list(arr.fields)
    missing = [
        f for f in ("board", "channel", "timestamp_ps", "energy_adc", "flags") if f not in fields
    ]
    if missing:
        msg = f"events lack the field(s) {missing}; they have {fields}"
        raise ValueError(msg)
    cols: dict[str, NDArray[Any]] = {}
    for name, dtype in FIELD_DTYPES.items():
        if name in fields:
            col = ak.to_numpy(arr[name])
            if name != "energy_cal" and col.dtype.kind == "f":
                msg = f"events field {name!r} must be integer, got {col.dtype}"
                raise ValueError(msg)
            if col.dtype.kind in "iu" and col.size and dtype is not np.float64:
                info = np.iinfo(dtype)
                if col.min() < info.min or col.max() > info.max:
                    msg = (
                        f"events field {name!r} has values outside the {np.dtype(dtype).name} range"
                    )
                    raise ValueError(msg)
            cols[name] = col.astype(dtype, copy=False)
    n = len(arr)
    if "waveform" in fields:
        offsets, content = waveform_parts(arr["waveform"])
    else:
        offsets, content = empty_waveforms(n)
    extras: dict[str, NDArray[Any]] = {}
    for name in fields:
        if name in FIELD_DTYPES or name == "waveform":
            continue
        try:
            col = ak.to_numpy(arr[name])
        except Exception:  # jagged or record extras are not written
            continue
        if col.ndim == 1 and col.dtype.kind in "iuf":
            extras[name] = col
    return cols, offsets, content, extras
