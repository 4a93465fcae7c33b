"""The whole analysis from one TOML configuration: calibration run -> models -> sample run -> report.

What to use when
----------------
- ``bege-psd run CONFIG`` (or :func:`run_pipeline`) to go from CoMPASS runs, or simulated ones,
  to a results folder with friend trees, spectra, fits, figures and a report.
- The single stages (:mod:`bege_psd.io`, :mod:`bege_psd.dsp`, :mod:`bege_psd.select`, ...)
  when you want one step in your own script; this module only chains them.

The chain (each item is one *stage*)::

    simulate (only where a run path is not given)
    calibrate        energy_adc of the calibration run -> keV   (calibration.json)
    template         mean SSE pulse from the DEP window         (sse_template.npz)
    features         per run, chunk by chunk                     (features/<run>.root)
    train_<sel>      A/E, GMM, ACM on the calibration run        (models/)
    apply            per run: scores, masks, friend tree, spectra (friends/, spectra/)
    analyse          fits, peak-to-Compton, survival, 7Be, MDA, ROC (results.json)
    export           TH1D / N42 / Spe spectra, fit JSON          (export/)
    figures          mplhep PNG + PDF                            (figures/)
    report           Markdown + HTML                             (report.md, report.html)

Every stage writes its outputs atomically plus a JSON stamp (``stamps/<stage>.json``) holding a
hash of the configuration sections it depends on, of the stamps of the stages it reads, and of
the source code of the package parts it runs (so that new code is not hidden by old results). With
``[run] resume = true`` a stage whose stamp matches and whose outputs exist is skipped, so that
changing only ``[report]`` re-makes only the report, and changing ``[gmm]`` retrains only the
GMM and what follows it.

Runs are streamed with :func:`bege_psd.io.iterate` (``[run] chunk_size`` events at a time); what
is kept whole in memory is one float per event and feature (features, scores, masks), never
the waveforms of a whole run.

Executors (``[run] executor``, ``bege-psd run --executor local|dask [--scheduler ADDRESS]``)
-------------------------------------------------------------------------------------------
``local`` runs everything here. ``dask`` runs the *apply* stage's per-chunk work on a
``dask.distributed`` cluster (``[run] scheduler``, or a ``LocalCluster`` of ``[run]
dask_workers`` processes): :func:`bege_psd.stream.analyse_chunk` computes features, energies
and scores from the waveforms on the workers (via :func:`bege_psd.stream.iterate_dask`); the
tables come back in entry order and the friend tree, spectra
(:func:`bege_psd.stream.spectra_of`) and accounting are written here by the same code as for
the local executor, so both give identical outputs (tested). Simulation, calibration, the
template, the calibration run's features stage (they train the models) and training stay
local; the sample run's features stage is skipped (the workers compute them). The workers
must see the run, ``models/`` and the results folder at the same paths.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ._util import atomic_path, atomic_write_text, stable_hash
from .config import Config, load_config, to_mapping
from .errors import BegePsdError, ConfigError

__all__ = (
    "SELECTORS",
    "PipelineResult",
    "RunConfig",
    "StageRecord",
    "run_pipeline",
)

log = logging.getLogger(__name__)

#: selector name -> ``module:Class``; each class takes ``(config, labels)``
SELECTORS: dict[str, tuple[str, str]] = {
    "aoe": ("bege_psd.select.aoe:AoESelector", "aoe"),
    "gmm": ("bege_psd.select.gmm:GMMSelector", "gmm"),
    "acm": ("bege_psd.select.acm:ACMSelector", "acm"),
}

#: package parts whose source is part of a stage's stamp (see ``_Context.stage``)
SIM_CODE: tuple[str, ...] = (
    "sim",
    "io/writer.py",
    "io/compass_root.py",
    "io/compass_bin.py",
    "io/settings.py",
)

#: the two runs of an analysis, in processing order
RUNS: tuple[str, ...] = ("calibration", "sample")

#: named lines whose survival fractions are reported (keV); escape peaks only for 232Th
PEAKS_KEV: dict[str, float] = {
    "Tl-208 FEP 2614.5": 2614.51,
    "Tl-208 SEP 2103.5": 2103.51,
    "Tl-208 DEP 1592.5": 1592.51,
    "Ac-228 1588.2": 1588.19,
    "Tl-208 583.2": 583.19,
    "Cs-137 661.7": 661.657,
    "Be-7 477.6": 477.6035,
    "K-40 1460.8": 1460.82,
}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Section ``[run]``: which runs to analyse, where results go, which selectors to train.

    A run path left empty is simulated (``bege_psd.sim.simulate``) with the given source,
    number of events and seed, into ``data_dir``; a simulated run is reused when its stamp
    matches. ``calibration_run`` and ``sample_run``, when relative, are resolved against the
    configuration file's folder; ``results_dir`` and ``data_dir`` are relative to the current
    directory (so that ``make demo`` writes under the repository's ``results/`` and
    ``generated/``).
    """

    calibration_run: str = field(
        default="", metadata={"doc": "CoMPASS run folder or file of the 232Th run; '' = simulate"}
    )
    sample_run: str = field(
        default="", metadata={"doc": "CoMPASS run folder or file of the sample; '' = simulate"}
    )
    calibration_source: str = field(default="th232", metadata={"doc": "sim source if simulated"})
    sample_source: str = field(default="cryoconite", metadata={"doc": "sim source if simulated"})
    calibration_events: int = field(default=200_000, metadata={"min": 100})
    sample_events: int = field(default=200_000, metadata={"min": 100})
    seed: int = field(default=0, metadata={"min": 0})
    sim_format: Literal["root", "bin", "csv"] = "root"
    data_dir: str = field(default="generated/runs", metadata={"doc": "where simulated runs go"})
    results_dir: str = field(default="results/default", metadata={"doc": "one folder per analysis"})
    selectors: tuple[str, ...] = field(
        default=("aoe", "gmm", "acm"), metadata={"doc": "which of aoe, gmm, acm to train"}
    )
    chunk_size: int = field(default=50_000, metadata={"min": 1, "doc": "events per chunk"})
    resume: bool = field(default=True, metadata={"doc": "skip stages whose stamp matches"})
    acm_train_max_events: int = field(
        default=300_000,
        metadata={"min": 100, "doc": "events with waveforms handed to the ACM (labelled first)"},
    )
    #: spectrum bin width, rounded to a whole number of ADC channels (bins are aligned on
    #: channel boundaries; 0.2 keV = 1 channel of the simulated digitizer, the paper's binning)
    bin_width_kev: float = field(default=0.2, metadata={"min": 0.01, "max": 10.0})
    energy_max_kev: float = field(default=3000.0, metadata={"min": 100.0})
    export_formats: tuple[str, ...] = field(
        default=("root", "n42", "spe"), metadata={"doc": "spectrum exports: root, n42, spe"}
    )
    figures: bool = field(default=True, metadata={"doc": "make the mplhep figures"})
    executor: Literal["local", "dask"] = field(
        default="local",
        metadata={"doc": "where the apply stage (scores, spectra) runs: here, or on dask"},
    )
    scheduler: str = field(
        default="",
        metadata={"doc": "dask scheduler address (tcp://host:8786); '' = a LocalCluster here"},
    )
    dask_workers: int = field(
        default=2, metadata={"min": 1, "doc": "workers of the LocalCluster (no scheduler given)"}
    )

    def __post_init__(self) -> None:
        unknown = [s for s in self.selectors if s not in SELECTORS]
        if unknown:
            msg = (
                f"run.selectors = {list(self.selectors)}: {unknown[0]!r} is not a selector; "
                f"allowed values: {', '.join(map(repr, SELECTORS))}"
            )
            raise ValueError(msg)
        if len(set(self.selectors)) != len(self.selectors):
            msg = f"run.selectors = {list(self.selectors)}: a selector is listed twice"
            raise ValueError(msg)
        bad = [f for f in self.export_formats if f not in ("root", "n42", "spe")]
        if bad:
            msg = f"run.export_formats: {bad[0]!r} is not allowed; allowed values: 'root', 'n42', 'spe'"
            raise ValueError(msg)


@dataclasses.dataclass(frozen=True)
class StageRecord:
    """What happened to one stage: ``ran``, ``skipped`` (stamp matched) or ``missing``."""

    name: str
    status: Literal["ran", "skipped", "missing", "failed"]
    seconds: float = 0.0
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """Where everything landed."""

    results_dir: Path
    report_md: Path | None
    report_html: Path | None
    stages: tuple[StageRecord, ...]
    results: Mapping[str, Any]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages if s.status in ("missing", "failed"))


