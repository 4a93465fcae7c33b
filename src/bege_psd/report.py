"""The analysis report: Markdown and HTML with the figures inline.

What to use when
----------------
- ``bege-psd report RESULTS_DIR`` or :func:`write_report` to (re-)make ``report.md`` and
  ``report.html`` of a results folder written by :func:`bege_psd.pipeline.run_pipeline`.
- :func:`build_blocks` if you want the report's content (headings, tables, figures) to render
  it yourself.

Content: the stages (ran / up to date / missing), the runs, event accounting (read, flagged by
reason, in range, kept per selector), the paper's Table 2 analogue (137Cs peak-to-Compton with
both definitions, uncertainties and peak survival), survival fractions of named lines, the 7Be
significance, the MDA before and after each cut, ROC AUCs, the models' provenance, and the
figures. When any input run is simulated, every section showing results says "SIMULATED DATA".
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from ._util import atomic_write_text

__all__ = ("ReportConfig", "build_blocks", "write_report")

#: the paper's Table 2 (Baccolo et al. 2025): 137Cs peak / Compton [355, 450] keV
PAPER_TABLE2: dict[str, float] = {"original": 0.238, "acm": 0.547, "gmm": 0.414}
NAMES: dict[str, str] = {"original": "Original", "acm": "ACM", "gmm": "GMM", "aoe": "A/E"}


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """Section ``[report]``."""

    title: str = field(default="bege-psd analysis report", metadata={"doc": "report heading"})
    formats: tuple[str, ...] = field(default=("md", "html"), metadata={"doc": "md and/or html"})
    embed_images: bool = field(
        default=True, metadata={"doc": "HTML: embed PNGs as data URIs (one self-contained file)"}
    )
    image_format: Literal["png", "pdf"] = field(
        default="png", metadata={"doc": "figures linked in Markdown"}
    )
    digits: int = field(default=3, metadata={"min": 1, "max": 8, "doc": "significant digits"})

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in ("md", "html")]
        if bad or not self.formats:
            msg = f"report.formats = {list(self.formats)}: allowed values: 'md', 'html' (at least one)"
            raise ValueError(msg)


# ---------------------------------------------------------------------------------------------
# content


@dataclasses.dataclass(frozen=True)
class Block:
    """One piece of the report: ``kind`` in heading / text / table / figure / banner."""

    kind: Literal["heading", "text", "table", "figure", "banner"]
    text: str = ""
    level: int = 2
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    path: str = ""


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "n/a"
        if x == 0:
            return "0"
        return f"{x:.{digits}g}"
    return str(x)


def _pm(v: Any, e: Any, digits: int) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if e is None or (isinstance(e, float) and not math.isfinite(e)):
        return _fmt(v, digits)
    return f"{_fmt(v, digits)} ± {_fmt(e, 2)}"


def _sim_note(results: Mapping[str, Any]) -> str:
    return " (SIMULATED DATA)" if results.get("simulated") else ""


def build_blocks(
    results: Mapping[str, Any], figures: Sequence[Path], config: ReportConfig
) -> list[Block]:
    """The report's content as a list of blocks (see :class:`Block`)."""
    d = config.digits
    sim = _sim_note(results)
    b: list[Block] = [Block("heading", config.title, level=1)]
    runs = results.get("runs", {})
    sim_runs = [w for w, i in runs.items() if i.get("simulated")]
    if results.get("simulated") and len(sim_runs) == len(runs):
        b.append(
            Block(
                "banner",
                "SIMULATED DATA: every number and figure in this report comes from the bege-psd detector simulation, not from a measurement.",
            )
        )
    elif results.get("simulated"):
        real = [w for w in runs if w not in sim_runs]
        b.append(
            Block(
                "banner",
                f"SIMULATED DATA: the {' and '.join(sim_runs)} run(s) are simulated (bege-psd detector simulation); the {' and '.join(real)} run(s) are measured. Results that depend on a simulated run (every model trained on it) are marked SIMULATED DATA.",
            )
        )
    b.append(Block("heading", "Runs"))
    rows: Any = []
    for which, info in runs.items():
        meta = info.get("metadata", {})
        rows.append(
            (
                which,
                info.get("path", "(not available)"),
                "simulated: "
                + f"{info.get('source')}, {info.get('n_events')} events, seed {info.get('seed')}"
                if info.get("simulated")
                else "measured",
                _fmt(meta.get("live_time_s"), d),
            )
        )
    b.append(Block("table", header=("run", "path", "origin", "live time [s]"), rows=tuple(rows)))

    stages = results.get("stages", [])
    b.append(Block("heading", "Stages"))
    b.append(
        Block(
            "table",
            header=("stage", "status", "seconds", "detail"),
            rows=tuple(
                (
                    s["name"],
                    {"skipped": "up to date (skipped)"}.get(s["status"], s["status"]),
                    _fmt(round(s.get("seconds", 0.0), 1)),
                    s.get("detail", ""),
                )
                for s in stages
            ),
        )
    )
    missing = [s["name"] for s in stages if s["status"] in ("missing", "failed")]
    if missing:
        b.append(
            Block(
                "text",
                "**Stages missing or failed:** "
                + ", ".join(missing)
                + ". Their results are absent from this report (see the detail column).",
            )
        )

    apply = results.get("apply", {})
    if apply:
        b.append(Block("heading", "Event accounting" + sim))
        sels = results.get("selectors", [])
        rows = []
        for which, r in apply.items():
            acc = r.get("accounting", {})
            flagged = (
                ", ".join(f"{k}: {_fmt(v)}" for k, v in acc.get("flagged", {}).items() if v)
                or "none"
            )
            quality = (
                ", ".join(f"{k}: {_fmt(v)}" for k, v in acc.get("quality", {}).items() if v)
                or "none"
            )
            rows.append(
                (
                    which,
                    _fmt(acc.get("read")),
                    flagged,
                    quality,
                    _fmt(acc.get("in_range")),
                    *(_fmt(acc.get("kept", {}).get(s)) for s in sels),
                )
            )
        b.append(
            Block(
                "table",
                header=(
                    "run",
                    "read",
                    "DAQ flags",
                    "quality flags",
                    "in [300, 2700] keV",
                    *(f"kept {NAMES.get(s, s)}" for s in sels),
                ),
                rows=tuple(rows),
            )
        )
        rows = []
        for which, r in apply.items():
            acc = r.get("accounting", {})
            n_in = acc.get("in_range", 0)
            for s in sels:
                kept = acc.get("kept", {}).get(s, 0)
                scored = acc.get("scored", {}).get(s)
                if scored is None:
                    continue
                rows.append(
                    (
                        which,
                        NAMES.get(s, s),
                        _fmt(n_in),
                        _fmt(kept),
                        _fmt(scored - kept),
                        _fmt(n_in - scored),
                        _fmt(kept / n_in if n_in else float("nan"), d),
                    )
                )
        if rows:
            b.append(
                Block(
                    "table",
                    header=(
                        "run",
                        "selector",
                        "in range",
                        "kept",
                        "rejected",
                        "not scored (flagged, no pulse)",
                        "kept fraction",
                    ),
                    rows=tuple(rows),
                )
            )
        b.append(
            Block(
                "text",
                "Nothing is dropped: in range = kept + rejected + not scored, for every selector. Flagged events stay in the friend tree with a NaN score (not kept); 'kept' counts events in the energy range with score >= threshold.",
            )
        )

    analysis = results.get("analysis", {})
    t2 = analysis.get("table2")
    if t2:
        b.append(Block("heading", "137Cs peak-to-Compton (the paper's Table 2)" + sim))
        rows = []
        for r in t2:
            sel = r["selection"]
            rows.append(
                (
                    NAMES.get(sel, sel),
                    _pm(r.get("pc_maxbin"), r.get("pc_maxbin_err"), d),
                    _fmt(r.get("pc_maxbin_improvement"), d),
                    _pm(r.get("pc_fit_kev"), r.get("pc_fit_kev_err"), d),
                    _fmt(r.get("pc_fit_kev_improvement"), d),
                    _pm(r.get("peak_survival"), r.get("peak_survival_err"), d),
                    _fmt(PAPER_TABLE2.get(sel), d),
                )
            )
        width = t2[0].get("bin_width_kev")
        b.append(
            Block(
                "table",
                header=(
                    "selection",
                    "P/C max-bin",
                    "x orig.",
                    "P/C fit [1/keV]",
                    "x orig.",
                    "peak survival",
                    "paper (max-bin)",
                ),
                rows=tuple(rows),
            )
        )
        b.append(
            Block(
                "text",
                f"P/C max-bin: the paper's definition, highest single-bin count in [660, 670] keV over the counts in [355, 450] keV (bins of {_fmt(width)} keV, whole ADC channels aligned on channel boundaries; the paper used 1-ADC-channel bins, and the max-bin value scales with the bin width). P/C fit: fitted net 137Cs area (Gaussian + step + linear, binned likelihood) over the Compton counts per keV in [355, 450] keV; bin-width independent. Peak survival: fitted area after the cut over before. A cut is only useful if the ratio improves at a reasonable peak survival.",
            )
        )
    for which in ("calibration", "sample"):
        lines = analysis.get(f"lines_{which}")
        if not lines:
            continue
        names = sorted({n for per in lines.values() for n in per})
        sels = [s for s in lines if s != "original"]
        b.append(Block("heading", f"Survival fractions, {which} run" + sim))
        rows = tuple(
            (
                n,
                _fmt(lines["original"].get(n, {}).get("net"), d),
                *(
                    _pm(lines[s].get(n, {}).get("fraction"), lines[s].get(n, {}).get("error"), d)
                    for s in sels
                ),
            )
            for n in names
        )
        b.append(
            Block(
                "table",
                header=("line", "net counts (no cut)", *(NAMES.get(s, s) for s in sels)),
                rows=rows,
            )
        )
        b.append(Block("heading", f"Minimum detectable activity, {which} run" + sim, level=3))

        def mda(s: str, n: str, lines: Mapping[str, Any] = lines) -> str:
            v = lines[s].get(n, {})
            return _fmt(v.get("mda_relative"), d) + (" †" if v.get("survival_from") else "")

        rows = tuple(
            (
                n,
                _fmt(lines["original"].get(n, {}).get("currie_ld_counts"), d),
                *(mda(s, n) for s in sels),
            )
            for n in names
        )
        refs = sorted(
            {
                v["survival_from"]
                for per in lines.values()
                for v in per.values()
                if v.get("survival_from")
            }
        )
        b.append(
            Block(
                "table",
                header=(
                    "line",
                    "Currie L_D [counts] (no cut)",
                    *(f"MDA {NAMES.get(s, s)} / no cut" for s in sels),
                ),
                rows=rows,
            )
        )
        b.append(
            Block(
                "text",
                "Net counts are sideband-subtracted (window ±2 keV; sidebands of 2 keV each beside it, or [1568, 1578] and [1600, 1610] keV for the DEP / 228Ac doublet, scaled to the window width). L_D = 2.71 + 4.65 sqrt(B) (Currie 1968); the MDA scales as L_D / (efficiency x peak survival), so the ratio after/before a cut is (L_D,cut / survival) / L_D,orig. Below 1 means the cut makes the line easier to detect."
                + (
                    f" † line not visible before the cut: its peak survival is taken from {', '.join(refs)}."
                    if refs
                    else ""
                ),
            )
        )
    be7 = analysis.get("be7")
    if be7 and any(be7.values()):
        b.append(Block("heading", "7Be 477.6 keV significance" + sim))
        rows = tuple(
            (
                NAMES.get(s, s),
                _pm(v.get("net"), v.get("net_err"), d),
                _fmt(v.get("bkg"), d),
                _fmt(v.get("significance"), d),
            )
            for s, v in be7.items()
            if v
        )
        b.append(
            Block(
                "table",
                header=("selection", "net counts", "background counts", "significance [sigma]"),
                rows=rows,
            )
        )
        b.append(
            Block(
                "text", "Significance = net / sqrt(B + var(B)) with B estimated from the sidebands."
            )
        )
    roc = analysis.get("roc_labels")
    if roc:
        b.append(Block("heading", "Classification quality on the 232Th run" + sim))
        truth = analysis.get("roc_truth", {})
        rows = tuple(
            (
                NAMES.get(s, s),
                _fmt(r.get("auc"), d),
                _fmt(truth.get(s, {}).get("auc"), d),
                _fmt(r.get("n_pos")),
                _fmt(r.get("n_neg")),
            )
            for s, r in roc.items()
        )
        b.append(
            Block(
                "table",
                header=(
                    "selector",
                    "AUC (energy-window labels)",
                    "AUC (truth: n_sites > 1)",
                    "MSE-window events",
                    "SSE-window events",
                ),
                rows=rows,
            )
        )
    models = results.get("models", {})
    if models:
        b.append(Block("heading", "Models' provenance"))
        rows = []
        for name, m in models.items():
            versions = m.get("versions", {})
            summ = m.get("summary", {})
            train = "; ".join(
                f"{k} {_fmt(v, d)}" for k, v in summ.items() if not isinstance(v, dict)
            )
            rows.append(
                (
                    NAMES.get(name, name),
                    m.get("path", ""),
                    _fmt(m.get("threshold"), d),
                    m.get("config_hash", "-"),
                    ", ".join(f"{k} {v}" for k, v in versions.items()) or "-",
                    _fmt(m.get("n_train_table")),
                    train or "-",
                )
            )
        b.append(
            Block(
                "table",
                header=(
                    "selector",
                    "model file",
                    "threshold",
                    "config hash",
                    "versions",
                    "training table events",
                    "training summary",
                ),
                rows=tuple(rows),
            )
        )
        b.append(
            Block(
                "text",
                "Models were trained on the calibration run"
                + (" (SIMULATED DATA)." if runs.get("calibration", {}).get("simulated") else "."),
            )
        )
    if figures:
        b.append(Block("heading", "Figures" + sim))
        for f in figures:
            b.append(
                Block(
                    "figure",
                    _caption(f.stem) + (" — Simulation" if results.get("simulated") else ""),
                    path=str(f),
                )
            )
    b.append(
        Block(
            "text",
            f"Configuration hash: `{results.get('config_hash', '-')}`. Results folder files: friends/ (ROOT friend trees, tree PSD), spectra/, export/ (TH1D, N42, Spe), figures/, models/, results.json.",
        )
    )
    return b


