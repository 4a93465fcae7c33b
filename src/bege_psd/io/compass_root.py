"""CoMPASS ROOT event files (trees ``Data_R``, ``Data``, ``Data_F``): reader and writer.

Use :func:`bege_psd.io.read` / :func:`bege_psd.io.iterate` rather than this module directly;
:func:`write_root` is exported as :func:`bege_psd.io.write_root`.

CoMPASS stores the waveform as an unsplit ``TArrayS`` object branch ``Samples``. uproot's
default interpretation converts it object by object (about 180 events/s); after checking
that the branch really is an unsplit ``TArrayS`` (its interpretation is
``AsObjects(Model_TArrayS)`` and it has no sub-branches) this reader uses
``AsJagged(AsDtype(">i2"), header_bytes=4)`` (each entry is a big-endian int32 ``fN``
followed by ``fN`` big-endian int16), which gives the same values as ``var * int16`` without
Python loops, and cross-checks the first entry against the default interpretation. A plain
jagged int16 ``Samples`` branch (what uproot writes, see :func:`write_root`) is also read.
``Probe`` and ``EnergyShort`` are optional; unknown extra branches are kept under their names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numba
import numpy as np
import uproot
from numpy.typing import NDArray

from .._util import atomic_path
from ..errors import CompassFormatError, MissingBranchError, nearest_names
from ._events import RawChunk, check_probe, empty_waveforms, event_columns
from .options import ReadOptions

__all__ = ("TREE_NAMES", "TREE_TITLES", "iter_root", "write_root")

log = logging.getLogger(__name__)

#: tree names tried in order when none is given
TREE_NAMES: tuple[str, ...] = ("Data_R", "Data", "Data_F")
TREE_TITLES: dict[str, str] = {
    "Data_R": "CoMPASS RAW events TTree",
    "Data": "CoMPASS events TTree",
    "Data_F": "CoMPASS filtered events TTree",
}

#: ROOT branch -> (event field, dtype); EnergyShort and calibrated energy are optional
_SCALARS: dict[str, tuple[str, Any]] = {
    "Board": ("board", np.uint16),
    "Channel": ("channel", np.uint16),
    "Timestamp": ("timestamp_ps", np.uint64),
    "Energy": ("energy_adc", np.uint16),
    "EnergyShort": ("energy_short", np.uint16),
    "Flags": ("flags", np.uint32),
}
_REQUIRED = ("Channel", "Timestamp", "Board", "Energy", "Flags")
#: branch names accepted for a calibrated energy (CoMPASS's own name is unknown; this package
#: writes ``EnergyCal``)
_CAL_NAMES = ("EnergyCal", "EnergyCalibrated", "EnergyCalib", "CalibEnergy", "Energy_cal")


@numba.njit(cache=True, nogil=True)
def _strip_tarrays(
    data: NDArray[np.uint8],
    byte_offsets: NDArray[np.integer[Any]],
    out: NDArray[np.int16],
    offsets: NDArray[np.int64],
) -> int:  # pragma: no cover - compiled; twin: _strip_tarrays_py
    """Entries ``[int32 BE fN][fN x int16 BE]`` -> native int16 ``out`` and ``offsets``.

    Returns -1, or the first entry whose ``fN`` disagrees with its byte count.
    """
    k = 0
    offsets[0] = 0
    for i in range(byte_offsets.size - 1):
        a = byte_offsets[i]
        b = byte_offsets[i + 1]
        if b - a < 4:
            return i
        n = (
            (np.int64(data[a]) << 24)
            | (np.int64(data[a + 1]) << 16)
            | (np.int64(data[a + 2]) << 8)
            | np.int64(data[a + 3])
        )
        if 4 + 2 * n != b - a:
            return i
        q = a + 4
        for _ in range(n):
            out[k] = np.int16(
                np.uint16((np.uint16(data[q]) << np.uint16(8)) | np.uint16(data[q + 1]))
            )
            k += 1
            q += 2
        offsets[i + 1] = k
    return -1


def _strip_tarrays_py(
    data: NDArray[np.uint8],
    byte_offsets: NDArray[np.integer[Any]],
    out: NDArray[np.int16],
    offsets: NDArray[np.int64],
) -> int:
    """Plain-numpy twin of :func:`_strip_tarrays` (reference for tests)."""
    k = 0
    offsets[0] = 0
    for i in range(byte_offsets.size - 1):
        a, b = int(byte_offsets[i]), int(byte_offsets[i + 1])
        if b - a < 4:
            return i
        n = int.from_bytes(bytes(data[a : a + 4]), "big", signed=True)
        if 4 + 2 * n != b - a:
            return i
        out[k : k + n] = np.frombuffer(bytes(data[a + 4 : b]), dtype=">i2")
        k += n
        offsets[i + 1] = k
    return -1


class AsTArrayS(uproot.AsJagged):  # type: ignore[misc]
    """``AsJagged(AsDtype(">i2"), header_bytes=4)`` with a one-pass numba basket decoder.

    uproot's generic ``header_bytes`` path masks the headers out with a boolean array over
    every byte; this subclass strips the 4-byte ``fN`` headers, byte-swaps the samples and
    checks that every ``fN`` matches its entry's byte count, in one compiled loop. Basket
    reading, decompression and assembly stay uproot's.
    """

    def __init__(self) -> None:
        super().__init__(uproot.AsDtype(">i2"), header_bytes=4)

    def basket_array(
        self,
        data: Any,
        byte_offsets: Any,
        basket: Any,
        branch: Any,
        context: Any,
        cursor_offset: Any,
        library: Any,
        options: Any,
    ) -> Any:
        if byte_offsets is None:
            return super().basket_array(
                data, byte_offsets, basket, branch, context, cursor_offset, library, options
            )
        raw = np.ascontiguousarray(data).view(np.uint8)
        bo = np.ascontiguousarray(byte_offsets, dtype=np.int64)
        n_entries = bo.size - 1
        out = np.empty(max((raw.size - 4 * n_entries) // 2, 0), dtype=np.int16)
        offsets = np.empty(n_entries + 1, dtype=np.int64)
        bad = _strip_tarrays(raw, bo, out, offsets)
        if bad >= 0:
            entry = (
                int(basket.entry_start_stop[0]) + bad
                if hasattr(basket, "entry_start_stop")
                else bad
            )
            msg = (
                f"{branch.file.file_path}: entry {entry}: TArrayS header of branch {branch.name} "
                f"does not match its {int(bo[bad + 1] - bo[bad])} bytes (expected int32 fN + fN int16)"
            )
            raise CompassFormatError(msg, path=str(branch.file.file_path), entry=entry)
        return uproot.interpretation.jagged.JaggedArray(offsets, out[: offsets[-1]])


TARRAYS_INTERPRETATION = AsTArrayS()


def _use_fast_inflate() -> None:
    """Let uproot *inflate* ZLIB baskets with ISA-L (``isal``, ~1.3-2x faster) when installed.

    Only the decompressor instance uproot reads with is switched; the ``ZLIB`` class that
    uproot *writes* with keeps its library, so switching never changes the bytes of a file
    written later in the process (ISA-L deflates to other, equally valid, bytes). A user's own
    choice of library is kept; without ``isal`` or with another uproot layout nothing changes.
    """
    inflater = getattr(uproot.compression, "_decompress_ZLIB", None)
    if inflater is None or getattr(inflater, "library", None) != "zlib":
        return
    try:
        import isal.isal_zlib  # noqa: F401
    except ImportError:
        return
    inflater.library = "isal"  # an instance attribute: uproot.ZLIB (writing) is untouched


def _n_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _open(path: Path) -> Any:
    if not path.exists():
        msg = f"{path}: no such file"
        raise CompassFormatError(msg, path=str(path))
    if path.stat().st_size == 0:
        msg = f"{path}: empty file (expected a ROOT file with a CoMPASS tree)"
        raise CompassFormatError(msg, path=str(path), offset=0)
    try:
        # no array cache: iterate() must not keep earlier chunks alive
        return uproot.open(path, array_cache=None)
    except Exception as exc:
        msg = f"{path}: not a readable ROOT file ({type(exc).__name__}: {exc})"
        raise CompassFormatError(msg, path=str(path), offset=0) from None


def _find_tree(file: Any, path: Path, name: str | None) -> Any:
    classes = file.classnames(recursive=False)
    trees = [k.split(";")[0] for k, c in classes.items() if c == "TTree"]
    wanted = (name,) if name else TREE_NAMES
    for candidate in wanted:
        if candidate in trees:
            return file[candidate]
    listing = ", ".join(
        f"{k.split(';')[0]} ({classes[k]})"
        for k in sorted(classes, key=lambda k: nearest_names(wanted[0], classes, n=0).index(k))
    )
    rntuple = [k for k, c in classes.items() if c == "ROOT::RNTuple"]
    hint = (
        " (an RNTuple, not a TTree: written by uproot from a dict; write with io.write_root)"
        if rntuple
        else ""
    )
    msg = (
        f"{path}: no TTree named {' or '.join(wanted)}{hint}; the file holds "
        f"(nearest first): {listing or 'nothing'}"
    )
    raise MissingBranchError(msg, path=str(path))


def samples_interpretation(branch: Any, path: Path) -> tuple[Any, str]:
    """The fast interpretation of a ``Samples`` branch and its kind (``"tarrays"`` / ``"jagged"``)."""
    interp = branch.interpretation
    if isinstance(interp, uproot.AsObjects):
        model = getattr(interp, "model", None)
        model_name = getattr(model, "__name__", str(model))
        class_name = branch.member("fClassName", none_if_missing=True)
        if ("TArrayS" in model_name or class_name == "TArrayS") and len(branch.branches) == 0:
            return TARRAYS_INTERPRETATION, "tarrays"
    elif isinstance(interp, uproot.AsJagged):
        content = interp.content
        dtype = getattr(content, "from_dtype", None)
        if dtype is not None and dtype.kind in "iu" and dtype.itemsize == 2:
            return interp, "jagged"
    msg = (
        f"{path}: branch Samples of tree {branch.tree.name} is {branch.typename!r} read as {interp}; "
        f"expected an unsplit TArrayS object branch (CoMPASS) or a jagged 16-bit integer branch"
    )
    raise CompassFormatError(msg, path=str(path))


def _cross_check(branch: Any, fast: Any, path: Path) -> None:
    """Compare the first entry read through ``fast`` with uproot's own TArrayS model."""
    n = min(2, branch.num_entries)
    if n == 0:
        return
    slow = branch.array(entry_stop=n, library="np")
    quick = branch.array(fast, entry_stop=n, library="np")
    for i in range(n):
        a = np.asarray(slow[i], dtype=np.int16)
        b = np.asarray(quick[i], dtype=np.int16)
        if a.shape != b.shape or not np.array_equal(a, b):
            msg = (
                f"{path}: entry {i}: Samples read as raw TArrayS bytes ({b.size} samples) differ from "
                f"uproot's TArrayS streamer ({a.size} samples); the branch is not the CoMPASS encoding"
            )
            raise CompassFormatError(msg, path=str(path), entry=i)