# ---------------------------------------------------------------------------------------------
# small helpers


class _Missing(Exception):
    """A stage cannot run because a module of the package is not there (yet)."""


def _import(spec: str) -> Any:
    module, _, name = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (
            exc.name == module
            or module.startswith(exc.name + ".")
            or exc.name.startswith("bege_psd")
        ):
            raise _Missing(f"module {module} is not available ({exc})") from exc
        raise
    if not name:
        return mod
    try:
        return getattr(mod, name)
    except AttributeError as exc:
        raise _Missing(f"{module} has no {name}") from exc


def _file_fingerprint(path: Path) -> dict[str, Any]:
    """Identity of an input (paths, sizes, mtimes) for stamps; folders list their files."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {
            "dir": str(path),
            "files": [
                [str(p.relative_to(path)), p.stat().st_size, int(p.stat().st_mtime)] for p in files
            ],
        }
    if path.exists():
        st = path.stat()
        return {"file": str(path), "size": st.st_size, "mtime": int(st.st_mtime)}
    return {"missing": str(path)}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)


def _dump_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, default=_json_default, allow_nan=True) + "\n")


def _np(values: Any, dtype: Any = np.float64) -> NDArray[Any]:
    import awkward as ak

    if isinstance(values, ak.Array):
        values = ak.to_numpy(values, allow_missing=False)
    return np.asarray(values, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# the stage runner


class _Context:
    """State shared by the stages of one pipeline run."""

    def __init__(self, config: Config, *, progress: bool, force: bool) -> None:
        self.config = config
        self.run: RunConfig = config.section("run")
        self.results_dir = Path(self.run.results_dir)
        self.base = config.path.parent if config.path is not None else Path.cwd()
        self.progress = progress
        self.force = force or not self.run.resume
        self.stages: list[StageRecord] = []
        self.stamps: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self._cluster: Any = None

    def dask_scheduler(self) -> str:
        """Address of the dask scheduler of the apply stages: ``[run] scheduler``, or a
        ``LocalCluster`` started on first use and shared by both runs' apply stages (so the
        workers load TensorFlow and the models once); :meth:`close` stops it."""
        if self.run.scheduler:
            return self.run.scheduler
        if self._cluster is None:
            from .errors import require

            require("distributed", "dask")
            from distributed import LocalCluster

            self._cluster = LocalCluster(
                n_workers=self.run.dask_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
        return str(self._cluster.scheduler_address)

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def path(self, *parts: str) -> Path:
        return self.results_dir.joinpath(*parts)

    def stage(
        self,
        name: str,
        sections: Sequence[str],
        *,
        after: Sequence[str] = (),
        extra: Any = None,
        outputs: Sequence[Path] = (),
        func: Callable[[], Any],
        stamp_dir: Path | None = None,
        optional: bool = False,
        code: Sequence[str] = (),
    ) -> Any:
        """Run ``func`` unless its stamp matches; return its (JSON) result or the stamped one."""
        key = stable_hash(
            {
                "sections": {s: to_mapping(self.config.section(s)) for s in sections},
                "after": {a: self.stamps.get(a, "absent") for a in after},
                "extra": extra,
                "code": _source_hash(*code) if code else None,
            }
        )
        stamp_path = (stamp_dir or self.path("stamps")) / f"{name}.json"
        if not self.force and stamp_path.exists() and all(Path(o).exists() for o in outputs):
            try:
                stamp = json.loads(stamp_path.read_text())
            except json.JSONDecodeError:
                stamp = {}
            if stamp.get("hash") == key:
                log.info("stage %s: up to date (stamp %s), skipped", name, key)
                self.stamps[name] = key
                self.stages.append(StageRecord(name, "skipped", 0.0, str(stamp_path)))
                return stamp.get("result")
        missing_after = [a for a in after if a not in self.stamps]
        if missing_after:
            detail = f"needs stage(s) {', '.join(missing_after)}"
            log.warning("stage %s: not run, %s", name, detail)
            self.stages.append(StageRecord(name, "missing", 0.0, detail))
            return None
        log.info("stage %s: running", name)
        t0 = time.perf_counter()
        try:
            result = func()
        except _Missing as exc:
            log.warning("stage %s: not available: %s", name, exc)
            self.stages.append(StageRecord(name, "missing", time.perf_counter() - t0, str(exc)))
            return None
        except BegePsdError as exc:
            if not optional:
                raise
            # one selector that cannot be trained must not stop the others
            log.error("stage %s failed: %s", name, exc)
            self.stages.append(StageRecord(name, "failed", time.perf_counter() - t0, str(exc)))
            return None
        seconds = time.perf_counter() - t0
        _dump_json(
            stamp_path,
            {
                "stage": name,
                "hash": key,
                "sections": list(sections),
                "after": {a: self.stamps.get(a) for a in after},
                "outputs": [str(o) for o in outputs],
                "seconds": round(seconds, 3),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "result": result,
            },
        )
        self.stamps[name] = key
        self.stages.append(StageRecord(name, "ran", seconds))
        log.info("stage %s: done in %.1f s", name, seconds)
        return result


# ---------------------------------------------------------------------------------------------
# stages


def _resolve_run(ctx: _Context, which: str) -> tuple[Path | None, dict[str, Any]]:
    """Path of the calibration or sample run, simulating it when no path is configured."""
    run = ctx.run
    given = getattr(run, f"{which}_run")
    if given:
        p = Path(given)
        if not p.is_absolute():
            p = ctx.base / p
        if not p.exists():
            msg = f"run.{which}_run = {given!r}: {p} does not exist (leave it empty to simulate the run)"
            raise ConfigError(msg)
        ctx.stamps[f"input_{which}"] = stable_hash(_file_fingerprint(p))
        # a run written by bege_psd.sim carries its truth file: label its results as simulated
        truth = _truth_path(p)
        info: dict[str, Any] = {"path": str(p), "simulated": truth is not None}
        if truth is not None:
            info["truth"] = str(truth)
            log.info("%s: %s found, results will be labelled as simulated", p, truth.name)
        return p, info

    source = getattr(run, f"{which}_source")
    n_events: int = getattr(run, f"{which}_events")
    seed = run.seed + (0 if which == "calibration" else 1)
    sim_key = stable_hash(
        {
            "sim": to_mapping(ctx.config.section("sim")),
            "source": source,
            "n": n_events,
            "seed": seed,
            "fmt": run.sim_format,
            "code": _source_hash(*SIM_CODE),
        }
    )
    out_dir = Path(run.data_dir) / f"{which}_{source}_{n_events}_s{seed}_{sim_key[:8]}"
    info = {"simulated": True, "source": source, "n_events": n_events, "seed": seed}

    def simulate() -> dict[str, Any]:
        sim = _import("bege_psd.sim:simulate")
        kw = {"progress": ctx.progress} if _accepts(sim, "progress") else {}
        path = sim(
            source,
            n_events,
            out_dir,
            fmt=run.sim_format,
            seed=seed,
            config=ctx.config.section("sim"),
            **kw,
        )
        return {"path": str(path)}

    res = ctx.stage(
        f"simulate_{which}",
        ["sim"],
        extra={"source": source, "n": n_events, "seed": seed, "fmt": run.sim_format},
        outputs=[out_dir],
        func=simulate,
        stamp_dir=out_dir.parent / "stamps" / out_dir.name,
        code=SIM_CODE,
    )
    if res is None:
        return None, info
    ctx.stamps[f"input_{which}"] = ctx.stamps[f"simulate_{which}"]
    return Path(res["path"]), {**info, "path": res["path"]}


def _count_events(source: Path, io_cfg: Any) -> int | None:
    """Number of events of a run when it is cheap to know (ROOT files), for progress bars."""
    try:
        from .io import find_run_files

        files = find_run_files(source, io_cfg)
        if files.fmt != "root":
            return None
        import uproot

        total = 0
        for f in files.files:
            with uproot.open(f) as rf:
                trees = [k for k, c in rf.classnames(cycle=False).items() if c == "TTree"]
                if not trees:
                    return None
                total += int(rf[io_cfg.tree or trees[0]].num_entries)
        return total
    except Exception:  # only a progress-bar nicety: never fail a run for it
        return None


def _iterate(ctx: _Context, source: Path, desc: str, **opts: Any) -> Iterator[Any]:
    iterate = _import("bege_psd.io:iterate")
    io_cfg = dataclasses.replace(ctx.config.section("io"), step_size=ctx.run.chunk_size, **opts)
    if not ctx.progress:
        yield from iterate(source, options=io_cfg)
        return
    from tqdm.auto import tqdm

    with tqdm(
        total=_count_events(source, io_cfg),
        desc=desc,
        unit="ev",
        unit_scale=True,
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        for chunk in iterate(source, options=io_cfg):
            yield chunk
            bar.update(len(chunk))


def _truth_path(run_path: Path) -> Path | None:
    """``<run stem>_truth.root`` written by the simulator, if there is one."""
    cands = (
        sorted(run_path.rglob("*_truth.root"))
        if run_path.is_dir()
        else sorted(run_path.parent.glob("*_truth.root"))
    )
    return cands[0] if cands else None


def _metadata(path: Path) -> Any:
    try:
        return _import("bege_psd.io:read_metadata")(path)
    except _Missing:
        return None


def _stage_calibrate(ctx: _Context, cal_path: Path) -> dict[str, Any]:
    """Energy calibration from the 232Th run (falls back to run.info coefficients)."""
    energies = [
        _np(chunk["energy_adc"], np.float64)
        for chunk in _iterate(ctx, cal_path, "calibration: energies")
    ]
    energy_adc = np.concatenate(energies) if energies else np.zeros(0)
    out = ctx.path("calibration.json")
    try:
        calib = _import("bege_psd.calib")
        cal_cfg = ctx.config.section("calib")
        cal = (
            calib.calibrate(energy_adc, None, config=cal_cfg)
            if _accepts(calib.calibrate, "config")
            else calib.calibrate(energy_adc, None)
        )
        data = {"method": "bege_psd.calib.calibrate", "calibration": cal.to_dict()}
    except _Missing as exc:
        meta = _metadata(cal_path)
        coeffs = getattr(meta, "calibration", None)
        if coeffs is None:
            raise _Missing(f"no bege_psd.calib and no calibration in run.info ({exc})") from exc
        data = {
            "method": "run.info CoMPASS coefficients (bege_psd.calib not available)",
            "poly": list(coeffs),
        }
    _dump_json(out, data)
    return {"n_events": int(energy_adc.size), "method": data["method"]}


def _accepts(func: Callable[..., Any], name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _load_calibration(ctx: _Context) -> Callable[[NDArray[Any]], NDArray[np.float64]]:
    data = json.loads(ctx.path("calibration.json").read_text())
    if "calibration" in data:
        calib = _import("bege_psd.calib")
        cal = calib.Calibration.from_dict(data["calibration"])
        return lambda adc: np.asarray(
            cal.apply(np.asarray(adc, dtype=np.float64)), dtype=np.float64
        )
    c = [float(x) for x in data["poly"]]
    return lambda adc: (
        c[0]
        + c[1] * np.asarray(adc, dtype=np.float64)
        + c[2] * np.asarray(adc, dtype=np.float64) ** 2
    )


def _stage_template(ctx: _Context, cal_path: Path) -> dict[str, Any]:
    """Mean SSE pulse from the DEP window of the calibration run."""
    import awkward as ak

    dsp = _import("bege_psd.dsp")
    to_kev = _load_calibration(ctx)
    lo, hi = ctx.config.section("labels").dep
    picked = []
    attrs: dict[str, Any] = {}
    for chunk in _iterate(ctx, cal_path, "template: DEP window"):
        e = to_kev(_np(chunk["energy_adc"]))
        sel = (e >= lo) & (e <= hi)
        if sel.any():
            picked.append(chunk[sel])
            attrs = dict(chunk.attrs)
    if not picked:
        msg = f"no event of {cal_path} in the DEP window [{lo}, {hi}] keV; cannot build the SSE template"
        raise BegePsdError(msg)
    events = ak.concatenate(picked)
    _set_attrs(events, attrs)
    energy = to_kev(_np(events["energy_adc"]))
    tmpl = dsp.SSETemplate.build(events, energy, (lo, hi), ctx.config.section("dsp"))
    out = ctx.path("models", "sse_template.npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmpl.save(out)
    return {"n_events": len(events), "window_kev": [lo, hi], "path": str(out)}


def _feature_columns(feats: Any) -> dict[str, NDArray[Any]]:
    cols: dict[str, NDArray[Any]] = {}
    for name in feats.fields:
        arr = _np(feats[name], None)
        if arr.ndim == 1:
            cols[name] = arr
    return cols


def _stage_features(ctx: _Context, which: str, run_path: Path) -> dict[str, Any]:
    """Features of every event, chunk by chunk, into ``features/<run>.root`` (entry-aligned)."""
    from .io.friend import FriendWriter

    dsp = _import("bege_psd.dsp")
    to_kev = _load_calibration(ctx)
    tmpl_path = ctx.path("models", "sse_template.npz")
    template = dsp.SSETemplate.load(tmpl_path) if tmpl_path.exists() else None
    out = ctx.path("features", f"{which}.root")
    n = 0
    with FriendWriter(out, "Features", source=str(run_path), metadata={"stage": "features"}) as w:
        for chunk in _iterate(ctx, run_path, f"{which}: features"):
            feats = dsp.features(chunk, ctx.config.section("dsp"), template=template)
            cols = _feature_columns(feats)
            cols["energy_kev"] = to_kev(_np(chunk["energy_adc"]))
            cols["flags"] = _np(chunk["flags"], np.uint32)
            w.extend(cols, entry_start=n)
            n += len(chunk)
    return {"n_events": n, "path": str(out)}


def _read_table(path: Path, tree: str = "Features") -> Any:
    import awkward as ak
    import uproot

    with uproot.open(path) as f:
        arrays = f[tree].arrays(library="ak")
    return ak.Array(arrays)


def _make_selector(ctx: _Context, name: str) -> Any:
    spec, section = SELECTORS[name]
    cls = _import(spec)
    if _accepts(cls, "labels"):
        return cls(ctx.config.section(section), labels=ctx.config.section("labels"))
    return cls(ctx.config.section(section))


def _model_path(ctx: _Context, name: str) -> Path:
    return ctx.path("models", {"acm": "acm.keras", "gmm": "gmm.json", "aoe": "aoe.json"}[name])


def _acm_training_table(ctx: _Context, cal_path: Path) -> Any:
    """Calibration events with waveforms for the ACM: every labelled event, then a uniform
    sample of the other in-range events, up to ``run.acm_train_max_events``."""
    import awkward as ak

    from .select.labels import label_events

    feats = _read_table(ctx.path("features", "calibration.root"))
    energy = _np(feats["energy_kev"])
    labels = ctx.config.section("labels")
    lab = label_events(energy, labels)
    lo, hi = labels.energy_range
    in_range = (energy >= lo) & (energy <= hi)
    rng = np.random.default_rng(ctx.run.seed)
    chosen = np.zeros(energy.size, dtype=bool)
    chosen[lab >= 0] = True
    budget = ctx.run.acm_train_max_events - int(chosen.sum())
    others = np.flatnonzero(in_range & ~chosen)
    if budget > 0 and others.size:
        chosen[rng.choice(others, size=min(budget, others.size), replace=False)] = True
    parts = []
    attrs: dict[str, Any] = {}
    start = 0
    for chunk in _iterate(ctx, cal_path, "acm: training waveforms"):
        stop = start + len(chunk)
        sel = chosen[start:stop]
        if sel.any():
            parts.append(
                ak.with_field(
                    chunk[sel][["waveform"]], feats[start:stop][sel]["energy_kev"], "energy_kev"
                )
            )
            attrs = dict(chunk.attrs)
        start = stop
    table = ak.concatenate(parts) if parts else feats[:0]
    _set_attrs(table, attrs)
    return table


def _stage_train(ctx: _Context, name: str, cal_path: Path) -> dict[str, Any]:
    sel = _make_selector(ctx, name)
    if name == "acm":
        table = _acm_training_table(ctx, cal_path)
    else:
        table = _read_table(ctx.path("features", "calibration.root"))
    sel.fit(table)
    out = sel.save(_model_path(ctx, name))
    prov = {
        "name": name,
        "path": str(out),
        "threshold": float(sel.threshold),
        "n_train_table": len(table),
    }
    with_header = _import("bege_psd.select.base:read_model_header")
    try:
        header = with_header(out)
        prov.update(
            {
                k: header[k]
                for k in ("kind", "config_hash", "versions", "format_version")
                if k in header
            }
        )
        if "versions" not in prov and "bege_psd_version" in header:
            prov["versions"] = {"bege_psd": header["bege_psd_version"]}
        summary: dict[str, Any] = {}
        hist_ = header.get("training_history") or {}
        for k in (
            "val_accuracy_0.5",
            "val_accuracy_threshold",
            "ae_epochs_run",
            "clf_epochs_run",
            "n_clf_train",
        ):
            if k in hist_:
                summary[k] = hist_[k]
        if header.get("silhouette") is not None:
            summary["silhouette"] = header["silhouette"]
        if isinstance(header.get("evidence"), dict):
            summary["evidence"] = {
                k: v
                for k, v in header["evidence"].items()
                if isinstance(v, (str, int, float, bool))
            }
        prov["summary"] = summary
    except BegePsdError:
        pass
    return prov


def _channel_aligned_binning(
    to_kev: Callable[[NDArray[Any]], NDArray[np.float64]], bin_width_kev: float, emax_kev: float
) -> tuple[int, tuple[float, float]]:
    """Regular keV bins of a whole number of ADC channels, with edges on channel boundaries.

    Energies are integer ADC channels mapped to keV, so a bin width that is not a multiple of
    the gain holds alternately n and n+1 channels; that comb ruins peak fits and the paper's
    max-bin peak-to-Compton. The width is rounded to the nearest whole number of channels (at
    least one) and the first edge sits at channel -0.5. Exact for a linear calibration; a
    quadratic term shifts the alignment slowly with energy.
    """
    edge0, edge1 = (float(v) for v in to_kev(np.array([-0.5, 0.5])))
    gain = edge1 - edge0
    if not gain > 0:
        msg = f"the energy calibration is not increasing (gain {gain} keV/channel)"
        raise ConfigError(msg)
    width = max(1, round(bin_width_kev / gain)) * gain
    n_bins = int(np.ceil((emax_kev - edge0) / width))
    return n_bins, (edge0, edge0 + n_bins * width)


def _apply_spec(ctx: _Context, selectors: Sequence[str], *, for_workers: bool) -> Any:
    """The :class:`bege_psd.stream.StreamSpec` of the apply stage.

    Its binning is the pipeline's (``[run] bin_width_kev`` up to ``energy_max_kev``); with
    ``for_workers`` it also names the calibration, SSE template and ``[dsp]`` options, so that
    a dask worker can compute features, energies and scores from the waveforms alone."""
    from . import stream

    n_bins, range_kev = _channel_aligned_binning(
        _load_calibration(ctx), ctx.run.bin_width_kev, ctx.run.energy_max_kev
    )
    spec = stream.StreamSpec(
        selectors={name: str(_model_path(ctx, name)) for name in selectors},
        bins_kev=n_bins,
        range_kev=range_kev,
        keep_fields=("flags",),
    )
    if not for_workers:
        return spec
    data = json.loads(ctx.path("calibration.json").read_text())
    if "calibration" not in data:
        msg = (
            f"{ctx.path('calibration.json')}: holds only run.info coefficients; "
            "run.executor = 'dask' needs a bege_psd.calib calibration (use executor = 'local')"
        )
        raise ConfigError(msg)
    tmpl = ctx.path("models", "sse_template.npz")
    return dataclasses.replace(
        spec,
        calibration=data["calibration"],
        template=str(tmpl) if tmpl.exists() else None,
        dsp=to_mapping(ctx.config.section("dsp")),
    )


def _dask_read_options(ctx: _Context) -> dict[str, Any]:
    """``[io]`` options the dask partitions honour; anything else is refused, not ignored."""
    from .io.options import ReadOptions

    io_cfg = ctx.config.section("io")
    default = ReadOptions()
    honoured = ("step_size", "sample_period_ns", "polarity")
    other = [
        f.name
        for f in dataclasses.fields(io_cfg)
        if f.name not in honoured and getattr(io_cfg, f.name) != getattr(default, f.name)
    ]
    if other:
        msg = (
            f"io.{other[0]} = {getattr(io_cfg, other[0])!r}: run.executor = 'dask' reads "
            "partitions with the default [io] options (only sample_period_ns and polarity "
            "may be set); use executor = 'local'"
        )
        raise ConfigError(msg)
    return {k: getattr(io_cfg, k) for k in honoured[1:] if getattr(io_cfg, k) is not None}


def _local_tables(
    ctx: _Context, which: str, run_path: Path, selectors: Sequence[str], spec: Any
) -> Iterator[tuple[Any, Any]]:
    """``(event table, chunk)`` per chunk: features from ``features/<run>.root`` (computed
    once by the features stage, not again), the run's waveforms for the selectors that read
    them, and ``score_<sel>`` / ``kept_<sel>`` exactly as :func:`bege_psd.stream.analyse_chunk`
    forms them (``score >= threshold``; a NaN score is not kept)."""
    import awkward as ak
    import uproot

    from .stream import _selector

    feats_path = ctx.path("features", f"{which}.root")
    start = 0
    with uproot.open(feats_path) as feat_file:
        feat_tree = feat_file["Features"]
        for chunk in _iterate(ctx, run_path, f"{which}: apply"):
            stop = start + len(chunk)
            f = feat_tree.arrays(entry_start=start, entry_stop=stop, library="ak")
            if len(f) != len(chunk):
                msg = (
                    f"{feats_path}: holds {start + len(f)} feature rows but {run_path} has at "
                    f"least {stop} events; the run changed after the features stage "
                    f"(delete {feats_path})"
                )
                raise BegePsdError(msg)
            view = chunk
            for name in f.fields:
                if name not in ("entry", "flags"):
                    view = ak.with_field(view, f[name], name)
            _set_attrs(view, chunk.attrs)
            cols: dict[str, Any] = {k: f[k] for k in f.fields if k != "entry"}
            for name in selectors:
                sel = _selector(spec.selectors[name])
                score = np.asarray(sel.score(view), dtype=np.float64)
                with np.errstate(invalid="ignore"):
                    cols[f"kept_{name}"] = score >= float(sel.threshold)
                cols[f"score_{name}"] = score
            yield ak.zip(cols, depth_limit=1), chunk
            start = stop


def _dask_tables(
    ctx: _Context, which: str, run_path: Path, spec: Any
) -> Iterator[tuple[Any, None]]:
    """``(event table, None)`` per partition, computed by :func:`bege_psd.stream.analyse_chunk`
    on dask workers (features from the waveforms, energy, scores) and returned in entry order."""
    from . import stream

    tables: Iterator[Any] = stream.iterate_dask(
        run_path,
        spec,
        ctx.run.chunk_size,
        scheduler=ctx.dask_scheduler(),
        n_workers=ctx.run.dask_workers,
        **_dask_read_options(ctx),
    )
    if ctx.progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=_count_events(run_path, ctx.config.section("io")),
            desc=f"{which}: apply (dask)",
            unit="ev",
            unit_scale=True,
            leave=False,
        )
        with bar:
            for t in tables:
                bar.update(len(t))
                yield t, None
        return
    for t in tables:
        yield t, None


def _friend_columns(table: Any, selectors: Sequence[str]) -> dict[str, NDArray[Any]]:
    """Friend-tree branches of an event table: features, ``energy_kev``, ``flags``, and per
    selector ``score_<sel>`` (float32) and ``mask_<sel>``; the same for both executors."""
    cols: dict[str, NDArray[Any]] = {}
    for name in table.fields:
        if name == "energy_adc" or name.startswith(("kept_", "score_")):
            continue
        arr = _np(table[name], None)
        if arr.ndim == 1:
            cols[name] = arr
    cols["flags"] = cols["flags"].astype(np.uint32, copy=False)
    for name in selectors:
        cols[f"score_{name}"] = _np(table[f"score_{name}"], np.float32)
        cols[f"mask_{name}"] = _np(table[f"kept_{name}"], bool)
    return cols


def _account(
    acc: dict[str, Any],
    cols: Mapping[str, NDArray[Any]],
    selectors: Sequence[str],
    energy_range: tuple[float, float],
    decode: Callable[..., Any] | None,
    quality_bits: Any,
) -> None:
    """Add one chunk to the event accounting (read, in range, flagged, quality, kept)."""
    energy = cols["energy_kev"].astype(np.float64)
    ok_range = (energy >= energy_range[0]) & (energy <= energy_range[1])
    acc["read"] += energy.size
    acc["in_range"] += int(ok_range.sum())
    flags = cols["flags"]
    if decode is not None:
        for reason, m in decode(flags).items():
            acc["flagged"][reason] = acc["flagged"].get(reason, 0) + int(np.count_nonzero(m))
    else:
        acc["flagged"]["any_flag"] = acc["flagged"].get("any_flag", 0) + int(
            np.count_nonzero(flags)
        )
    if "quality" in cols and quality_bits is not None:
        q = cols["quality"].astype(np.uint32)
        for bit in quality_bits:
            acc["quality"][bit.name] = acc["quality"].get(bit.name, 0) + int(
                np.count_nonzero(q & int(bit.value))
            )
    for name in selectors:
        acc["kept"][name] += int(np.count_nonzero(cols[f"mask_{name}"] & ok_range))
        acc["scored"][name] += int(np.count_nonzero(np.isfinite(cols[f"score_{name}"]) & ok_range))


def _stage_apply(
    ctx: _Context, which: str, run_path: Path, selectors: Sequence[str]
) -> dict[str, Any]:
    """Score every event with every selector; friend tree + spectra + accounting.

    ``[run] executor = "local"``: chunk by chunk here, reading the features stage's output.
    ``"dask"``: the chunks' features, energies and scores are computed on dask workers by
    :func:`bege_psd.stream.analyse_chunk` (from the waveforms: a worker needs only the run, the
    models, the calibration and the template); the tables come back in entry order and the
    friend tree, spectra and accounting are written here by the same code as for the local
    executor, so both give identical outputs (tested). Spectra are filled by
    :func:`bege_psd.stream.spectra_of` in both cases.
    """
    from . import stream
    from .io.friend import FriendWriter

    dask = ctx.run.executor == "dask"
    spec = _apply_spec(ctx, selectors, for_workers=dask)
    lo, hi = ctx.config.section("labels").energy_range
    acc: dict[str, Any] = {
        "read": 0,
        "in_range": 0,
        "flagged": {},
        "quality": {},
        "kept": dict.fromkeys(selectors, 0),
        "scored": dict.fromkeys(selectors, 0),
    }
    examples: dict[str, list[NDArray[Any]]] = {"sse": [], "mse": []}
    labels_cfg = ctx.config.section("labels")
    out = ctx.path("friends", f"{which}_psd.root")
    decode = quality_bits = None
    with contextlib.suppress(_Missing):
        decode = _import("bege_psd.io.flags:decode")
    with contextlib.suppress(_Missing):
        quality_bits = _import("bege_psd.dsp:Quality")
    spectra: dict[str, Any] = {}
    tables = (
        _dask_tables(ctx, which, run_path, spec)
        if dask
        else _local_tables(ctx, which, run_path, selectors, spec)
    )
    start = 0
    with FriendWriter(
        out,
        "PSD",
        source=str(run_path),
        metadata={
            "stage": "apply",
            "selectors": list(selectors),
            "config_hash": ctx.config.hash(),
            "executor": ctx.run.executor,
        },
    ) as w:
        for table, chunk in tables:
            cols = _friend_columns(table, selectors)
            _account(acc, cols, selectors, (lo, hi), decode, quality_bits)
            for key, h in stream.spectra_of(table, spec).items():
                spectra[key] = spectra[key] + h if key in spectra else h
            w.extend(cols, entry_start=start)
            start += len(table)
            if chunk is not None and which == "calibration" and len(examples["sse"]) < 3:
                _collect_examples(chunk, cols["energy_kev"], labels_cfg, examples)
    if dask and which == "calibration":
        # the workers do not send waveforms back: read the first chunk(s) here for the examples
        to_kev = _load_calibration(ctx)
        for i, chunk in enumerate(_iterate(ctx, run_path, "calibration: example pulses")):
            _collect_examples(chunk, to_kev(_np(chunk["energy_adc"])), labels_cfg, examples)
            if (len(examples["sse"]) >= 3 and len(examples["mse"]) >= 3) or i >= 2:
                break
    if not spectra:  # a run without events: empty spectra of the right shape
        empty = stream.spectra_of(_empty_table(selectors), spec)
        spectra = dict(empty)
    edges = np.asarray(spectra["all"].axes[0].edges, dtype=np.float64)
    counts = {k: np.asarray(h.values(), dtype=np.float64) for k, h in spectra.items()}
    spec_path = ctx.path("spectra", f"{which}.npz")
    with atomic_path(spec_path) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, edges=edges, **counts)  # type: ignore[arg-type]
    if which == "calibration" and examples["sse"]:
        ex_path = ctx.path("spectra", "example_pulses.npz")
        with atomic_path(ex_path) as tmp, tmp.open("wb") as fh:
            np.savez_compressed(
                fh,
                sse=np.stack(examples["sse"]),
                mse=np.stack(examples["mse"]) if examples["mse"] else np.zeros((0, 0)),
            )
    return {
        "friend": str(out),
        "spectra": str(spec_path),
        "accounting": acc,
        "executor": ctx.run.executor,
    }


def _empty_table(selectors: Sequence[str]) -> Any:
    import awkward as ak

    cols: dict[str, Any] = {"energy_kev": np.zeros(0)}
    for name in selectors:
        cols[f"kept_{name}"] = np.zeros(0, dtype=bool)
    return ak.zip(cols, depth_limit=1)


def _collect_examples(
    chunk: Any, energy: NDArray[np.float64], labels: Any, examples: dict[str, list[NDArray[Any]]]
) -> None:
    import awkward as ak

    n = ak.num(chunk["waveform"])
    for key, (lo, hi) in (("sse", labels.dep), ("mse", labels.fep)):
        idx = np.flatnonzero((energy >= lo) & (energy <= hi) & (_np(n, np.int64) > 0))
        for i in idx[: 3 - len(examples[key])]:
            examples[key].append(ak.to_numpy(chunk["waveform"][int(i)]).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# public entry point


def _select_available(ctx: _Context) -> list[str]:
    names = []
    for name in ctx.run.selectors:
        spec = SELECTORS[name][0]
        try:
            _import(spec)
        except _Missing as exc:
            ctx.stages.append(StageRecord(f"train_{name}", "missing", 0.0, str(exc)))
            continue
        except ImportError as exc:  # an optional stack (TensorFlow, scikit-learn) is absent
            ctx.stages.append(StageRecord(f"train_{name}", "missing", 0.0, str(exc)))
            continue
        names.append(name)
    return names


def run_pipeline(
    config: Config | str | os.PathLike[str] | Mapping[str, Any],
    *,
    progress: bool | None = None,
    force: bool = False,
) -> PipelineResult:
    """Run the whole chain described by ``config`` (a :class:`~bege_psd.config.Config`, a TOML
    path or a mapping of sections).

    Parameters
    ----------
    progress
        Show tqdm progress bars; default: on unless the ``CI`` environment variable is set.
    force
        Re-run every stage even where its stamp matches (``[run] resume = false`` does the same).

    Returns
    -------
    PipelineResult
        The results folder, the report paths and what happened to each stage. A stage whose
        module is not available is recorded as ``missing`` (and the report says so); an error
        in a stage that exists is raised.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    if progress is None:
        progress = not os.environ.get("CI")
    ctx = _Context(cfg, progress=progress, force=force)
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        ctx.path("config.json"),
        json.dumps({k: to_mapping(cfg.section(k)) for k in _all_sections()}, indent=1, default=str)
        + "\n",
    )
    try:
        runs: dict[str, Path | None] = {}
        run_info: dict[str, Any] = {}
        for which in RUNS:
            p, info = _resolve_run(ctx, which)
            runs[which] = p
            run_info[which] = info
        cal = runs["calibration"]
        results: dict[str, Any] = {"runs": run_info, "config_hash": cfg.hash(*_all_sections())}
        results["simulated"] = any(info.get("simulated") for info in run_info.values())
        if cal is not None:
            for which, p in runs.items():
                if p is not None:
                    meta = _metadata(p)
                    if meta is not None:
                        run_info[which]["metadata"] = {
                            k: getattr(meta, k)
                            for k in (
                                "live_time_s",
                                "real_time_s",
                                "sample_period_ns",
                                "record_length",
                                "run_id",
                            )
                            if hasattr(meta, k)
                        }
            res = ctx.stage(
                "calibrate",
                ["calib", "io"],
                after=["input_calibration"],
                outputs=[ctx.path("calibration.json")],
                func=lambda: _stage_calibrate(ctx, cal),
                code=("calib.py",),
            )
            results["calibration"] = res
            ctx.stage(
                "template",
                ["dsp", "labels", "io"],
                after=["calibrate"],
                outputs=[ctx.path("models", "sse_template.npz")],
                func=lambda: _stage_template(ctx, cal),
                optional=True,
                code=("dsp",),
            )
            on_dask = ctx.run.executor == "dask"
            for which, p in runs.items():
                if p is None:
                    continue
                if on_dask and which != "calibration":
                    # the dask apply stage computes this run's features on the workers
                    # (stream.analyse_chunk); only the calibration run's train the models here
                    detail = "executor = dask: features computed on the workers by apply"
                    ctx.stages.append(StageRecord(f"features_{which}", "skipped", 0.0, detail))
                    continue
                ctx.stage(
                    # without a template (too few DEP events) l1_to_sse is NaN and the rest goes on
                    f"features_{which}",
                    ["dsp", "io"],
                    after=["calibrate", f"input_{which}"],
                    extra={"template": ctx.stamps.get("template", "none")},
                    outputs=[ctx.path("features", f"{which}.root")],
                    func=lambda w=which, q=p: _stage_features(ctx, w, q),  # type: ignore[misc]
                    code=("dsp", "io/friend.py"),
                )
            available = _select_available(ctx)
            trained = []
            for name in available:
                r = ctx.stage(
                    f"train_{name}",
                    [SELECTORS[name][1], "labels"],
                    after=["features_calibration"],
                    extra={"acm_max": ctx.run.acm_train_max_events, "seed": ctx.run.seed}
                    if name == "acm"
                    else None,
                    outputs=[_model_path(ctx, name)],
                    func=lambda n=name: _stage_train(ctx, n, cal),  # type: ignore[misc]
                    optional=True,
                    code=("select",),
                )
                if r is not None:
                    trained.append(name)
                    results.setdefault("models", {})[name] = r
            results["selectors"] = trained
            for which, p in runs.items():
                if p is None:
                    continue
                # on dask the workers compute the features themselves: the apply stage then
                # depends on what the features stage would (dsp, calibration, template, input)
                r = ctx.stage(
                    f"apply_{which}",
                    ["labels", "io", *(["dsp"] if on_dask else [])],
                    after=[
                        *(["calibrate", f"input_{which}"] if on_dask else [f"features_{which}"]),
                        *(f"train_{n}" for n in trained),
                    ],
                    extra={
                        "selectors": trained,
                        "bin": ctx.run.bin_width_kev,
                        "emax": ctx.run.energy_max_kev,
                        # identical results either way, but a user asking for dask gets it run
                        "executor": ctx.run.executor,
                        "template": ctx.stamps.get("template", "none") if on_dask else None,
                    },
                    outputs=[
                        ctx.path("friends", f"{which}_psd.root"),
                        ctx.path("spectra", f"{which}.npz"),
                    ],
                    func=lambda w=which, q=p: _stage_apply(ctx, w, q, trained),  # type: ignore[misc]
                    code=(
                        "select",
                        "io/friend.py",
                        "stream.py",
                        "spectrum.py",
                        *(("dsp",) if on_dask else ()),
                    ),
                )
                if r is not None:
                    results.setdefault("apply", {})[which] = r
    finally:
        ctx.close()  # the dask LocalCluster, if the apply stages started one
    _after_apply(ctx, runs, results)
    results["stages"] = [dataclasses.asdict(s) for s in ctx.stages]
    _dump_json(ctx.path("results.json"), results)
    md = ctx.path("report.md")
    html = ctx.path("report.html")
    return PipelineResult(
        results_dir=ctx.results_dir,
        report_md=md if md.exists() else None,
        report_html=html if html.exists() else None,
        stages=tuple(ctx.stages),
        results=results,
    )


