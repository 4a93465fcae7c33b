"""Configuration of the simulated detector and its read-out electronics.

Two frozen dataclasses, validated by :func:`bege_psd.config.from_mapping` (they are composed
into ``sim.config.SimConfig`` by the run assembly):

* :class:`DetectorConfig` -- crystal geometry, contacts, impurity profile, bias, field grid,
  drift and charge-cloud parameters, pulse-library grid. Everything that changes the pulse
  library is here, so the library cache is keyed by a hash of this object alone.
* :class:`ElectronicsConfig` -- preamplifier, noise, energy resolution, ADC, trigger, window and
  trapezoid energy. Changing it never requires rebuilding the library.

Coordinates used everywhere in ``bege_psd.sim``: ``r_mm`` is the distance from the crystal axis,
``z_mm`` the height above the face that carries the p+ read-out contact (``z = 0``). The
opposite face ``z = height_mm`` is the entrance window, facing the endcap and the source.

Defaults describe a BE5030-like p-type BEGe: 80 mm x 30 mm, p+ contact 19 mm in diameter (the
paper's value), a 3 mm passivated annulus around it (``wrap_around_radius_mm`` = 12.5 mm, the
width of the groove of a BEGe; a 5.5 mm annulus spreads the weighting field and raised the
simulated A/E survival of 2614 keV FEP events from 12.2 to 15.6 %) and the n+
lithium contact (dead layer ~0.7 mm) over the rest of the surface; acceptor density
~1e10 cm^-3 with a gradient along the growth axis; 4 kV bias. The groove of a real BEGe is not
modelled (the passivated annulus is a flat Neumann boundary).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError

__all__ = ("DetectorConfig", "ElectronicsConfig")


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Geometry, fields and charge transport of the simulated p-type BEGe.

    Lengths in mm, impurity densities in cm^-3 (acceptors, a positive number), bias in V.
    """

    radius_mm: float = field(default=40.0, metadata={"min": 5.0, "max": 60.0})
    height_mm: float = field(default=30.0, metadata={"min": 5.0, "max": 60.0})
    pplus_radius_mm: float = field(
        default=9.5,
        metadata={"min": 0.5, "doc": "radius of the p+ read-out contact (paper: 19 mm diameter)"},
    )
    wrap_around_radius_mm: float = field(
        default=12.5,
        metadata={
            "min": 1.0,
            "doc": "inner radius of the n+ contact on the p+ face; passivated in between "
            "(3 mm, the width of a BEGe groove)",
        },
    )
    dead_layer_mm: float = field(default=0.7, metadata={"min": 0.0, "max": 3.0})
    transition_layer_mm: float = field(
        default=0.3,
        metadata={
            "min": 0.0,
            "max": 3.0,
            "doc": "partial, delayed charge collection below the dead layer (linear 0->1)",
        },
    )
    transition_delay_ns: float = field(
        default=1000.0,
        metadata={
            "min": 0.0,
            "max": 20000.0,
            "doc": "diffusion delay of charge created at the dead-layer side of the transition layer",
        },
    )
    impurity_pplus_face_cm3: float = field(
        default=0.9e10, metadata={"min": 0.0, "max": 5e10, "doc": "acceptor density at z = 0"}
    )
    impurity_far_face_cm3: float = field(
        default=1.2e10,
        metadata={"min": 0.0, "max": 5e10, "doc": "acceptor density at z = height_mm"},
    )
    bias_v: float = field(default=4000.0, metadata={"min": 0.0, "max": 10000.0})
    eps_r: float = field(default=16.0, metadata={"min": 1.0})
    field_grid_mm: float = field(default=0.1, metadata={"min": 0.02, "max": 2.0})
    sor_tolerance_v: float = field(
        default=1e-6,
        metadata={
            "min": 1e-12,
            "max": 1e-2,
            "doc": "stop SOR when no update exceeds this (relative)",
        },
    )
    library_grid_mm: float = field(default=0.5, metadata={"min": 0.05, "max": 5.0})
    drift_step_ns: float = field(default=1.0, metadata={"min": 0.1, "max": 5.0})
    max_drift_ns: float = field(default=4000.0, metadata={"min": 100.0, "max": 20000.0})
    drift_model: Literal["adl2006", "adl2016"] = "adl2006"
    cloud_sigma0_mm: float = field(
        default=0.4,
        metadata={
            "min": 0.0,
            "max": 3.0,
            "doc": "initial charge-cloud r.m.s. size (track extent + repulsion)",
        },
    )
    diffusion_cm2_per_s: float = field(default=250.0, metadata={"min": 0.0, "max": 2000.0})

    def __post_init__(self) -> None:
        if not self.pplus_radius_mm < self.wrap_around_radius_mm <= self.radius_mm:
            msg = (
                f"detector: need pplus_radius_mm ({self.pplus_radius_mm}) < wrap_around_radius_mm "
                f"({self.wrap_around_radius_mm}) <= radius_mm ({self.radius_mm})"
            )
            raise ConfigError(msg)
        if self.dead_layer_mm + self.transition_layer_mm >= 0.5 * min(
            self.radius_mm, self.height_mm
        ):
            msg = (
                "detector: dead_layer_mm + transition_layer_mm must be below half the crystal size"
            )
            raise ConfigError(msg)
        if self.library_grid_mm < self.field_grid_mm:
            msg = (
                f"detector: library_grid_mm ({self.library_grid_mm}) must not be finer than "
                f"field_grid_mm ({self.field_grid_mm})"
            )
            raise ConfigError(msg)
        for name in ("radius_mm", "height_mm", "pplus_radius_mm", "wrap_around_radius_mm"):
            value = getattr(self, name)
            n = value / self.field_grid_mm
            if abs(n - round(n)) > 1e-6:
                msg = f"detector: {name} = {value} must be a multiple of field_grid_mm = {self.field_grid_mm}"
                raise ConfigError(msg)


