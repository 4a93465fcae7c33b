"""Radioactive sources for the simulator: decays -> primary photons aimed at the crystal.

Use :func:`make_source` to build a :class:`Source` (``"th232"``, ``"cryoconite"`` or
``"background"``) from a :class:`SourceConfig`, then :meth:`Source.sample` to draw a batch of
decays as primary photons (energy, start point, direction, decay number) for
:func:`bege_psd.sim.transport.transport`. :mod:`bege_psd.sim.run` does both for you.

Emission model
    * 232Th chain in secular equilibrium (``data/th232_chain_lines.csv``, LNHB LARA/DDEP): each
      decay picks a nuclide with probability proportional to its activity (chain head activity
      x branching in the chain). Tl-208 (35.93 % of chain decays) de-excites through one of the
      Pb-208 cascade paths of ``data/tl208_cascades.csv``; every transition of the path emits
      its photon with probability ``p_gamma = 1/(1 + alpha)``. All photons of a decay start
      together, so 583 + 2614.5 keV etc. sum in the crystal (true-coincidence summing).
      Other nuclides emit each of their lines independently with its intensity per decay:
      their line rates are right, their cascade correlations are not modelled (a documented
      simplification; ``physics-data/NOTES.md`` section 2.3). Angular correlations are ignored.
      Beta particles, conversion electrons and bremsstrahlung are assumed absorbed before
      the crystal (source capsule, endcap).
    * Cryoconite-like volume sample (``data/cryoconite_sample.toml`` activities in Bq/kg,
      ``data/cryoconite_lines.csv``): a cylinder of the configured mass, density and radius
      standing on the endcap; decay points uniform in its volume. Photons are attenuated by
      the sample matrix (``data/xcom_sample_matrix_mu_rho.csv``, mass-fraction mixing rule)
      along their path to the sample surface: self-absorption. Absorbed photons are removed
      (scattering in the matrix is not tracked).
    * Laboratory background: photons of 40K, the 226Ra and 232Th chains entering from a sphere
      around the detector (uniform points, cosine-law inward directions), with effective
      activities in config. A low-level stand-in, not a shield simulation.
    * The endcap window (carbon composite by default, as in the paper; or aluminium) absorbs
      photons with probability ``1 - exp(-mu t / |cos|)`` for photons crossing it.

Geometry: crystal axis along z, p+ contact face at ``z = 0``, front face at ``z = H``, the
endcap's outer window surface at ``z = H + endcap_gap_mm``. The point source sits on the axis
``distance_mm`` above the window.
"""

from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from .transport import load_data_table

__all__ = ("SOURCES", "Primaries", "Source", "SourceConfig", "make_source")

SOURCES = ("th232", "cryoconite", "background")

#: default effective activities (Bq) of the laboratory background emitters (a design choice)
_BACKGROUND_BQ = {"K-40": 40.0, "Ra-226": 20.0, "Th-232": 15.0}


@dataclass(frozen=True)
class SourceConfig:
    """Source geometry and strength (TOML table ``[sim.source]``)."""

    distance_mm: float = field(
        default=50.0,
        metadata={"min": 0.0, "max": 5000.0, "doc": "point source height above the endcap window"},
    )
    activity_bq: float = field(
        default=3000.0,
        metadata={"min": 1e-3, "max": 1e8, "doc": "232Th chain-head activity of the point source"},
    )
    endcap_gap_mm: float = field(
        default=5.0,
        metadata={"min": 0.0, "max": 50.0, "doc": "crystal front face to outer window surface"},
    )
    window_material: Literal["C", "Al"] = field(
        default="C", metadata={"doc": "endcap window: carbon composite or aluminium"}
    )
    window_thickness_mm: float = field(default=0.6, metadata={"min": 0.0, "max": 10.0})
    window_density_g_cm3: float = field(
        default=1.6, metadata={"min": 0.1, "max": 20.0, "doc": "1.6 carbon composite, 2.70 Al"}
    )
    sample_mass_g: float = field(default=20.0, metadata={"min": 0.01, "max": 5000.0})
    sample_density_g_cm3: float = field(default=1.0, metadata={"min": 0.05, "max": 10.0})
    sample_radius_mm: float = field(default=35.0, metadata={"min": 1.0, "max": 200.0})
    sample_activities_bq_per_kg: dict[str, float] = field(
        default_factory=dict, metadata={"doc": "overrides of cryoconite_sample.toml defaults"}
    )
    background_bq: dict[str, float] = field(
        default_factory=dict,
        metadata={"doc": "overrides of the background emitters (K-40, Ra-226, Th-232)"},
    )
    background_sphere_mm: float = field(default=150.0, metadata={"min": 60.0, "max": 5000.0})
    min_line_kev: float = field(
        default=20.0,
        metadata={"min": 1.0, "max": 3000.0, "doc": "lines below this are not emitted"},
    )