def _scalar(tree: Any, name: str, start: int, stop: int, dtype: Any, executor: Any = None) -> Any:
    arr = tree[name].array(
        entry_start=start, entry_stop=stop, library="np", decompression_executor=executor
    )
    return arr.astype(dtype, copy=False)


def iter_root(
    path: Path,
    opts: ReadOptions,
    step_size: int | None,
    entry_range: tuple[int, int | None] | None = None,
) -> Iterator[RawChunk]:
    """Yield :class:`RawChunk` s of ``step_size`` entries (all at once when ``None``).

    Baskets are decompressed on a thread pool (zlib, lz4 and zstd release the GIL), which
    is what bounds the speed of reading a compressed file.
    """
    _use_fast_inflate()
    with _open(path) as probe:
        compressed = probe.file.compression is not None
    # uncompressed baskets gain nothing from threads, only their overhead
    executor = uproot.source.futures.ThreadPoolExecutor(_n_threads()) if compressed else None
    try:
        yield from _iter_root(path, opts, step_size, executor, entry_range)
    finally:
        if executor is not None:
            executor.shutdown()


def _iter_root(
    path: Path,
    opts: ReadOptions,
    step_size: int | None,
    executor: Any,
    entry_range: tuple[int, int | None] | None = None,
) -> Iterator[RawChunk]:
    with _open(path) as file:
        tree = _find_tree(file, path, opts.tree)
        names = list(tree.keys(recursive=False))
        missing = [b for b in _REQUIRED if b not in names]
        if missing:
            listing = ", ".join(nearest_names(missing[0], names, n=0))
            msg = (
                f"{path}: tree {tree.name} lacks branch {missing[0]!r}"
                + (f" (and {missing[1:]})" if len(missing) > 1 else "")
                + f"; its branches (nearest first): {listing or 'none'}"
            )
            raise MissingBranchError(msg, path=str(path))
        n_entries = int(tree.num_entries)
        count_branches = set()
        for name in names:
            count = getattr(tree[name], "count_branch", None)
            if count is not None:
                count_branches.add(count.name)
        samples = None
        if "Samples" in names:
            branch = tree["Samples"]
            interp, kind = samples_interpretation(branch, path)
            if int(branch.num_entries) != n_entries:
                msg = (
                    f"{path}: branch Samples has {branch.num_entries} entries but tree {tree.name} "
                    f"has {n_entries}; expected one waveform per event"
                )
                raise CompassFormatError(
                    msg, path=str(path), entry=min(n_entries, int(branch.num_entries))
                )
            if kind == "tarrays":
                _cross_check(branch, interp, path)
            samples = (branch, interp)
        cal = next((c for c in _CAL_NAMES if c in names), None)
        known = set(_SCALARS) | {"Probe", "Samples"} | count_branches | ({cal} if cal else set())
        extras = [n for n in names if n not in known]
        present = [b for b in _SCALARS if b in names]
        for b in present:
            dtype = getattr(tree[b].interpretation, "from_dtype", None)
            if (
                dtype is None
                or dtype.kind not in "iu"
                or dtype.itemsize > np.dtype(_SCALARS[b][1]).itemsize
            ):
                if b == "Energy" and dtype is not None and dtype.kind == "f" and cal is None:
                    # a floating-point Energy is a calibrated energy, not ADC channels
                    log.warning("%s: branch Energy is %s; read as energy_cal", path, dtype)
                    cal = "Energy"
                    continue
                msg = (
                    f"{path}: branch {b} of tree {tree.name} is {tree[b].typename!r}; expected an "
                    f"integer of at most {np.dtype(_SCALARS[b][1]).itemsize * 8} bits "
                    f"({np.dtype(_SCALARS[b][1]).name})"
                )
                raise CompassFormatError(msg, path=str(path))
        if cal == "Energy":
            present.remove("Energy")
        lo, hi = 0, n_entries
        if entry_range is not None:
            lo = min(max(entry_range[0], 0), n_entries)
            hi = n_entries if entry_range[1] is None else min(max(entry_range[1], lo), n_entries)
        step = (hi - lo) if step_size is None else step_size
        starts = range(lo, max(hi, lo + 1), max(step, 1))  # an empty range gives one empty chunk
        for start in starts:
            stop = min(start + step, hi)
            cols = {
                _SCALARS[b][0]: _scalar(tree, b, start, stop, _SCALARS[b][1], executor)
                for b in present
            }
            if cal is not None:
                cols["energy_cal"] = _scalar(tree, cal, start, stop, np.float64)
            if samples is not None:
                wf = samples[0].array(
                    samples[1],
                    entry_start=start,
                    entry_stop=stop,
                    library="ak",
                    decompression_executor=executor,
                )
                layout = ak.to_layout(wf)
                if not isinstance(layout, ak.contents.ListOffsetArray):
                    layout = ak.to_layout(ak.to_packed(wf))
                offsets = np.asarray(layout.offsets.data, dtype=np.int64)
                content = np.asarray(layout.content.data)
                if content.dtype != np.int16:
                    content = content.astype(np.int16)
                if "Probe" in names:
                    probe = _scalar(tree, "Probe", start, stop, np.int32)
                    check_probe(str(path), probe, start, np.diff(offsets) > 0)
            else:
                offsets, content = empty_waveforms(stop - start)
            extra_values = {
                e: tree[e].array(entry_start=start, entry_stop=stop, library="ak") for e in extras
            }
            yield RawChunk(str(path), start, stop, cols, offsets, content, extra_values)