@dataclasses.dataclass(frozen=True)
class ElectronicsConfig:
    """Preamplifier, noise, digitiser (DT5725-like) and energy filter of the simulated chain.

    The energy resolution FWHM(E) = sqrt(a + b E + c E^2) is fixed by three (energy, FWHM)
    points, by default the paper's 0.85 keV at 59.54, 1.35 at 661.66 and 1.80 at 1332.49 keV.
    ``a`` is electronic noise, ``b`` Fano statistics and ``c`` charge trapping / ballistic
    deficit. The waveform noise defaults to the level at which the 2 us / 1 us trapezoid
    applied to the simulated noise gives exactly the electronic term ``a``.
    """

    sample_period_ns: float = field(default=4.0, metadata={"min": 0.5, "max": 100.0})
    n_samples: int = field(default=366, metadata={"min": 16, "max": 65536})
    pretrigger_ns: float = field(default=500.0, metadata={"min": 0.0})
    adc_bits: int = field(default=14, metadata={"min": 8, "max": 16})
    baseline_adc: float = field(default=1200.0, metadata={"min": 0.0})
    waveform_kev_per_adc: float = field(
        default=0.22,
        metadata={"min": 1e-4, "doc": "waveform gain: keV of deposited energy per ADC count"},
    )
    polarity: Literal["positive", "negative"] = "positive"
    preamp_rise_ns: float = field(
        default=30.0,
        metadata={"min": 0.0, "max": 1000.0, "doc": "single-pole time constant of the preamp rise"},
    )
    preamp_decay_us: float = field(default=50.0, metadata={"min": 0.1})
    resolution_energies_kev: tuple[float, float, float] = (59.54, 661.66, 1332.49)
    resolution_fwhm_kev: tuple[float, float, float] = (0.85, 1.35, 1.80)
    waveform_noise_kev: float | None = field(
        default=None,
        metadata={
            "min": 0.0,
            "doc": "white-noise sigma per sample before the preamp rise; None = calibrated",
        },
    )
    trapezoid_rise_us: float = field(default=2.0, metadata={"min": 0.01})
    trapezoid_flat_us: float = field(default=1.0, metadata={"min": 0.0})
    energy_kev_per_channel: float = field(default=0.2, metadata={"min": 1e-4})
    energy_bits: int = field(default=15, metadata={"min": 8, "max": 16})
    trigger_fraction: float = field(
        default=0.1,
        metadata={
            "min": 0.01,
            "max": 0.9,
            "doc": "leading-edge trigger at this fraction of the pulse",
        },
    )
    trigger_jitter_ns: float = field(default=2.0, metadata={"min": 0.0, "max": 100.0})
    trigger_threshold_kev: float = field(default=5.0, metadata={"min": 0.0})

    def __post_init__(self) -> None:
        e = np.asarray(self.resolution_energies_kev, dtype=float)
        if np.any(e <= 0) or len(set(self.resolution_energies_kev)) != 3:
            msg = f"electronics: resolution_energies_kev {self.resolution_energies_kev} must be 3 distinct positive energies"
            raise ConfigError(msg)
        if any(f <= 0 for f in self.resolution_fwhm_kev):
            msg = f"electronics: resolution_fwhm_kev {self.resolution_fwhm_kev} must be positive"
            raise ConfigError(msg)
        a, b, c = self.resolution_coefficients
        emax = 10000.0
        grid = np.linspace(0.0, emax, 1001)
        if np.any(a + b * grid + c * grid**2 <= 0):
            msg = (
                f"electronics: the resolution points {self.resolution_fwhm_kev} at "
                f"{self.resolution_energies_kev} give FWHM^2 <= 0 somewhere in 0-{emax:.0f} keV "
                f"(a={a:.4g}, b={b:.4g}, c={c:.4g})"
            )
            raise ConfigError(msg)
        if self.pretrigger_ns >= self.n_samples * self.sample_period_ns:
            msg = "electronics: pretrigger_ns must be shorter than the window n_samples * sample_period_ns"
            raise ConfigError(msg)
        if self.baseline_adc >= 2**self.adc_bits:
            msg = f"electronics: baseline_adc {self.baseline_adc} outside the {self.adc_bits}-bit range"
            raise ConfigError(msg)

    # -- derived quantities ---------------------------------------------------------------
    @property
    def resolution_coefficients(self) -> tuple[float, float, float]:
        """(a [keV^2], b [keV], c [1]) of FWHM^2 = a + b E + c E^2 through the three points."""
        e = np.asarray(self.resolution_energies_kev, dtype=float)
        f2 = np.asarray(self.resolution_fwhm_kev, dtype=float) ** 2
        m = np.stack([np.ones(3), e, e**2], axis=1)
        a, b, c = np.linalg.solve(m, f2)
        return float(a), float(b), float(c)

    def fwhm_kev(self, energy_kev: float | NDArray[np.float64]) -> NDArray[np.float64]:
        """Energy resolution (FWHM, keV) of the model at ``energy_kev``."""
        a, b, c = self.resolution_coefficients
        e = np.maximum(np.asarray(energy_kev, dtype=np.float64), 0.0)
        return np.asarray(np.sqrt(a + b * e + c * e**2), dtype=np.float64)

    @property
    def trapezoid_noise_gain(self) -> float:
        """sigma of the trapezoid energy per unit sigma of the white waveform noise.

        The noise is white per sample, then low-passed by the preamplifier rise (single pole,
        unit DC gain); the trapezoid is the difference of two ``rise`` long means separated by
        the flat top. The gain is computed exactly from the filtered impulse response.
        """
        dt = self.sample_period_ns
        k = max(1, round(self.trapezoid_rise_us * 1000.0 / dt))
        g = round(self.trapezoid_flat_us * 1000.0 / dt)
        h = np.concatenate([np.full(k, -1.0 / k), np.zeros(g), np.full(k, 1.0 / k)])
        if self.preamp_rise_ns > 0:
            alpha = math.exp(-dt / self.preamp_rise_ns)
            n_tail = int(20 * self.preamp_rise_ns / dt) + 1
            lp = (1 - alpha) * alpha ** np.arange(n_tail)
            h = np.convolve(h, lp)
        return float(np.sqrt(np.sum(h**2)))

    @property
    def noise_sigma_kev(self) -> float:
        """White-noise sigma per sample (keV, before the preamp rise) used for the waveforms."""
        if self.waveform_noise_kev is not None:
            return float(self.waveform_noise_kev)
        a, _, _ = self.resolution_coefficients
        sigma_e = math.sqrt(max(a, 0.0)) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        return sigma_e / self.trapezoid_noise_gain