def _all_sections() -> tuple[str, ...]:
    from .config import SECTIONS

    return tuple(SECTIONS)


# ---------------------------------------------------------------------------------------------
# analysis: fits and figures of merit from the spectra and friend trees


#: sidebands (keV) for lines with a close neighbour: the 208Tl DEP and 228Ac 1588.2 keV sit
#: 4.3 keV apart, so adjacent sidebands would subtract the other peak
SIDEBANDS_KEV: dict[float, tuple[tuple[float, float], tuple[float, float]]] = {
    1592.51: ((1568.0, 1578.0), (1600.0, 1610.0)),
    1588.19: ((1568.0, 1578.0), (1600.0, 1610.0)),
}


def _net_counts(h: Any, e0: float, half_kev: float) -> dict[str, float]:
    """Sideband-subtracted counts of a line by :func:`bege_psd.metrics.signal_to_background`:
    gross in ``e0 +- half``, background interpolated linearly between two sidebands (by default
    of width ``half`` each right outside the window; see :data:`SIDEBANDS_KEV`). ``var_bkg`` is
    the variance of the background estimate. With no counts in either sideband the background
    is 0 (``signal_to_background`` refuses a zero background; a line on an empty continuum is
    still a line)."""
    from .metrics import MetricsError, signal_to_background
    from .spectrum import roi_counts

    window = (e0 - half_kev, e0 + half_kev)
    bands = SIDEBANDS_KEV.get(
        round(e0, 2), ((e0 - 2 * half_kev, e0 - half_kev), (e0 + half_kev, e0 + 2 * half_kev))
    )
    try:
        sb = signal_to_background(h, window, bands)
        bkg, var_bkg = sb.background.value, sb.background.error**2
        net, net_err = sb.signal.value, sb.signal.error
    except MetricsError:
        gross = roi_counts(h, window)
        bkg, var_bkg, net, net_err = 0.0, 0.0, gross.value, gross.error
    return {"gross": net + bkg, "bkg": bkg, "net": net, "net_err": net_err, "var_bkg": var_bkg}


