"""CoMPASS binary (``.BIN``) event files, 2.x (with header) and 1.x (without): reader and writer.

Use :func:`bege_psd.io.read` / :func:`bege_psd.io.iterate`; :func:`write_bin` is exported as
:func:`bege_psd.io.write_bin`.

CoMPASS 2.x files start with a little-endian ``uint16`` header ``0xCAE0 | mask`` (bit 0 ADC
energy, bit 1 calibrated energy, bit 2 short energy, bit 3 waveform); each record is
``board u2, channel u2, timestamp u8 (ps), [energy u2], [energy_cal f8], [energy_short u2],
flags u4, [code u1, ns u4, ns x u2]`` (little-endian, packed). 1.x files have no header and
the record ``board u2, channel u2, timestamp u8, energy u2, [energy_short u2 (PSD)], flags u4,
ns u4, ns x u2``. See ``shared/COMPASS-FORMATS.md`` section 2.

When every record has the same number of samples the file is memory-mapped as a numpy
structured array (no parsing at all); otherwise a numba walk finds the record offsets and the
columns are gathered from the mapped bytes. A partial last record raises
:class:`~bege_psd.errors.TruncatedFileError` (or, with ``on_error="skip"``, is skipped and
counted).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from .._util import atomic_path
from ..errors import CompassFormatError, TruncatedFileError
from ._events import RawChunk, check_probe, empty_waveforms, event_columns
from .options import ReadOptions

__all__ = (
    "MASK_CAL",
    "MASK_ENERGY",
    "MASK_SHORT",
    "MASK_WAVES",
    "BinLayout",
    "detect_layout",
    "iter_bin",
    "walk_records",
    "walk_records_py",
    "write_bin",
)

log = logging.getLogger(__name__)

MAGIC = 0xCAE0
MASK_ENERGY = 0x1
MASK_CAL = 0x2
MASK_SHORT = 0x4
MASK_WAVES = 0x8

_MAX_PLAUSIBLE_NS = 1 << 20  # 1 M samples = 4 ms at 4 ns: longer is not a CoMPASS record


@dataclasses.dataclass(frozen=True)
class BinLayout:
    """Where the fields of one record are: ``version`` 1 or 2, header bytes, fixed part dtype."""

    version: int
    data_start: int
    fixed: np.dtype[Any]
    mask: int

    @property
    def fixed_size(self) -> int:
        return int(self.fixed.itemsize)

    @property
    def has_waves(self) -> bool:
        return "ns" in (self.fixed.names or ())

    def record_dtype(self, ns: int) -> np.dtype[Any]:
        fields = [(name, self.fixed.fields[name][0]) for name in self.fixed.names or ()]  # type: ignore[index]
        if ns:
            fields.append(("samples", np.dtype(("<u2", (ns,)))))
        return np.dtype(fields)


def v2_dtype(mask: int) -> np.dtype[Any]:
    fields: list[tuple[str, str]] = [("board", "<u2"), ("channel", "<u2"), ("timestamp", "<u8")]
    if mask & MASK_ENERGY:
        fields.append(("energy", "<u2"))
    if mask & MASK_CAL:
        fields.append(("energy_cal", "<f8"))
    if mask & MASK_SHORT:
        fields.append(("energy_short", "<u2"))
    fields.append(("flags", "<u4"))
    if mask & MASK_WAVES:
        fields += [("code", "u1"), ("ns", "<u4")]
    return np.dtype(fields)


def v1_dtype(layout: str) -> np.dtype[Any]:
    fields: list[tuple[str, str]] = [
        ("board", "<u2"),
        ("channel", "<u2"),
        ("timestamp", "<u8"),
        ("energy", "<u2"),
    ]
    if layout == "psd":
        fields.append(("energy_short", "<u2"))
    fields += [("flags", "<u4"), ("ns", "<u4")]
    return np.dtype(fields)


_WALK_SIG = numba.types.Tuple((numba.int64, numba.int64, numba.int64))(
    numba.types.Array(numba.uint8, 1, "C", readonly=True),
    numba.int64,
    numba.int64,
    numba.int64,
    numba.int64,
    numba.types.Array(numba.int64, 1, "C"),
    numba.types.Array(numba.int64, 1, "C"),
)


@numba.njit(_WALK_SIG, cache=True, nogil=True)
def walk_records(
    buf: NDArray[np.uint8],
    pos: int,
    fixed: int,
    ns_at: int,
    max_ns: int,
    rec_offsets: NDArray[np.int64],
    rec_ns: NDArray[np.int64],
) -> tuple[int, int, int]:  # pragma: no cover - compiled; twin: walk_records_py
    """Record offsets and sample counts from byte ``pos`` on, at most ``rec_offsets.size``.

    ``ns_at`` is the byte offset of the uint32 sample count inside the fixed part (-1: no
    waveform). Returns ``(n_records, end_position, status)``: status 0 = stopped at the end of
    the buffer or after ``rec_offsets.size`` records, 1 = partial record at ``end_position``,
    2 = implausible sample count at ``end_position``.
    """
    size = buf.size
    n = 0
    cap = rec_offsets.size
    while n < cap and pos < size:
        if pos + fixed > size:
            return n, pos, 1
        ns = np.int64(0)
        if ns_at >= 0:
            q = pos + ns_at
            ns = (
                np.int64(buf[q])
                | (np.int64(buf[q + 1]) << 8)
                | (np.int64(buf[q + 2]) << 16)
                | (np.int64(buf[q + 3]) << 24)
            )
            if ns > max_ns:
                return n, pos, 2
        end = pos + fixed + 2 * ns
        if end > size:
            return n, pos, 1
        rec_offsets[n] = pos
        rec_ns[n] = ns
        n += 1
        pos = int(end)
    return n, pos, 0


def walk_records_py(
    buf: NDArray[np.uint8],
    pos: int,
    fixed: int,
    ns_at: int,
    max_ns: int,
    rec_offsets: NDArray[np.int64],
    rec_ns: NDArray[np.int64],
) -> tuple[int, int, int]:
    """Plain-Python twin of :func:`walk_records` (reference for tests)."""
    size = buf.size
    n = 0
    while n < rec_offsets.size and pos < size:
        if pos + fixed > size:
            return n, pos, 1
        ns = 0
        if ns_at >= 0:
            ns = int.from_bytes(bytes(buf[pos + ns_at : pos + ns_at + 4]), "little")
            if ns > max_ns:
                return n, pos, 2
        end = pos + fixed + 2 * ns
        if end > size:
            return n, pos, 1
        rec_offsets[n] = pos
        rec_ns[n] = ns
        n += 1
        pos = end
    return n, pos, 0


_GATHER_SIG = numba.void(
    numba.types.Array(numba.uint8, 1, "C", readonly=True),
    numba.types.Array(numba.int64, 1, "C", readonly=True),
    numba.types.Array(numba.int64, 1, "C", readonly=True),
    numba.int64,
    numba.types.Array(numba.uint16, 1, "C"),
)


@numba.njit(_GATHER_SIG, cache=True, nogil=True)
def _gather_samples(
    buf: NDArray[np.uint8],
    rec_offsets: NDArray[np.int64],
    wf_offsets: NDArray[np.int64],
    fixed: int,
    out: NDArray[np.uint16],
) -> None:  # pragma: no cover - compiled
    for i in range(rec_offsets.size):
        src = rec_offsets[i] + fixed
        for j in range(wf_offsets[i], wf_offsets[i + 1]):
            out[j] = np.uint16(buf[src]) | (np.uint16(buf[src + 1]) << np.uint16(8))
            src += 2


def _map(path: Path) -> NDArray[np.uint8]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        msg = f"{path}: cannot open BIN file: {exc}"
        raise CompassFormatError(msg, path=str(path)) from None
    if size == 0:
        msg = (
            f"{path}: empty file (expected a CoMPASS BIN file: 2-byte header 0xCAEx, then records)"
        )
        raise CompassFormatError(msg, path=str(path), offset=0)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    return np.ndarray(mm.shape, dtype=np.uint8, buffer=mm)  # plain ndarray view (numba-friendly)


def _plausible_v1(buf: NDArray[np.uint8], dtype: np.dtype[Any]) -> bool:
    """Does the whole file parse as consecutive 1.x records of this layout?"""
    fixed = dtype.itemsize
    cap = buf.size // fixed + 1
    offs = np.empty(cap, dtype=np.int64)
    ns = np.empty(cap, dtype=np.int64)
    n, end, status = walk_records(buf, 0, fixed, fixed - 4, 1 << 16, offs, ns)
    if status != 0 or end != buf.size or n == 0:
        return False
    ch_at = dtype.fields["channel"][1]  # type: ignore[index]
    bd_at = dtype.fields["board"][1]  # type: ignore[index]
    off = offs[:n]
    channel = buf[off + ch_at].astype(np.int64) | (buf[off + ch_at + 1].astype(np.int64) << 8)
    board = buf[off + bd_at].astype(np.int64) | (buf[off + bd_at + 1].astype(np.int64) << 8)
    return bool(channel.max() < 64 and board.max() < 256)


def detect_layout(
    path: Path, buf: NDArray[np.uint8], opts: ReadOptions, previous: BinLayout | None = None
) -> BinLayout:
    """The record layout of a BIN file: 2.x from its header, else 1.x (PSD or PHA).

    ``previous`` is the layout of the first file of a size-split run; a header-less
    continuation file of a 2.x run is read with it.
    """
    if buf.size >= 2:
        header = int(buf[0]) | (int(buf[1]) << 8)
        if (header & 0xFFF0) == MAGIC:
            mask = header & 0xF
            return BinLayout(2, 2, v2_dtype(mask), mask)
        if buf[1] == 0xCA:
            msg = (
                f"{path}: byte offset 0: header 0x{header:04X} is not a CoMPASS 2.x header "
                f"(expected 0xCAE0 | mask, i.e. 0xCAE0..0xCAEF)"
            )
            raise CompassFormatError(msg, path=str(path), offset=0)
    if previous is not None and previous.version == 2:
        return BinLayout(2, 0, previous.fixed, previous.mask)
    layouts = ("psd", "pha") if opts.bin_v1_layout == "auto" else (opts.bin_v1_layout,)
    good = [lay for lay in layouts if _plausible_v1(buf, v1_dtype(lay))]
    if len(good) == 1 or (good and opts.bin_v1_layout != "auto"):
        return BinLayout(
            1,
            0,
            v1_dtype(good[0]),
            MASK_ENERGY | (MASK_SHORT if good[0] == "psd" else 0) | MASK_WAVES,
        )
    if opts.bin_v1_layout != "auto":
        lay = opts.bin_v1_layout
        return BinLayout(
            1, 0, v1_dtype(lay), MASK_ENERGY | (MASK_SHORT if lay == "psd" else 0) | MASK_WAVES
        )
    first = " ".join(f"{b:02X}" for b in buf[:4])
    if good:
        msg = (
            f"{path}: header-less BIN file parses both as CoMPASS 1.x PSD (24-byte) and PHA "
            f"(22-byte) records; set bin_v1_layout = 'psd' or 'pha'"
        )
    else:
        msg = (
            f"{path}: byte offset 0: no CoMPASS 2.x header (expected 0xCAE0 | mask, file starts "
            f"with {first}) and the file is not a sequence of CoMPASS 1.x PSD or PHA records"
        )
    raise CompassFormatError(msg, path=str(path), offset=0)


def _columns_from_struct(rec: NDArray[Any]) -> dict[str, NDArray[Any]]:
    cols: dict[str, NDArray[Any]] = {
        "board": np.ascontiguousarray(rec["board"]),
        "channel": np.ascontiguousarray(rec["channel"]),
        "timestamp_ps": np.ascontiguousarray(rec["timestamp"]).astype(np.uint64, copy=False),
        "flags": np.ascontiguousarray(rec["flags"]),
    }
    names = rec.dtype.names or ()
    if "energy" in names:
        cols["energy_adc"] = np.ascontiguousarray(rec["energy"])
    if "energy_short" in names:
        cols["energy_short"] = np.ascontiguousarray(rec["energy_short"])
    if "energy_cal" in names:
        cols["energy_cal"] = np.ascontiguousarray(rec["energy_cal"])
    return {k: v.astype(v.dtype.newbyteorder("="), copy=False) for k, v in cols.items()}


def _gather_fixed(
    buf: NDArray[np.uint8], offs: NDArray[np.int64], dtype: np.dtype[Any]
) -> NDArray[Any]:
    """The fixed parts of records at ``offs`` as a structured array (one copy)."""
    idx = offs[:, None] + np.arange(dtype.itemsize, dtype=np.int64)
    out: NDArray[Any] = buf[idx].view(dtype).reshape(-1)
    return out


def _truncation(
    path: Path,
    buf: NDArray[np.uint8],
    layout: BinLayout,
    pos: int,
    entry: int,
    status: int,
    opts: ReadOptions,
) -> dict[str, Any]:
    left = buf.size - pos
    if status == 2:
        q = pos + layout.fixed.fields["ns"][1]  # type: ignore[index]
        ns = int.from_bytes(bytes(buf[q : q + 4]), "little")
        what = f"record {entry} claims {ns} samples (more than {_MAX_PLAUSIBLE_NS}); the file is corrupt"
        exc: CompassFormatError = CompassFormatError(
            f"{path}: byte offset {pos} (entry {entry}): {what}",
            path=str(path),
            offset=pos,
            entry=entry,
        )
    else:
        need = layout.fixed_size
        if layout.has_waves and left >= layout.fixed_size:
            q = pos + layout.fixed.fields["ns"][1]  # type: ignore[index]
            need += 2 * int.from_bytes(bytes(buf[q : q + 4]), "little")
        what = f"partial last record: {left} bytes left, the record needs {need}"
        exc = TruncatedFileError(
            f"{path}: byte offset {pos} (entry {entry}): {what} (file truncated?)",
            path=str(path),
            offset=pos,
            entry=entry,
        )
    if opts.on_error == "raise":
        raise exc
    log.warning("%s; skipped %d bytes", exc, left)
    return {"file": str(path), "offset": pos, "entry": entry, "n_bytes": left, "reason": what}


def iter_bin(
    path: Path, opts: ReadOptions, step_size: int | None, previous: BinLayout | None = None
) -> Iterator[tuple[BinLayout, RawChunk]]:
    """Yield ``(layout, chunk)`` pairs of at most ``step_size`` events (all when ``None``)."""
    buf = _map(path)
    layout = detect_layout(path, buf, opts, previous)
    pos = layout.data_start
    fixed = layout.fixed_size
    size = buf.size
    if layout.version == 2 and not layout.mask & MASK_ENERGY:
        log.warning(
            "%s: BIN header mask 0x%X has no ADC energy; energy_adc is absent", path, layout.mask
        )
    ns_at = layout.fixed.fields["ns"][1] if layout.has_waves else -1  # type: ignore[index]
    step = step_size or max((size - pos) // fixed + 1, 1)
    entry = 0
    # constant-length fast path: decided from the first record and the file size, verified per chunk
    ns0 = -1
    if size - pos >= fixed:
        ns0 = (
            int.from_bytes(bytes(buf[pos + ns_at : pos + ns_at + 4]), "little") if ns_at >= 0 else 0
        )
    recsize = fixed + 2 * ns0
    use_struct = ns0 >= 0 and ns0 <= _MAX_PLAUSIBLE_NS and (size - pos) % recsize == 0
    if pos >= size:  # header only: no events, but the layout (fields) is known
        cols = _columns_from_struct(np.zeros(0, dtype=layout.fixed))
        offsets, content = empty_waveforms(0)
        yield layout, RawChunk(str(path), 0, 0, cols, offsets, content)
    while pos < size:
        if use_struct:
            dtype = layout.record_dtype(ns0)
            m = min(step, (size - pos) // recsize)
            rec = np.frombuffer(buf, dtype=dtype, count=m, offset=pos)
            if ns_at < 0 or bool(np.all(rec["ns"] == ns0)):
                cols = _columns_from_struct(rec)
                if ns0:
                    content = np.ascontiguousarray(rec["samples"]).view(np.int16).reshape(-1)
                    offsets = np.arange(m + 1, dtype=np.int64) * ns0
                    if "code" in (rec.dtype.names or ()):
                        check_probe(str(path), rec["code"], entry)
                else:
                    offsets, content = empty_waveforms(m)
                yield layout, RawChunk(str(path), entry, entry + m, cols, offsets, content)
                entry += m
                pos += m * recsize
                continue
            use_struct = False  # lengths vary: walk from here on
        cap = min(step, (size - pos) // fixed + 1)
        offs = np.empty(cap, dtype=np.int64)
        nss = np.empty(cap, dtype=np.int64)
        n, end, status = walk_records(buf, pos, fixed, ns_at, _MAX_PLAUSIBLE_NS, offs, nss)
        skipped = []
        if status != 0:
            skipped.append(_truncation(path, buf, layout, end, entry + n, status, opts))
        offs, nss = offs[:n], nss[:n]
        rec = _gather_fixed(buf, offs, layout.fixed)
        cols = _columns_from_struct(rec)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(nss, out=offsets[1:])
        samples = np.empty(int(offsets[-1]), dtype=np.uint16)
        _gather_samples(buf, offs, offsets, fixed, samples)
        if ns_at >= 0:
            check_probe(
                str(path),
                rec["code"] if "code" in (rec.dtype.names or ()) else None,
                entry,
                nss > 0,
            )
        if n or skipped:
            yield (
                layout,
                RawChunk(
                    str(path),
                    entry,
                    entry + n,
                    cols,
                    offsets,
                    samples.view(np.int16),
                    skipped=skipped,
                ),
            )
        entry += n
        pos = end
        if status != 0:
            break


def _record_bytes(
    cols: dict[str, NDArray[Any]], offsets: NDArray[np.int64], content: NDArray[np.int16], mask: int
) -> bytes:
    """Byte image of the records (2.x layout of ``mask``) of one block of events."""
    dtype = v2_dtype(mask)
    n = offsets.size - 1
    fixed = np.zeros(n, dtype=dtype)
    fixed["board"] = cols["board"]
    fixed["channel"] = cols["channel"]
    fixed["timestamp"] = cols["timestamp_ps"]
    fixed["flags"] = cols["flags"]
    if mask & MASK_ENERGY:
        fixed["energy"] = cols["energy_adc"]
    if mask & MASK_CAL:
        fixed["energy_cal"] = cols["energy_cal"]
    if mask & MASK_SHORT:
        fixed["energy_short"] = cols["energy_short"]
    if not mask & MASK_WAVES:
        return fixed.tobytes()
    counts = np.diff(offsets)
    fixed["code"] = 1
    fixed["ns"] = counts
    samples = content[offsets[0] : offsets[-1]].astype("<i2", copy=False)
    if n and np.all(counts == counts[0]):
        ns = int(counts[0])
        full = np.zeros(n, dtype=[("f", dtype), ("s", "<i2", (ns,))] if ns else [("f", dtype)])
        full["f"] = fixed
        if ns:
            full["s"] = samples.reshape(n, ns)
        return full.tobytes()
    size = dtype.itemsize
    rec_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(size + 2 * counts, out=rec_start[1:])
    out = np.empty(int(rec_start[-1]), dtype=np.uint8)
    out[(rec_start[:-1, None] + np.arange(size)).ravel()] = fixed.view(np.uint8)
    sample_bytes = samples.view(np.uint8)
    local = np.arange(sample_bytes.size, dtype=np.int64) - np.repeat(
        2 * (offsets[:-1] - offsets[0]), 2 * counts
    )
    out[np.repeat(rec_start[:-1] + size, 2 * counts) + local] = sample_bytes
    return out.tobytes()


def write_bin(path: str | Path, events: Any, *, block_size: int = 20_000) -> Path:
    """Write events as a CoMPASS 2.x BIN file (byte-exact layout; written atomically).

    The header mask has bit 0 (ADC energy) always, bit 1 when the events have ``energy_cal``,
    bit 2 when they have ``energy_short`` and bit 3 when any event has a waveform (then every
    record carries code 1, its sample count and its samples, possibly zero of them).
    """
    path = Path(path)
    cols, offsets, content, _extras = event_columns(events)
    mask = MASK_ENERGY
    if "energy_cal" in cols:
        mask |= MASK_CAL
    if "energy_short" in cols:
        mask |= MASK_SHORT
    if content.size:
        mask |= MASK_WAVES
    n = offsets.size - 1
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        fh.write(np.array([MAGIC | mask], dtype="<u2").tobytes())
        for start in range(0, n, block_size):
            stop = min(start + block_size, n)
            block = {k: v[start:stop] for k, v in cols.items()}
            fh.write(_record_bytes(block, offsets[start : stop + 1], content, mask))
    log.debug("wrote %d events to %s (mask 0x%X)", n, path, mask)
    return path
