"""Photon transport in the germanium crystal (numba), from NIST XCOM cross sections.

Use :func:`transport` to turn a batch of primary photons (energy, start point, direction,
event number) into energy deposits in the crystal; :func:`cluster_sites` to count the sites of
each event (deposits linked within ``site_distance_mm``); :func:`attenuation_coefficients_per_mm`
for the interpolated Ge cross sections. :mod:`bege_psd.sim.sources` makes the primaries and
:mod:`bege_psd.sim.run` strings everything together.

Geometry
    The crystal is a cylinder of radius ``radius_mm`` and height ``height_mm`` (taken from
    :class:`bege_psd.sim.config_detector.DetectorConfig` by the run) with its axis along z;
    ``z = 0`` is the face that carries the p+ read-out contact and ``z = height_mm`` the face
    behind the endcap window (the source side). Deposits are
    reported as ``(x, y, z)``; the detector response uses ``r = hypot(x, y)`` and ``z``. The
    whole crystal volume is sensitive here: charge loss in the n+ dead layer is the detector
    response's job (:mod:`bege_psd.sim.detector`). Passive materials (endcap window, source
    capsule, sample matrix) only *absorb* photons; they are handled where the photons are made
    (:mod:`bege_psd.sim.sources`), not tracked here.

Physics
    * Interaction lengths from the NIST XCOM v3.1 Ge grid (``data/xcom_Ge_raw_grid_barn_per_atom.csv``,
      Berger & Hubbell, NIST SRD 8), interpolated log-log with cubic-spline segments
      between absorption edges onto a fine log-energy table; pair terms use a power law in
      ``E - threshold`` between the threshold and the first non-zero grid point.
    * Photoelectric absorption: the photo-electron and the atomic relaxation deposit locally,
      except that with probability ``(1 - 1/J_K) * omega_K`` a Ge K X-ray (K-alpha 9.876 keV
      or K-beta 10.982 keV) is emitted isotropically and tracked (Ge X-ray escape).
    * Compton scattering on free electrons, the Klein-Nishina distribution sampled with the
      Butcher & Messel (1960) composition-rejection method; no binding or Doppler broadening.
    * Pair production (nuclear + electron field): the kinetic energy ``E - 1022 keV`` is shared
      between electron and positron (uniform fraction); both deposit along short tracks and the
      positron annihilates at rest at the end of its track into two back-to-back 511 keV
      photons, which are tracked (this is what makes single and double escape peaks).
    * Rayleigh scattering is left out of the attenuation (``include_rayleigh = False``; a
      0.2 % effect on the total at 600 keV) because without atomic form factors its angular
      distribution would be wrong; bremsstrahlung of the electrons is not generated.
    * Electrons deposit along a short track: the CSDA range of ``data/electron_range_ge.csv``
      (our Bethe-Rohrlich calculation, see the file header) is walked in steps of
      ``electron_step_mm``; each step loses the energy given by the range-energy table and the
      direction is deflected by the Highland multiple-scattering angle (PDG Review of Particle
      Physics, "Passage of particles through matter", Eq. 34.15) with ``X0(Ge) = 23.0 mm``.
      Electrons whose range is below one step deposit at their start point.

The numba kernels have plain-Python twins (the same functions through ``.py_func``), compared in
``tests/test_sim_transport.py``.
"""

# numba kernels can only use the legacy global generator (np.random.seed/random), seeded per call
# ruff: noqa: NPY002

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import NamedTuple

import numba as nb
import numpy as np
from numpy.typing import NDArray

__all__ = (
    "ELECTRON_MASS_KEV",
    "GE_DENSITY_G_CM3",
    "CrossSectionTable",
    "Deposits",
    "TransportConfig",
    "attenuation_coefficients_per_mm",
    "cluster_sites",
    "cross_section_table",
    "load_data_table",
    "sample_klein_nishina",
    "transport",
)

ELECTRON_MASS_KEV = 510.99895
GE_DENSITY_G_CM3 = 5.323
#: XCOM atomic weight of Ge (file header of MDATX3.032) and Avogadro factor (barn/atom -> cm2/g)
_GE_ATOMIC_WEIGHT = 72.59
_AVOGADRO_B = 0.60221367
#: Ge K-shell data (xraylib 4.3.0 via physics-data/NOTES.md): fluorescence yield, line energies
_GE_OMEGA_K = 0.546
_GE_K_EDGE_KEV = 11.1031
_GE_KALPHA_KEV = 9.876  # intensity-weighted K-alpha1/K-alpha2
_GE_KBETA_KEV = 10.982
_GE_KBETA_FRACTION = 0.12  # K-beta / (K-alpha + K-beta), approximately, for Z = 32
#: radiation length of Ge (PDG: 12.25 g/cm2 / 5.323 g/cm3)
_GE_X0_MM = 23.01


