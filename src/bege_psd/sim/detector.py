"""Detector physics of the simulated BEGe: fields, charge drift, induced signals, pulse library.

What to use when
----------------
* :func:`solve_fields` -- electric potential, field, weighting potential, depletion voltage and
  capacitance of a :class:`~bege_psd.sim.config_detector.DetectorConfig`.
* :func:`drift_signal` -- drift one electron-hole pair from (r, z) and return the induced charge
  on the p+ contact versus time (for plots and tests).
* :class:`PulseLibrary` -- the induced-charge pulses of every node of an (r, z) grid, built
  once and cached on disk (``generated/cache/`` or ``$BEGE_PSD_CACHE``) under a hash of the
  detector configuration. ``PulseLibrary.load_or_build(cfg)`` is the entry point used by
  :func:`bege_psd.sim.electronics.digitize`.

Physics
-------
The crystal is a p-type cylinder in (r, z) with axial symmetry; ``z = 0`` is the face with the
p+ read-out contact (a disc of radius ``pplus_radius_mm``), surrounded by a passivated annulus
(a Neumann boundary, no surface charge) out to ``wrap_around_radius_mm``; the n+ contact covers
the rest of that face, the mantle and the far face ``z = height_mm`` (the entrance window).

* Potential: Poisson's equation ``lap V = e N_A(z) / (eps_r eps_0)`` (ionised acceptors are a
  negative space charge) with V = 0 on p+ and V = bias on n+; weighting potential of the p+
  contact: Laplace's equation with W = 1 on p+ and 0 on n+. Both are solved with red-black
  successive over-relaxation on an r-z grid, coarse to fine (4h, 2h, h), in the manner of
  fieldgen (Radford, ``mjd_fieldgen``) -- our own implementation.
* Depletion: by linearity V = bias * phi_1 + phi_0 (phi_1: Laplace with n+ = 1; phi_0: Poisson
  with both contacts grounded). The bulk is depleted when V >= 0 (the p+ potential) in every
  node, so the depletion voltage is ``max(-phi_0 / phi_1)`` over the bulk. Undepleted pockets
  enclosed at higher potential ("pinch-off") are caught when a hole cannot reach the contact.
* Capacitance of the p+ contact: ``C = eps ∫ |grad W|^2 dV`` (W = 1 V on the contact).
* Drift velocity: Bruyneel et al., NIM A 569 (2006) 764 (the ADL 2006 parameters),
  ``v(E) = mu0 E / (1 + (E/E0)^beta)^(1/beta) - mu_n E``, taken as the average of the <100>
  and <111> values and directed along the field (the crystal-axis anisotropy is neglected;
  this averages the ~15 % anisotropy of the hole drift time).
* Induced charge: Shockley-Ramo, ``Q(t) = q [W(r_h(t)) - W(r_e(t))]`` -> 1 when both carriers
  are collected.
* Charge cloud: r.m.s. size ``sigma(t)^2 = sigma_0^2 + 2 D t`` at the hole arrival time; the
  induced pulse is smeared in time by ``sigma / v_arrival`` (the cloud's spread in arrival
  time), which is what rounds the current peak of far-away deposits.

* Dead and transition layers: :func:`charge_collection_efficiency` and
  :func:`transition_delay_ns` (used by the electronics; the library itself is for full
  collection).

The library stores each node's pulse *aligned on its hole collection time* T, so that
bilinear interpolation between nodes mixes pulse shapes and drift times separately; mixing
unaligned pulses would fabricate a double-step (multi-site-like) current.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
from numpy.typing import NDArray

from .._util import atomic_path, stable_hash
from ..config import to_mapping
from ..errors import SimulationError
from .config_detector import DetectorConfig

__all__ = (
    "LIBRARY_VERSION",
    "FieldSolution",
    "PulseLibrary",
    "charge_collection_efficiency",
    "default_cache_dir",
    "distance_to_nplus_mm",
    "drift_signal",
    "drift_velocity_mm_per_ns",
    "solve_fields",
    "transition_delay_ns",
)

log = logging.getLogger(__name__)

#: Bumped whenever the physics or the file layout of the library changes (invalidates caches).
LIBRARY_VERSION = 2

_E_CHARGE = 1.602176634e-19  # C
_EPS0 = 8.8541878128e-12  # F/m

# Bruyneel et al. NIM A 569 (2006) 764, ADL 2006 parameters (mu0 cm2/Vs, beta, E0 V/cm, mu_n cm2/Vs),
# via physics-data/NOTES.md section 3.1. Rows: e<100>, e<111>, h<100>, h<111>.
_ADL2006 = np.array(
    [
        [38609.0, 0.805, 511.0, -171.0],
        [38536.0, 0.641, 538.0, 510.0],
        [61824.0, 0.942, 185.0, 0.0],
        [61215.0, 0.662, 182.0, 0.0],
    ]
)

# node kinds of the field grid
_BULK, _PPLUS, _NPLUS, _PASSIVATED = 0, 1, 2, 3


# --------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------
def distance_to_nplus_mm(
    r_mm: NDArray[np.float64], z_mm: NDArray[np.float64], cfg: DetectorConfig
) -> NDArray[np.float64]:
    """Distance (mm) from points inside the crystal to the nearest n+ surface."""
    r = np.asarray(r_mm, dtype=np.float64)
    z = np.asarray(z_mm, dtype=np.float64)
    d_side = cfg.radius_mm - r
    d_top = cfg.height_mm - z
    d_bottom = np.where(
        r >= cfg.wrap_around_radius_mm, z, np.hypot(cfg.wrap_around_radius_mm - r, z)
    )
    return np.minimum(np.minimum(d_side, d_top), d_bottom)


def charge_collection_efficiency(
    r_mm: NDArray[np.float64], z_mm: NDArray[np.float64], cfg: DetectorConfig
) -> NDArray[np.float64]:
    """Fraction of the charge of a deposit at (r, z) that reaches the contacts.

    0 inside the dead layer, rising linearly to 1 across the transition layer (a step at the
    dead-layer depth when ``transition_layer_mm == 0``).
    """
    d = distance_to_nplus_mm(r_mm, z_mm, cfg)
    if cfg.transition_layer_mm > 0:
        return np.clip((d - cfg.dead_layer_mm) / cfg.transition_layer_mm, 0.0, 1.0)
    return (d >= cfg.dead_layer_mm).astype(np.float64)


def transition_delay_ns(
    r_mm: NDArray[np.float64], z_mm: NDArray[np.float64], cfg: DetectorConfig
) -> NDArray[np.float64]:
    """Time constant (ns) of the delayed arrival of charge from the transition layer.

    Charges created in the partly depleted lithium-diffused layer reach the active volume by
    diffusion; the delay grows with the square of the distance still to cover:
    ``tau = transition_delay_ns * (1 - u)^2`` with ``u`` the depth fraction across the layer
    (0 at the dead-layer boundary, 1 at the active volume). 0 outside the layer.
    """
    d = distance_to_nplus_mm(r_mm, z_mm, cfg)
    if cfg.transition_layer_mm <= 0 or cfg.transition_delay_ns <= 0:
        return np.zeros_like(d)
    u = (d - cfg.dead_layer_mm) / cfg.transition_layer_mm
    inside = (u > 0.0) & (u < 1.0)
    return np.where(inside, cfg.transition_delay_ns * (1.0 - np.clip(u, 0.0, 1.0)) ** 2, 0.0)


# --------------------------------------------------------------------------------------------
# fields
# --------------------------------------------------------------------------------------------
def _node_kinds(nr: int, nz: int, h_mm: float, cfg: DetectorConfig) -> NDArray[np.int8]:
    kind = np.zeros((nr, nz), dtype=np.int8)
    r = np.arange(nr) * h_mm
    tol = 1e-6 * h_mm
    kind[-1, :] = _NPLUS
    kind[:, -1] = _NPLUS
    bottom = np.where(
        r <= cfg.pplus_radius_mm + tol,
        _PPLUS,
        np.where(r >= cfg.wrap_around_radius_mm - tol, _NPLUS, _PASSIVATED),
    )
    kind[:, 0] = bottom
    kind[-1, :] = _NPLUS
    return kind


@nb.njit(cache=True, nogil=True)
def _sor_kernel(
    v: NDArray[np.float64],
    kind: NDArray[np.int8],
    rhs: NDArray[np.float64],
    omega: float,
    tol: float,
    max_iter: int,
) -> int:
    """Red-black SOR for lap V = rhs on an r-z grid (rhs already multiplied by h^2).

    Dirichlet nodes (p+, n+) are left untouched; passivated nodes on the z = 0 face use a
    mirror (dV/dz = 0); nodes on the axis use the symmetric limit 4 (V1 - V0) of the radial term.
    Returns the number of sweeps, or -1 when ``max_iter`` was reached.
    """
    nr, nz = v.shape
    for it in range(max_iter):
        max_delta = 0.0
        for color in range(2):
            for i in range(nr):
                for j in range(nz):
                    if (i + j) % 2 != color:
                        continue
                    k = kind[i, j]
                    if k == 1 or k == 2:
                        continue
                    vn = v[i, j + 1]
                    vs = v[i, j + 1] if j == 0 else v[i, j - 1]
                    if i == 0:
                        new = (4.0 * v[1, j] + vn + vs - rhs[i, j]) / 6.0
                    else:
                        ae = (i + 0.5) / i
                        aw = (i - 0.5) / i
                        new = (ae * v[i + 1, j] + aw * v[i - 1, j] + vn + vs - rhs[i, j]) / 4.0
                    d = new - v[i, j]
                    v[i, j] += omega * d
                    ad = abs(d)
                    if ad > max_delta:
                        max_delta = ad
        if max_delta < tol:
            return it + 1
    return -1


def _solve_laplace_poisson(
    cfg: DetectorConfig,
    pplus_v: float,
    nplus_v: float,
    with_charge: bool,
    scale_v: float,
) -> tuple[NDArray[np.float64], int]:
    """Solve on the fine grid, starting from coarser grids (factors 4, 2, 1 where they fit)."""
    h = cfg.field_grid_mm
    nr = round(cfg.radius_mm / h) + 1
    nz = round(cfg.height_mm / h) + 1
    factors = [
        f for f in (8, 4, 2) if (nr - 1) % f == 0 and (nz - 1) % f == 0 and (nz - 1) // f >= 8
    ][-2:]
    factors = [*factors, 1]
    v: NDArray[np.float64] | None = None
    total_sweeps = 0
    for f in factors:
        hf = h * f
        nrf = (nr - 1) // f + 1
        nzf = (nz - 1) // f + 1
        kind = _node_kinds(nrf, nzf, hf, cfg)
        z = np.arange(nzf) * hf
        if with_charge:
            n_cm3 = cfg.impurity_pplus_face_cm3 + (
                cfg.impurity_far_face_cm3 - cfg.impurity_pplus_face_cm3
            ) * (z / cfg.height_mm)
            # e N / eps in V/mm^2 (N in m^-3 = 1e6 * cm^-3; 1 V/m^2 = 1e-6 V/mm^2)
            f_v_mm2 = _E_CHARGE * n_cm3 * 1e6 / (cfg.eps_r * _EPS0) * 1e-6
            rhs = np.broadcast_to(f_v_mm2 * hf**2, (nrf, nzf)).copy()
        else:
            rhs = np.zeros((nrf, nzf))
        if v is None:
            vf = np.full((nrf, nzf), 0.5 * (pplus_v + nplus_v))
        else:
            # bilinear prolongation from the previous (coarser by 2 or 4) grid
            ratio = (v.shape[0] - 1) / (nrf - 1)
            ri = np.arange(nrf) * ratio
            zi = np.arange(nzf) * ratio
            vf = _bilinear_grid(v, ri, zi)
        vf[kind == _PPLUS] = pplus_v
        vf[kind == _NPLUS] = nplus_v
        n = max(nrf, nzf)
        omega = 2.0 / (1.0 + math.sin(math.pi / n))
        tol = cfg.sor_tolerance_v * scale_v
        sweeps = _sor_kernel(vf, kind, rhs, omega, tol, 200 * n + 2000)
        if sweeps < 0:
            msg = f"field solver did not converge on the {hf:.3g} mm grid (tolerance {tol:.3g} V)"
            raise SimulationError(msg)
        total_sweeps += sweeps
        v = vf
    assert v is not None
    return v, total_sweeps


def _bilinear_grid(
    v: NDArray[np.float64], ri: NDArray[np.float64], zi: NDArray[np.float64]
) -> NDArray[np.float64]:
    i0 = np.clip(np.floor(ri).astype(int), 0, v.shape[0] - 2)
    j0 = np.clip(np.floor(zi).astype(int), 0, v.shape[1] - 2)
    fr = (ri - i0)[:, None]
    fz = (zi - j0)[None, :]
    a = v[np.ix_(i0, j0)]
    b = v[np.ix_(i0 + 1, j0)]
    c = v[np.ix_(i0, j0 + 1)]
    d = v[np.ix_(i0 + 1, j0 + 1)]
    return np.asarray((1 - fr) * (1 - fz) * a + fr * (1 - fz) * b + (1 - fr) * fz * c + fr * fz * d)


@dataclasses.dataclass(frozen=True)
class FieldSolution:
    """Fields of a detector on the regular grid ``r_mm x z_mm`` (arrays indexed [i_r, j_z]).

    ``potential_v`` at the configured bias, ``e_r_v_per_cm``/``e_z_v_per_cm`` the electric field,
    ``weighting`` the weighting potential of the p+ contact, ``depletion_voltage_v`` the bias at
    which the bulk just depletes, ``capacitance_pf`` the p+ contact capacitance.
    """

    r_mm: NDArray[np.float64]
    z_mm: NDArray[np.float64]
    potential_v: NDArray[np.float64]
    weighting: NDArray[np.float64]
    e_r_v_per_cm: NDArray[np.float64]
    e_z_v_per_cm: NDArray[np.float64]
    kind: NDArray[np.int8]
    depletion_voltage_v: float
    capacitance_pf: float
    min_field_v_per_cm: float
    solve_seconds: float

    @property
    def depleted(self) -> bool:
        """True when every bulk node is at or above the p+ potential at the configured bias."""
        return bool(
            np.all(
                self.potential_v[self.kind != _PPLUS]
                >= -1e-6 * max(1.0, float(self.potential_v.max()))
            )
        )


def solve_fields(cfg: DetectorConfig) -> FieldSolution:
    """Solve potential, field and weighting potential; compute depletion voltage and capacitance.

    Raises
    ------
    SimulationError
        When the solver does not converge. (Under-depletion is reported by
        :attr:`FieldSolution.depleted` and :attr:`FieldSolution.depletion_voltage_v`; the pulse
        library refuses to build for an undepleted detector.)
    """
    t0 = time.perf_counter()
    h = cfg.field_grid_mm
    f_max = (
        _E_CHARGE
        * max(cfg.impurity_pplus_face_cm3, cfg.impurity_far_face_cm3)
        * 1e6
        / (cfg.eps_r * _EPS0)
        * 1e-6
    )
    charge_scale = max(f_max * cfg.height_mm**2, 1.0)
    phi1, s1 = _solve_laplace_poisson(cfg, 0.0, 1.0, with_charge=False, scale_v=1.0)
    phi0, s0 = _solve_laplace_poisson(cfg, 0.0, 0.0, with_charge=True, scale_v=charge_scale)
    w, s2 = _solve_laplace_poisson(cfg, 1.0, 0.0, with_charge=False, scale_v=1.0)
    nr, nz = phi1.shape
    kind = _node_kinds(nr, nz, h, cfg)
    bulk = (kind == _BULK) | (kind == _PASSIVATED)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bulk & (phi1 > 1e-9), -phi0 / phi1, -np.inf)
    v_dep = float(max(ratio.max(), 0.0))
    v = cfg.bias_v * phi1 + phi0
    # E = -grad V, V/mm -> V/cm
    dv_dr, dv_dz = np.gradient(v, h, h)
    e_r: NDArray[np.float64] = np.asarray(-10.0 * dv_dr, dtype=np.float64)
    e_z: NDArray[np.float64] = np.asarray(-10.0 * dv_dz, dtype=np.float64)
    e_r[0, :] = 0.0
    # capacitance: eps * integral |grad W|^2 dV over the crystal (cell-centred)
    gr = np.diff(w, axis=0)[:, :-1] / h
    gz = np.diff(w, axis=1)[:-1, :] / h
    gr2 = 0.5 * (gr + np.diff(w, axis=0)[:, 1:] / h)
    gz2 = 0.5 * (gz + np.diff(w, axis=1)[1:, :] / h)
    rc = (np.arange(nr - 1) + 0.5) * h
    integral_mm = float(np.sum((gr2**2 + gz2**2) * 2.0 * np.pi * rc[:, None] * h * h))
    cap_pf = cfg.eps_r * _EPS0 * 1e12 * integral_mm * 1e-3
    emag = np.hypot(e_r, e_z)
    sol = FieldSolution(
        r_mm=np.arange(nr, dtype=np.float64) * h,
        z_mm=np.arange(nz, dtype=np.float64) * h,
        potential_v=v,
        weighting=w,
        e_r_v_per_cm=e_r,
        e_z_v_per_cm=e_z,
        kind=kind,
        depletion_voltage_v=v_dep,
        capacitance_pf=cap_pf,
        min_field_v_per_cm=float(emag[kind == _BULK].min()),
        solve_seconds=time.perf_counter() - t0,
    )
    log.info(
        "fields solved on %dx%d grid in %.1f s (%d sweeps): depletion voltage %.0f V, capacitance %.2f pF",
        nr,
        nz,
        sol.solve_seconds,
        s0 + s1 + s2,
        v_dep,
        cap_pf,
    )
    return sol


# --------------------------------------------------------------------------------------------
# drift
# --------------------------------------------------------------------------------------------
def drift_velocity_mm_per_ns(
    e_v_per_cm: NDArray[np.float64] | float, carrier: str
) -> NDArray[np.float64]:
    """Drift speed (mm/ns) of ``carrier`` ('e' or 'h') at field magnitude ``e_v_per_cm``.

    Average of the <100> and <111> ADL 2006 parameterisations (Bruyneel et al. 2006).
    """
    rows = {"e": (0, 1), "h": (2, 3)}[carrier]
    e = np.abs(np.asarray(e_v_per_cm, dtype=np.float64))
    out = np.zeros_like(e)
    for k in rows:
        mu0, beta, e0, mun = _ADL2006[k]
        out += 0.5 * (mu0 * e / (1.0 + (e / e0) ** beta) ** (1.0 / beta) - mun * e)
    return np.asarray(out * 1e-8)  # cm/s -> mm/ns


@nb.njit(cache=True, nogil=True)
def _speed(emag: float, p: NDArray[np.float64], row0: int) -> float:
    s = 0.0
    for k in range(row0, row0 + 2):
        mu0 = p[k, 0]
        beta = p[k, 1]
        e0 = p[k, 2]
        mun = p[k, 3]
        s += 0.5 * (mu0 * emag / (1.0 + (emag / e0) ** beta) ** (1.0 / beta) - mun * emag)
    return s * 1e-8


@nb.njit(cache=True, nogil=True)
def _interp(a: NDArray[np.float64], r: float, z: float, h: float) -> float:
    nr, nz = a.shape
    x = r / h
    y = z / h
    i = int(x)
    j = int(y)
    if i > nr - 2:
        i = nr - 2
    if j > nz - 2:
        j = nz - 2
    if i < 0:
        i = 0
    if j < 0:
        j = 0
    fx = x - i
    fy = y - j
    return float(
        (1 - fx) * (1 - fy) * a[i, j]
        + fx * (1 - fy) * a[i + 1, j]
        + (1 - fx) * fy * a[i, j + 1]
        + fx * fy * a[i + 1, j + 1]
    )


@nb.njit(cache=True, nogil=True)
def _drift_one(
    r0: float,
    z0: float,
    sign: float,
    er: NDArray[np.float64],
    ez: NDArray[np.float64],
    w: NDArray[np.float64],
    h: float,
    params: NDArray[np.float64],
    row0: int,
    geom: NDArray[np.float64],
    dt: float,
    wt: NDArray[np.float64],
) -> tuple[int, float]:
    """Drift one carrier with midpoint (RK2) steps, filling ``wt[k]`` = W at t = k dt.

    ``sign`` +1 for holes (along E, to p+), -1 for electrons (against E, to n+). Returns the
    step index at which it was collected (-1 if not within len(wt)) and its speed on arrival.
    geom = (radius, height, pplus_radius, wrap_radius).
    """
    radius = geom[0]
    height = geom[1]
    rpc = geom[2]
    rwrap = geom[3]
    n = wt.shape[0]
    r = r0
    z = z0
    v_last = 0.0
    for k in range(n):
        # collected?
        if sign > 0:
            if z <= 0.0 and r <= rpc:
                for m in range(k, n):
                    wt[m] = 1.0
                return k, v_last
        else:
            if r >= radius or z >= height or (z <= 0.0 and r >= rwrap):
                for m in range(k, n):
                    wt[m] = 0.0
                return k, v_last
        wt[k] = _interp(w, r, z, h)
        # midpoint step
        e1r = _interp(er, r, z, h)
        e1z = _interp(ez, r, z, h)
        m1 = math.sqrt(e1r * e1r + e1z * e1z)
        if m1 <= 0.0:
            continue
        s1 = _speed(m1, params, row0)
        rm = r + 0.5 * dt * sign * s1 * e1r / m1
        zm = z + 0.5 * dt * sign * s1 * e1z / m1
        if rm < 0.0:
            rm = -rm
        if zm < 0.0:
            zm = 0.0
        e2r = _interp(er, rm, zm, h)
        e2z = _interp(ez, rm, zm, h)
        m2 = math.sqrt(e2r * e2r + e2z * e2z)
        if m2 <= 0.0:
            continue
        s2 = _speed(m2, params, row0)
        dr = dt * sign * s2 * e2r / m2
        dz = dt * sign * s2 * e2z / m2
        rn = r + dr
        zn = z + dz
        if rn < 0.0:
            rn = -rn
        # the carrier cannot leave through a contact it does not belong to
        if sign > 0:
            if rn > radius:
                rn = radius
            if zn > height:
                zn = height
        if sign > 0 and zn < 0.0:
            # reaching the z = 0 face: on the contact it is collected, on the passivation it slides
            if rn > rpc:
                zn = 0.0
        elif zn < 0.0:
            zn = 0.0
        v_last = s2
        r = rn
        z = zn
    return -1, v_last


@nb.njit(cache=True, nogil=True)
def _build_pulses(
    r0s: NDArray[np.float64],
    z0s: NDArray[np.float64],
    er: NDArray[np.float64],
    ez: NDArray[np.float64],
    w: NDArray[np.float64],
    h: float,
    params: NDArray[np.float64],
    geom: NDArray[np.float64],
    dt: float,
    n_steps: int,
    q: NDArray[np.float64],
    t_hole: NDArray[np.float64],
    t_electron: NDArray[np.float64],
    v_arrival: NDArray[np.float64],
) -> None:
    wh = np.empty(n_steps)
    we = np.empty(n_steps)
    for p in range(r0s.shape[0]):
        kh, vh = _drift_one(r0s[p], z0s[p], 1.0, er, ez, w, h, params, 2, geom, dt, wh)
        ke, _ = _drift_one(r0s[p], z0s[p], -1.0, er, ez, w, h, params, 0, geom, dt, we)
        for k in range(n_steps):
            q[p, k] = wh[k] - we[k]
        t_hole[p] = kh * dt if kh >= 0 else -1.0
        t_electron[p] = ke * dt if ke >= 0 else -1.0
        v_arrival[p] = vh


def drift_signal(
    field: FieldSolution, cfg: DetectorConfig, r_mm: float, z_mm: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, float]:
    """Induced charge (fraction of q) on the p+ contact for a point charge pair at (r, z).

    Returns ``(t_ns, q, t_hole_ns, t_electron_ns)``; collection times are -1 when a carrier
    did not arrive within ``max_drift_ns``. No charge-cloud smearing, no electronics.
    """
    n_steps = int(cfg.max_drift_ns / cfg.drift_step_ns) + 1
    q = np.zeros((1, n_steps))
    th = np.zeros(1)
    te = np.zeros(1)
    va = np.zeros(1)
    _build_pulses(
        np.array([float(r_mm)]),
        np.array([float(z_mm)]),
        field.e_r_v_per_cm,
        field.e_z_v_per_cm,
        field.weighting,
        cfg.field_grid_mm,
        _ADL2006,
        _geom(cfg),
        cfg.drift_step_ns,
        n_steps,
        q,
        th,
        te,
        va,
    )
    t_ns: NDArray[np.float64] = np.arange(n_steps, dtype=np.float64) * cfg.drift_step_ns
    return t_ns, np.asarray(q[0], dtype=np.float64), float(th[0]), float(te[0])


def _geom(cfg: DetectorConfig) -> NDArray[np.float64]:
    return np.array([cfg.radius_mm, cfg.height_mm, cfg.pplus_radius_mm, cfg.wrap_around_radius_mm])


@nb.njit(cache=True, nogil=True)
def _smear_rows(q: NDArray[np.float64], sigma_steps: NDArray[np.float64]) -> None:
    """Convolve each row with a unit-area Gaussian of its own width (in steps), in place.

    Values beyond the row ends are taken as the end values (0 before, final charge after).
    """
    n_rows, n = q.shape
    buf = np.empty(n)
    for p in range(n_rows):
        s = sigma_steps[p]
        if s < 0.3:
            continue
        half = int(4.0 * s) + 1
        kern = np.empty(2 * half + 1)
        tot = 0.0
        for m in range(-half, half + 1):
            kern[m + half] = math.exp(-0.5 * (m / s) ** 2)
            tot += kern[m + half]
        for m in range(2 * half + 1):
            kern[m] /= tot
        for k in range(n):
            acc = 0.0
            for m in range(-half, half + 1):
                idx = k - m
                if idx < 0:
                    val = q[p, 0]
                elif idx >= n:
                    val = q[p, n - 1]
                else:
                    val = q[p, idx]
                acc += kern[m + half] * val
            buf[k] = acc
        for k in range(n):
            q[p, k] = buf[k]


@nb.njit(cache=True, nogil=True)
def _lowpass_rows(a: NDArray[np.float32], alpha: float) -> None:
    """Single-pole low pass y[k] = alpha y[k-1] + (1 - alpha) x[k] along each row, in place."""
    n_rows, n = a.shape
    for p in range(n_rows):
        y = a[p, 0]
        for k in range(n):
            y = alpha * y + (1.0 - alpha) * a[p, k]
            a[p, k] = y


# --------------------------------------------------------------------------------------------
# pulse library
# --------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$BEGE_PSD_CACHE`` if set, else ``generated/cache`` (relative to the working directory)."""
    return Path(os.environ.get("BEGE_PSD_CACHE", "generated/cache"))