class Primaries(NamedTuple):
    """A batch of primary photons, sorted by ``event`` (the decay number in the batch)."""

    event: NDArray[np.int64]
    energy_kev: NDArray[np.float64]
    position_mm: NDArray[np.float64]
    direction: NDArray[np.float64]
    n_decays: int


@dataclass(frozen=True)
class _LineEmitter:
    name: str
    activity_bq: float
    energy_kev: NDArray[np.float64]
    probability: NDArray[np.float64]  # per decay, independent


@dataclass(frozen=True)
class _CascadeEmitter:
    name: str
    activity_bq: float
    path_probability: NDArray[np.float64]  # normalised
    energy_kev: NDArray[np.float64]  # (n_paths, max_len), 0 = none
    p_gamma: NDArray[np.float64]  # (n_paths, max_len)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def _read_rows(name: str) -> list[dict[str, str]]:
    text = (resources.files("bege_psd") / "data" / name).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    import csv

    return list(csv.DictReader(lines))


@functools.cache
def _tl208_cascade(activity_bq: float) -> _CascadeEmitter:
    rows = _read_rows("tl208_cascades.csv")
    prob = np.array([float(r["path_probability_pct"]) for r in rows])
    paths = [[float(x) for x in r["transitions_keV"].split("->")] for r in rows]
    pg = [[float(x) for x in r["p_gamma_each"].split()] for r in rows]
    width = max(len(p) for p in paths)
    e = np.zeros((len(rows), width))
    p = np.zeros((len(rows), width))
    for i, (pa, gg) in enumerate(zip(paths, pg, strict=True)):
        e[i, : len(pa)] = pa
        p[i, : len(gg)] = gg
    return _CascadeEmitter("Tl-208", activity_bq, prob / prob.sum(), e, p)


def _th232_emitters(
    activity_bq: float, min_line_kev: float
) -> list[_LineEmitter | _CascadeEmitter]:
    rows = _read_rows("th232_chain_lines.csv")
    by_nuc: dict[str, tuple[float, list[float], list[float]]] = {}
    for r in rows:
        nuc = r["nuclide"]
        e = float(r["E_keV"])
        if e < min_line_kev:
            continue
        if nuc == "Tl-208" and r["type"].startswith("g"):
            continue  # gammas of Tl-208 come from the cascade
        br = float(r["branching_in_chain"])
        _, es, ps = by_nuc.setdefault(nuc, (br, [], []))
        es.append(e)
        ps.append(float(r["I_per_decay_pct"]) / 100.0)
    out: list[_LineEmitter | _CascadeEmitter] = [
        _LineEmitter(n, activity_bq * br, np.array(es), np.clip(np.array(ps), 0, 1))
        for n, (br, es, ps) in by_nuc.items()
    ]
    # Tl-208: the cascade carries the gammas; its X-rays (conversion) stay a line list above
    tl_br = 0.3593
    out.append(_tl208_cascade(activity_bq * tl_br))
    return out


@functools.cache
def _cryoconite_defaults() -> dict[str, object]:
    text = (resources.files("bege_psd") / "data" / "cryoconite_sample.toml").read_text(
        encoding="utf-8"
    )
    return tomllib.loads(text)


