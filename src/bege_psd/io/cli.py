"""``bege-psd info SOURCE``: a summary of a CoMPASS run (files, events, channels, waveform
length, sample period, flag accounting, live time), streamed chunk by chunk."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ("register", "summarize")


def register(subparsers: Any) -> None:
    """Add the ``info`` subcommand."""
    p = subparsers.add_parser(
        "info",
        help="summarize a CoMPASS run (file, list of split files, or run folder)",
        description="Summarize a CoMPASS run: files, events, channels, waveform lengths, "
        "sample period, flag accounting, live and real time.",
    )
    p.add_argument(
        "source", nargs="+", help="a run folder, a data file, or the files of a split run"
    )
    p.add_argument("--format", choices=["auto", "root", "bin", "csv"], default="auto")
    p.add_argument("--step-size", type=int, default=100_000, help="events per chunk")
    p.add_argument("--skip-errors", action="store_true", help="skip and count damaged input")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)


def summarize(source: Any, **opts: Any) -> dict[str, Any]:
    """The run summary printed by ``bege-psd info``, as a dict."""
    import awkward as ak
    import numpy as np

    from . import flags, iterate, read_metadata
    from .reader import find_run_files

    files = find_run_files(source)
    meta = read_metadata(source)
    n = 0
    channels: dict[int, int] = {}
    lengths: dict[int, int] = {}
    acc = None
    skipped: list[dict[str, Any]] = []
    period = None
    polarity = None
    t_min = t_max = None
    for chunk in iterate(source, **opts):
        n += len(chunk)
        period, polarity = chunk.attrs["sample_period_ns"], chunk.attrs["polarity"]
        skipped += chunk.attrs["skipped"]
        if not len(chunk):
            continue
        ch = np.asarray(chunk["channel"])
        for c, k in zip(*np.unique(ch, return_counts=True), strict=True):
            channels[int(c)] = channels.get(int(c), 0) + int(k)
        wl = ak.to_numpy(ak.num(chunk["waveform"], axis=1))
        for length, k in zip(*np.unique(wl, return_counts=True), strict=True):
            lengths[int(length)] = lengths.get(int(length), 0) + int(k)
        a = flags.accounting(chunk["flags"])
        acc = a if acc is None else acc + a
        ts = np.asarray(chunk["timestamp_ps"])
        t_min = int(ts.min()) if t_min is None else min(t_min, int(ts.min()))
        t_max = int(ts.max()) if t_max is None else max(t_max, int(ts.max()))
    return {
        "source": str(source),
        "format": files.fmt,
        "files": [str(f) for f in files.files],
        "n_events": n,
        "events_per_channel": channels,
        "waveform_lengths": lengths,
        "sample_period_ns": period,
        "polarity": polarity,
        "record_length": meta.record_length,
        "model": meta.model,
        "live_time_s": meta.live_time_s,
        "real_time_s": meta.real_time_s,
        "timestamp_span_s": (t_max - t_min) * 1e-12
        if t_min is not None and t_max is not None
        else None,
        "calibration": meta.calibration,
        "flags": acc.to_dict() if acc is not None else None,
        "skipped": skipped,
    }


def _run(args: argparse.Namespace) -> int:
    source = args.source[0] if len(args.source) == 1 else args.source
    opts: dict[str, Any] = {"format": args.format, "step_size": args.step_size}
    if args.skip_errors:
        opts["on_error"] = "skip"
    s = summarize(source, **opts)
    if args.json:
        print(json.dumps(s, default=str))
        return 0
    lines = [
        f"source           {s['source']} ({s['format']}, {len(s['files'])} file(s))",
        *(f"  file           {f}" for f in s["files"]),
        f"events           {s['n_events']}",
        f"channels         {', '.join(f'{c}: {k}' for c, k in sorted(s['events_per_channel'].items())) or '-'}",
        f"waveform length  {', '.join(f'{n} samples: {k}' for n, k in sorted(s['waveform_lengths'].items())) or '-'}",
        f"sample period    {s['sample_period_ns']} ns"
        + (f", record length {s['record_length']} samples" if s["record_length"] else ""),
        f"polarity         {s['polarity']}",
        f"live / real time {s['live_time_s']} s / {s['real_time_s']} s"
        + (
            f" (timestamps span {s['timestamp_span_s']:.3f} s)"
            if s["timestamp_span_s"] is not None
            else ""
        ),
        f"calibration      {s['calibration']}",
    ]
    fl = s["flags"]
    if fl:
        reasons = ", ".join(f"{k} {v}" for k, v in fl["by_reason"].items())
        lines.append(
            f"flags            clean {fl['n_clean']}, flagged {fl['n_flagged']} ({reasons})"
        )
        lines.append(
            f"flag bits        {', '.join(f'{k} {v}' for k, v in fl['by_bit'].items()) or '-'}"
        )
    if s["skipped"]:
        lines.append(
            f"skipped          {len(s['skipped'])} damaged part(s): {s['skipped'][0]['reason']} ..."
        )
    print("\n".join(lines))
    return 0