_CAPTIONS = {
    "fig04": "Fig. 4 analogue: 232Th spectrum with the label windows (MSE red, SSE yellow)",
    "fig07": "Fig. 7 analogue: [1500, 1650] keV before and after each cut (the DEP should vanish)",
    "fig08": "Fig. 8 analogue: 208Tl FEP/single-Compton ratio and kept fraction vs working point",
    "fig09b": "Fig. 9 analogue on simulation truth: ROC for MSE (n_sites > 1) vs SSE",
    "fig09": "Fig. 9 analogue: ROC on the energy-window labels",
    "fig10": "Fig. 10 analogue: Savitzky-Golay smoothing and derivative of an SSE (top) and an MSE (bottom)",
    "fig11": "Fig. 11 analogue: rise time, L1 distance and n_peaks for DEP (SSE-like) vs FEP (MSE-like) events",
    "fig12": "Fig. 12 analogue: score distributions on the 232Th run",
    "fig13": "Fig. 13 analogue: sample spectrum 300-700 keV, original and after each cut",
    "fig14": "Fig. 14 analogue: close-up 450-510 keV around 7Be 477.6 keV",
    "survival": "Survival fractions of named lines",
    "mda": "MDA after each cut relative to no cut",
}


def _caption(stem: str) -> str:
    for key in sorted(_CAPTIONS, key=len, reverse=True):
        if stem.startswith(key):
            return f"{_CAPTIONS[key]} ({stem})"
    return stem