def _ratio_err(a: float, da: float, b: float, db: float) -> tuple[float, float]:
    """``a / b`` of two independent quantities with its error (the working-point scan's FEP /
    Compton counts, disjoint windows); an empty numerator or denominator has no error."""
    from .metrics import ratio_error

    if b <= 0 or a == 0:
        return (float("nan") if b <= 0 else 0.0), float("nan")
    return a / b, ratio_error(a, da, b, db)


def _survival(net_cut: dict[str, float], net_all: dict[str, float]) -> dict[str, float]:
    """Net-count survival by :func:`bege_psd.metrics.survival_fraction` (kept and rejected
    parts independent, so the error is binomial-correct and carries the sideband subtraction)."""
    from .metrics import survival_fraction

    out = {"net_all": net_all["net"], "net_kept": net_cut["net"]}
    if net_all["net"] <= 0:
        return {"fraction": float("nan"), "error": float("nan"), **out}
    f = survival_fraction(
        (net_cut["net"], net_cut["net_err"]), (net_all["net"], net_all["net_err"])
    )
    return {"fraction": f.value, "error": f.error, **out}


def _fit_area(h: Any, cfg: Any) -> dict[str, Any]:
    """The 137Cs line fitted with ``[metrics] ptc_model`` in ``ptc_fit_window_kev``.

    Kept here rather than :func:`bege_psd.metrics.peak_survival` /
    :func:`~bege_psd.metrics.compare_peak_to_compton` (``method="area"``) so that each spectrum
    is fitted once and its diagnostics (validity, chi2, quality warnings) reach the report;
    the ratios and survivals are then formed by the metrics functions."""
    import warnings

    fit_peaks = _import("bege_psd.fit:fit_peaks")
    from .errors import FitError, FitQualityWarning

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FitQualityWarning)
            res = fit_peaks(h, cfg.ptc_fit_window_kev, cfg.ptc_model, [cfg.ptc_peak_kev])
    except FitError as exc:
        return {"ok": False, "error": str(exc)}
    a = res.areas[0]
    return {
        "ok": bool(res.valid),
        "area": float(a.area),
        "area_err": float(a.error),
        "minos": [a.minos_lower, a.minos_upper],
        "fwhm_kev": float(res.fwhm[0]),
        "chi2_ndof": [float(res.chi2), int(res.ndof)],
        "pvalue": float(res.pvalue),
        "warnings": [str(w.message) for w in caught],
        "fit": res.to_dict(),
    }


