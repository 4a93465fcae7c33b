"""Figures of the simulated detector response (issue 3, detector part), as one JSON line.

Usage::

    python analysis/check_sim_detector.py [--decays 3e7] [--seed 1] [--cache DIR]

Reports, for the default :class:`~bege_psd.sim.config_detector.DetectorConfig`:

* ``depletion_voltage_v``, ``capacitance_pf`` and the library build time (fresh, into a
  temporary cache);
* SSE 10-90 % rise times over the active volume (library nodes weighted by their ring volume,
  30 ns preamp): median, 1 % and 99 % quantiles, fraction within 100-700 ns;
* ``digitize`` throughput on 232Th events (events per CPU-second and per wall second, one
  thread);
* classical A/E on a 232Th point source (``bege_psd.sim.sources`` + ``transport``): A is
  ``bege_psd.dsp.features(...).current_max``, E the simulated ``energy_adc``; the cut keeps
  90 % of the *truth* DEP events (process 3), and the survival of truth FEP 2614.5, SEP,
  FEP 1620.7 and of all events in 1989-2089 keV is reported. This isolates the detector physics
  from the A/E calibration, which ``analysis/validate_sim.py`` does on the written run.

The numbers are from simulated data.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import awkward as ak
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decays", type=float, default=3e7, help="232Th decays to simulate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--cache", default=None, help="pulse-library cache (default: a fresh temporary one)"
    )
    args = parser.parse_args()

    from bege_psd.dsp import features
    from bege_psd.sim.config import SimConfig
    from bege_psd.sim.detector import PulseLibrary, charge_collection_efficiency
    from bege_psd.sim.electronics import digitize
    from bege_psd.sim.run import classify
    from bege_psd.sim.sources import make_source
    from bege_psd.sim.transport import transport

    cfg = SimConfig()
    det, elec = cfg.detector, cfg.electronics
    result: dict[str, object] = {"simulated": True}

    with tempfile.TemporaryDirectory(prefix="bege_lib_") as tmp:
        t = time.perf_counter()
        lib = PulseLibrary.load_or_build(det, cache_dir=args.cache or tmp)
        result["library_s"] = round(time.perf_counter() - t, 2)
    result.update({k: round(v, 2) for k, v in lib.summary().items()})

    rt = lib.risetimes_ns(elec.preamp_rise_ns)
    rr, zz = np.meshgrid(lib.r_mm, lib.z_mm, indexing="ij")
    active = charge_collection_efficiency(rr, zz, det) >= 1.0
    x = rt[active]
    w = (rr + 0.25 * lib.dr_mm)[active]
    order = np.argsort(x)
    cw = np.cumsum(w[order]) / w.sum()

    def q(p: float) -> float:
        return round(float(x[order][np.searchsorted(cw, p)]), 1)

    result["sse_risetime_ns"] = {
        "median": q(0.5),
        "p01": q(0.01),
        "p99": q(0.99),
        "fraction_100_700": round(float(w[(x >= 100) & (x <= 700)].sum() / w.sum()), 4),
    }

    src = make_source("th232", cfg.source, crystal_height_mm=det.height_mm)
    rng = np.random.default_rng(args.seed)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("a", "e", "proc", "e0")}
    n_total = int(args.decays)
    chunk = 1_000_000
    cpu = wall = 0.0
    n_dig = 0
    for start in range(0, n_total, chunk):
        n = min(chunk, n_total - start)
        prim = src.sample(n, rng)
        dep = transport(
            prim.energy_kev, prim.position_mm, prim.direction, prim.event, n, cfg.transport,
            radius_mm=det.radius_mm, height_mm=det.height_mm, seed=int(rng.integers(2**32)),
        )  # fmt: skip
        proc, _, e0 = classify(dep, prim.energy_kev, prim.event, n)
        counts = np.diff(dep.offsets)
        has = counts > 0
        r = np.minimum(np.hypot(dep.x_mm, dep.y_mm), det.radius_mm)
        z = np.clip(dep.z_mm, 0.0, det.height_mm)
        jag = [ak.to_packed(ak.unflatten(v, counts)[has]) for v in (dep.edep_kev, r, z)]
        t, c = time.perf_counter(), time.process_time()
        out = digitize(*jag, lib, elec, rng)
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
        n_dig += int(has.sum())
        events = ak.zip(
            {
                "waveform": ak.from_numpy(out["waveform"]),
                "energy_adc": out["energy_adc"],
                "flags": out["flags"],
            },
            depth_limit=1,
        )
        ft = features(events, sample_period_ns=elec.sample_period_ns, polarity=elec.polarity)
        cols["a"].append(ak.to_numpy(ft["current_max"]).astype(np.float64))
        cols["e"].append(out["energy_adc"] * elec.energy_kev_per_channel)
        cols["proc"].append(proc[has])
        cols["e0"].append(e0[has])
    result["digitize_events_per_cpu_s"] = round(n_dig / cpu)
    result["digitize_events_per_wall_s"] = round(n_dig / wall)
    result["digitized_events"] = n_dig

    a, e, proc, e0 = (np.concatenate(cols[k]) for k in ("a", "e", "proc", "e0"))
    aoe = a / np.maximum(e, 1.0)
    is_dep = (proc == 3) & (np.abs(e0 - 2614.511) < 1) & (np.abs(e - 1592.5) < 3)
    cut = float(np.quantile(aoe[is_dep], 0.10))
    med = float(np.median(aoe[is_dep]))
    q16, q84 = np.quantile(aoe[is_dep], [0.16, 0.84])
    groups = {
        "DEP_truth": is_dep,
        "FEP_2614_truth": (proc == 1) & (np.abs(e0 - 2614.511) < 1) & (np.abs(e - 2614.5) < 4),
        "SEP_truth": (proc == 2) & (np.abs(e0 - 2614.511) < 1) & (np.abs(e - 2103.5) < 4),
        "FEP_1620_truth": (proc == 1) & (np.abs(e0 - 1620.738) < 1) & (np.abs(e - 1620.7) < 3),
        "Compton_1989_2089": (e > 1989) & (e < 2089),
    }
    result["aoe_truth_dep90"] = {
        "dep_aoe_rel_sigma": round(float((q84 - q16) / 2 / med), 4),
        **{
            k: {"n": int(m.sum()), "survival": round(float(np.mean(aoe[m] > cut)), 4)}
            for k, m in groups.items()
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
