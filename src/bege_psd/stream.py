"""Streaming analysis of a run of any size: locally chunk by chunk, or on a dask cluster.

What to use when
----------------
- A run on one machine (laptop, workstation): ``process(source, spec)`` with the default
  ``executor="local"``. Memory is bounded by the chunk size (``step_size``), not the run size.
- A run (or many) that outgrows one machine: ``process(source, spec, executor="dask",
  scheduler="tcp://host:8786")``, or ``executor="dask"`` alone for a ``LocalCluster`` on this
  machine. The same per-chunk function runs on every worker, so spectra and scores are identical
  to the local path (tested).
- From the command line: ``bege-psd process SOURCE --model gmm.json ... [--executor dask
  --scheduler ADDRESS]``.

The per-chunk work (:func:`analyse_chunk`) is: waveform features (:func:`bege_psd.dsp.features`)
-> calibrated energy -> the score and mask of every selector -> a row of the event table.
:func:`spectra_of` fills the all / kept / rejected spectra of every selector; spectra of chunks
add up (``hist`` objects), which is the map-reduce the dask path uses.

Design notes (dask)
-------------------
- Partitions are entry ranges of the run's files (:func:`plan_partitions`), read by a
  module-level callable passed to :func:`dask_awkward.from_map`. ``uproot.dask`` is not used:
  it cannot apply the fast ``TArrayS`` interpretation of CoMPASS's ``Samples`` branch, it does
  not read BIN/CSV, and building its graph anew for every call leaks memory
  (scikit-hep/uproot5#1093). Functions sent to workers are module-level, never closures built
  per call, so dask's function cache does not grow either.
- numba's on-disk cache is written by whichever process compiles first; many workers compiling
  at once race on the cache index. :func:`warm_kernels` compiles (and caches) every kernel in
  the client before tasks are submitted, and each worker warms itself once in its setup, so
  workers only ever read the cache.
- Functions given to :func:`dask_awkward.map_partitions` are typetracer-aware: on a typetracer
  they run the numba kernels on a length-zero array of the same form and return the typetracer
  of the result, so the graph can be built without touching data.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import awkward as ak
import hist
import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError

__all__ = (
    "Partition",
    "StreamResult",
    "StreamSpec",
    "analyse_chunk",
    "dask_table",
    "iterate_dask",
    "plan_partitions",
    "prefetch",
    "process",
    "read_partition",
    "spectra_of",
    "warm_kernels",
)

log = logging.getLogger(__name__)

Executor = Literal["local", "dask"]


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """Everything a worker needs to analyse a chunk; plain data, so it pickles cheaply.

    Parameters
    ----------
    selectors
        ``name -> path`` of saved selectors (``Selector.save``); loaded once per process.
    calibration
        ``Calibration.to_dict()`` (ADC -> keV); ``None`` uses the run's CoMPASS coefficients
        when the chunk carries ``energy_cal``, else leaves ``energy_kev`` NaN.
    template
        Path of a saved :class:`~bege_psd.dsp.SSETemplate` (for ``l1_to_sse``), or ``None``.
    dsp
        ``[dsp]`` options as a mapping (``config.to_mapping(DSPConfig)``); ``{}`` = defaults.
    thresholds
        Optional ``name -> threshold`` overriding each selector's saved working point.
    bins_kev, range_kev
        Binning of the spectra (1 keV bins on [0, 3000] keV by default).
    """

    selectors: Mapping[str, str] = dataclasses.field(default_factory=dict)
    calibration: Mapping[str, Any] | None = None
    template: str | None = None
    dsp: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    thresholds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    bins_kev: int = 3000
    range_kev: tuple[float, float] = (0.0, 3000.0)
    #: event fields copied into the table besides the features (friend-tree columns)
    keep_fields: tuple[str, ...] = ("energy_adc", "flags")
    #: threads for the feature kernels within a chunk (the kernels release the GIL)
    n_threads: int = 1


@dataclasses.dataclass(frozen=True)
class Partition:
    """An entry range ``[start, stop)`` of one file of a run (a unit of dask work)."""

    path: str
    start: int
    stop: int
    sample_period_ns: float | None = None
    polarity: str | None = None

    def __len__(self) -> int:
        return self.stop - self.start


@dataclasses.dataclass(frozen=True)
class StreamResult:
    """Spectra (``"all"``, ``"kept_<sel>"``, ``"rejected_<sel>"``) and event counts."""

    spectra: Mapping[str, hist.Hist[Any]]
    n_events: int
    n_kept: Mapping[str, int]
    n_chunks: int


# ----------------------------------------------------------------------------- per process


@functools.lru_cache(maxsize=32)
def _load_selector(path: str, mtime_ns: int) -> Any:
    from .select.base import load_selector

    return load_selector(path)


def _selector(path: str) -> Any:
    return _load_selector(path, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _load_template(path: str, mtime_ns: int) -> Any:
    from .dsp import SSETemplate

    return SSETemplate.load(path)


@functools.lru_cache(maxsize=8)
def _dsp_config(items: tuple[tuple[str, Any], ...]) -> Any:
    from .config import from_mapping
    from .dsp import DSPConfig

    return from_mapping(DSPConfig, dict(items), where="dsp")


def _freeze(mapping: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in mapping.items()))


def warm_kernels() -> None:
    """Compile (and write numba's cache for) the feature kernels in this process."""
    from .dsp import features

    t = np.arange(400, dtype=np.float64)
    wf = (1000 + 500 * (1 + np.tanh((t - 150) / 10.0))).astype(np.int16)
    events = ak.zip(
        {"waveform": ak.Array(np.stack([wf, wf])), "energy_adc": np.array([1000, 1000], np.uint16)},
        depth_limit=1,
    )
    features(events, polarity="positive", sample_period_ns=4.0)


# ----------------------------------------------------------------------------- per chunk


def _energy_kev(events: ak.Array, spec: StreamSpec) -> NDArray[np.float64]:
    n = len(events)
    if spec.calibration is not None:
        from .calib import Calibration

        cal = Calibration.from_dict(spec.calibration)
        return np.asarray(cal.apply(ak.to_numpy(events["energy_adc"])), dtype=np.float64)
    if "energy_cal" in ak.fields(events):
        return np.asarray(ak.to_numpy(events["energy_cal"]), dtype=np.float64)
    return np.full(n, np.nan)


def analyse_chunk(events: ak.Array, spec: StreamSpec) -> ak.Array:
    """The event table of one chunk: features, ``energy_kev``, ``score_<sel>``, ``kept_<sel>``.

    Entry-aligned with ``events``; every event is kept (quality problems are in ``quality``).
    Works on a dask-awkward typetracer too (returns the typetracer of the result).
    """
    if ak.backend(events) == "typetracer":
        empty = ak.typetracer.length_zero_if_typetracer(events)
        out = analyse_chunk(ak.Array(empty, attrs=events.attrs), spec)
        return ak.Array(out.layout.to_typetracer(forget_length=True))

    from .dsp import features

    template = (
        _load_template(spec.template, os.stat(spec.template).st_mtime_ns) if spec.template else None
    )
    attrs = dict(events.attrs or {})
    feats = features(
        events,
        _dsp_config(_freeze(spec.dsp)),
        template=template,
        sample_period_ns=attrs.get("sample_period_ns"),
        polarity=attrs.get("polarity"),
        n_threads=spec.n_threads,
    )
    columns: dict[str, Any] = {name: feats[name] for name in ak.fields(feats)}
    for name in spec.keep_fields:
        if name in ak.fields(events):
            columns[name] = events[name]
    columns["energy_kev"] = _energy_kev(events, spec)
    table = ak.zip(columns, depth_limit=1)
    if spec.selectors:
        scored = dict(columns)
        for name, path in spec.selectors.items():
            sel = _selector(path)
            # the ACM reads waveforms; the others only features
            view = (
                ak.with_field(table, events["waveform"], "waveform") if sel.name == "acm" else table
            )
            score = np.asarray(sel.score(view), dtype=np.float64)
            threshold = float(spec.thresholds.get(name, sel.threshold))
            scored[f"score_{name}"] = score
            scored[f"kept_{name}"] = score >= threshold
        table = ak.zip(scored, depth_limit=1)
    return ak.Array(table, attrs=attrs)


def _empty_spectrum(spec: StreamSpec) -> hist.Hist[Any]:
    from .spectrum import empty_spectrum

    return empty_spectrum(bins=spec.bins_kev, range=spec.range_kev, unit="keV")


def spectra_of(table: ak.Array, spec: StreamSpec) -> dict[str, hist.Hist[Any]]:
    """All / kept / rejected energy spectra of one event table (they add across chunks)."""
    from .spectrum import fill

    energy = np.asarray(ak.to_numpy(table["energy_kev"]), dtype=np.float64)
    out = {"all": fill(_empty_spectrum(spec), energy)}
    for name in spec.selectors:
        kept = np.asarray(ak.to_numpy(table[f"kept_{name}"]), dtype=bool)
        out[f"kept_{name}"] = fill(_empty_spectrum(spec), energy, kept)
        out[f"rejected_{name}"] = fill(_empty_spectrum(spec), energy, ~kept)
    return out


def _add_spectra(
    a: dict[str, hist.Hist[Any]], b: Mapping[str, hist.Hist[Any]]
) -> dict[str, hist.Hist[Any]]:
    for key, h in b.items():
        if key in a:
            a[key] += h
        else:
            a[key] = h.copy()
    return a


def _counts(table: ak.Array, spec: StreamSpec) -> dict[str, int]:
    return {
        name: int(np.count_nonzero(ak.to_numpy(table[f"kept_{name}"]))) for name in spec.selectors
    }


# ----------------------------------------------------------------------------- partitions


def plan_partitions(source: Any, step_size: int = 100_000, **read_options: Any) -> list[Partition]:
    """Split a run into entry ranges of at most ``step_size`` events per file."""
    from .io import find_run_files, read_metadata
    from .io.reader import count_entries

    files = find_run_files(source)
    meta = read_metadata(files.run_folder) if files.run_folder is not None else None
    period = read_options.get("sample_period_ns") or (meta.sample_period_ns if meta else None)
    polarity = read_options.get("polarity") or (meta.polarity if meta else None)
    parts: list[Partition] = []
    for path in files.files:
        n = count_entries(path)
        for start in range(0, max(n, 1), step_size):
            parts.append(Partition(str(path), start, min(n, start + step_size), period, polarity))
    return parts


def read_partition(part: Partition) -> ak.Array:
    """Read one :class:`Partition` (the events of its entry range, with chunk ``attrs``)."""
    from .io import read

    opts: dict[str, Any] = {}
    if part.sample_period_ns is not None:
        opts["sample_period_ns"] = part.sample_period_ns
    if part.polarity is not None:
        opts["polarity"] = part.polarity
    return read(part.path, entry_start=part.start, entry_stop=part.stop, **opts)


class _ReadAndAnalyse:
    """Module-level callable for ``dask_awkward.from_map`` (stable token, picklable)."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec

    def __call__(self, part: Partition) -> ak.Array:
        return analyse_chunk(read_partition(part), self.spec)


def _spectra_and_counts(
    table: ak.Array, spec: StreamSpec
) -> tuple[dict[str, hist.Hist[Any]], dict[str, int], int]:
    return spectra_of(table, spec), _counts(table, spec), len(table)


def _merge(
    a: tuple[dict[str, hist.Hist[Any]], dict[str, int], int],
    b: tuple[dict[str, hist.Hist[Any]], dict[str, int], int],
) -> tuple[dict[str, hist.Hist[Any]], dict[str, int], int]:
    spectra = _add_spectra(dict(a[0]), b[0])
    counts = {k: a[1].get(k, 0) + b[1].get(k, 0) for k in set(a[1]) | set(b[1])}
    return spectra, counts, a[2] + b[2]


def _worker_setup() -> None:  # pragma: no cover - runs in dask workers
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    warm_kernels()


# ----------------------------------------------------------------------------- driver


def _local(
    source: Any,
    spec: StreamSpec,
    step_size: int,
    friend: str | os.PathLike[str] | None,
    progress: bool,
    read_options: Mapping[str, Any],
) -> StreamResult:
    import contextlib

    from .io import iterate

    spectra: dict[str, hist.Hist[Any]] = {}
    kept: dict[str, int] = dict.fromkeys(spec.selectors, 0)
    n_events = n_chunks = 0
    # read the next chunk on a thread while this one is analysed (decompression releases the GIL)
    chunks: Iterator[ak.Array] = prefetch(iterate(source, step_size=step_size, **read_options))
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="process", unit="chunk", disable=bool(os.environ.get("CI")))
    with contextlib.ExitStack() as stack:
        writer = None
        if friend is not None:
            from .io.friend import FriendWriter

            writer = stack.enter_context(FriendWriter(friend, source=str(source)))
        for events in chunks:
            table = analyse_chunk(events, spec)
            _add_spectra(spectra, spectra_of(table, spec))
            for name, k in _counts(table, spec).items():
                kept[name] += k
            if writer is not None:
                writer.extend(_friend_columns(table), entry_start=n_events)
            n_events += len(table)
            n_chunks += 1
    if not spectra:
        spectra = spectra_of(analyse_chunk(_no_events(), spec), spec)
    return StreamResult(spectra, n_events, kept, n_chunks)


def prefetch(chunks: Iterator[ak.Array], depth: int = 1) -> Iterator[ak.Array]:
    """Yield from ``chunks`` while a background thread reads up to ``depth`` chunks ahead.

    Exceptions of the reader are re-raised in the consumer, in order; memory grows by at most
    ``depth`` chunks.
    """
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                q.put(("chunk", chunk))
            q.put(("done", None))
        except BaseException as exc:  # handed to the consumer
            q.put(("error", exc))

    thread = threading.Thread(target=produce, name="bege-psd-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def _no_events() -> ak.Array:
    return ak.zip(
        {
            "energy_adc": np.zeros(0, np.uint16),
            "flags": np.zeros(0, np.uint32),
            "waveform": ak.Array(np.zeros((0, 400), np.int16)),
        },
        depth_limit=1,
    )


def _friend_columns(table: ak.Array) -> dict[str, NDArray[Any]]:
    return {name: ak.to_numpy(table[name]) for name in ak.fields(table)}


def dask_table(
    source: Any, spec: StreamSpec, step_size: int = 100_000, **read_options: Any
) -> tuple[Any, int]:
    """The lazy event table of a run as a ``dask_awkward.Array`` (one partition per entry range).

    Returns ``(table, n_partitions)``. Compute it, or reduce it, on any dask scheduler; its
    partitions equal :func:`analyse_chunk` of the same entry ranges.
    """
    from .errors import require

    require("dask_awkward", "dask")
    import dask_awkward as dak

    parts = plan_partitions(source, step_size, **read_options)
    warm_kernels()
    # the graph's form comes from a real one-event read, so nothing about the data is guessed
    first = dataclasses.replace(parts[0], stop=min(parts[0].stop, parts[0].start + 1))
    probe = analyse_chunk(read_partition(first), spec)
    meta = ak.Array(probe.layout.to_typetracer(forget_length=True))
    from_map = dak.from_map  # type: ignore[attr-defined]  # not re-exported in the stubs
    table = from_map(_ReadAndAnalyse(spec), parts, label="bege-psd-analyse", meta=meta)
    return table, len(parts)


def iterate_dask(
    source: Any,
    spec: StreamSpec,
    step_size: int = 100_000,
    *,
    scheduler: str | None = None,
    n_workers: int = 2,
    in_flight: int | None = None,
    **read_options: Any,
) -> Iterator[ak.Array]:
    """Event tables of a run computed on dask, yielded *in entry order* (one per partition).

    Each table equals :func:`analyse_chunk` of the same entry range (the workers run it); use
    this when the per-event results must come back, e.g. to write an entry-aligned friend tree
    in this process (``bege_psd.pipeline`` does, for ``bege-psd run --executor dask``). At most
    ``in_flight`` partitions (default ``2 * n_workers``, at least 2) are computed or held at a
    time, so memory stays bounded by the partition size. ``scheduler=None`` starts a
    ``LocalCluster`` of ``n_workers`` single-threaded processes for the duration of the loop.
    """
    from .errors import require

    require("dask_awkward", "dask")
    require("distributed", "dask")
    from collections import deque

    from distributed import Client, LocalCluster

    tables, _ = dask_table(source, spec, step_size, **read_options)
    parts = list(tables.to_delayed())
    window = max(2, in_flight or 2 * n_workers)
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    client = Client(cluster if cluster is not None else scheduler)
    try:
        client.run(_worker_setup)
        pending: deque[Any] = deque()
        nxt = 0
        while nxt < len(parts) or pending:
            while nxt < len(parts) and len(pending) < window:
                pending.append(client.compute(parts[nxt]))
                nxt += 1
            fut = pending.popleft()
            table = fut.result()
            fut.release()
            yield table
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dask(
    source: Any,
    spec: StreamSpec,
    step_size: int,
    scheduler: str | None,
    n_workers: int,
    read_options: Mapping[str, Any],
) -> StreamResult:
    from .errors import require

    require("dask_awkward", "dask")
    require("distributed", "dask")
    from dask.delayed import delayed
    from distributed import Client, LocalCluster

    tables, n_parts = dask_table(source, spec, step_size, **read_options)
    pieces = [delayed(_spectra_and_counts)(d, spec) for d in tables.to_delayed()]
    while len(pieces) > 1:  # a balanced tree of additions
        pieces = [
            delayed(_merge)(pieces[i], pieces[i + 1]) if i + 1 < len(pieces) else pieces[i]
            for i in range(0, len(pieces), 2)
        ]
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    client = Client(cluster if cluster is not None else scheduler)
    try:
        client.run(_worker_setup)
        spectra, counts, n = client.compute(pieces[0]).result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    kept = {name: counts.get(name, 0) for name in spec.selectors}
    return StreamResult(spectra, n, kept, n_parts)


def process(
    source: Any,
    spec: StreamSpec | None = None,
    *,
    step_size: int = 100_000,
    executor: Executor = "local",
    scheduler: str | None = None,
    n_workers: int = 2,
    friend: str | os.PathLike[str] | None = None,
    progress: bool = False,
    **read_options: Any,
) -> StreamResult:
    """Read -> features -> scores -> spectra (and optionally a friend tree) for a whole run.

    Parameters
    ----------
    source
        A CoMPASS file, a list of files, or a run folder (see :func:`bege_psd.io.iterate`).
    spec
        What to compute (:class:`StreamSpec`); defaults to features and the ``all`` spectrum.
    step_size
        Events per chunk (local) or per partition (dask).
    executor
        ``"local"`` (chunk by chunk in this process) or ``"dask"``.
    scheduler
        Address of a running ``dask.distributed`` scheduler; ``None`` with ``executor="dask"``
        starts a ``LocalCluster`` of ``n_workers`` single-threaded processes.
    friend
        Local executor only: write the event table as a friend ROOT tree, entry-aligned with
        the input (``bege_psd.io.friend``).
    """
    spec = spec or StreamSpec()
    if step_size < 1:
        msg = f"step_size = {step_size}: must be at least 1"
        raise ConfigError(msg)
    if executor == "local":
        return _local(source, spec, step_size, friend, progress, read_options)
    if executor == "dask":
        if friend is not None:
            msg = "friend trees are written by the local executor; run without executor='dask'"
            raise ConfigError(msg)
        return _dask(source, spec, step_size, scheduler, n_workers, read_options)
    msg = f"executor = {executor!r} is not allowed; allowed values: 'local', 'dask'"  # type: ignore[unreachable]
    raise ConfigError(msg)


def spectra_equal(a: Mapping[str, hist.Hist[Any]], b: Mapping[str, hist.Hist[Any]]) -> bool:
    """True when both hold the same spectra with identical counts and variances."""
    if set(a) != set(b):
        return False
    return all(
        np.array_equal(a[k].values(flow=True), b[k].values(flow=True))
        and np.array_equal(
            np.asarray(a[k].variances(flow=True)), np.asarray(b[k].variances(flow=True))
        )
        for k in a
    )