class PulseLibrary:
    """Induced-charge pulses of the nodes of an (r, z) grid, aligned on hole collection time.

    Node ``(i, j)`` sits at ``r = i * dr_mm``, ``z = j * dz_mm`` and has flat index
    ``i * nz + j``. ``pulses[p, m]`` is the induced charge (fraction of the deposit's charge)
    at ``t = t_collect_ns[p] + (m - align_index) * dt_ns`` after the interaction, including the
    charge-cloud smearing but no electronics. Before the interaction the pulse is 0; after the
    last stored sample it keeps its last value (1 when both carriers were collected).

    Build or load with :meth:`load_or_build`; :meth:`filtered` returns the pulses after the
    preamplifier rise, which is what :func:`bege_psd.sim.electronics.digitize` interpolates.
    """

    def __init__(
        self,
        config: DetectorConfig,
        pulses: NDArray[np.float32],
        t_collect_ns: NDArray[np.float64],
        t_electron_ns: NDArray[np.float64],
        nr: int,
        nz: int,
        dt_ns: float,
        align_index: int,
        depletion_voltage_v: float,
        capacitance_pf: float,
        build_seconds: float = float("nan"),
    ) -> None:
        self.config = config
        self.pulses = pulses
        self.t_collect_ns = t_collect_ns
        self.t_electron_ns = t_electron_ns
        self.nr = nr
        self.nz = nz
        self.dr_mm = config.radius_mm / (nr - 1)
        self.dz_mm = config.height_mm / (nz - 1)
        self.dt_ns = dt_ns
        self.align_index = align_index
        self.depletion_voltage_v = depletion_voltage_v
        self.capacitance_pf = capacitance_pf
        self.build_seconds = build_seconds
        self._filtered: dict[float, NDArray[np.float32]] = {}

    # -- identity --------------------------------------------------------------------------
    @staticmethod
    def config_hash(cfg: DetectorConfig) -> str:
        """Hash of everything that determines the library (configuration + library version)."""
        return stable_hash({"detector": to_mapping(cfg), "version": LIBRARY_VERSION})

    @property
    def r_mm(self) -> NDArray[np.float64]:
        """Radii of the library nodes (mm)."""
        return np.arange(self.nr, dtype=np.float64) * self.dr_mm

    @property
    def z_mm(self) -> NDArray[np.float64]:
        """Heights of the library nodes above the p+ face (mm)."""
        return np.arange(self.nz, dtype=np.float64) * self.dz_mm

    # -- building --------------------------------------------------------------------------
    @classmethod
    def build(
        cls, cfg: DetectorConfig, *, progress: bool = False, field: FieldSolution | None = None
    ) -> PulseLibrary:
        """Solve the fields and drift a charge pair from every library node.

        Raises
        ------
        SimulationError
            If the detector is not fully depleted at ``bias_v``, or a hole from some node
            does not reach the p+ contact within ``max_drift_ns`` (pinch-off / trapping).
        """
        t0 = time.perf_counter()
        if field is None:
            field = solve_fields(cfg)
        if cfg.bias_v < field.depletion_voltage_v:
            msg = (
                f"detector not fully depleted: bias {cfg.bias_v:.0f} V is below the depletion "
                f"voltage {field.depletion_voltage_v:.0f} V; raise bias_v or lower the impurity density"
            )
            raise SimulationError(msg)
        nr = math.ceil(cfg.radius_mm / cfg.library_grid_mm - 1e-9) + 1
        nz = math.ceil(cfg.height_mm / cfg.library_grid_mm - 1e-9) + 1
        rr, zz = np.meshgrid(
            np.linspace(0, cfg.radius_mm, nr), np.linspace(0, cfg.height_mm, nz), indexing="ij"
        )
        r0s = rr.ravel().copy()
        z0s = zz.ravel().copy()
        # nodes on the n+ surface lie in the dead layer; start their charges a quarter cell inside
        # so that the field (one-sided at the boundary) carries them into the bulk
        nudge = 0.25 * cfg.library_grid_mm
        r0s = np.minimum(r0s, cfg.radius_mm - nudge)
        z0s = np.minimum(z0s, cfg.height_mm - nudge)
        on_bottom_nplus = (z0s == 0.0) & (r0s >= cfg.wrap_around_radius_mm)
        z0s[on_bottom_nplus] = nudge
        dt = cfg.drift_step_ns
        n_steps = int(cfg.max_drift_ns / dt) + 1
        n_pts = r0s.size
        th = np.empty(n_pts)
        te = np.empty(n_pts)
        va = np.empty(n_pts)
        # drift in chunks to keep memory small and allow a progress bar
        chunk = 512
        starts = range(0, n_pts, chunk)
        iterator: Any = starts
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(starts, desc="pulse library", unit="chunk")
        raw: list[NDArray[np.float64]] = []
        for s in iterator:
            e = min(s + chunk, n_pts)
            q = np.zeros((e - s, n_steps))
            _build_pulses(
                r0s[s:e],
                z0s[s:e],
                field.e_r_v_per_cm,
                field.e_z_v_per_cm,
                field.weighting,
                cfg.field_grid_mm,
                _ADL2006,
                _geom(cfg),
                dt,
                n_steps,
                q,
                th[s:e],
                te[s:e],
                va[s:e],
            )
            raw.append(q)
        q_all = np.concatenate(raw, axis=0)
        bad = np.flatnonzero((th < 0) | (te < 0))
        if bad.size:
            p = int(bad[0])
            which = "hole" if th[p] < 0 else "electron"
            msg = (
                f"{bad.size} library nodes do not collect their charge within max_drift_ns = "
                f"{cfg.max_drift_ns} ns (first: {which} from r = {r0s[p]:.2f} mm, z = {z0s[p]:.2f} mm); "
                "the detector may have an undepleted pocket (pinch-off) at this bias"
            )
            raise SimulationError(msg)
        # charge cloud: spread in arrival time sigma(T) / v_arrival
        sigma_mm = np.sqrt(cfg.cloud_sigma0_mm**2 + 2.0 * cfg.diffusion_cm2_per_s * 1e-7 * th)
        v_safe = np.maximum(va, 1e-3)
        sigma_steps = np.minimum(sigma_mm / v_safe, 100.0) / dt
        sigma_steps[th <= 0] = 0.0
        # pad the end so the smearing sees the final value
        t_end = np.maximum(th, te)
        tail = int(np.max(t_end - th) / dt + 6 * sigma_steps.max() + 20)
        align = int(np.ceil(th.max() / dt)) + int(6 * sigma_steps.max()) + 8
        length = align + tail
        pulses = np.zeros((n_pts, length), dtype=np.float64)
        for p in range(n_pts):
            k_t = round(th[p] / dt)
            lo = align - k_t  # index in the aligned row of t = 0
            n_copy = min(n_steps, length - lo)
            pulses[p, lo : lo + n_copy] = q_all[p, :n_copy]
            if lo + n_copy < length:
                pulses[p, lo + n_copy :] = q_all[p, n_copy - 1]
        _smear_rows(pulses, sigma_steps)
        lib = cls(
            cfg,
            pulses.astype(np.float32),
            np.round(th / dt) * dt,
            te,
            nr,
            nz,
            dt,
            align,
            field.depletion_voltage_v,
            field.capacitance_pf,
            build_seconds=time.perf_counter() - t0,
        )
        log.info(
            "pulse library: %d nodes x %d samples in %.1f s; hole drift times %.0f-%.0f ns",
            n_pts,
            length,
            lib.build_seconds,
            th.min(),
            th.max(),
        )
        return lib

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the library to ``path`` (``.npz``, atomically)."""
        path = Path(path)
        meta = {
            "version": LIBRARY_VERSION,
            "hash": self.config_hash(self.config),
            "config": to_mapping(self.config),
        }
        import json

        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez(
                fh,
                pulses=self.pulses,
                t_collect_ns=self.t_collect_ns,
                t_electron_ns=self.t_electron_ns,
                shape=np.array([self.nr, self.nz, self.align_index]),
                scalars=np.array(
                    [self.dt_ns, self.depletion_voltage_v, self.capacitance_pf, self.build_seconds]
                ),
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], cfg: DetectorConfig) -> PulseLibrary:
        """Read a library written by :meth:`save`; its hash must match ``cfg``.

        Raises
        ------
        SimulationError
            If the file is unreadable, incomplete, or was built for another configuration.
        """
        import json

        path = Path(path)
        want = cls.config_hash(cfg)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                pulses = data["pulses"]
                t_collect = data["t_collect_ns"]
                t_electron = data["t_electron_ns"]
                nr, nz, align = (int(x) for x in data["shape"])
                dt, vdep, cap, build_s = (float(x) for x in data["scalars"])
        except (OSError, KeyError, ValueError) as exc:
            msg = f"pulse library {path} is unreadable or incomplete: {exc}"
            raise SimulationError(msg) from exc
        if meta.get("hash") != want:
            msg = f"pulse library {path} was built for configuration hash {meta.get('hash')}, expected {want}"
            raise SimulationError(msg)
        if (
            pulses.shape[0] != nr * nz
            or t_collect.shape != (nr * nz,)
            or pulses.dtype != np.float32
        ):
            msg = f"pulse library {path}: arrays have inconsistent shapes {pulses.shape} for {nr}x{nz} nodes"
            raise SimulationError(msg)
        return cls(cfg, pulses, t_collect, t_electron, nr, nz, dt, align, vdep, cap, build_s)

    @classmethod
    def load_or_build(
        cls,
        det_cfg: DetectorConfig,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = False,
    ) -> PulseLibrary:
        """The library for ``det_cfg`` from the cache, building and caching it when missing.

        The cache file is ``<cache_dir>/pulse_library_<hash>.npz``; ``cache_dir`` defaults to
        :func:`default_cache_dir`. A corrupt or mismatching cache file is rebuilt (logged).
        """
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = folder / f"pulse_library_{cls.config_hash(det_cfg)}.npz"
        if path.exists():
            try:
                lib = cls.load(path, det_cfg)
                log.info("pulse library loaded from %s", path)
                return lib
            except SimulationError as exc:
                log.warning("%s; rebuilding it", exc)
        lib = cls.build(det_cfg, progress=progress)
        lib.save(path)
        log.info("pulse library cached at %s", path)
        return lib

    # -- use -------------------------------------------------------------------------------
    def filtered(self, preamp_rise_ns: float) -> NDArray[np.float32]:
        """Pulses after a single-pole preamplifier rise of ``preamp_rise_ns`` (cached in memory).

        The rows are extended by ten time constants at their final value so that the filtered
        pulse settles inside the table.
        """
        key = float(preamp_rise_ns)
        if key not in self._filtered:
            if key <= 0:
                self._filtered[key] = self.pulses
            else:
                pad = int(10 * key / self.dt_ns) + 1
                a = np.concatenate(
                    [self.pulses, np.repeat(self.pulses[:, -1:], pad, axis=1)], axis=1
                )
                _lowpass_rows(a, math.exp(-self.dt_ns / key))
                self._filtered[key] = np.ascontiguousarray(a, dtype=np.float32)
        return self._filtered[key]

    def node_pulse(
        self, i_r: int, j_z: int, preamp_rise_ns: float = 0.0
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(t_ns, q)`` of node (i_r, j_z): time after the interaction and induced charge."""
        p = i_r * self.nz + j_z
        table = self.filtered(preamp_rise_ns)
        t = self.t_collect_ns[p] + (np.arange(table.shape[1]) - self.align_index) * self.dt_ns
        keep = t >= 0
        return t[keep], table[p, keep].astype(np.float64)

    def risetimes_ns(
        self, preamp_rise_ns: float = 0.0, lo: float = 0.1, hi: float = 0.9
    ) -> NDArray[np.float64]:
        """``lo``-``hi`` rise time (ns) of every node's pulse, shape ``(nr, nz)``."""
        table = self.filtered(preamp_rise_ns)
        return _crossing_times(table, lo, hi, self.dt_ns).reshape(self.nr, self.nz)

    def summary(self) -> dict[str, float]:
        """Depletion voltage, capacitance and drift-time range of the library (for reports)."""
        return {
            "depletion_voltage_v": self.depletion_voltage_v,
            "capacitance_pf": self.capacitance_pf,
            "hole_drift_min_ns": float(self.t_collect_ns.min()),
            "hole_drift_max_ns": float(self.t_collect_ns.max()),
            "build_seconds": self.build_seconds,
        }


@nb.njit(cache=True, nogil=True)
def _crossing_times_kernel(
    table: NDArray[np.float32], lo: float, hi: float, dt: float, out: NDArray[np.float64]
) -> None:
    n_rows, n = table.shape
    for p in range(n_rows):
        final = table[p, n - 1]
        if final <= 0:
            out[p] = np.nan
            continue
        t_lo = np.nan
        t_hi = np.nan
        for k in range(1, n):
            a = table[p, k - 1] / final
            b = table[p, k] / final
            if np.isnan(t_lo) and a < lo <= b:
                t_lo = (k - 1 + (lo - a) / (b - a)) * dt
            if a < hi <= b:
                t_hi = (k - 1 + (hi - a) / (b - a)) * dt
        out[p] = t_hi - t_lo


def _crossing_times(
    table: NDArray[np.float32], lo: float, hi: float, dt: float
) -> NDArray[np.float64]:
    out = np.empty(table.shape[0])
    _crossing_times_kernel(table, lo, hi, dt, out)
    return out
