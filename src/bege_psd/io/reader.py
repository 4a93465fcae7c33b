"""Reading CoMPASS runs: one event model whatever the format (ROOT, BIN, CSV).

Use :func:`read` for a run that fits in memory and :func:`iterate` to stream it in chunks;
:func:`read_metadata` for the run's ``settings.xml`` / ``run.info``. ``source`` is a data
file, a list of files (a size-split run, in order) or a CoMPASS run folder (``settings.xml``,
``run.info`` and ``RAW/``, ``UNFILTERED/`` or ``FILTERED/`` sub-folders).

Every chunk is an ``ak.Array`` of records ``board`` u16, ``channel`` u16, ``timestamp_ps`` u64,
``energy_adc`` u16, ``energy_short`` u16 / ``energy_cal`` f64 (when present), ``flags`` u32,
``waveform`` var * int16 (empty lists when the run saved none), plus unknown extra ROOT
branches under their own names. ``chunk.attrs`` holds ``source_file``, ``entry_start``,
``entry_stop`` (entries of that file), ``sample_period_ns``, ``polarity``, and the lists
``skipped`` (damaged input skipped with ``on_error="skip"``) and ``dropped`` (counts by reason
with ``drop_flagged=True``). Nothing is dropped unless asked, and what is dropped is counted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from ..config import from_mapping
from ..errors import CompassFormatError
from . import flags as _flags
from ._events import RawChunk, to_awkward
from .compass_bin import BinLayout, iter_bin
from .compass_csv import iter_csv
from .compass_root import iter_root
from .options import ReadOptions
from .settings import RunMetadata, _empty, parse_hcompass, parse_run_info, parse_settings_xml

__all__ = ("RunFiles", "find_run_files", "iterate", "read", "read_metadata")

log = logging.getLogger(__name__)

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

_EXT = {".root": "root", ".bin": "bin", ".csv": "csv"}
_STAGES = {"raw": "RAW", "unfiltered": "UNFILTERED", "filtered": "FILTERED"}
_SPLIT = re.compile(r"^(?P<base>.+)_(?P<n>\d+)$")


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """The data files of a source, in reading order, and the run folder they belong to."""

    files: tuple[Path, ...]
    run_folder: Path | None
    fmt: str


def file_format(path: Path) -> str | None:
    """``"root"``, ``"bin"`` or ``"csv"`` from the extension (case-insensitive), else ``None``."""
    return _EXT.get(path.suffix.lower())


def order_split_files(files: Iterable[Path]) -> list[Path]:
    """Order files so that each ``name.ext`` is followed by ``name_1.ext``, ``name_2.ext`` ..."""
    files = list(files)
    stems = {f.stem: f for f in files}
    base_of: dict[Path, tuple[str, int]] = {}
    for f in files:
        m = _SPLIT.match(f.stem)
        if m and m.group("base") in stems:
            base_of[f] = (m.group("base"), int(m.group("n")))

    def key(f: Path) -> tuple[str, int]:
        if f in base_of:
            return base_of[f]
        return (f.stem, -1)

    # continuation of a continuation (name_1_1) is unlikely; resolve to its direct base only
    return sorted(files, key=key)


def _data_files(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.iterdir()
        if p.is_file()
        and file_format(p)
        and not p.name.lower().startswith("hcompass")
        and not p.name.startswith(".")
    ]


def find_run_files(source: Source, opts: ReadOptions | None = None) -> RunFiles:
    """Resolve ``source`` to its data files (in reading order) and its run folder."""
    opts = opts or ReadOptions()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _folder_files(path, opts)
        if not path.exists():
            msg = f"{path}: no such file or folder (expected a CoMPASS data file or run folder)"
            raise CompassFormatError(msg, path=str(path))
        files = [path]
    else:
        files = [Path(p) for p in source]
        if not files:
            msg = "empty list of CoMPASS files"
            raise CompassFormatError(msg)
        for f in files:
            if not f.is_file():
                msg = f"{f}: no such file (expected a CoMPASS data file)"
                raise CompassFormatError(msg, path=str(f))
    fmts = {file_format(f) for f in files}
    if None in fmts or len(fmts) != 1:
        bad = next((f for f in files if file_format(f) is None), files[0])
        msg = (
            f"{bad}: cannot tell the format; expected one of .root, .BIN, .CSV (any case) "
            f"for every file of a run, got {sorted(str(x) for x in fmts)}"
        )
        raise CompassFormatError(msg, path=str(bad))
    return RunFiles(tuple(files), _run_folder_of(files[0]), fmts.pop())  # type: ignore[arg-type]


def _run_folder_of(file: Path) -> Path | None:
    for parent in (file.parent, file.parent.parent):
        if (parent / "settings.xml").is_file() or (parent / "run.info").is_file():
            return parent
    return None


def _folder_files(folder: Path, opts: ReadOptions) -> RunFiles:
    subdirs = {p.name.upper(): p for p in folder.iterdir() if p.is_dir()}
    stages = [_STAGES[opts.stage]] if opts.stage != "auto" else ["RAW", "UNFILTERED", "FILTERED"]
    candidates: list[Path] = []
    for stage in stages:
        if stage in subdirs and _data_files(subdirs[stage]):
            candidates = _data_files(subdirs[stage])
            break
    if not candidates and opts.stage == "auto":
        candidates = _data_files(folder)
    if not candidates:
        listing = ", ".join(sorted(p.name for p in folder.iterdir())[:20]) or "nothing"
        msg = (
            f"{folder}: no CoMPASS data files (.root/.BIN/.CSV) in "
            f"{'/'.join(stages)} sub-folders{' or the folder itself' if opts.stage == 'auto' else ''}; "
            f"it holds: {listing}"
        )
        raise CompassFormatError(msg, path=str(folder))
    present = sorted({file_format(p) for p in candidates})  # type: ignore[type-var]
    if opts.format != "auto":
        fmt = opts.format
        if fmt not in present:
            msg = f"{folder}: no {fmt} files; the run holds {', '.join(present)}"  # type: ignore[arg-type]
            raise CompassFormatError(msg, path=str(folder))
    else:
        fmt = next(f for f in ("root", "bin", "csv") if f in present)
        if len(present) > 1:
            log.info("%s holds %s files; reading %s (set format= to choose)", folder, present, fmt)
    files = order_split_files(p for p in candidates if file_format(p) == fmt)
    return RunFiles(tuple(files), folder, fmt)


def read_metadata(source: Source) -> RunMetadata:
    """The :class:`RunMetadata` of a run folder, or of the run folder a data file lives in.

    Reads ``settings.xml`` and ``run.info``; live and real time missing from ``run.info`` come
    from a ``Hcompass*.root`` histogram file in the folder or a sub-folder, when there is one.

    Fields that neither ``settings.xml`` nor ``run.info`` provide are ``None``; a source
    without either file gives a metadata object with every field ``None``.
    """
    folder: Path | None
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        folder = Path(source)
    else:
        folder = find_run_files(source).run_folder
    meta = _empty()
    if folder is None:
        return meta
    if (folder / "settings.xml").is_file():
        meta = parse_settings_xml(folder / "settings.xml")
    if (folder / "run.info").is_file():
        info = parse_run_info(folder / "run.info")
        # settings.xml's runId wins only when run.info has none
        meta = dataclasses.replace(info.merged(meta))
    if meta.live_time_s is None or meta.real_time_s is None:
        # CoMPASS keeps live/real time in the histogram file, beside the run or one level down
        hfiles = sorted(folder.glob("Hcompass*.root")) + sorted(folder.glob("*/Hcompass*.root"))
        if hfiles:
            meta = meta.merged(parse_hcompass(hfiles[0]))
    return meta


def _options(
    options: ReadOptions | Mapping[str, Any] | None, overrides: Mapping[str, Any]
) -> ReadOptions:
    if isinstance(options, ReadOptions):
        base = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    else:
        base = dict(options or {})
    base.update(dict(overrides.items()))
    return from_mapping(ReadOptions, base, where="io")


class _LengthCheck:
    """Per file: one waveform length per channel (0 = no waveform is always allowed)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.expected: dict[int, int] = {}

    def bad_rows(
        self, chunk: RawChunk, opts: ReadOptions
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        n = len(chunk)
        bad = np.zeros(n, dtype=bool)
        skipped: list[dict[str, Any]] = []
        if chunk.wf_content.size == 0 or n == 0:
            return bad, skipped
        lengths = np.diff(chunk.wf_offsets)
        # a channel is (board, channel): two boards may run different record lengths
        channel = chunk.columns["channel"].astype(np.int64)
        if "board" in chunk.columns:
            channel = channel + (chunk.columns["board"].astype(np.int64) << 16)
        for ch in np.unique(channel).tolist():
            sel = (channel == ch) & (lengths > 0)
            if not np.any(sel):
                continue
            want = self.expected.setdefault(ch, int(lengths[np.argmax(sel)]))
            wrong = sel & (lengths != want)
            if np.any(wrong):
                i = int(np.argmax(wrong))
                entry = chunk.entry_start + i
                msg = (
                    f"{self.path}: entry {entry}: channel {ch & 0xFFFF} (board {ch >> 16}) waveform "
                    f"has {int(lengths[i])} samples, "
                    f"expected {want} like the channel's earlier events (inconsistent record length); "
                    f"pass check_lengths=False to accept variable lengths"
                )
                if opts.on_error == "raise":
                    raise CompassFormatError(msg, path=self.path, entry=entry)
                log.warning("%s; %d such events skipped", msg, int(wrong.sum()))
                skipped.append(
                    {
                        "file": self.path,
                        "entry": entry,
                        "n_events": int(wrong.sum()),
                        "reason": "inconsistent waveform length",
                    }
                )
                bad |= wrong
        return bad, skipped


def _slice_chunk(chunk: RawChunk, a: int, b: int) -> RawChunk:
    """Rows ``[a, b)`` (file entries) of ``chunk``, which must overlap that range."""
    i, j = max(a - chunk.entry_start, 0), min(b, chunk.entry_stop) - chunk.entry_start
    offsets = chunk.wf_offsets[i : j + 1]
    content = chunk.wf_content[offsets[0] : offsets[-1]]
    out = RawChunk(
        chunk.path,
        chunk.entry_start + i,
        chunk.entry_start + j,
        {k: v[i:j] for k, v in chunk.columns.items()},
        offsets - offsets[0],
        content,
        {k: v[i:j] for k, v in chunk.extras.items()},
    )
    out.skipped.extend(chunk.skipped)
    return out


def _in_range(
    chunks: Iterable[RawChunk], entry_range: tuple[int, int | None] | None
) -> Iterator[RawChunk]:
    """Restrict a file's chunks to its entries ``[start, stop)`` (BIN and CSV readers)."""
    if entry_range is None:
        yield from chunks
        return
    a, b = entry_range[0], entry_range[1] if entry_range[1] is not None else np.iinfo(np.int64).max
    for chunk in chunks:
        if chunk.entry_stop <= a or not chunk.columns:
            continue
        if chunk.entry_start >= b:
            break
        yield _slice_chunk(chunk, a, b)


def _file_chunks(
    files: RunFiles,
    opts: ReadOptions,
    step_size: int | None,
    entry_range: tuple[int, int | None] | None = None,
) -> Iterator[RawChunk]:
    previous_layout: BinLayout | None = None
    header: tuple[str, ...] | None = None
    if entry_range is not None and len(files.files) != 1:
        msg = (
            f"entry_start/entry_stop select entries of one file, but the source holds "
            f"{len(files.files)} files; read one file of the run at a time"
        )
        raise CompassFormatError(msg, path=str(files.files[0]))
    # BIN and CSV ranges are read through, sliced; ROOT seeks to the range
    sub_step = step_size if entry_range is None else min(step_size or 100_000, 100_000)
    for path in files.files:
        try:
            if files.fmt == "root":
                yield from iter_root(path, opts, step_size, entry_range)
            elif files.fmt == "bin":

                def bins(p: Path) -> Iterator[RawChunk]:
                    nonlocal previous_layout
                    for layout, chunk in iter_bin(p, opts, sub_step, previous_layout):
                        previous_layout = layout
                        yield chunk

                yield from _rechunk(_in_range(bins(path), entry_range), step_size, entry_range)
            else:

                def csvs(p: Path) -> Iterator[RawChunk]:
                    nonlocal header
                    for names, chunk in iter_csv(p, opts, sub_step, header):
                        header = names
                        yield chunk

                yield from _rechunk(_in_range(csvs(path), entry_range), step_size, entry_range)
        except CompassFormatError as exc:
            # file-level damage (bad header, missing tree): skip the whole file only when asked
            if (
                opts.on_error == "raise"
                or exc.offset not in (None, 0)
                or exc.entry not in (None, 0, 1)
            ):
                raise
            log.warning("%s; file skipped", exc)
            empty = RawChunk(str(path), 0, 0, {}, np.zeros(1, np.int64), np.zeros(0, np.int16))
            empty.skipped.append(
                {"file": str(path), "entry": None, "reason": f"unreadable file: {exc}"}
            )
            yield empty


def iterate(
    source: Source,
    step_size: int | None = None,
    *,
    entry_start: int | None = None,
    entry_stop: int | None = None,
    options: ReadOptions | Mapping[str, Any] | None = None,
    **opts: Any,
) -> Iterator[ak.Array]:
    """Stream a CoMPASS run as ``ak.Array`` chunks of at most ``step_size`` events.

    Parameters
    ----------
    source
        A data file (``.root``, ``.BIN``, ``.CSV``, any case), a list of files read in the
        given order, or a run folder.
    step_size
        Events per chunk (default ``ReadOptions.step_size``); a chunk never spans two files.
    entry_start, entry_stop
        Read only the entries ``[entry_start, entry_stop)`` of a single-file source (the unit
        of work of :func:`bege_psd.stream.plan_partitions`); ROOT seeks, BIN and CSV read
        through. Chunk ``attrs`` keep file entry numbers.
    options, **opts
        A :class:`ReadOptions` (or ``[io]`` mapping) and/or its fields as keywords.

    See also
    --------
    read : the whole run as one array.
    read_metadata : sample period, record length, polarity, live time, calibration.
    """
    if step_size is not None:
        opts["step_size"] = step_size
    ro = _options(options, opts)
    yield from _iterate(source, ro, ro.step_size, _entry_range(entry_start, entry_stop))


def _entry_range(start: int | None, stop: int | None) -> tuple[int, int | None] | None:
    if start is None and stop is None:
        return None
    lo = 0 if start is None else int(start)
    if lo < 0 or (stop is not None and stop < lo):
        msg = f"entry range [{start}, {stop}) is invalid; need 0 <= entry_start <= entry_stop"
        raise ValueError(msg)
    return lo, None if stop is None else int(stop)


def _rechunk(
    chunks: Iterable[RawChunk], step_size: int | None, entry_range: tuple[int, int | None] | None
) -> Iterator[RawChunk]:
    """With an entry range, merge the sliced sub-chunks back into ``step_size`` chunks."""
    if entry_range is None:
        yield from chunks
        return
    pending: list[RawChunk] = []
    n = 0
    for chunk in chunks:
        pending.append(chunk)
        n += len(chunk)
        while step_size is not None and n >= step_size:
            merged = _merge_chunks(pending)
            cut = merged.entry_start + step_size
            yield _slice_chunk(merged, merged.entry_start, cut)
            rest = _slice_chunk(merged, cut, merged.entry_stop)
            rest.skipped.clear()  # reported once, with the chunk yielded above
            pending, n = ([rest], len(rest)) if len(rest) else ([], 0)
    if pending:
        yield _merge_chunks(pending)


def _merge_chunks(chunks: list[RawChunk]) -> RawChunk:
    if len(chunks) == 1:
        return chunks[0]
    offsets = [chunks[0].wf_offsets]
    for c in chunks[1:]:
        offsets.append(c.wf_offsets[1:] + offsets[-1][-1])
    out = RawChunk(
        chunks[0].path,
        chunks[0].entry_start,
        chunks[-1].entry_stop,
        {k: np.concatenate([c.columns[k] for c in chunks]) for k in chunks[0].columns},
        np.concatenate(offsets),
        np.concatenate([c.wf_content for c in chunks]),
        {k: ak.concatenate([c.extras[k] for c in chunks]) for k in chunks[0].extras},
    )
    for c in chunks:
        out.skipped.extend(c.skipped)
    return out


def count_entries(path: str | os.PathLike[str], **opts: Any) -> int:
    """Number of events in one CoMPASS data file (cheap for ROOT and fixed-record BIN)."""
    ro = _options(None, opts)
    files = find_run_files(Path(path), ro)
    if files.fmt == "root":
        from .compass_root import _find_tree, _open

        with _open(files.files[0]) as f:
            return int(_find_tree(f, files.files[0], ro.tree).num_entries)
    return sum(len(c) for c in _file_chunks(files, ro, 100_000))


def _iterate(
    source: Source,
    ro: ReadOptions,
    step_size: int | None,
    entry_range: tuple[int, int | None] | None = None,
) -> Iterator[ak.Array]:
    files = find_run_files(source, ro)
    meta = read_metadata(files.run_folder) if files.run_folder is not None else _empty()
    period = ro.sample_period_ns if ro.sample_period_ns is not None else meta.sample_period_ns
    polarity = ro.polarity if ro.polarity is not None else meta.polarity
    if period is None:
        log.warning(
            "%s: sample period unknown (no settings.xml); set sample_period_ns", files.files[0]
        )
    checks: dict[str, _LengthCheck] = {}
    for chunk in _file_chunks(files, ro, step_size, entry_range):
        skipped = list(chunk.skipped)
        keep = None
        if ro.check_lengths:
            check = checks.setdefault(chunk.path, _LengthCheck(chunk.path))
            bad, more = check.bad_rows(chunk, ro)
            skipped += more
            if np.any(bad):
                keep = ~bad
        dropped: dict[str, int] = {}
        if ro.drop_flagged and len(chunk):
            flagged = _flags.bad_mask(chunk.columns["flags"])
            if keep is not None:
                flagged &= keep
            dec = _flags.decode(chunk.columns["flags"][flagged])
            dropped = {r: int(np.count_nonzero(dec[r])) for r in _flags.BAD_REASONS}
            dropped["any"] = int(np.count_nonzero(flagged))
            keep = ~flagged if keep is None else keep & ~flagged
        attrs = {
            "source_file": chunk.path,
            "entry_start": chunk.entry_start,
            "entry_stop": chunk.entry_stop,
            "sample_period_ns": period,
            "polarity": polarity,
            "skipped": skipped,
            "dropped": dropped,
        }
        if not chunk.columns:  # a skipped file
            continue_attrs = attrs
            yield _empty_events(continue_attrs)
            continue
        arr = to_awkward(chunk, attrs)
        if keep is not None:
            arr = ak.Array(arr[keep], attrs=attrs)
        yield arr


def _empty_events(attrs: dict[str, Any]) -> ak.Array:
    cols: dict[str, NDArray[Any]] = {
        "board": np.zeros(0, np.uint16),
        "channel": np.zeros(0, np.uint16),
        "timestamp_ps": np.zeros(0, np.uint64),
        "energy_adc": np.zeros(0, np.uint16),
        "flags": np.zeros(0, np.uint32),
    }
    return to_awkward(
        RawChunk(attrs["source_file"], 0, 0, cols, np.zeros(1, np.int64), np.zeros(0, np.int16)),
        attrs,
    )


def read(
    source: Source,
    *,
    entry_start: int | None = None,
    entry_stop: int | None = None,
    options: ReadOptions | Mapping[str, Any] | None = None,
    **opts: Any,
) -> ak.Array:
    """Read a whole CoMPASS run into one ``ak.Array`` (see :func:`iterate` for the fields).

    Each file is read in one piece unless ``step_size`` is given. ``attrs`` holds
    ``source_file`` (the source as given), ``files``, ``entry_start`` = 0, ``entry_stop`` (the
    number of events read), ``sample_period_ns``, ``polarity``, and the combined ``skipped``
    list and ``dropped`` counts.
    """
    step = opts.pop("step_size", None)
    ro = _options(options, opts)
    entry_range = _entry_range(entry_start, entry_stop)
    chunks = list(_iterate(source, ro, step, entry_range))
    skipped: list[dict[str, Any]] = []
    dropped: dict[str, int] = {}
    for c in chunks:
        skipped += c.attrs["skipped"]
        for k, v in c.attrs["dropped"].items():
            dropped[k] = dropped.get(k, 0) + v
    nonempty = [c for c in chunks if len(c)] or chunks[:1]
    out = ak.Array(nonempty[0]) if len(nonempty) == 1 else _concatenate(nonempty)
    first = chunks[0].attrs if chunks else {"sample_period_ns": None, "polarity": None}
    out.attrs = {
        "source_file": str(source)
        if isinstance(source, (str, os.PathLike))
        else str(Path(source[0])),
        "files": sorted(
            {c.attrs["source_file"] for c in chunks},
            key=[c.attrs["source_file"] for c in chunks].index,
        ),
        "entry_start": entry_range[0] if entry_range else 0,
        "entry_stop": (entry_range[0] if entry_range else 0) + len(out),
        "sample_period_ns": first["sample_period_ns"],
        "polarity": first["polarity"],
        "skipped": skipped,
        "dropped": dropped,
    }
    return out


def _concatenate(chunks: list[ak.Array]) -> ak.Array:
    fields = list(chunks[0].fields)
    for c in chunks[1:]:
        if list(c.fields) != fields:
            msg = (
                f"{c.attrs['source_file']}: its fields {list(c.fields)} differ from "
                f"{chunks[0].attrs['source_file']}'s {fields}; files of one run must share a layout"
            )
            raise CompassFormatError(msg, path=c.attrs["source_file"])
    return ak.concatenate([ak.Array(c, attrs=None) for c in chunks])