# ---------------------------------------------------------------------------------------------
# rendering


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block], root: Path) -> str:
    out: list[str] = []
    for blk in blocks:
        if blk.kind == "heading":
            out.append(f"{'#' * blk.level} {blk.text}\n")
        elif blk.kind == "banner":
            out.append(f"> **{blk.text}**\n")
        elif blk.kind == "text":
            out.append(blk.text + "\n")
        elif blk.kind == "table":
            out.append("| " + " | ".join(_md_cell(h) for h in blk.header) + " |")
            out.append("|" + "---|" * len(blk.header))
            out.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in blk.rows)
            out.append("")
        elif blk.kind == "figure":
            rel = os.path.relpath(blk.path, root)
            out.append(f"![{blk.text}]({rel})\n\n*{blk.text}*\n")
    return "\n".join(out)


def render_html(blocks: Sequence[Block], root: Path, *, embed: bool, title: str) -> str:
    e = html.escape
    body: list[str] = []
    for blk in blocks:
        if blk.kind == "heading":
            body.append(f"<h{blk.level}>{e(blk.text)}</h{blk.level}>")
        elif blk.kind == "banner":
            body.append(f'<p class="banner">{e(blk.text)}</p>')
        elif blk.kind == "text":
            text = e(blk.text)
            # the two Markdown marks used in text blocks
            while "**" in text:
                text = text.replace("**", "<strong>", 1).replace("**", "</strong>", 1)
            while text.count("`") >= 2:
                text = text.replace("`", "<code>", 1).replace("`", "</code>", 1)
            body.append(f"<p>{text}</p>")
        elif blk.kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in blk.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in blk.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif blk.kind == "figure":
            p = Path(blk.path)
            if embed and p.suffix == ".png" and p.exists():
                src = "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii")
            else:
                src = e(os.path.relpath(p, root))
            body.append(
                f'<figure><img src="{src}" alt="{e(blk.text)}"><figcaption>{e(blk.text)}</figcaption></figure>'
            )
    style = (
        "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:right}"
        "th{background:#eee}td:first-child{text-align:left}img{max-width:100%}"
        ".banner{background:#fff3cd;border:2px solid #e0a800;padding:.6em;font-weight:bold}"
        "figure{margin:1.5em 0}figcaption{font-style:italic}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(
    results_dir: str | os.PathLike[str],
    results: Mapping[str, Any] | None = None,
    config: ReportConfig | None = None,
) -> tuple[Path | None, Path | None]:
    """Write ``report.md`` and/or ``report.html`` into ``results_dir`` (atomically).

    ``results`` defaults to the folder's ``results.json``; the figures are the PNGs (or PDFs,
    ``config.image_format``) under ``figures/``. Returns the two paths (``None`` for a format
    not requested).
    """
    root = Path(results_dir)
    config = config or ReportConfig()
    if results is None:
        p = root / "results.json"
        if not p.exists():
            from .errors import BegePsdError

            msg = f"{root} has no results.json; run `bege-psd run CONFIG` first"
            raise BegePsdError(msg)
        results = json.loads(p.read_text())
    figures = (
        sorted((root / "figures").glob(f"*.{config.image_format}"))
        if (root / "figures").is_dir()
        else []
    )
    blocks = build_blocks(results, figures, config)
    md_path = html_path = None
    if "md" in config.formats:
        md_path = root / "report.md"
        atomic_write_text(md_path, render_markdown(blocks, root))
    if "html" in config.formats:
        html_path = root / "report.html"
        atomic_write_text(
            html_path, render_html(blocks, root, embed=config.embed_images, title=config.title)
        )
    return md_path, html_path
