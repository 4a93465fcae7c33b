"""Streaming at scale: peak memory and throughput of read -> features -> GMM -> spectra -> friend.

Prints one JSON line per figure. A simulated 232Th run (``--base-events``, default 200 000) is
written once into ``generated/bench/stream/``; a run of N events is that file listed N/base
times (a size-split run, as CoMPASS writes long runs). Each size runs in its own subprocess so
that its peak RSS (``ru_maxrss``) is its own. Figures:

- ``stream_rss``: peak RSS of the whole chain (including the friend tree) for 1 M and 10 M
  events, and their ratio (bounded memory means ~1);
- ``stream_throughput``: events/s of files -> features -> GMM scores -> spectra on 2 cores
  (local executor with 2 feature threads, and dask ``LocalCluster`` with 2 workers), side by
  side with ``io.read`` alone on the same files in the same run (the ceiling set by I/O).

    python benchmarks/bench_stream.py [--sizes 1000000 10000000] [--base-events 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("BEGE_PSD_BENCH_DIR", ROOT_DIR / "generated" / "bench")) / "stream"


def prepare(base_events: int) -> dict[str, str]:
    """Simulate the base run, build the SSE template and a GMM model (once)."""
    import numpy as np

    from bege_psd import io
    from bege_psd.calib import Calibration
    from bege_psd.dsp import SSETemplate, features
    from bege_psd.select.gmm import GMMSelector
    from bege_psd.sim import simulate

    WORK.mkdir(parents=True, exist_ok=True)
    run = WORK / f"th232_{base_events}"
    if not (run / "run.info").exists():
        simulate("th232", base_events, run, seed=11)
    files = io.find_run_files(run).files
    meta = io.read_metadata(run)
    c0, c1, c2 = meta.calibration if meta.calibration else (0.0, 0.2, 0.0)
    cal = Calibration.from_coefficients(c0, c1, c2)
    events = io.read(run, entry_stop=min(base_events, 100_000))
    energy = cal.apply(events["energy_adc"].to_numpy())
    template_path = WORK / "template.npz"
    if not template_path.exists():
        SSETemplate.build(events, energy).save(template_path)
    template = SSETemplate.load(template_path)
    model_path = WORK / "gmm.json"
    if not model_path.exists():
        import awkward as ak

        feats = features(events, template=template)
        table = ak.with_field(feats, np.asarray(energy), "energy_kev")
        GMMSelector().fit(table).save(model_path)
    return {
        "file": str(files[0]),
        "template": str(template_path),
        "gmm": str(model_path),
        "calibration": json.dumps(cal.to_dict()),
    }


def child(args: argparse.Namespace) -> None:
    """One measurement in a fresh process; prints a JSON dict."""
    from bege_psd import io, stream

    files = [args.file] * args.copies
    cpu0 = os.times()
    if args.what == "read":
        t0 = time.perf_counter()
        n = sum(len(chunk) for chunk in io.iterate(files, step_size=args.step))
        dt = time.perf_counter() - t0
    else:
        spec = stream.StreamSpec(
            selectors={"gmm": args.gmm},
            calibration=json.loads(args.calibration),
            template=args.template,
            n_threads=args.threads,
        )
        stream.warm_kernels()
        friend = WORK / f"friend_{args.copies}.root" if args.friend else None
        t0 = time.perf_counter()
        result = stream.process(
            files,
            spec,
            step_size=args.step,
            executor=args.what,
            n_workers=args.threads,
            friend=friend,
        )
        dt = time.perf_counter() - t0
        n = result.n_events
        if friend is not None:
            friend.unlink()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    print(
        json.dumps(
            {
                "events": n,
                "seconds": dt,
                "events_per_s": n / dt,
                "peak_rss_mb": rss_mb,
                # cores this process actually got (a shared machine gives less than it has)
                "cpu_per_wall": cpu / dt,
            }
        )
    )


def run_child(
    prep: dict[str, str], what: str, copies: int, step: int, threads: int, friend: bool
) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--what",
        what,
        "--copies",
        str(copies),
        "--step",
        str(step),
        "--threads",
        str(threads),
        "--file",
        prep["file"],
        "--gmm",
        prep["gmm"],
        "--template",
        prep["template"],
        "--calibration",
        prep["calibration"],
    ]
    if friend:
        cmd.append("--friend")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{what} x{copies} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs=2, default=[1_000_000, 10_000_000])
    p.add_argument("--base-events", type=int, default=200_000)
    p.add_argument("--step", type=int, default=100_000)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--what", default="local")
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--friend", action="store_true")
    p.add_argument("--only", choices=("memory", "throughput"), help="run one of the two figures")
    for name in ("file", "gmm", "template", "calibration"):
        p.add_argument(f"--{name}")
    args = p.parse_args()
    if args.child:
        child(args)
        return
    prep = prepare(args.base_events)
    small, large = (max(1, s // args.base_events) for s in args.sizes)
    if args.only != "throughput":
        memory(prep, small, large, args.step)
    if args.only != "memory":
        throughput(prep, small, args.step)


def memory(prep: dict[str, str], small: int, large: int, step: int) -> None:
    mem_small = run_child(prep, "local", small, step, 2, friend=True)
    mem_large = run_child(prep, "local", large, step, 2, friend=True)
    print(
        json.dumps(
            {
                "figure": "stream_rss",
                "chain": "read -> features -> GMM score -> spectra -> friend tree (local, 2 threads)",
                "events": [mem_small["events"], mem_large["events"]],
                "peak_rss_mb": [
                    round(mem_small["peak_rss_mb"], 1),
                    round(mem_large["peak_rss_mb"], 1),
                ],
                "rss_ratio_large_over_small": round(
                    mem_large["peak_rss_mb"] / mem_small["peak_rss_mb"], 3
                ),
                "target_peak_rss_mb": 2048,
                "events_per_s": [
                    round(mem_small["events_per_s"]),
                    round(mem_large["events_per_s"]),
                ],
            }
        )
    )


def throughput(prep: dict[str, str], small: int, step: int) -> None:
    read = run_child(prep, "read", small, step, 2, friend=False)
    local1 = run_child(prep, "local", small, step, 1, friend=False)
    local2 = run_child(prep, "local", small, step, 2, friend=False)
    dask2 = run_child(prep, "dask", small, step, 2, friend=False)
    print(
        json.dumps(
            {
                "figure": "stream_throughput",
                "chain": "files -> features -> GMM scores -> spectra",
                "events": local2["events"],
                "events_per_s_local_1thread": round(local1["events_per_s"]),
                "events_per_s_local_2threads": round(local2["events_per_s"]),
                "events_per_s_dask_2workers": round(dask2["events_per_s"]),
                "reference_events_per_s_io_read_only": round(read["events_per_s"]),
                "fraction_of_io_ceiling": round(local2["events_per_s"] / read["events_per_s"], 3),
                "cpu_per_wall_local_2threads": round(local2["cpu_per_wall"], 2),
                "events_per_cpu_s_local_2threads": round(
                    local2["events_per_s"] / local2["cpu_per_wall"]
                ),
                "target_events_per_s": 100_000,
                "cores": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
