"""``bege-psd run CONFIG`` (the whole chain) and ``bege-psd report RESULTS_DIR``.

``run`` mirrors :func:`bege_psd.pipeline.run_pipeline`; ``report`` mirrors
:func:`bege_psd.report.write_report` (re-make the report of an existing results folder, e.g.
after changing ``[report]``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ("register", "run_overrides")


def run_overrides(args: argparse.Namespace) -> dict[str, str]:
    """``[run]`` keys set on the command line (``--results-dir``, ``--executor``,
    ``--scheduler``); a scheduler address alone implies ``executor = "dask"``."""
    override = {
        key: value
        for key, value in (
            ("results_dir", args.results_dir),
            ("executor", args.executor),
            ("scheduler", args.scheduler),
        )
        if value
    }
    if args.scheduler and not args.executor:
        override["executor"] = "dask"
    return override


def _run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .pipeline import run_pipeline

    cfg = load_config(args.config)
    override = run_overrides(args)
    if override:
        import dataclasses

        run = dataclasses.replace(cfg.section("run"), **override)
        cfg = dataclasses.replace(cfg, sections={**cfg.sections, "run": run})
    progress = not (args.quiet or os.environ.get("CI"))
    res = run_pipeline(cfg, progress=progress, force=args.force)
    out = sys.stdout
    if not args.quiet:
        for s in res.stages:
            extra = f"  ({s.detail})" if s.status in ("missing", "failed") and s.detail else ""
            print(f"  {s.name:<24} {s.status:<8} {s.seconds:7.1f} s{extra}", file=out)
    if res.missing:
        print(f"stages not available: {', '.join(res.missing)}", file=out)
    report = res.report_html or res.report_md
    if report is not None:
        print(f"report: {report.resolve()}", file=out)
        if res.report_md is not None and res.report_html is not None:
            print(f"        {res.report_md.resolve()}", file=out)
    else:
        print(f"no report written; results in {res.results_dir.resolve()}", file=out)
    return 0


def _report(args: argparse.Namespace) -> int:
    from .config import from_mapping
    from .report import ReportConfig, write_report

    config = None
    if args.config:
        from .config import load_config

        config = load_config(args.config).section("report")
    else:
        import json
        from pathlib import Path

        p = Path(args.results_dir) / "config.json"
        if p.exists():
            stored = json.loads(p.read_text()).get("report")
            if stored is not None:
                config = from_mapping(ReportConfig, stored, where="report")
    md, html = write_report(args.results_dir, None, config)
    for written in (md, html):
        if written is not None:
            print(f"report: {written.resolve()}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``run`` and ``report`` to the ``bege-psd`` command line."""
    p = subparsers.add_parser(
        "run",
        help="the whole chain from a TOML config: runs -> models -> friend trees, spectra, report",
        description=(
            "Calibration run -> features -> energy calibration -> SSE template -> train A/E, GMM, "
            "ACM -> apply to calibration and sample runs -> spectra, fits, metrics -> exports, "
            "figures, report. Runs without a path in [run] are simulated. Stages whose stamp "
            "matches the configuration are skipped (resume)."
        ),
    )
    p.add_argument("config", help="TOML configuration (e.g. config/demo.toml)")
    p.add_argument("--results-dir", help="override [run] results_dir")
    p.add_argument("--force", action="store_true", help="re-run every stage, ignoring stamps")
    p.add_argument(
        "--executor",
        choices=("local", "dask"),
        help="where the apply stage (features, scores, spectra per chunk) runs; "
        "overrides [run] executor (default local)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="dask scheduler address, e.g. tcp://host:8786 (implies --executor dask); "
        "without it --executor dask starts a LocalCluster of [run] dask_workers processes",
    )
    p.set_defaults(func=_run)

    r = subparsers.add_parser(
        "report",
        help="(re-)write report.md and report.html of a results folder",
        description="Re-make the Markdown and HTML report of a results folder from its results.json and figures.",
    )
    r.add_argument("results_dir", help="results folder written by `bege-psd run`")
    r.add_argument(
        "--config", help="TOML file whose [report] section to use (default: the stored one)"
    )
    r.set_defaults(func=_report)
