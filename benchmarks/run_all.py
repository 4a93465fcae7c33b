"""Run every benchmark of the package and collect their JSON lines.

Each benchmark script prints one JSON line per figure, with the side-by-side reference it
measured in the same run (ratios, not bare timings: the machine may be shared). This runner
calls them one after the other in fresh processes, echoes every line, tags it with the script
name, the load average before the script started, and the date, and appends them to
``generated/bench/results.jsonl`` (``--out``). ``make bench`` runs it.

    python benchmarks/run_all.py [--only io features ...] [--skip stream] [--quick]

``--quick`` runs every benchmark at a reduced size (minutes instead of tens of minutes); its
figures are for smoke-testing the suite, not for quoting.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: name -> (script, full-size arguments, quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "io": ("bench_io.py", [], ["--events", "20000"]),
    "sim": ("bench_sim.py", [], ["--events", "5000"]),
    "features": ("bench_features.py", [], ["--n", "20000", "--scipy-n", "300", "--repeat", "1"]),
    "gmm": ("bench_gmm.py", [], ["--n", "150000"]),
    "acm": ("bench_acm.py", [], ["--events", "20000", "--epochs", "1"]),
    "fit_coverage": ("fit_coverage.py", [], ["--toys", "100"]),
    "stream": (
        "bench_stream.py",
        [],
        ["--sizes", "200000", "400000", "--base-events", "100000", "--step", "50000"],
    ),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run just these")
    ap.add_argument("--skip", nargs="+", choices=sorted(BENCHMARKS), default=[])
    ap.add_argument("--quick", action="store_true", help="reduced sizes (smoke test)")
    ap.add_argument("--out", type=Path, default=ROOT / "generated" / "bench" / "results.jsonl")
    args = ap.parse_args()
    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        script, full, quick = BENCHMARKS[name]
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
        wall = time.perf_counter() - t0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            failed.append(name)
            print(
                f"# {name}: FAILED (exit {proc.returncode})\n{proc.stderr[-2000:]}", file=sys.stderr
            )
            continue
        with args.out.open("a") as fh:
            for line in lines:
                record = json.loads(line)
                record = {
                    "benchmark": name,
                    "quick": args.quick,
                    "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "load_average_before": round(load, 2),
                    "wall_s": round(wall, 1),
                    **record,
                }
                fh.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
