"""Benchmark the simulator: events per second per core (library cached) and library build time.

Usage::

    python benchmarks/bench_sim.py [--events 50000] [--no-build]

Prints one JSON line:

CPU seconds (``getrusage``, this process and its children) make the per-core figures robust on
a shared machine; wall-clock figures and the load average are printed beside them.

* ``events_per_s_per_core``: recorded 232Th events written per CPU-second by
  :func:`bege_psd.sim.simulate` (sources, transport, digitisation, timestamps, ROOT run and
  truth files), with the pulse library already cached; ``wall_events_per_s`` beside it.
* the same run's stage shares measured side by side on the same decays: ``transport_share``
  (source sampling + photon transport + clustering) and ``digitize_share``; target 20 000.
* ``library_build_s``: building the default pulse library from scratch (fields + drift of
  every node) into an empty cache, on this machine's cores (``cpu_count``); target < 300 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process, its threads and finished children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        u = resource.getrusage(who)
        total += u.ru_utime + u.ru_stime
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--no-build", action="store_true", help="skip the library build timing")
    args = p.parse_args(argv)

    import awkward as ak

    from bege_psd.sim import simulate
    from bege_psd.sim.config import SimConfig
    from bege_psd.sim.detector import PulseLibrary, default_cache_dir
    from bege_psd.sim.electronics import digitize
    from bege_psd.sim.sources import make_source
    from bege_psd.sim.transport import cluster_sites, transport

    cfg = SimConfig()
    out: dict[str, object] = {
        "benchmark": "sim",
        "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_build:
            t0 = time.perf_counter()
            c0 = _cpu_s()
            PulseLibrary.load_or_build(cfg.detector, cache_dir=Path(tmp) / "cache")
            out["library_build_s"] = round(time.perf_counter() - t0, 2)
            out["library_build_cpu_s"] = round(_cpu_s() - c0, 2)
            out["library_build_target_s"] = 300
        cache = default_cache_dir()
        lib = PulseLibrary.load_or_build(cfg.detector, cache_dir=cache)
        # warm-up: numba compilation and caches
        simulate("th232", 500, Path(tmp) / "warm", seed=99, config=cfg, cache_dir=cache)

        t0 = time.perf_counter()
        c0 = _cpu_s()
        simulate("th232", args.events, Path(tmp) / "run", seed=1, config=cfg, cache_dir=cache)
        wall = time.perf_counter() - t0
        cpu = _cpu_s() - c0
        out["events"] = args.events
        out["wall_s"] = round(wall, 2)
        out["cpu_s"] = round(cpu, 2)
        out["events_per_s_per_core"] = round(args.events / cpu, 1)
        out["wall_events_per_s"] = round(args.events / wall, 1)
        out["target_events_per_s_per_core"] = 20_000

        # stage shares, on the same number of decays the run needed
        src = make_source("th232", cfg.source, crystal_height_mm=cfg.detector.height_mm)
        import uproot

        truth_file = next(Path(tmp, "run").glob("*_truth.root"))
        with uproot.open(truth_file) as f:
            n_decays = int(str(f["meta_n_decays_simulated"]))
        rng = np.random.default_rng(1)
        c0 = _cpu_s()
        prim = src.sample(n_decays, rng)
        dep = transport(
            prim.energy_kev,
            prim.position_mm,
            prim.direction,
            prim.event,
            n_decays,
            cfg.transport,
            seed=3,
        )
        cluster_sites(dep)
        t_transport = _cpu_s() - c0
        has = np.diff(dep.offsets) > 0
        counts = np.diff(dep.offsets)[has]
        offs = np.zeros(counts.size + 1, np.int64)
        np.cumsum(counts, out=offs[1:])
        idx = np.repeat(dep.offsets[:-1][has] - offs[:-1], counts) + np.arange(offs[-1])

        def jag(v: np.ndarray) -> ak.Array:
            return ak.unflatten(v, counts)

        r = np.minimum(np.hypot(dep.x_mm, dep.y_mm)[idx], cfg.detector.radius_mm)
        z = np.clip(dep.z_mm[idx], 0, cfg.detector.height_mm)
        c0 = _cpu_s()
        digitize(jag(dep.edep_kev[idx]), jag(r), jag(z), lib, cfg.electronics, rng)
        t_digitize = _cpu_s() - c0
        out["decays"] = n_decays
        out["transport_share"] = round(t_transport / cpu, 3)
        out["digitize_share"] = round(t_digitize / cpu, 3)
        out["digitized_events_with_deposits"] = int(has.sum())
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