@dataclass(frozen=True)
class TransportConfig:
    """Options of the photon transport (TOML table ``[sim.transport]``)."""

    fluorescence: bool = field(
        default=True, metadata={"doc": "emit and track Ge K X-rays after photo-absorption"}
    )
    electron_tracks: bool = field(
        default=True, metadata={"doc": "deposit electron energy along a short track"}
    )
    electron_step_mm: float = field(
        default=0.3, metadata={"min": 0.02, "max": 2.0, "doc": "step of the electron track walk"}
    )
    include_rayleigh: bool = field(
        default=False, metadata={"doc": "count Rayleigh in the attenuation (direction unchanged)"}
    )
    min_photon_kev: float = field(
        default=1.0, metadata={"min": 0.1, "max": 50.0, "doc": "photons below this deposit locally"}
    )
    site_distance_mm: float = field(
        default=1.0,
        metadata={"min": 0.01, "max": 20.0, "doc": "deposits closer than this are one site"},
    )


# ---------------------------------------------------------------------------------------------
# data tables
# ---------------------------------------------------------------------------------------------
def load_data_table(name: str) -> dict[str, NDArray[np.float64]]:
    """Read a numeric CSV table shipped in ``bege_psd/data`` (``#`` lines are its sources).

    Non-numeric columns are skipped; returns ``{column: float64 array}``.
    """
    text = (resources.files("bege_psd") / "data" / name).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    header = lines[0].split(",")
    cols: dict[str, list[float]] = {h: [] for h in header}
    numeric = dict.fromkeys(header, True)
    for ln in lines[1:]:
        for h, v in zip(header, ln.split(","), strict=True):
            try:
                cols[h].append(float(v) if v != "" else math.nan)
            except ValueError:
                numeric[h] = False
    return {h: np.asarray(v, dtype=np.float64) for h, v in cols.items() if numeric[h]}


class CrossSectionTable(NamedTuple):
    """Ge linear attenuation coefficients (1/mm) on a uniform grid in ``log(E/keV)``."""

    log_e0: float
    dlog: float
    photo: NDArray[np.float64]
    compton: NDArray[np.float64]
    pair: NDArray[np.float64]
    rayleigh: NDArray[np.float64]