def _cryoconite_activities_bq(cfg: SourceConfig) -> dict[str, float]:
    """Activity (Bq) of every emitting nuclide of the sample (chains in equilibrium)."""
    raw = _cryoconite_defaults()
    per_kg = {k: float(v["default"]) for k, v in raw["activity_Bq_per_kg"].items()}  # type: ignore[attr-defined]
    for k, v in cfg.sample_activities_bq_per_kg.items():
        if k not in per_kg:
            from ..errors import nearest_names

            msg = f"sim.source.sample_activities_bq_per_kg: unknown nuclide {k!r}; known (nearest first): {', '.join(nearest_names(k, per_kg, n=0))}"
            raise ConfigError(msg)
        per_kg[k] = float(v)
    mass_kg = cfg.sample_mass_g / 1000.0
    out: dict[str, float] = {}
    equilibrium: dict[str, list[str]] = raw["equilibrium"]  # type: ignore[assignment]
    for head, a in per_kg.items():
        out[head] = out.get(head, 0.0) + a * mass_kg
        for member in equilibrium.get(head, []):
            name, _, br = member.partition(":")
            out[name] = out.get(name, 0.0) + a * mass_kg * (float(br) if br else 1.0)
    return out


def _cryoconite_emitters(
    activities: dict[str, float], min_line_kev: float
) -> list[_LineEmitter | _CascadeEmitter]:
    rows = _read_rows("cryoconite_lines.csv")
    lines: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows:
        nuc = r["nuclide"]
        e = float(r["E_keV"])
        if e < min_line_kev or nuc == "Tl-208":
            continue  # Tl-208 rows are per chain decay; the cascade model replaces them
        es, ps = lines.setdefault(nuc, ([], []))
        es.append(e)
        ps.append(float(r["I_pct_per_decay_of_listed_parent"]) / 100.0)
    out: list[_LineEmitter | _CascadeEmitter] = []
    for nuc, (es, ps) in lines.items():
        a = activities.get(nuc, 0.0)
        if a > 0:
            out.append(_LineEmitter(nuc, a, np.array(es), np.clip(np.array(ps), 0, 1)))
    if activities.get("Tl-208", 0.0) > 0:
        out.append(_tl208_cascade(activities["Tl-208"]))
    return out


def _background_emitters(cfg: SourceConfig) -> list[_LineEmitter | _CascadeEmitter]:
    bq = dict(_BACKGROUND_BQ)
    for k, v in cfg.background_bq.items():
        if k not in bq:
            msg = f"sim.source.background_bq: unknown emitter {k!r}; allowed: {', '.join(bq)}"
            raise ConfigError(msg)
        bq[k] = float(v)
    acts: dict[str, float] = {"K-40": bq["K-40"]}
    for m in ("Ra-226", "Pb-214", "Bi-214"):
        acts[m] = bq["Ra-226"]
    for m in ("Ac-228", "Th-228", "Ra-224", "Pb-212", "Bi-212"):
        acts[m] = bq["Th-232"]
    acts["Tl-208"] = bq["Th-232"] * 0.3593
    return _cryoconite_emitters(acts, cfg.min_line_kev)


@functools.cache
def _matrix_table() -> dict[str, NDArray[np.float64]]:
    return load_data_table("xcom_sample_matrix_mu_rho.csv")


