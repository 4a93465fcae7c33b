"""Simulated CoMPASS runs with truth: sources -> transport -> detector response -> files.

Use :func:`simulate` (also ``bege-psd simulate``) to write a run folder that
:func:`bege_psd.io.read` reads like a real CoMPASS acquisition, plus a truth friend file;
:func:`read_truth` reads the truth back. The pieces are :mod:`~bege_psd.sim.sources`,
:mod:`~bege_psd.sim.transport` and the detector response of :mod:`~bege_psd.sim.detector` /
:mod:`~bege_psd.sim.electronics`.

What a run holds
    ``<out_dir>/settings.xml``, ``run.info`` (live and real time, the ADC -> keV calibration
    coefficients ``c0, c1, c2`` as CoMPASS writes them), ``RAW/DataR_CH0@DT5725_1146_<run_id>.root``
    (or ``.BIN``), and ``<out_dir>/<data file stem>_truth.root`` with tree ``Truth``,
    entry-aligned with the events:

    ``energy_true_kev`` (float64)
        Energy deposited in the crystal (before dead-layer losses).
    ``n_sites`` (int32)
        Number of sites: deposits linked (single linkage) within
        ``TransportConfig.site_distance_mm`` (1 mm).
    ``process`` (int32)
        ``0`` other: several photons of the decay deposit energy (true-coincidence summing),
        or a Ge X-ray escape; ``1`` full-energy peak: one photon deposits exactly its energy;
        ``2`` single escape: one photon pair-produces and deposits ``E - 511 keV``;
        ``3`` double escape: ``E - 1022 keV``; ``4`` partial absorption of one photon
        (Compton scatter(s) with the photon escaping, or another incomplete absorption).
    ``edep_kev``, ``r_mm``, ``z_mm`` (jagged float64)
        The deposits: energy, distance from the axis and height above the p+ contact face.
    ``n_primaries_hit`` (int32), ``primary_energy_kev`` (float64)
        How many photons of the decay deposited energy, and the energy of the one that
        deposited most.

Which events are written
    Every decay of the source is simulated; an event is written when the digitiser would
    trigger on it (collected energy above ``ElectronicsConfig.trigger_threshold_kev``), as a
    real DAQ would. ``n_events`` is the number of *written* events; the live time follows
    from the number of decays this took and the source activity, and is stored in
    ``run.info``. Timestamps are the Poisson decay times (uint64 ps, exact integer sums) plus
    the trigger delay. Events whose neighbour is closer than ``SimConfig.pileup_window_ns``
    carry the pile-up flag 0x8000.

Reproducibility
    All randomness derives from ``seed`` (numpy ``SeedSequence``; numba kernels are seeded per
    chunk from it): the same seed and configuration give the same bytes, which needs the ROOT
    writer's clock and file UUID pinned while writing (done here).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from .._util import atomic_path
from ..errors import SimulationError
from .config import SimConfig
from .sources import SOURCES, Source, make_source
from .transport import ELECTRON_MASS_KEV, Deposits, cluster_sites, transport

__all__ = ("PROCESS_NAMES", "classify", "read_truth", "simulate", "truth_path")

log = logging.getLogger(__name__)

#: ``process`` codes of the truth tree
PROCESS_NAMES = {0: "other", 1: "FEP", 2: "SEP", 3: "DEP", 4: "Compton"}

_TOL_KEV = 1e-3
_GE_X_KEV = (9.876, 10.982)
#: a fixed creation time written into ROOT headers, so that equal seeds give equal bytes
_FIXED_TIME = datetime.datetime(2025, 1, 1, 0, 0, 0)


# ---------------------------------------------------------------------------------------------
# truth classification
# ---------------------------------------------------------------------------------------------
def classify(
    deposits: Deposits,
    primary_energy_kev: NDArray[np.float64],
    primary_event: NDArray[np.int64],
    n_events: int,
) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.float64]]:
    """Per event: ``process`` code, number of primaries that deposited energy, and the energy of
    the primary that deposited most (see the module docstring for the codes)."""
    edep = deposits.primary_edep_kev
    hit = edep > 0
    n_hit = np.bincount(primary_event[hit], minlength=n_events).astype(np.int32)
    # primary that deposited most, per event
    order = np.lexsort((-edep, primary_event))
    first = np.r_[True, primary_event[order][1:] != primary_event[order][:-1]]
    best = order[first]
    best_event = primary_event[best]
    e0 = np.zeros(n_events)
    ed = np.zeros(n_events)
    pair = np.zeros(n_events, dtype=bool)
    e0[best_event] = primary_energy_kev[best]
    ed[best_event] = edep[best]
    pair[best_event] = deposits.primary_pair[best]
    process = np.full(n_events, 4, dtype=np.int32)
    process[np.abs(ed - e0) < _TOL_KEV] = 1
    process[pair & (np.abs(ed - (e0 - ELECTRON_MASS_KEV)) < _TOL_KEV)] = 2
    process[pair & (np.abs(ed - (e0 - 2 * ELECTRON_MASS_KEV)) < _TOL_KEV)] = 3
    for x in _GE_X_KEV:
        process[np.abs(ed - (e0 - x)) < _TOL_KEV] = 0
    process[n_hit > 1] = 0
    return process, n_hit, e0


# ---------------------------------------------------------------------------------------------
# deterministic ROOT output
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _pinned_root_writer() -> Iterator[None]:
    """Pin uproot's clock and file UUID (restored afterwards) so that the output bytes are
    reproducible. (The io reader's faster inflate only touches decompression, so the deflate
    library needs no pinning.)"""
    import uproot.writing._cascade as c1
    import uproot.writing._cascadetree as c2
    import uproot.writing.writable as c3

    class _Clock(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> _Clock:
            return cls(2025, 1, 1)

    shim = types.SimpleNamespace(datetime=_Clock)
    modules = (c1, c2, c3)
    saved = [m.datetime for m in modules]
    saved_uuid = c3.create.defaults["uuid_function"]
    for m in modules:
        m.datetime = shim
    c3.create.defaults["uuid_function"] = lambda: uuid.UUID(int=0)
    try:
        yield
    finally:
        for m, s in zip(modules, saved, strict=True):
            m.datetime = s
        c3.create.defaults["uuid_function"] = saved_uuid


def truth_path(run_folder: str | os.PathLike[str], data_file: str | os.PathLike[str]) -> Path:
    """``<run folder>/<data file stem>_truth.root``."""
    return Path(run_folder) / f"{Path(data_file).stem}_truth.root"


_TRUTH_TYPES = {
    "energy_true_kev": "float64",
    "n_sites": "int32",
    "process": "int32",
    "n_primaries_hit": "int32",
    "primary_energy_kev": "float64",
    "edep_kev": "var * float64",
    "r_mm": "var * float64",
    "z_mm": "var * float64",
}


def _write_truth(path: Path, chunks: list[dict[str, Any]], meta: dict[str, str]) -> None:
    import uproot

    with _pinned_root_writer(), atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        tree = f.mktree("Truth", _TRUTH_TYPES, title="bege-psd simulation truth (friend of Data_R)")
        for c in chunks:
            if len(c["energy_true_kev"]):
                tree.extend(c)
        for k, v in meta.items():
            f[f"meta_{k}"] = str(v)


def read_truth(path: str | os.PathLike[str]) -> ak.Array:
    """Read a truth file written by :func:`simulate` (all branches, entry-aligned)."""
    import uproot

    with uproot.open(path) as f:
        if "Truth" not in f:
            msg = f"{path}: no tree 'Truth' (found: {', '.join(f.keys()) or 'nothing'})"
            raise SimulationError(msg)
        return f["Truth"].arrays(list(_TRUTH_TYPES))


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
def _jagged(values: NDArray[np.float64], offsets: NDArray[np.int64]) -> ak.Array:
    return ak.Array(
        ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(values))
    )


def _select_events(
    event_offsets: NDArray[np.int64], keep: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """New offsets and the flat deposit indices of the kept events."""
    counts = np.diff(event_offsets)[keep]
    starts = event_offsets[:-1][keep]
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    idx = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
    return offsets, idx


def simulate(
    source: Literal["th232", "cryoconite", "background"] | str,
    n_events: int,
    out_dir: str | os.PathLike[str],
    *,
    fmt: Literal["root", "bin"] = "root",
    seed: int = 0,
    config: SimConfig | None = None,
    progress: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Simulate ``n_events`` recorded events of ``source`` and write a CoMPASS run with truth.

    Parameters
    ----------
    source
        ``"th232"`` (point source on the axis), ``"cryoconite"`` (volume sample on the endcap)
        or ``"background"`` (laboratory background).
    n_events
        Number of events written (triggered events, not decays).
    out_dir
        Run folder to create (``settings.xml``, ``run.info``, ``RAW/``, truth file).
    fmt
        ``"root"`` (default) or ``"bin"`` for the RAW data file.
    seed
        Seed of every random step; equal seeds give equal files.
    config
        :class:`~bege_psd.sim.config.SimConfig` (defaults when ``None``).
    progress
        Show a tqdm progress bar.
    cache_dir
        Pulse-library cache folder (default ``$BEGE_PSD_CACHE`` or ``generated/cache``).

    Returns
    -------
    Path
        The run folder; the truth file is ``truth_path(folder, data file)``.

    See Also
    --------
    bege_psd.io.read : read the run back; read_truth : the truth friend tree.
    """
    from ..io import write_run
    from ..io.settings import RunMetadata
    from ..io.writer import data_file_name
    from .detector import PulseLibrary
    from .electronics import digitize

    if source not in SOURCES:
        msg = f"simulate: unknown source {source!r}; allowed: {', '.join(SOURCES)}"
        raise SimulationError(msg)
    if fmt not in ("root", "bin"):
        msg = f"simulate: fmt = {fmt!r}; expected 'root' or 'bin'"
        raise SimulationError(msg)
    if n_events < 1:
        msg = f"simulate: n_events = {n_events}; must be at least 1"
        raise SimulationError(msg)
    cfg = config or SimConfig()
    det, elec = cfg.detector, cfg.electronics
    src: Source = make_source(source, cfg.source, crystal_height_mm=det.height_mm)
    lib = PulseLibrary.load_or_build(det, cache_dir=cache_dir, progress=progress)
    ss = np.random.SeedSequence(seed)
    activity = src.activity_bq
    mean_gap_ps = 1e12 / activity

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_events, unit="ev", desc=f"simulate {source}")

    columns: dict[str, list[NDArray[Any]]] = {
        k: [] for k in ("timestamp_ps", "energy_adc", "flags", "waveform")
    }
    truth_chunks: list[dict[str, Any]] = []
    written = 0
    decays_done = 0
    t_last_ps = np.uint64(0)
    efficiency = None
    chunk = 0
    empty_chunks = 0
    t_end_ps = np.uint64(0)
    while written < n_events:
        rng = np.random.default_rng(ss.spawn(1)[0])
        need = n_events - written
        target = min(need, cfg.chunk_events)
        if efficiency is None:
            n_decays = min(cfg.max_decays_per_chunk, max(10_000, 50 * target))
        else:
            n_decays = int(
                min(cfg.max_decays_per_chunk, max(1000, 1.05 * target / max(efficiency, 1e-9)))
            )
        prim = src.sample(n_decays, rng)
        dep = transport(
            prim.energy_kev, prim.position_mm, prim.direction, prim.event, n_decays, cfg.transport,
            radius_mm=det.radius_mm, height_mm=det.height_mm, seed=int(rng.integers(2**32)),
        )  # fmt: skip
        # decay times: exact integer picoseconds
        gaps = np.maximum(np.rint(rng.exponential(mean_gap_ps, n_decays)), 1).astype(np.uint64)
        t_decay = t_last_ps + np.cumsum(gaps, dtype=np.uint64)
        t_end_ps = t_decay[-1]
        has_dep = np.diff(dep.offsets) > 0
        process, n_hit, e_prim = classify(dep, prim.energy_kev, prim.event, n_decays)
        sites = cluster_sites(dep, cfg.transport.site_distance_mm)
        offsets, idx = _select_events(dep.offsets, has_dep)
        ev = np.flatnonzero(has_dep)
        r = np.hypot(dep.x_mm, dep.y_mm)[idx]
        z = dep.z_mm[idx]
        e = dep.edep_kev[idx]
        # keep deposits on the crystal surface inside the library's domain
        r = np.minimum(r, det.radius_mm)
        z = np.clip(z, 0.0, det.height_mm)
        out = digitize(
            _jagged(e, offsets), _jagged(r, offsets), _jagged(z, offsets), lib, elec, rng
        )
        trig = np.asarray(out["triggered"], dtype=bool)
        sel = np.flatnonzero(trig)
        decays_done += n_decays
        efficiency = (decays_done and (written + sel.size) / decays_done) or None
        sel = sel[:need]
        if sel.size:
            ts = t_decay[ev[sel]] + np.rint(out["trigger_delay_ns"][sel] * 1000.0).astype(np.uint64)
            columns["timestamp_ps"].append(ts)
            columns["energy_adc"].append(np.asarray(out["energy_adc"])[sel])
            columns["flags"].append(np.asarray(out["flags"], dtype=np.uint32)[sel])
            columns["waveform"].append(np.asarray(out["waveform"])[sel])
            keep = np.zeros(ev.size, dtype=bool)
            keep[sel] = True
            o_sel, i_sel = _select_events(offsets, keep)
            ev_sel = ev[sel]
            e_sel = e[i_sel]
            truth_chunks.append(
                {
                    "energy_true_kev": np.add.reduceat(np.r_[e_sel, 0.0], o_sel[:-1])[: sel.size]
                    if e_sel.size
                    else np.zeros(sel.size),
                    "n_sites": sites[ev_sel].astype(np.int32),
                    "process": process[ev_sel],
                    "n_primaries_hit": n_hit[ev_sel],
                    "primary_energy_kev": e_prim[ev_sel],
                    "edep_kev": _jagged(e_sel, o_sel),
                    "r_mm": _jagged(r[i_sel], o_sel),
                    "z_mm": _jagged(z[i_sel], o_sel),
                }
            )
            if written + sel.size >= n_events:
                t_end_ps = t_decay[ev[sel[-1]]]
        written += sel.size
        t_last_ps = t_decay[-1]
        chunk += 1
        empty_chunks = 0 if sel.size else empty_chunks + 1
        if empty_chunks >= 20:
            msg = (
                f"simulate: {decays_done} decays of {source!r} gave {written} triggered events "
                f"(20 chunks in a row without one); check the source distance, the activities and "
                f"electronics.trigger_threshold_kev = {elec.trigger_threshold_kev}"
            )
            raise SimulationError(msg)
        if bar is not None:
            bar.update(int(sel.size))
        log.debug(
            "chunk %d: %d decays, %d events written (total %d)", chunk, n_decays, sel.size, written
        )
    if bar is not None:
        bar.close()

    timestamp = np.concatenate(columns["timestamp_ps"])
    # trigger delays can reorder neighbours by < 1 us; a DAQ writes in time order per channel
    order = np.argsort(timestamp, kind="stable")
    timestamp = timestamp[order]
    flags = np.concatenate(columns["flags"])[order]
    if cfg.pileup_window_ns > 0 and timestamp.size > 1:
        gap = np.diff(timestamp).astype(np.float64) / 1000.0
        close = gap < cfg.pileup_window_ns
        pile = np.zeros(timestamp.size, dtype=bool)
        pile[1:] |= close
        pile[:-1] |= close
        flags = flags | np.where(pile, np.uint32(0x8000), np.uint32(0))
    waveform = np.concatenate(columns["waveform"])[order]
    n = timestamp.size
    if not cfg.write_waveforms:
        waveform = waveform[:, :0]
    events = ak.zip(
        {
            "board": np.zeros(n, np.uint16),
            "channel": np.zeros(n, np.uint16),
            "timestamp_ps": timestamp,
            "energy_adc": np.concatenate(columns["energy_adc"])[order].astype(np.uint16),
            "flags": flags.astype(np.uint32),
            "waveform": ak.from_regular(ak.Array(waveform.astype(np.int16)), axis=1),
        },
        depth_limit=1,
    )
    live_s = float(t_end_ps) * 1e-12
    meta = RunMetadata(
        sample_period_ns=elec.sample_period_ns,
        record_length=elec.n_samples,
        pre_trigger_ns=elec.pretrigger_ns,
        polarity=elec.polarity,
        adc_bits=elec.adc_bits,
        live_time_s=live_s,
        real_time_s=live_s,
        calibration=(0.0, elec.energy_kev_per_channel, 0.0),
        calibration_unit="keV",
        run_id=cfg.run_id,
        time_start=_FIXED_TIME.strftime("%Y/%m/%d %H:%M:%S.000"),
        time_stop=(_FIXED_TIME + datetime.timedelta(seconds=live_s)).strftime(
            "%Y/%m/%d %H:%M:%S.000"
        ),
    )
    folder = Path(out_dir)
    with _pinned_root_writer():
        write_run(folder, events, meta, fmt=fmt)
    truth = {k: [] for k in _TRUTH_TYPES}  # type: dict[str, list[Any]]
    for c in truth_chunks:
        for k in _TRUTH_TYPES:
            truth[k].append(c[k])
    merged = {
        k: (ak.concatenate(v) if _TRUTH_TYPES[k].startswith("var") else np.concatenate(v))[order]
        for k, v in truth.items()
    }
    tpath = truth_path(folder, data_file_name(meta, 0, fmt))
    info = {
        "source": source,
        "seed": str(seed),
        "n_decays_simulated": str(decays_done),
        "activity_bq": repr(activity),
        "live_time_s": repr(live_s),
        "config": json_dumps(cfg),
    }
    _write_truth(tpath, [merged], info)
    log.info(
        "simulated %d %s events from %d decays (live time %.1f s) in %s",
        n,
        source,
        decays_done,
        live_s,
        folder,
    )
    return folder


def json_dumps(cfg: SimConfig) -> str:
    """The configuration as JSON (stored in the truth file for provenance)."""
    import json

    from ..config import to_mapping

    return json.dumps(to_mapping(cfg), sort_keys=True, default=str)