def _load_spectra(ctx: _Context, which: str) -> dict[str, NDArray[np.float64]] | None:
    p = ctx.path("spectra", f"{which}.npz")
    if not p.exists():
        return None
    with np.load(p) as z:
        return {k: np.asarray(z[k]) for k in z.files}


def _selections(spectra: Mapping[str, Any]) -> list[str]:
    return ["original", *[k.removeprefix("kept_") for k in spectra if k.startswith("kept_")]]


def _counts(spectra: Mapping[str, Any], selection: str) -> NDArray[np.float64]:
    return np.asarray(
        spectra["all" if selection == "original" else f"kept_{selection}"], dtype=np.float64
    )


def _table2(spectra: Mapping[str, Any], metrics_cfg: Any) -> list[dict[str, Any]]:
    """137Cs peak-to-Compton, both definitions, per selection (the paper's Table 2).

    Windows, line energy and fit model come from ``[metrics]``
    (:class:`bege_psd.metrics.MetricsConfig`); the ratios are
    :func:`~bege_psd.metrics.peak_to_compton_paper` and
    :func:`~bege_psd.metrics.peak_to_compton_area`, the peak survival
    :func:`~bege_psd.metrics.survival_fraction` of the fitted areas, and the improvement
    factors carry the errors of :func:`~bege_psd.metrics.compare_peak_to_compton` (kept is a
    subset of all)."""
    import warnings

    from .errors import FitQualityWarning
    from .metrics import (
        MetricsConfig,
        MetricsError,
        compare_peak_to_compton,
        peak_to_compton_area,
        peak_to_compton_paper,
        survival_fraction,
        window_survival,
    )
    from .spectrum import roi_counts, roi_mask

    cfg = metrics_cfg if metrics_cfg is not None else MetricsConfig()
    edges = spectra["edges"]
    width = float(edges[1] - edges[0])
    h_all = _as_hist(_counts(spectra, "original"), edges)
    rows = []
    fit_all: dict[str, Any] | None = None
    for sel in _selections(spectra):
        h = h_all if sel == "original" else _as_hist(_counts(spectra, sel), edges)
        in_peak = roi_mask(h, cfg.ptc_peak_window_kev)
        row: dict[str, Any] = {
            "selection": sel,
            "peak_max_bin": float(h.values()[in_peak].max()) if in_peak.any() else 0.0,
            "compton_counts": roi_counts(h, cfg.ptc_compton_window_kev).value,
            "bin_width_kev": width,
        }
        with contextlib.suppress(MetricsError):  # no Compton counts: no ratio
            pc = peak_to_compton_paper(h, cfg.ptc_peak_window_kev, cfg.ptc_compton_window_kev)
            row["pc_maxbin"], row["pc_maxbin_err"] = pc.value, pc.error
        fit = _fit_area(h, cfg)
        if "area" in fit:
            area = (fit["area"], fit["area_err"])
            with contextlib.suppress(MetricsError):
                pc2 = peak_to_compton_area(h, area, cfg.ptc_compton_window_kev)
                row["pc_fit_kev"], row["pc_fit_kev_err"] = pc2.value, pc2.error
            row.update(
                {
                    "peak_area": fit["area"],
                    "peak_area_err": fit["area_err"],
                    "fit_valid": fit.get("ok", False),
                    "fit_warnings": fit.get("warnings", []),
                }
            )
            if sel == "original":
                fit_all = fit
            if fit_all is not None and fit_all["area"] > 0:
                f = survival_fraction(area, (fit_all["area"], fit_all["area_err"]))
                row["peak_survival"], row["peak_survival_err"] = f.value, f.error
                if sel != "original":
                    with contextlib.suppress(MetricsError):
                        f_c = window_survival(h_all, h, cfg.ptc_compton_window_kev)
                        # f_peak / f_compton as in compare_peak_to_compton(method="area"),
                        # from this fit instead of a second one
                        row["pc_fit_kev_improvement_err"] = _ratio_err(
                            f.value, f.error, f_c.value, f_c.error
                        )[1]
        else:
            row["fit_error"] = fit.get("error", "fit failed")
        if sel != "original":
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FitQualityWarning)
                    imp = compare_peak_to_compton(h_all, h, method="paper", config=cfg)
                row["pc_maxbin_improvement_err"] = imp.factor.error
            except BegePsdError as exc:
                row["pc_maxbin_improvement_error"] = str(exc)
        rows.append(row)
    orig = rows[0]
    for row in rows:
        for key in ("pc_maxbin", "pc_fit_kev"):
            if key in row and key in orig and orig[key] and np.isfinite(orig[key]):
                # = f_peak / f_compton of compare_peak_to_compton (same value, its error above)
                row[f"{key}_improvement"] = row[key] / orig[key]
    return rows


