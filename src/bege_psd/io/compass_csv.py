"""CoMPASS CSV event files (``;``-separated): reader and writer.

Use :func:`bege_psd.io.read` / :func:`bege_psd.io.iterate`; :func:`write_csv` is exported as
:func:`bege_psd.io.write_csv`.

CoMPASS 2.x writes a header line only in the first file of a size-split run
(``BOARD;CHANNEL;TIMETAG;ENERGY;ENERGYSHORT;FLAGS[;PROBE_CODE;SAMPLES]``, or ``CALIB_ENERGY``
in place of or beside ``ENERGYSHORT``); ``TIMETAG`` is integer ps, ``FLAGS`` hexadecimal
(``0x4000``) and ``SAMPLES`` names one column although every sample is a separate trailing
field (pandas' default parse is silently wrong, so this module splits the lines itself).
A continuation file is read with the first file's header; a header-less file on its own is
recognised by the position of the hexadecimal flags field.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._util import atomic_path
from ..errors import CompassFormatError
from ._events import RawChunk, check_probe, event_columns
from .options import ReadOptions

__all__ = ("CSV_COLUMNS", "iter_csv", "read_header", "write_csv")

log = logging.getLogger(__name__)

#: CSV column -> (event field, dtype)
CSV_COLUMNS: dict[str, tuple[str, Any]] = {
    "BOARD": ("board", np.uint16),
    "CHANNEL": ("channel", np.uint16),
    "TIMETAG": ("timestamp_ps", np.uint64),
    "ENERGY": ("energy_adc", np.uint16),
    "ENERGYSHORT": ("energy_short", np.uint16),
    "CALIB_ENERGY": ("energy_cal", np.float64),
    "FLAGS": ("flags", np.uint32),
    "PROBE_CODE": ("probe", np.int32),
}
_REQUIRED = ("BOARD", "CHANNEL", "TIMETAG", "ENERGY", "FLAGS")


def _fields(line: bytes) -> list[bytes]:
    return line.rstrip(b"\r\n").rstrip(b";").split(b";")


def _guess_header(path: Path, first: bytes) -> tuple[str, ...]:
    """Columns of a header-less row, from where the ``0x`` flags field is."""
    parts = _fields(first)
    flag_at = next((i for i, p in enumerate(parts) if p.strip().lower().startswith(b"0x")), -1)
    if flag_at == 4:
        cols: tuple[str, ...] = ("BOARD", "CHANNEL", "TIMETAG", "ENERGY", "FLAGS")
    elif flag_at == 5:
        fifth = parts[4]
        cols = (
            "BOARD",
            "CHANNEL",
            "TIMETAG",
            "ENERGY",
            "CALIB_ENERGY" if b"." in fifth or b"e" in fifth.lower() else "ENERGYSHORT",
            "FLAGS",
        )
    elif flag_at == 6:
        cols = ("BOARD", "CHANNEL", "TIMETAG", "ENERGY", "CALIB_ENERGY", "ENERGYSHORT", "FLAGS")
    else:
        msg = (
            f"{path}: line 1: no header and no hexadecimal FLAGS field in columns 5-7 "
            f"(expected a CoMPASS 2.x CSV row such as 0;0;123000;1500;0x4000)"
        )
        raise CompassFormatError(msg, path=str(path), entry=1)
    if len(parts) > len(cols):
        cols = (*cols, "PROBE_CODE", "SAMPLES")
    return cols


def read_header(path: Path) -> tuple[str, ...] | None:
    """The header columns of a CSV file, or ``None`` when its first line is data."""
    with path.open("rb") as fh:
        first = fh.readline()
    if not first.strip():
        return None
    parts = _fields(first)
    # a data row starts with the board number; anything else in the first field is a header
    if re.fullmatch(rb"\s*-?[0-9]+\s*", parts[0]):
        return None
    return tuple(p.strip().decode("ascii", "replace").upper() for p in parts)


def _check_header(path: Path, names: tuple[str, ...]) -> None:
    known = {*CSV_COLUMNS, "SAMPLES"}
    unknown = [n for n in names if n not in known]
    missing = [n for n in _REQUIRED if n not in names]
    if unknown or missing or ("SAMPLES" in names and names[-1] != "SAMPLES"):
        msg = (
            f"{path}: line 1: header {';'.join(names)} is not a CoMPASS 2.x CSV header "
            f"(expected columns {';'.join(_REQUIRED)} plus optional ENERGYSHORT, CALIB_ENERGY, "
            f"PROBE_CODE, SAMPLES last)"
            + (f"; unknown: {unknown}" if unknown else "")
            + (f"; missing: {missing}" if missing else "")
        )
        raise CompassFormatError(msg, path=str(path), entry=1)


def _parse_column(
    path: Path, name: str, tokens: NDArray[np.bytes_], lines: NDArray[np.int64], dtype: Any
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Parse one column; return values and a mask of rows that failed."""
    bad = np.zeros(tokens.size, dtype=bool)
    if name == "FLAGS":
        out = np.zeros(tokens.size, dtype=np.uint32)
        for i, t in enumerate(tokens.tolist()):
            try:
                v = int(t, 16) if t[:2].lower() == b"0x" else int(t)
                if not 0 <= v < 1 << 32:
                    raise ValueError
                out[i] = v
            except ValueError:
                bad[i] = True
        return out, bad
    try:
        if np.dtype(dtype).kind == "f":
            return tokens.astype(np.float64), bad
        wide = tokens.astype(np.int64) if dtype is not np.uint64 else tokens.astype(np.uint64)
    except (ValueError, OverflowError):
        out = np.zeros(tokens.size, dtype=dtype)
        for i, t in enumerate(tokens.tolist()):
            try:
                out[i] = float(t) if np.dtype(dtype).kind == "f" else int(t)
            except (ValueError, OverflowError):
                bad[i] = True
        return out, bad
    if dtype is not np.uint64 and wide.size:
        info = np.iinfo(dtype)
        bad = (wide < info.min) | (wide > info.max)
    return wide.astype(dtype), bad


