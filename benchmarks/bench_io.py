"""CoMPASS I/O throughput and memory, side by side in one run (prints one JSON line).

On a 200 000-event x 366-sample ROOT file with a genuine ``TArrayS`` ``Samples`` branch
(written by ROOT itself into ``generated/bench/``, not git; ZLIB level 1, ROOT's default, plus
an uncompressed twin), measures events/s of

- ``bege_psd.io.read`` (all fields, waveforms as ``var * int16``),
- uproot's default ``library="ak"`` path for ``Samples`` alone (on a subsample, extrapolated),
- ``np.load`` of the same int16 array (200 000 x 366) from a ``.npy`` file,

then BIN read through ``io.read`` (memory-mapped structured array) vs ``np.load``, and the
peak traced memory (tracemalloc: numpy and Python allocations) of ``io.iterate`` over the file
with a step of 1/10 of it, over the file given twice (a run 20x the step), and of one step.
ROOT's basket optimisation writes baskets of up to ~24 MB here; a chunk must decompress every
basket it touches, so the peak is bounded by step + largest basket, not by the file.

    python benchmarks/bench_io.py [--events 200000] [--samples 366] [--subsample 2000]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT_DIR = Path(__file__).resolve().parents[1]
BENCH = Path(os.environ.get("BEGE_PSD_BENCH_DIR", ROOT_DIR / "generated" / "bench"))


def _fixture_module():
    path = ROOT_DIR / "tests" / "fixtures" / "make_tarrays_fixture.py"
    spec = importlib.util.spec_from_file_location("make_tarrays_fixture", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def inflate_all_baskets(path: Path, branch_name: str = "Samples") -> int:
    """Inflate every basket of a branch with ISA-L (or zlib), nothing else: the decompression
    floor of reading it on one core. Returns the uncompressed bytes."""
    import uproot

    try:
        from isal import isal_zlib as inflater
    except ImportError:  # pragma: no cover
        import zlib as inflater

    with uproot.open(path) as f:
        branch = f["Data_R"][branch_name]
        seeks = branch.member("fBasketSeek")[: branch.num_baskets]
        sizes = branch.member("fBasketBytes")[: branch.num_baskets]
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    total = 0
    for seek, size in zip(seeks.tolist(), sizes.tolist(), strict=True):
        keylen = int.from_bytes(bytes(raw[seek + 14 : seek + 16]), "big")  # TKey fKeylen
        pos, end = seek + keylen, seek + size
        while pos < end:  # ROOT compression blocks: 9-byte header, then the zlib stream
            head = bytes(raw[pos : pos + 9])
            csize = int.from_bytes(head[3:6], "little")
            usize = int.from_bytes(head[6:9], "little")
            if head[:2] != b"ZL":
                return -1
            total += len(inflater.decompress(bytes(raw[pos + 9 : pos + 9 + csize]), bufsize=usize))
            pos += 9 + csize
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--samples", type=int, default=366)
    ap.add_argument(
        "--subsample", type=int, default=2000, help="events read by uproot's default path"
    )
    args = ap.parse_args()

    import awkward as ak
    import uproot

    from bege_psd import io

    n, ns = args.events, args.samples
    BENCH.mkdir(parents=True, exist_ok=True)
    root_path = BENCH / f"tarrays_{n}x{ns}.root"
    root0_path = BENCH / f"tarrays_{n}x{ns}_uncompressed.root"
    npy_path = BENCH / f"samples_{n}x{ns}.npy"
    bin_path = BENCH / f"events_{n}x{ns}.BIN"
    mod = _fixture_module()
    events = None
    paths = (root_path, root0_path, npy_path, bin_path)
    if not all(p.exists() for p in paths):
        events = mod.fixture_events(n, (ns,), seed=1)
        for path, compression in ((root_path, 101), (root0_path, 0)):
            tmp = path.with_name(path.name + ".part")
            mod.write_with_root(tmp, events, compression=compression)
            tmp.replace(path)
        np.save(npy_path, events["samples"].reshape(n, ns))
        arr = ak.zip(
            {
                **{
                    k: events[k]
                    for k in (
                        "board",
                        "channel",
                        "timestamp_ps",
                        "energy_adc",
                        "energy_short",
                        "flags",
                    )
                },
                "waveform": ak.unflatten(events["samples"], ns),
            },
            depth_limit=1,
        )
        io.write_bin(bin_path, arr)
        del arr, events
    gc.collect()

    # correctness first: the fast path and np.load hold the same samples
    got = io.read(root_path, sample_period_ns=4.0)
    ref = np.load(npy_path)
    assert len(got) == n
    assert np.array_equal(ak.to_numpy(ak.flatten(got.waveform)).reshape(n, ns), ref)
    sub = min(args.subsample, n)
    with uproot.open(root_path) as f:
        branch = f["Data_R"]["Samples"]
        t0 = time.perf_counter()
        slow = branch.array(entry_stop=sub, library="ak")
        t_uproot_sub = time.perf_counter() - t0
        max_basket = max(branch.basket_uncompressed_bytes(i) for i in range(branch.num_baskets))
    assert ak.to_list(slow[:100]) == ak.to_list(got.waveform[:100])
    t_uproot = t_uproot_sub * n / sub
    del got, ref, slow

    t_read = best_of(lambda: io.read(root_path, sample_period_ns=4.0))
    t_read0 = best_of(lambda: io.read(root0_path, sample_period_ns=4.0))
    t_npy = best_of(lambda: np.load(npy_path))
    assert inflate_all_baskets(root_path) >= n * ns * 2
    t_inflate = best_of(lambda: inflate_all_baskets(root_path))
    t_bin = best_of(lambda: io.read(bin_path, sample_period_ns=4.0))

    # memory: iterate over the whole file with step = n/10, vs one step read at once
    step = n // 10

    def peak(fn) -> int:
        gc.collect()
        tracemalloc.start()
        fn()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    def drain() -> None:
        for chunk in io.iterate(root_path, step_size=step, sample_period_ns=4.0):
            del chunk

    def one_step() -> None:
        next(io.iterate(root_path, step_size=step, sample_period_ns=4.0))

    def drain_bin() -> None:
        for chunk in io.iterate(bin_path, step_size=step, sample_period_ns=4.0):
            del chunk

    def drain_twice() -> None:  # the same file twice: a run 20x the step
        for chunk in io.iterate([root_path, root_path], step_size=step, sample_period_ns=4.0):
            del chunk

    peak_iter = peak(drain)
    peak_iter2 = peak(drain_twice)
    peak_step = peak(one_step)
    peak_bin_iter = peak(drain_bin)
    peak_read = peak(lambda: io.read(root_path, sample_period_ns=4.0))

    out = {
        "bench": "io",
        "events": n,
        "samples": ns,
        "root_file_mb": round(root_path.stat().st_size / 1e6, 1),
        "read_events_per_s": round(n / t_read),
        "uproot_default_ak_events_per_s": round(n / t_uproot),
        "uproot_default_subsample_events": sub,
        "np_load_events_per_s": round(n / t_npy),
        "speedup_vs_uproot_default": round(t_uproot / t_read, 1),
        "slowdown_vs_np_load": round(t_read / t_npy, 2),
        "inflate_only_1core_events_per_s": round(n / t_inflate),
        "read_over_inflate_only": round(t_read / t_inflate, 2),
        "uncompressed_read_events_per_s": round(n / t_read0),
        "uncompressed_slowdown_vs_np_load": round(t_read0 / t_npy, 2),
        "bin_read_events_per_s": round(n / t_bin),
        "bin_slowdown_vs_np_load": round(t_bin / t_npy, 2),
        "iterate_step_events": step,
        "iterate_peak_mb": round(peak_iter / 2**20, 1),
        "one_step_peak_mb": round(peak_step / 2**20, 1),
        "iterate_peak_over_one_step": round(peak_iter / peak_step, 2),
        "iterate_20x_step_peak_mb": round(peak_iter2 / 2**20, 1),
        "iterate_peak_20x_over_10x": round(peak_iter2 / peak_iter, 2),
        "largest_samples_basket_mb": round(max_basket / 2**20, 1),
        "bin_iterate_peak_mb": round(peak_bin_iter / 2**20, 1),
        "read_all_peak_mb": round(peak_read / 2**20, 1),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