def _line_stats(
    spectra: Mapping[str, Any],
    lines: Mapping[str, float],
    half_kev: float,
    always: Sequence[str] = (),
    k: float = 1.645,
) -> dict[str, Any]:
    """Net counts, survival, Currie L_D, significance and relative MDA of each line per cut.

    A line not visible (net < 5 sigma) in the uncut spectrum is left out unless it is named
    in ``always`` (a weak line such as 7Be, which a cut is meant to reveal)."""
    from .metrics import MetricsError, currie_detection_limit, mda_before_after

    edges = spectra["edges"]
    hists = {sel: _as_hist(_counts(spectra, sel), edges) for sel in _selections(spectra)}
    base = {name: _net_counts(hists["original"], e0, half_kev) for name, e0 in lines.items()}
    out: dict[str, Any] = {}
    for sel, h in hists.items():
        per: dict[str, Any] = {}
        for name, e0 in lines.items():
            net = _net_counts(h, e0, half_kev)
            if name not in always and base[name]["net"] < 5 * max(base[name]["net_err"], 1.0):
                continue  # the line is not visible in this run
            s = (
                _survival(net, base[name])
                if sel != "original"
                else {"fraction": 1.0, "error": 0.0, "net_all": net["net"], "net_kept": net["net"]}
            )
            # Currie (1968) detection limit in counts for the background under the window
            l_d = currie_detection_limit(max(net["bkg"], 0.0), k=k)
            # a counting significance, net / sigma(background), not the likelihood ratio of
            # metrics.line_significance: it needs no fit, so it exists for every line and cut,
            # also on these fixed-keV bins (which line_significance warns against for fits)
            sig = (
                net["net"] / float(np.sqrt(net["bkg"] + net["var_bkg"]))
                if net["bkg"] > 0
                else float("nan")
            )
            per[name] = {
                **s,
                "energy_kev": e0,
                "bkg": net["bkg"],
                "net": net["net"],
                "net_err": net["net_err"],
                "currie_ld_counts": l_d,
                "significance": sig,
            }
        out[sel] = per
    # MDA is proportional to L_D / (efficiency x survival); report it relative to the original
    # (metrics.mda_before_after's ratio; efficiency, emission probability and live time cancel).
    # A weak line's own survival is not measurable: take the strongest visible line's instead
    # (peak survival varies slowly with energy) and say so.
    visible = [
        n
        for n in lines
        if n in out["original"] and base[n]["net"] >= 5 * max(base[n]["net_err"], 1.0)
    ]
    ref = max(visible, key=lambda n: base[n]["net"]) if visible else None
    for per in out.values():
        for name, d in per.items():
            o = out["original"].get(name)
            frac = d.get("fraction", np.nan)
            if name not in visible and ref is not None and ref in per:
                frac = per[ref]["fraction"]
                d["survival_from"] = ref
            if o and np.isfinite(frac):
                try:
                    d["mda_relative"] = mda_before_after(
                        max(o["bkg"], 0.0), max(d["bkg"], 0.0), min(frac, 1.0), 1.0, 1.0, 1.0, k=k
                    ).ratio
                except MetricsError:  # nothing of the line survives: no finite MDA
                    d["mda_relative"] = float("nan")
    return out