def _bad_field(
    path: Path, line: int, column: str, token: bytes, expected: str, opts: ReadOptions
) -> dict[str, Any]:
    what = f"{column} = {token[:40]!r} is not {expected}"
    if opts.on_error == "raise":
        msg = f"{path}: line {line}: {what}"
        raise CompassFormatError(msg, path=str(path), entry=line)
    log.warning("%s: line %d: %s; row skipped", path, line, what)
    return {"file": str(path), "entry": line, "reason": what}


def _parse_block(
    path: Path,
    names: tuple[str, ...],
    raw: list[bytes],
    first_line: int,
    entry: int,
    opts: ReadOptions,
) -> RawChunk:
    """Parse a block of data lines (``first_line`` is the 1-based line number of ``raw[0]``)."""
    nscal = len(names) - (1 if names[-1] == "SAMPLES" else 0)
    has_samples = names[-1] == "SAMPLES"
    keep_lines: list[bytes] = []
    line_no: list[int] = []
    skipped: list[dict[str, Any]] = []
    for k, line in enumerate(raw):
        # some writers end every row with a separator; an empty trailing field is not a sample
        stripped = line.rstrip(b"\r\n").rstrip(b";")
        if not stripped.strip():
            continue
        keep_lines.append(stripped)
        line_no.append(first_line + k)
    counts = np.fromiter(
        (ln.count(b";") + 1 for ln in keep_lines), dtype=np.int64, count=len(keep_lines)
    )
    lines = np.asarray(line_no, dtype=np.int64)
    short = counts < nscal if has_samples else counts != nscal
    if np.any(short):
        i = int(np.argmax(short))
        expected = f"at least {nscal}" if has_samples else f"{nscal}"
        skipped.append(
            _bad_field(
                path,
                int(lines[i]),
                "row",
                keep_lines[i],
                f"a row of {expected} fields ({counts[i]} found)",
                opts,
            )
        )
        for j in np.flatnonzero(short)[1:]:
            skipped.append(
                {"file": str(path), "entry": int(lines[j]), "reason": f"{counts[j]} fields"}
            )
        good = ~short
        keep_lines = [ln for ln, g in zip(keep_lines, good, strict=True) if g]
        counts, lines = counts[good], lines[good]
    n = len(keep_lines)
    tokens = np.array(b";".join(keep_lines).split(b";")) if n else np.zeros(0, dtype="S1")
    starts = np.zeros(n, dtype=np.int64)
    if n:
        np.cumsum(counts[:-1], out=starts[1:])
    cols: dict[str, NDArray[Any]] = {}
    bad_rows = np.zeros(n, dtype=bool)
    for j, name in enumerate(names[:nscal]):
        field, dtype = CSV_COLUMNS[name]
        values, bad = _parse_column(path, name, tokens[starts + j], lines, dtype)
        new_bad = bad & ~bad_rows
        if np.any(new_bad):
            i = int(np.argmax(new_bad))
            expect = (
                "a hexadecimal flag word" if name == "FLAGS" else f"a {np.dtype(dtype).name} number"
            )
            skipped.append(
                _bad_field(path, int(lines[i]), name, bytes(tokens[starts[i] + j]), expect, opts)
            )
            for r in np.flatnonzero(new_bad)[1:]:
                skipped.append({"file": str(path), "entry": int(lines[r]), "reason": f"bad {name}"})
            bad_rows |= bad
        cols[field] = values
    nsamp = counts - nscal
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(nsamp, out=offsets[1:])
    if has_samples and offsets[-1]:
        take = np.repeat(starts + nscal, nsamp) + (
            np.arange(offsets[-1]) - np.repeat(offsets[:-1], nsamp)
        )
        stoks = tokens[take]
        try:
            wide = stoks.astype(np.int64)
            bad_s = (wide < -32768) | (wide > 65535)
        except (ValueError, OverflowError):
            wide = np.zeros(stoks.size, dtype=np.int64)
            bad_s = np.zeros(stoks.size, dtype=bool)
            for i, t in enumerate(stoks.tolist()):
                try:
                    wide[i] = int(t)
                    bad_s[i] = not -32768 <= wide[i] <= 65535
                except ValueError:
                    bad_s[i] = True
        row_of = np.repeat(np.arange(n), nsamp)
        bad_s &= ~bad_rows[row_of]  # a row already skipped for a scalar field is counted once
        if np.any(bad_s):
            rows = np.unique(row_of[bad_s])
            i = int(np.argmax(bad_s))
            skipped.append(
                _bad_field(
                    path,
                    int(lines[row_of[i]]),
                    f"SAMPLES[{i - offsets[row_of[i]]}]",
                    bytes(stoks[i]),
                    "a 16-bit sample",
                    opts,
                )
            )
            skipped += [
                {"file": str(path), "entry": int(lines[r]), "reason": "bad sample"}
                for r in rows[1:]
                if not bad_rows[r]
            ]
            bad_rows[rows] = True
        content = wide.astype(np.uint16 if wide.size and wide.max() > 32767 else np.int16).view(
            np.int16
        )
    else:
        content = np.zeros(0, dtype=np.int16)
    probe = cols.pop("probe", None)
    if probe is not None:
        check_probe(str(path), probe, entry, nsamp > 0)
    if np.any(bad_rows):
        keep = ~bad_rows
        cols = {k: v[keep] for k, v in cols.items()}
        sel = np.repeat(keep, nsamp)
        content = content[sel]
        nsamp = nsamp[keep]
        offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
        np.cumsum(nsamp, out=offsets[1:])
    m = offsets.size - 1
    return RawChunk(str(path), entry, entry + m, cols, offsets, content, skipped=skipped)