def mass_attenuation_cm2_g(material: str, energy_kev: NDArray[np.float64]) -> NDArray[np.float64]:
    """mu/rho (cm2/g) of a column of ``xcom_sample_matrix_mu_rho.csv``, log-log interpolated.

    ``material`` may be a single column (``"C"``, ``"Al"``, ``"SiO2"`` ...) or ``"cryoconite"``,
    the mass-fraction mixture of ``cryoconite_sample.toml``. Outside 46.5-2614.5 keV the
    log-log line through the two end points is extrapolated.
    """
    tab = _matrix_table()
    if material == "cryoconite":
        fr = _cryoconite_defaults()["sample"]["matrix_mass_fractions"]  # type: ignore[index]
        col = {"cellulose_C6H10O5": "cellulose_C6H10O5"}
        mu = sum(float(f) * tab[col.get(k, k)] for k, f in fr.items())
    else:
        mu = tab[material]
    le = np.log(tab["E_keV"])
    lm = np.log(np.asarray(mu))
    x = np.log(np.asarray(energy_kev, dtype=np.float64))
    y = np.interp(x, le, lm)
    lo = x < le[0]
    y[lo] = lm[0] + (x[lo] - le[0]) * (lm[1] - lm[0]) / (le[1] - le[0])
    hi = x > le[-1]
    y[hi] = lm[-1] + (x[hi] - le[-1]) * (lm[-1] - lm[-2]) / (le[-1] - le[-2])
    return np.asarray(np.exp(y), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------
def _bernoulli_hits(rng: np.random.Generator, n: int, p: float) -> NDArray[np.int64]:
    """Indices ``i < n`` where independent Bernoulli(p) trials succeed, drawn as geometric gaps.

    The same distribution as ``np.flatnonzero(rng.random(n) < p)`` at a cost proportional to
    the number of successes (most lines are weak, a few percent per decay).
    """
    if p <= 0.0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    if p >= 0.25:
        return np.flatnonzero(rng.random(n) < p)
    mean = n * p
    parts = []
    last = -1
    while True:
        gaps = rng.geometric(p, size=int(mean + 6.0 * math.sqrt(mean) + 16))
        pos = last + np.cumsum(gaps)
        parts.append(pos[pos < n])
        if pos[-1] >= n:
            break
        last = int(pos[-1])
    return np.concatenate(parts).astype(np.int64)


def _isotropic(rng: np.random.Generator, n: int) -> NDArray[np.float64]:
    c = 2.0 * rng.random(n) - 1.0
    phi = 2.0 * np.pi * rng.random(n)
    s = np.sqrt(1.0 - c * c)
    return np.stack((s * np.cos(phi), s * np.sin(phi), c), axis=1)


def _cylinder_exit_distance(
    pos: NDArray[np.float64], d: NDArray[np.float64], radius: float, z0: float, z1: float
) -> NDArray[np.float64]:
    """Distance from points inside the cylinder r < radius, z0 < z < z1 to its surface."""
    with np.errstate(divide="ignore", invalid="ignore"):
        tz = np.where(
            d[:, 2] > 0,
            (z1 - pos[:, 2]) / d[:, 2],
            np.where(d[:, 2] < 0, (z0 - pos[:, 2]) / d[:, 2], np.inf),
        )
        a = d[:, 0] ** 2 + d[:, 1] ** 2
        b = pos[:, 0] * d[:, 0] + pos[:, 1] * d[:, 1]
        c = pos[:, 0] ** 2 + pos[:, 1] ** 2 - radius**2
        disc = np.maximum(b * b - a * c, 0.0)
        tr = np.where(a > 1e-15, (-b + np.sqrt(disc)) / a, np.inf)
    return np.maximum(np.minimum(tz, tr), 0.0)


@dataclass(frozen=True)
class Source:
    """A configured source: emitters, geometry and the absorbers in front of the crystal."""

    name: str
    emitters: tuple[_LineEmitter | _CascadeEmitter, ...]
    config: SourceConfig
    crystal_height_mm: float = 30.0

    @property
    def activity_bq(self) -> float:
        """Total decay rate (Bq) of all emitters: the rate of the Poisson timestamps."""
        return float(sum(e.activity_bq for e in self.emitters))

    def _window_z(self) -> float:
        return self.crystal_height_mm + self.config.endcap_gap_mm

    def sample(self, n_decays: int, rng: np.random.Generator) -> Primaries:
        """Draw ``n_decays`` decays; return their photons (absorbed ones with energy 0 removed)."""
        weights = np.array([e.activity_bq for e in self.emitters])
        which = rng.choice(len(self.emitters), size=n_decays, p=weights / weights.sum())
        ev_parts: list[NDArray[np.int64]] = []
        e_parts: list[NDArray[np.float64]] = []
        for k, em in enumerate(self.emitters):
            idx = np.flatnonzero(which == k)
            if idx.size == 0:
                continue
            if isinstance(em, _LineEmitter):
                for line_e, line_p in zip(em.energy_kev, em.probability, strict=True):
                    rows = _bernoulli_hits(rng, idx.size, float(line_p))
                    ev_parts.append(idx[rows])
                    e_parts.append(np.full(rows.size, line_e))
            else:
                path = rng.choice(em.path_probability.size, size=idx.size, p=em.path_probability)
                emit = rng.random((idx.size, em.energy_kev.shape[1])) < em.p_gamma[path]
                rows, cols = np.nonzero(emit & (em.energy_kev[path] > 0))
                ev_parts.append(idx[rows])
                e_parts.append(em.energy_kev[path][rows, cols])
        event = np.concatenate(ev_parts) if ev_parts else np.zeros(0, np.int64)
        energy = np.concatenate(e_parts) if e_parts else np.zeros(0)
        order = np.argsort(event, kind="stable")
        event = event[order].astype(np.int64)
        energy = energy[order]
        n = event.size
        direction = _isotropic(rng, n)
        cfg = self.config
        zw = self._window_z()
        if self.name == "th232":
            pos = np.zeros((n, 3))
            pos[:, 2] = zw + cfg.distance_mm
        elif self.name == "cryoconite":
            height = (
                cfg.sample_mass_g
                / cfg.sample_density_g_cm3
                * 1000.0
                / (np.pi * cfg.sample_radius_mm**2)
            )
            r = cfg.sample_radius_mm * np.sqrt(rng.random(n))
            phi = 2 * np.pi * rng.random(n)
            pos = np.stack((r * np.cos(phi), r * np.sin(phi), zw + height * rng.random(n)), axis=1)
            path_mm = _cylinder_exit_distance(pos, direction, cfg.sample_radius_mm, zw, zw + height)
            mu = mass_attenuation_cm2_g("cryoconite", energy) * cfg.sample_density_g_cm3 / 10.0
            absorbed = rng.random(n) >= np.exp(-mu * path_mm)
            energy = np.where(absorbed, 0.0, energy)
        else:  # background: points on a sphere, cosine-law inward directions
            centre = np.array([0.0, 0.0, 0.5 * self.crystal_height_mm])
            normal = _isotropic(rng, n)
            pos = centre + cfg.background_sphere_mm * normal
            cost = np.sqrt(rng.random(n))
            phi = 2 * np.pi * rng.random(n)
            sint = np.sqrt(1 - cost**2)
            # local frame around -normal
            inward = -normal
            helper = np.where(
                np.abs(inward[:, 2:3]) < 0.9,
                np.array([[0.0, 0.0, 1.0]]),
                np.array([[1.0, 0.0, 0.0]]),
            )
            e1 = np.cross(inward, helper)
            e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
            e2 = np.cross(inward, e1)
            direction = (
                cost[:, None] * inward
                + (sint * np.cos(phi))[:, None] * e1
                + (sint * np.sin(phi))[:, None] * e2
            )
        if self.name != "background" and cfg.window_thickness_mm > 0:
            down = direction[:, 2] < 0
            mu_w = (
                mass_attenuation_cm2_g(cfg.window_material, np.maximum(energy, 1.0))
                * cfg.window_density_g_cm3
                / 10.0
            )
            with np.errstate(divide="ignore"):
                path = np.where(down, cfg.window_thickness_mm / np.abs(direction[:, 2]), 0.0)
            absorbed = rng.random(n) >= np.exp(-mu_w * path)
            energy = np.where(absorbed & down, 0.0, energy)
        keep = energy > 0
        return Primaries(event[keep], energy[keep], pos[keep], direction[keep], n_decays)


def make_source(
    name: str, config: SourceConfig | None = None, *, crystal_height_mm: float = 30.0
) -> Source:
    """Build a :class:`Source`: ``"th232"`` (point source), ``"cryoconite"`` (volume sample on
    the endcap) or ``"background"`` (laboratory background only)."""
    cfg = config or SourceConfig()
    if name == "th232":
        emitters = _th232_emitters(cfg.activity_bq, cfg.min_line_kev)
    elif name == "cryoconite":
        emitters = _cryoconite_emitters(_cryoconite_activities_bq(cfg), cfg.min_line_kev)
    elif name == "background":
        emitters = _background_emitters(cfg)
    else:
        msg = f"unknown source {name!r}; allowed: {', '.join(SOURCES)}"
        raise ConfigError(msg)
    if not emitters or sum(e.activity_bq for e in emitters) <= 0:
        msg = f"source {name!r} has no emitting nuclide with positive activity"
        raise ConfigError(msg)
    if math.isnan(sum(e.activity_bq for e in emitters)):
        msg = f"source {name!r}: activities contain NaN"
        raise ConfigError(msg)
    return Source(name, tuple(emitters), cfg, float(crystal_height_mm))