def _auc(score: NDArray[np.float64], positive: NDArray[np.bool_]) -> dict[str, Any]:
    """ROC curve and AUC of ``score`` for ``positive`` vs the rest
    (:func:`bege_psd.metrics.roc_curve` and :func:`~bege_psd.metrics.auc` on the events with a
    finite score; the curve is thinned to at most 201 points for results.json and the figure)."""
    from .metrics import auc, roc_curve

    ok = np.isfinite(score)
    s, y = score[ok], positive[ok]
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return {"auc": float("nan"), "n_pos": n1, "n_neg": n0}
    fpr, tpr, thr = roc_curve(s, y)
    keep = np.unique(np.linspace(0, fpr.size - 1, min(fpr.size, 201)).round().astype(int))
    return {
        "auc": auc(fpr, tpr),
        "n_pos": n1,
        "n_neg": n0,
        "tpr": tpr[keep].tolist(),
        "fpr": fpr[keep].tolist(),
        "thresholds": thr[keep].tolist(),
    }


def _roc_and_scans(
    ctx: _Context, cal_path: Path | None, selectors: Sequence[str]
) -> dict[str, Any]:
    from .io.friend import read_friend
    from .select.labels import label_events

    friend = ctx.path("friends", "calibration_psd.root")
    if not friend.exists():
        return {}
    names = ["energy_kev"] + [f"score_{s}" for s in selectors]
    cols, _ = read_friend(friend, "PSD", names)
    energy = cols["energy_kev"]
    labels_cfg = ctx.config.section("labels")
    lab = label_events(energy, labels_cfg)
    out: dict[str, Any] = {"roc_labels": {}, "roc_truth": {}, "scan": {}, "score_hist": {}}
    truth_sites = None
    tp = _truth_path(cal_path) if cal_path is not None else None
    if tp is not None:
        import uproot

        with uproot.open(tp) as f:
            t = f["Truth"]
            if t.num_entries == energy.size:
                truth_sites = np.asarray(t["n_sites"].array(library="np"))
    lo, hi = labels_cfg.energy_range
    in_range = (energy >= lo) & (energy <= hi)
    for s in selectors:
        score = cols[f"score_{s}"].astype(np.float64)
        m = lab >= 0
        out["roc_labels"][s] = _auc(score[m], lab[m] == 1)
        if truth_sites is not None:
            m2 = in_range & (truth_sites > 0)
            out["roc_truth"][s] = _auc(score[m2], truth_sites[m2] > 1)
        h, e = np.histogram(score[np.isfinite(score)], bins=50, range=(0, 1))
        out["score_hist"][s] = {"counts": h.tolist(), "edges": e.tolist()}
        # working-point scan: kept fraction in range and the 208Tl FEP / single-Compton ratio
        thr = np.linspace(0.0, 1.0, 41)
        fep = (energy >= labels_cfg.fep[0]) & (energy <= labels_cfg.fep[1])
        comp = (energy >= labels_cfg.single_compton[0]) & (energy <= labels_cfg.single_compton[1])
        rows = []
        for t in thr:
            with np.errstate(invalid="ignore"):
                k = score >= t
            n_in = max(int(in_range.sum()), 1)
            nf, nc = int((k & fep).sum()), int((k & comp).sum())
            r, dr = _ratio_err(nf, np.sqrt(nf), nc, np.sqrt(nc))
            rows.append(
                {
                    "threshold": float(t),
                    "kept_fraction": float((k & in_range).sum() / n_in),
                    "tl_pc": r,
                    "tl_pc_err": dr,
                }
            )
        out["scan"][s] = rows
    return out