def _linear(
    x: NDArray[np.float64], y: NDArray[np.float64]
) -> Callable[[NDArray[np.float64]], NDArray[np.float64]]:
    def f(q: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.interp(q, x, y)

    return f


def _loglog_segments(
    e: NDArray[np.float64], y: NDArray[np.float64], grid: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Interpolate y(e) log-log with PCHIP, restarting at edges (repeated energies)."""
    from scipy.interpolate import CubicSpline

    out = np.zeros_like(grid)
    # edges: XCOM lists the edge energy twice (below/above) with 1e-4 keV offset
    breaks = np.flatnonzero(np.diff(e) / e[:-1] < 1e-3) + 1
    starts = np.concatenate(([0], breaks))
    stops = np.concatenate((breaks, [e.size]))
    for a, b in zip(starts, stops, strict=True):
        seg_e, seg_y = e[a:b], y[a:b]
        lo = seg_e[0] if a > 0 else -np.inf
        hi = seg_e[-1] if b < e.size else np.inf
        sel = (grid >= lo) & (grid < hi) if b < e.size else (grid >= lo)
        if seg_e.size >= 2:
            f = (
                CubicSpline(np.log(seg_e), np.log(seg_y), extrapolate=True)
                if seg_e.size >= 4
                else _linear(np.log(seg_e), np.log(seg_y))
            )
            out[sel] = np.exp(f(np.log(grid[sel])))
        else:
            out[sel] = seg_y[0]
    return out


def _pair_term(
    e: NDArray[np.float64], y: NDArray[np.float64], threshold_kev: float, grid: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Pair cross section: log-log PCHIP over the non-zero grid points, and below the first
    of them a power law in (E - threshold) with the exponent of the first two points."""
    nz = np.flatnonzero(y > 0)
    out = np.zeros_like(grid)
    if nz.size < 2:
        return out
    e1, e2 = e[nz[0]], e[nz[1]]
    y1, y2 = y[nz[0]], y[nz[1]]
    p = math.log(y2 / y1) / math.log((e2 - threshold_kev) / (e1 - threshold_kev))
    low = (grid > threshold_kev) & (grid < e1)
    out[low] = y1 * ((grid[low] - threshold_kev) / (e1 - threshold_kev)) ** p
    high = grid >= e1
    out[high] = _loglog_segments(e[nz[0] :], y[nz[0] :], grid[high])
    return out


@functools.cache
def cross_section_table(
    n_points: int = 6000, e_min_kev: float = 1.0, e_max_kev: float = 10_000.0
) -> CrossSectionTable:
    """The Ge interaction coefficients (1/mm) tabulated for the numba kernels (cached)."""
    raw = load_data_table("xcom_Ge_raw_grid_barn_per_atom.csv")
    e = raw["E_keV"]
    to_per_mm = _AVOGADRO_B / _GE_ATOMIC_WEIGHT * GE_DENSITY_G_CM3 / 10.0  # b/atom -> 1/mm
    log_e0 = math.log(e_min_kev)
    dlog = (math.log(e_max_kev) - log_e0) / (n_points - 1)
    grid = np.exp(log_e0 + dlog * np.arange(n_points))
    photo = _loglog_segments(e, raw["photo_b"], grid)
    compton = _loglog_segments(e, raw["incoh_b"], grid)
    rayleigh = _loglog_segments(e, raw["coh_b"], grid)
    pair = _pair_term(e, raw["pair_nuc_b"], 2 * ELECTRON_MASS_KEV, grid) + _pair_term(
        e, raw["pair_el_b"], 4 * ELECTRON_MASS_KEV, grid
    )
    return CrossSectionTable(
        log_e0, dlog, photo * to_per_mm, compton * to_per_mm, pair * to_per_mm, rayleigh * to_per_mm
    )


def attenuation_coefficients_per_mm(
    energy_kev: NDArray[np.float64] | float,
) -> dict[str, NDArray[np.float64]]:
    """Interpolated Ge linear attenuation coefficients (1/mm) by process at ``energy_kev``.

    Returns ``{"photo", "compton", "pair", "rayleigh"}``, each an array like ``energy_kev``;
    the same interpolation the transport kernel uses.
    """
    t = cross_section_table()
    e = np.atleast_1d(np.asarray(energy_kev, dtype=np.float64))
    out = {}
    for name in ("photo", "compton", "pair", "rayleigh"):
        tab = getattr(t, name)
        out[name] = np.array([_interp_log(tab, t.log_e0, t.dlog, x) for x in e])
    return out


@functools.cache
def _electron_range_table() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(log T/keV, log CSDA range/mm) for Ge electrons, extended to 1 keV by R ~ T^1.7."""
    tab = load_data_table("electron_range_ge.csv")
    t_kev = tab["T_MeV"] * 1000.0
    r_mm = tab["CSDA_mm"]
    # below 50 keV extrapolate with the local power law of the two lowest points
    p = math.log(r_mm[1] / r_mm[0]) / math.log(t_kev[1] / t_kev[0])
    t_low = np.array([1.0, 5.0, 20.0])
    r_low = r_mm[0] * (t_low / t_kev[0]) ** p
    return np.log(np.concatenate((t_low, t_kev))), np.log(np.concatenate((r_low, r_mm)))


# ---------------------------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True)
def _interp_log(tab: NDArray[np.float64], log_e0: float, dlog: float, e: float) -> float:
    """Log-log linear interpolation on the uniform log-energy table (0 where the table is 0)."""
    x = (math.log(e) - log_e0) / dlog
    n = tab.shape[0]
    if x <= 0.0:
        return float(tab[0])
    if x >= n - 1:
        return float(tab[n - 1])
    i = int(x)
    f = x - i
    a = tab[i]
    b = tab[i + 1]
    if a <= 0.0 or b <= 0.0:
        return float(a + f * (b - a))
    return float(math.exp(math.log(a) + f * (math.log(b) - math.log(a))))


@nb.njit(cache=True, nogil=True)
def _interp_xy(xs: NDArray[np.float64], ys: NDArray[np.float64], x: float) -> float:
    """Linear interpolation in a sorted table (clamped at both ends)."""
    n = xs.shape[0]
    if x <= xs[0]:
        return float(ys[0] + (x - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0]))
    if x >= xs[n - 1]:
        return float(ys[n - 1])
    lo = 0
    hi = n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if xs[mid] <= x:
            lo = mid
        else:
            hi = mid
    f = (x - xs[lo]) / (xs[hi] - xs[lo])
    return float(ys[lo] + f * (ys[hi] - ys[lo]))


@nb.njit(cache=True, nogil=True)
def sample_klein_nishina(energy_kev: float) -> tuple[float, float]:
    """Sample a Compton scatter: return (scattered photon energy keV, cos theta).

    Butcher & Messel, Nucl. Phys. 20 (1960) 15: the Klein-Nishina density in
    ``eps = E'/E`` is split into ``1/eps`` and ``eps`` parts sampled directly, then accepted
    with the remaining factor ``1 - eps sin^2 / (1 + eps^2)``.
    """
    k = energy_kev / ELECTRON_MASS_KEV
    eps0 = 1.0 / (1.0 + 2.0 * k)
    eps0sq = eps0 * eps0
    a1 = -math.log(eps0)
    a2 = 0.5 * (1.0 - eps0sq)
    while True:
        if a1 / (a1 + a2) > np.random.random():
            eps = math.exp(-a1 * np.random.random())
            epssq = eps * eps
        else:
            epssq = eps0sq + (1.0 - eps0sq) * np.random.random()
            eps = math.sqrt(epssq)
        onecost = (1.0 - eps) / (eps * k)
        sint2 = onecost * (2.0 - onecost)
        g = 1.0 - eps * sint2 / (1.0 + epssq)
        if g >= np.random.random():
            return eps * energy_kev, 1.0 - onecost


@nb.njit(cache=True, nogil=True)
def _rotate(u: float, v: float, w: float, cost: float, phi: float) -> tuple[float, float, float]:
    """Direction at polar angle acos(cost), azimuth phi relative to the unit vector (u, v, w)."""
    sint = math.sqrt(max(0.0, 1.0 - cost * cost))
    cp = math.cos(phi)
    sp = math.sin(phi)
    if abs(w) > 0.99999:
        s = 1.0 if w > 0 else -1.0
        return sint * cp, sint * sp, s * cost
    den = math.sqrt(1.0 - w * w)
    nu = u * cost + sint * (u * w * cp - v * sp) / den
    nv = v * cost + sint * (v * w * cp + u * sp) / den
    nw = w * cost - sint * cp * den
    norm = math.sqrt(nu * nu + nv * nv + nw * nw)
    return nu / norm, nv / norm, nw / norm


@nb.njit(cache=True, nogil=True)
def _isotropic() -> tuple[float, float, float]:
    cost = 2.0 * np.random.random() - 1.0
    phi = 2.0 * math.pi * np.random.random()
    sint = math.sqrt(max(0.0, 1.0 - cost * cost))
    return sint * math.cos(phi), sint * math.sin(phi), cost


@nb.njit(cache=True, nogil=True)
def _inside(x: float, y: float, z: float, radius: float, height: float) -> bool:
    return x * x + y * y <= radius * radius and 0.0 <= z <= height


@nb.njit(cache=True, nogil=True)
def _distance_to_exit(
    x: float, y: float, z: float, u: float, v: float, w: float, radius: float, height: float
) -> float:
    """Distance along (u, v, w) from a point inside the cylinder to its surface."""
    t = 1e30
    if w > 0.0:
        t = (height - z) / w
    elif w < 0.0:
        t = -z / w
    a = u * u + v * v
    if a > 1e-15:
        b = x * u + y * v
        c = x * x + y * y - radius * radius
        disc = b * b - a * c
        if disc < 0.0:
            disc = 0.0
        ts = (-b + math.sqrt(disc)) / a
        if ts < t:
            t = ts
    return max(t, 0.0)


@nb.njit(cache=True, nogil=True)
def _distance_to_entry(
    x: float, y: float, z: float, u: float, v: float, w: float, radius: float, height: float
) -> float:
    """Distance along (u, v, w) from an outside point to the cylinder; -1 when it misses."""
    # slab 0 <= z <= height
    if abs(w) < 1e-15:
        if z < 0.0 or z > height:
            return -1.0
        t0 = -1e30
        t1 = 1e30
    else:
        ta = -z / w
        tb = (height - z) / w
        t0 = min(ta, tb)
        t1 = max(ta, tb)
    a = u * u + v * v
    c = x * x + y * y - radius * radius
    if a < 1e-15:
        if c > 0.0:
            return -1.0
    else:
        b = x * u + y * v
        disc = b * b - a * c
        if disc <= 0.0:
            return -1.0
        sq = math.sqrt(disc)
        c0 = (-b - sq) / a
        c1 = (-b + sq) / a
        t0 = max(t0, c0)
        t1 = min(t1, c1)
    t0 = max(t0, 0.0)
    if t1 <= t0:
        return -1.0
    return t0


class Deposits(NamedTuple):
    """Energy deposits of a batch, grouped by event (``offsets`` into the flat arrays).

    ``primary_edep_kev`` and ``primary_pair`` give, per primary photon, its total deposited
    energy and whether it (or a descendant) pair-produced; ``primary_escape_511`` counts its
    annihilation photons that left the crystal without depositing anything.
    """

    offsets: NDArray[np.int64]
    edep_kev: NDArray[np.float64]
    x_mm: NDArray[np.float64]
    y_mm: NDArray[np.float64]
    z_mm: NDArray[np.float64]
    primary: NDArray[np.int64]
    primary_edep_kev: NDArray[np.float64]
    primary_pair: NDArray[np.bool_]
    primary_escape_511: NDArray[np.int32]


@nb.njit(cache=True, nogil=True)
def _push_dep(
    buf: NDArray[np.float64],
    ibuf: NDArray[np.int64],
    n: int,
    e: float,
    x: float,
    y: float,
    z: float,
    prim: int,
) -> tuple[NDArray[np.float64], NDArray[np.int64], int]:
    if n >= buf.shape[0]:
        nb_ = np.empty((2 * buf.shape[0], 4))
        nb_[: buf.shape[0]] = buf
        ni = np.empty(2 * buf.shape[0], dtype=np.int64)
        ni[: buf.shape[0]] = ibuf
        buf = nb_
        ibuf = ni
    buf[n, 0] = e
    buf[n, 1] = x
    buf[n, 2] = y
    buf[n, 3] = z
    ibuf[n] = prim
    return buf, ibuf, n + 1


@nb.njit(cache=True, nogil=True)
def _electron_track(
    t_kev: float,
    x: float,
    y: float,
    z: float,
    u: float,
    v: float,
    w: float,
    log_t: NDArray[np.float64],
    log_r: NDArray[np.float64],
    step_mm: float,
    tracks: bool,
    radius: float,
    height: float,
    buf: NDArray[np.float64],
    ibuf: NDArray[np.int64],
    n: int,
    prim: int,
) -> tuple[NDArray[np.float64], NDArray[np.int64], int, float, float, float, float]:
    """Deposit an electron's kinetic energy along its track; return the end point and the
    deposited energy (energy carried out of the crystal is lost)."""
    if t_kev <= 0.0:
        return buf, ibuf, n, x, y, z, 0.0
    rng = math.exp(_interp_xy(log_t, log_r, math.log(max(t_kev, 1.0))))
    if not tracks or rng <= step_mm:
        buf, ibuf, n = _push_dep(buf, ibuf, n, t_kev, x, y, z, prim)
        return buf, ibuf, n, x, y, z, t_kev
    left = rng
    t = t_kev
    deposited = 0.0
    while left > 1e-9 and t > 0.0:
        s = min(step_mm, left)
        left -= s
        if left > 1e-6 * rng:
            t_new = math.exp(_interp_xy(log_r, log_t, math.log(left)))
            t_new = min(t_new, t)
        else:
            t_new = 0.0
        de = t - t_new
        # deposit at the middle of the step
        mx = x + 0.5 * s * u
        my = y + 0.5 * s * v
        mz = z + 0.5 * s * w
        if _inside(mx, my, mz, radius, height):
            buf, ibuf, n = _push_dep(buf, ibuf, n, de, mx, my, mz, prim)
            deposited += de
        x += s * u
        y += s * v
        z += s * w
        # Highland multiple-scattering angle over the step, at the mean energy of the step
        tm = 0.5 * (t + t_new)
        pc = math.sqrt(tm * (tm + 2.0 * ELECTRON_MASS_KEV))
        beta = pc / (tm + ELECTRON_MASS_KEV)
        xr = s / _GE_X0_MM
        theta0 = 13600.0 / (beta * pc) * math.sqrt(xr) * (1.0 + 0.038 * math.log(xr))
        theta0 = min(max(theta0, 0.0), math.pi)
        # sample a deflection with projected-Gaussian width theta0 (space angle = sqrt(2)*theta0)
        th = math.sqrt(-2.0 * math.log(max(np.random.random(), 1e-300))) * theta0
        if th > math.pi:
            th = math.pi * np.random.random()
        u, v, w = _rotate(u, v, w, math.cos(th), 2.0 * math.pi * np.random.random())
        t = t_new
    return buf, ibuf, n, x, y, z, deposited


@nb.njit(cache=True, nogil=True)
def _transport_kernel(
    energy: NDArray[np.float64],
    pos: NDArray[np.float64],
    dirs: NDArray[np.float64],
    photo: NDArray[np.float64],
    compton: NDArray[np.float64],
    pair: NDArray[np.float64],
    rayleigh: NDArray[np.float64],
    log_e0: float,
    dlog: float,
    log_t: NDArray[np.float64],
    log_r: NDArray[np.float64],
    radius: float,
    height: float,
    step_mm: float,
    tracks: bool,
    fluorescence: bool,
    use_rayleigh: bool,
    min_photon_kev: float,
    seed: int,
) -> tuple[
    NDArray[np.float64],
    NDArray[np.int64],
    int,
    NDArray[np.float64],
    NDArray[np.bool_],
    NDArray[np.int32],
]:
    np.random.seed(seed)
    n_prim = energy.shape[0]
    buf = np.empty((max(16, 4 * n_prim), 4))
    ibuf = np.empty(buf.shape[0], dtype=np.int64)
    n = 0
    prim_edep = np.zeros(n_prim)
    prim_pair = np.zeros(n_prim, dtype=np.bool_)
    prim_esc511 = np.zeros(n_prim, dtype=np.int32)
    # photon stack: E, x, y, z, u, v, w, is_annihilation_photon
    stack = np.empty((64, 8))
    p_kalpha_escape = (1.0 - 3206.0 / 23710.0) * _GE_OMEGA_K  # (1 - 1/J_K) * omega_K (XCOM jump)
    for ip in range(n_prim):
        if energy[ip] <= 0.0:
            continue
        ns = 1
        stack[0, 0] = energy[ip]
        stack[0, 1] = pos[ip, 0]
        stack[0, 2] = pos[ip, 1]
        stack[0, 3] = pos[ip, 2]
        stack[0, 4] = dirs[ip, 0]
        stack[0, 5] = dirs[ip, 1]
        stack[0, 6] = dirs[ip, 2]
        stack[0, 7] = 0.0
        while ns > 0:
            ns -= 1
            e = stack[ns, 0]
            x = stack[ns, 1]
            y = stack[ns, 2]
            z = stack[ns, 3]
            u = stack[ns, 4]
            v = stack[ns, 5]
            w = stack[ns, 6]
            is511 = stack[ns, 7] > 0.5
            interacted = False
            if not _inside(x, y, z, radius, height):
                t_in = _distance_to_entry(x, y, z, u, v, w, radius, height)
                if t_in < 0.0:
                    continue
                x += (t_in + 1e-9) * u
                y += (t_in + 1e-9) * v
                z += (t_in + 1e-9) * w
            while True:
                if e < min_photon_kev:
                    buf, ibuf, n = _push_dep(buf, ibuf, n, e, x, y, z, ip)
                    prim_edep[ip] += e
                    interacted = True
                    break
                mu_ph = _interp_log(photo, log_e0, dlog, e)
                mu_c = _interp_log(compton, log_e0, dlog, e)
                mu_p = _interp_log(pair, log_e0, dlog, e) if e > 2.0 * ELECTRON_MASS_KEV else 0.0
                mu_r = _interp_log(rayleigh, log_e0, dlog, e) if use_rayleigh else 0.0
                mu = mu_ph + mu_c + mu_p + mu_r
                s = -math.log(1.0 - np.random.random()) / mu
                d_exit = _distance_to_exit(x, y, z, u, v, w, radius, height)
                if s >= d_exit:
                    break  # escapes; a convex crystal is not re-entered
                x += s * u
                y += s * v
                z += s * w
                interacted = True
                r = np.random.random() * mu
                if r < mu_ph:
                    edep = e
                    if fluorescence and e > _GE_K_EDGE_KEV and np.random.random() < p_kalpha_escape:
                        ex = (
                            _GE_KBETA_KEV
                            if np.random.random() < _GE_KBETA_FRACTION
                            else _GE_KALPHA_KEV
                        )
                        edep = e - ex
                        if ns >= stack.shape[0]:
                            bigger = np.empty((2 * stack.shape[0], 8))
                            bigger[: stack.shape[0]] = stack
                            stack = bigger
                        du, dv, dw = _isotropic()
                        stack[ns, 0] = ex
                        stack[ns, 1] = x
                        stack[ns, 2] = y
                        stack[ns, 3] = z
                        stack[ns, 4] = du
                        stack[ns, 5] = dv
                        stack[ns, 6] = dw
                        stack[ns, 7] = 0.0
                        ns += 1
                    buf, ibuf, n, _, _, _, dep = _electron_track(
                        edep,
                        x,
                        y,
                        z,
                        u,
                        v,
                        w,
                        log_t,
                        log_r,
                        step_mm,
                        tracks,
                        radius,
                        height,
                        buf,
                        ibuf,
                        n,
                        ip,
                    )
                    prim_edep[ip] += dep
                    break
                elif r < mu_ph + mu_c:
                    e2, cost = sample_klein_nishina(e)
                    phi = 2.0 * math.pi * np.random.random()
                    nu, nv, nw = _rotate(u, v, w, cost, phi)
                    # electron momentum = p_gamma - p_gamma'
                    pu = e * u - e2 * nu
                    pv = e * v - e2 * nv
                    pw = e * w - e2 * nw
                    pn = math.sqrt(pu * pu + pv * pv + pw * pw)
                    if pn > 0.0:
                        pu /= pn
                        pv /= pn
                        pw /= pn
                    else:
                        pu, pv, pw = u, v, w
                    buf, ibuf, n, _, _, _, dep = _electron_track(
                        e - e2,
                        x,
                        y,
                        z,
                        pu,
                        pv,
                        pw,
                        log_t,
                        log_r,
                        step_mm,
                        tracks,
                        radius,
                        height,
                        buf,
                        ibuf,
                        n,
                        ip,
                    )
                    prim_edep[ip] += dep
                    e = e2
                    u, v, w = nu, nv, nw
                elif r < mu_ph + mu_c + mu_p:
                    prim_pair[ip] = True
                    t_kin = e - 2.0 * ELECTRON_MASS_KEV
                    frac = np.random.random()
                    buf, ibuf, n, _, _, _, dep = _electron_track(
                        frac * t_kin,
                        x,
                        y,
                        z,
                        u,
                        v,
                        w,
                        log_t,
                        log_r,
                        step_mm,
                        tracks,
                        radius,
                        height,
                        buf,
                        ibuf,
                        n,
                        ip,
                    )
                    prim_edep[ip] += dep
                    buf, ibuf, n, ax, ay, az, dep = _electron_track(
                        (1.0 - frac) * t_kin,
                        x,
                        y,
                        z,
                        u,
                        v,
                        w,
                        log_t,
                        log_r,
                        step_mm,
                        tracks,
                        radius,
                        height,
                        buf,
                        ibuf,
                        n,
                        ip,
                    )
                    prim_edep[ip] += dep
                    du, dv, dw = _isotropic()
                    if ns + 2 > stack.shape[0]:
                        bigger = np.empty((2 * stack.shape[0], 8))
                        bigger[: stack.shape[0]] = stack
                        stack = bigger
                    for sign in (1.0, -1.0):
                        stack[ns, 0] = ELECTRON_MASS_KEV
                        stack[ns, 1] = ax
                        stack[ns, 2] = ay
                        stack[ns, 3] = az
                        stack[ns, 4] = sign * du
                        stack[ns, 5] = sign * dv
                        stack[ns, 6] = sign * dw
                        stack[ns, 7] = 1.0
                        ns += 1
                    break
                # else: Rayleigh, kept in the attenuation only (direction unchanged)
            if is511 and not interacted:
                prim_esc511[ip] += 1
    return buf[:n], ibuf[:n], n, prim_edep, prim_pair, prim_esc511


def transport(
    energy_kev: NDArray[np.float64],
    position_mm: NDArray[np.float64],
    direction: NDArray[np.float64],
    event: NDArray[np.int64],
    n_events: int,
    config: TransportConfig | None = None,
    *,
    radius_mm: float = 40.0,
    height_mm: float = 30.0,
    seed: int = 0,
) -> Deposits:
    """Track primary photons through the crystal and return their energy deposits.

    Parameters
    ----------
    energy_kev, position_mm, direction
        Primary photons: energy (n,), start point (n, 3) and unit direction (n, 3). A start
        point outside the crystal is moved to where the ray enters it (photons that miss
        deposit nothing). A photon with energy <= 0 is skipped (absorbed before the crystal).
    event
        Event number (0 .. n_events-1, non-decreasing) of each primary: photons of one decay
        cascade share an event, so their deposits add up (true-coincidence summing).
    n_events
        Number of events in the batch (events without deposits get empty lists).
    config
        :class:`TransportConfig`; defaults when ``None``.
    radius_mm, height_mm
        Crystal size (the detector configuration's ``radius_mm``/``height_mm``).
    seed
        Seeds numba's generator; the same inputs and seed give identical deposits.

    Returns
    -------
    Deposits
        Deposits grouped by event (``offsets`` has ``n_events + 1`` entries).
    """
    cfg = config or TransportConfig()
    energy_kev = np.ascontiguousarray(energy_kev, dtype=np.float64)
    position_mm = np.ascontiguousarray(position_mm, dtype=np.float64).reshape(-1, 3)
    direction = np.ascontiguousarray(direction, dtype=np.float64).reshape(-1, 3)
    event = np.asarray(event, dtype=np.int64)
    if not (energy_kev.shape[0] == position_mm.shape[0] == direction.shape[0] == event.shape[0]):
        msg = "transport: energy_kev, position_mm, direction and event must have the same length"
        raise ValueError(msg)
    if event.size and (np.any(np.diff(event) < 0) or event[0] < 0 or event[-1] >= n_events):
        msg = f"transport: event numbers must be non-decreasing within [0, {n_events})"
        raise ValueError(msg)
    tab = cross_section_table()
    log_t, log_r = _electron_range_table()
    buf, ibuf, _, prim_edep, prim_pair, prim_esc = _transport_kernel(
        energy_kev, position_mm, direction,
        tab.photo, tab.compton, tab.pair, tab.rayleigh, tab.log_e0, tab.dlog,
        log_t, log_r,
        float(radius_mm), float(height_mm), cfg.electron_step_mm, cfg.electron_tracks,
        cfg.fluorescence, cfg.include_rayleigh, cfg.min_photon_kev, int(seed) % (2**32),
    )  # fmt: skip
    dep_event = event[ibuf]
    # deposits come out grouped by primary, and primaries are sorted by event
    counts = np.bincount(dep_event, minlength=n_events)
    offsets = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Deposits(
        offsets=offsets,
        edep_kev=buf[:, 0].copy(),
        x_mm=buf[:, 1].copy(),
        y_mm=buf[:, 2].copy(),
        z_mm=buf[:, 3].copy(),
        primary=ibuf,
        primary_edep_kev=prim_edep,
        primary_pair=prim_pair,
        primary_escape_511=prim_esc,
    )


@nb.njit(cache=True, nogil=True)
def _cluster_kernel(
    offsets: NDArray[np.int64],
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    z: NDArray[np.float64],
    dist: float,
) -> NDArray[np.int32]:
    n_ev = offsets.shape[0] - 1
    out = np.zeros(n_ev, dtype=np.int32)
    d2 = dist * dist
    parent = np.empty(x.shape[0], dtype=np.int64)
    for ev in range(n_ev):
        a = offsets[ev]
        b = offsets[ev + 1]
        for i in range(a, b):
            parent[i] = i
        for i in range(a, b):
            for j in range(i + 1, b):
                dx = x[i] - x[j]
                dy = y[i] - y[j]
                dz = z[i] - z[j]
                if dx * dx + dy * dy + dz * dz < d2:
                    ri = i
                    while parent[ri] != ri:
                        ri = parent[ri]
                    rj = j
                    while parent[rj] != rj:
                        rj = parent[rj]
                    if ri != rj:
                        parent[max(ri, rj)] = min(ri, rj)
        k = 0
        for i in range(a, b):
            if parent[i] == i:
                k += 1
        out[ev] = k
    return out


def cluster_sites(deposits: Deposits, site_distance_mm: float = 1.0) -> NDArray[np.int32]:
    """Number of sites per event: deposits linked (single linkage) closer than the distance."""
    return _cluster_kernel(
        deposits.offsets, deposits.x_mm, deposits.y_mm, deposits.z_mm, float(site_distance_mm)
    )