def iter_csv(
    path: Path, opts: ReadOptions, step_size: int | None, header: tuple[str, ...] | None = None
) -> Iterator[tuple[tuple[str, ...], RawChunk]]:
    """Yield ``(header, chunk)`` pairs of at most ``step_size`` rows (all when ``None``).

    ``header`` is the first file's header for a header-less continuation file.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        msg = f"{path}: cannot open CSV file: {exc}"
        raise CompassFormatError(msg, path=str(path)) from None
    if size == 0:
        msg = f"{path}: empty file (expected a CoMPASS CSV file: header line BOARD;CHANNEL;TIMETAG;...)"
        raise CompassFormatError(msg, path=str(path), entry=0)
    own = read_header(path)
    with path.open("rb") as fh:
        line_no = 1
        if own is not None:
            fh.readline()
            line_no = 2
            names = own
        elif header is not None:
            names = header
        else:
            first = fh.readline()
            fh.seek(0)
            names = _guess_header(path, first)
        _check_header(path, names)
        entry = 0
        step = step_size or (1 << 62)
        while True:
            raw = list(itertools.islice(fh, step))
            if not raw and entry == 0 and line_no <= 2:  # header only: one empty chunk
                yield names, _parse_block(path, names, [], line_no, 0, opts)
                break
            if not raw:
                break
            chunk = _parse_block(path, names, raw, line_no, entry, opts)
            line_no += len(raw)
            entry = chunk.entry_stop
            yield names, chunk


def _format_rows(
    cols: dict[str, NDArray[Any]],
    offsets: NDArray[np.int64],
    content: NDArray[np.int16],
    names: tuple[str, ...],
) -> str:
    n = offsets.size - 1
    fields: list[list[str]] = []
    for name in names:
        if name == "SAMPLES":
            continue
        if name == "PROBE_CODE":
            fields.append(["1"] * n)
        elif name == "FLAGS":
            fields.append([f"0x{int(v):x}" for v in cols["flags"].tolist()])
        elif name == "CALIB_ENERGY":
            fields.append([repr(float(v)) for v in cols["energy_cal"].tolist()])
        else:
            fields.append([str(v) for v in cols[CSV_COLUMNS[name][0]].tolist()])
    rows = [";".join(parts) for parts in zip(*fields, strict=True)]
    if "SAMPLES" in names:
        flat = content.tolist()
        bounds = offsets.tolist()
        rows = [
            r
            + (
                ";" + ";".join(map(str, flat[bounds[i] : bounds[i + 1]]))
                if bounds[i + 1] > bounds[i]
                else ""
            )
            for i, r in enumerate(rows)
        ]
    return "".join(r + "\n" for r in rows)


def write_csv(
    path: str | Path, events: Any, *, header: bool = True, block_size: int = 10_000
) -> Path:
    """Write events as a CoMPASS 2.x CSV file (``;``-separated, hex flags; written atomically).

    Columns: ``BOARD;CHANNEL;TIMETAG;ENERGY``, then ``CALIB_ENERGY`` and ``ENERGYSHORT`` when
    the events have them, ``FLAGS``, and ``PROBE_CODE;SAMPLES`` when any event has a
    waveform. ``header=False`` writes a continuation file of a split run.
    """
    path = Path(path)
    cols, offsets, content, _extras = event_columns(events)
    names: list[str] = ["BOARD", "CHANNEL", "TIMETAG", "ENERGY"]
    if "energy_cal" in cols:
        names.append("CALIB_ENERGY")
    if "energy_short" in cols:
        names.append("ENERGYSHORT")
    names.append("FLAGS")
    if content.size:
        names += ["PROBE_CODE", "SAMPLES"]
    n = offsets.size - 1
    with atomic_path(path) as tmp, tmp.open("w", encoding="ascii", newline="\n") as fh:
        if header:
            fh.write(";".join(names) + "\n")
        for start in range(0, n, block_size):
            stop = min(start + block_size, n)
            block = {k: v[start:stop] for k, v in cols.items()}
            fh.write(_format_rows(block, offsets[start : stop + 1], content, tuple(names)))
    return path