def write_root(
    path: str | Path,
    events: Any,
    tree: str = "Data_R",
    *,
    title: str | None = None,
    basket_size: int = 20_000,
) -> Path:
    """Write events as a CoMPASS-style ROOT TTree (uproot; ``Samples`` as jagged int16).

    Branches, in CoMPASS order: ``Channel/s``, ``Timestamp/l``, ``Board/s``, ``Energy/s``,
    ``EnergyShort/s`` (when the events have ``energy_short``), ``EnergyCal/D`` (when they have
    ``energy_cal``), ``Flags/i``, then ``Probe/I`` (= 1) and ``Samples`` when any event has a
    waveform. Extra numeric fields are written as extra branches. uproot cannot write a
    ``TArrayS`` object branch; CoMPASS-faithful fixtures come from ``tests/fixtures``.
    The file is written atomically.
    """
    path = Path(path)
    cols, offsets, content, extras = event_columns(events)
    n = offsets.size - 1
    types: dict[str, Any] = {
        "Channel": np.uint16,
        "Timestamp": np.uint64,
        "Board": np.uint16,
        "Energy": np.uint16,
    }
    data: dict[str, Any] = {
        "Channel": cols["channel"],
        "Timestamp": cols["timestamp_ps"],
        "Board": cols["board"],
        "Energy": cols["energy_adc"],
    }
    if "energy_short" in cols:
        types["EnergyShort"] = np.uint16
        data["EnergyShort"] = cols["energy_short"]
    if "energy_cal" in cols:
        types["EnergyCal"] = np.float64
        data["EnergyCal"] = cols["energy_cal"]
    types["Flags"] = np.uint32
    data["Flags"] = cols["flags"]
    has_waves = content.size > 0
    if has_waves:
        types["Probe"] = np.int32
        types["Samples"] = "var * int16"
        data["Probe"] = np.ones(n, dtype=np.int32)
    for name, col in extras.items():
        if name in types:
            continue
        types[name] = col.dtype
        data[name] = col
    with atomic_path(path) as tmp, uproot.recreate(tmp) as file:
        out = file.mktree(
            tree, types, title=title if title is not None else TREE_TITLES.get(tree, "")
        )
        for start in range(0, n, basket_size):
            stop = min(start + basket_size, n)
            chunk = {k: v[start:stop] for k, v in data.items()}
            if has_waves:
                sub = offsets[start : stop + 1]
                chunk["Samples"] = ak.Array(
                    ak.contents.ListOffsetArray(
                        ak.index.Index64(sub - sub[0]),
                        ak.contents.NumpyArray(content[sub[0] : sub[-1]]),
                    )
                )
            out.extend(chunk)
    log.debug("wrote %d events to %s (tree %s)", n, path, tree)
    return path