def _stage_analyse(
    ctx: _Context, runs: Mapping[str, Path | None], selectors: Sequence[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    half = 2.0
    th_lines = {k: v for k, v in PEAKS_KEV.items() if k.startswith(("Tl", "Ac"))}
    sample_lines = {
        k: v
        for k, v in PEAKS_KEV.items()
        if not k.startswith(("Tl-208 FEP", "Tl-208 SEP", "Tl-208 DEP", "Ac"))
    }
    metrics_cfg = ctx.config.section("metrics")
    k = metrics_cfg.currie_k
    cal = _load_spectra(ctx, "calibration")
    if cal is not None:
        out["lines_calibration"] = _line_stats(cal, th_lines, half, k=k)
    sample = _load_spectra(ctx, "sample")
    if sample is not None:
        try:
            out["table2"] = _table2(sample, metrics_cfg)
        except _Missing as exc:
            out["table2_missing"] = str(exc)
        out["lines_sample"] = _line_stats(sample, sample_lines, half, always=("Be-7 477.6",), k=k)
        be = out["lines_sample"]
        out["be7"] = {sel: per.get("Be-7 477.6") for sel, per in be.items()}
    out.update(_roc_and_scans(ctx, runs.get("calibration"), selectors))
    _dump_json(ctx.path("results_analysis.json"), out)
    return {"path": str(ctx.path("results_analysis.json"))}


def _stage_export(ctx: _Context, run_info: Mapping[str, Any]) -> dict[str, Any]:
    """Spectra as TH1D / N42 / Spe via :mod:`bege_psd.io.export`; fits as JSON."""
    export = _import("bege_psd.io.export")
    written: list[str] = []
    skipped: list[str] = []
    for which in RUNS:
        spectra = _load_spectra(ctx, which)
        if spectra is None:
            continue
        meta = run_info.get(which, {}).get("metadata", {})
        live, real = meta.get("live_time_s"), meta.get("real_time_s")
        sim = " (SIMULATED DATA)" if run_info.get(which, {}).get("simulated") else ""
        edges = spectra["edges"]
        for key, counts in spectra.items():
            if key == "edges":
                continue
            h = _as_hist(counts, edges)
            stem = ctx.path("export", f"{which}_{key}")
            title = f"{which} run, {key.replace('_', ' ')}{sim}"
            for fmt in ctx.run.export_formats:
                if fmt == "root":
                    written.append(
                        str(
                            export.write_th1(
                                stem.with_suffix(".root"), h, name=f"{which}_{key}", title=title
                            )
                        )
                    )
                elif live is None or real is None:
                    skipped.append(f"{stem.name}.{fmt}: live/real time unknown")
                elif fmt == "spe":
                    written.append(
                        str(
                            export.write_spe(
                                stem.with_suffix(".Spe"),
                                h,
                                live_time_s=live,
                                real_time_s=real,
                                spec_id=title,
                                remarks=[title],
                            )
                        )
                    )
                else:
                    written.append(
                        str(
                            export.write_n42(
                                stem.with_suffix(".n42"),
                                h,
                                live_time_s=live,
                                real_time_s=real,
                                title=title,
                            )
                        )
                    )
    analysis = ctx.path("results_analysis.json")
    if analysis.exists():
        table2 = json.loads(analysis.read_text()).get("table2")
        if table2:
            out = ctx.path("export", "fits_cs137.json")
            _dump_json(
                out,
                {"simulated": any(i.get("simulated") for i in run_info.values()), "table2": table2},
            )
            written.append(str(out))
    return {"files": written, "skipped": skipped}


def _as_hist(counts: NDArray[np.float64], edges: NDArray[np.float64]) -> Any:
    import hist

    axis = hist.axis.Regular(
        edges.size - 1, float(edges[0]), float(edges[-1]), name="energy", label="Energy [keV]"
    )
    h = hist.Hist(axis, storage=hist.storage.Weight())
    h.view().value = counts
    h.view().variance = counts
    return h


def _source_hash(*parts: str) -> str:
    """Hash of the source files of the named package parts (``"dsp"``, ``"calib.py"``, ...):
    a stage whose code changed is re-run even when its configuration did not."""
    import hashlib

    from . import __version__

    root = Path(__file__).parent
    h = hashlib.sha256(__version__.encode())
    for part in parts:
        p = root / part
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            if f.exists():
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _code_hash() -> str:
    """Fingerprint of the code of the cheap final stages (analysis, figures, report): they are
    re-made when that code changes, not only when the configuration does."""
    import hashlib

    from . import __version__

    h = hashlib.sha256(__version__.encode())
    for name in (
        "pipeline.py",
        "plot.py",
        "report.py",
        "metrics.py",
        "fit/peaks.py",
        "fit/models.py",
        "io/export.py",
    ):
        p = Path(__file__).parent / name
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _after_apply(ctx: _Context, runs: Mapping[str, Path | None], results: dict[str, Any]) -> None:
    selectors = results.get("selectors", [])
    code = _code_hash()
    applied = [f"apply_{w}" for w in runs if f"apply_{w}" in ctx.stamps]
    ctx.stage(
        "analyse",
        ["labels", "metrics"],
        after=applied or ["apply_calibration"],
        extra=code,
        outputs=[ctx.path("results_analysis.json")],
        func=lambda: _stage_analyse(ctx, runs, selectors),
    )
    p = ctx.path("results_analysis.json")
    if p.exists():
        results["analysis"] = json.loads(p.read_text())
    if ctx.run.export_formats:
        ctx.stage(
            "export",
            ["run"],
            after=["analyse"],
            extra=code,
            outputs=[ctx.path("export")],
            func=lambda: _stage_export(ctx, results.get("runs", {})),
        )
    results["stages"] = [dataclasses.asdict(s) for s in ctx.stages]
    _dump_json(ctx.path("results.json"), results)
    if ctx.run.figures:

        def figures() -> dict[str, Any]:
            try:
                plot = importlib.import_module("bege_psd.plot")
            except ImportError as exc:
                raise _Missing(f"plotting stack not available ({exc})") from exc
            return {"figures": [str(f) for f in plot.make_all(ctx.results_dir, results)]}

        ctx.stage(
            "figures",
            ["labels"],
            after=["analyse"],
            extra=code,
            outputs=[ctx.path("figures")],
            func=figures,
        )

    def report() -> dict[str, Any]:
        from .report import write_report

        results["stages"] = [dataclasses.asdict(s) for s in ctx.stages]
        md, html = write_report(ctx.results_dir, results, ctx.config.section("report"))
        return {"markdown": str(md), "html": str(html)}

    # the report shows stage status, so it is re-made whenever anything before it ran
    ctx.stage(
        "report",
        ["report"],
        after=["analyse"],
        extra={"stages": [(s.name, s.status) for s in ctx.stages], "code": code},
        outputs=[ctx.path("report.md"), ctx.path("report.html")],
        func=report,
    )


def _set_attrs(array: Any, attrs: Mapping[str, Any]) -> None:
    """Copy chunk attributes (source_file, sample_period_ns, polarity, ...) onto ``array``."""
    for key, value in attrs.items():
        array.attrs[key] = value
