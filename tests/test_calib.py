"""Tests of bege_psd.calib on synthetic ADC spectra with known gain, offset and resolution."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bege_psd.calib import (
    CRYOCONITE_LINES_KEV,
    TH232_LINES_KEV,
    CalibConfig,
    Calibration,
    CalibrationError,
    calibrate,
    find_peaks_adc,
    fit_resolution,
)
from bege_psd.config import load_config

# FWHM^2 = a + b E + c E^2 through the paper's 0.85 keV @ 59.5, 1.35 @ 661.66, 1.80 @ 1332.49
_E = np.array([59.5, 661.66, 1332.49])
_F = np.array([0.85, 1.35, 1.80])
ABC = np.linalg.solve(np.stack([np.ones(3), _E, _E**2], 1), _F**2)
TH_INTENSITY = np.array([43.6, 11.4, 30.54, 6.65, 4.46, 26.2, 15.9, 1.51, 35.84])


def _th_events(n: int, c0: float, c1: float, c2: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lines = np.array(TH232_LINES_KEV)
    k = rng.choice(lines.size, size=int(0.3 * n), p=TH_INTENSITY / TH_INTENSITY.sum())
    fwhm = np.sqrt(ABC[0] + ABC[1] * lines[k] + ABC[2] * lines[k] ** 2)
    e = np.concatenate(
        [rng.normal(lines[k], fwhm / 2.3548), rng.exponential(600.0, int(0.7 * n)) + 20.0]
    )
    e = e[e < 2900.0]
    adc = (e - c0) / c1 if c2 == 0.0 else (-c1 + np.sqrt(c1 * c1 - 4 * c2 * (c0 - e))) / (2 * c2)
    return np.round(adc).astype(np.uint16)


@pytest.fixture(scope="module")
def linear_cal() -> Calibration:
    return calibrate(_th_events(200_000, 1.5, 0.2))


def test_linear_calibration_recovers_truth(linear_cal: Calibration) -> None:
    cal = linear_cal
    assert cal.order == 1
    err = np.sqrt(np.diag(cal.covariance))
    assert abs(cal.coeffs[0] - 1.5) < 4 * err[0] + 1e-3
    assert abs(cal.coeffs[1] - 0.2) < 4 * err[1] + 1e-6
    assert len(cal.lines_kev) >= 8
    assert np.max(np.abs(cal.residuals_kev)) < 0.1
    # resolution curve within 5 % of the truth over the calibrated range
    e = np.array([300.0, 661.66, 1332.49, 2614.5])
    truth = np.sqrt(ABC[0] + ABC[1] * e + ABC[2] * e**2)
    np.testing.assert_allclose(cal.fwhm_kev(e), truth, rtol=0.05)
    assert np.all(cal.fwhm_kev_error(e) > 0)
    assert np.all(cal.apply_error([0.0, 5000.0]) > 0)


def test_round_trip_dict(linear_cal: Calibration) -> None:
    d = json.loads(json.dumps(linear_cal.to_dict()))
    back = Calibration.from_dict(d)
    assert back == linear_cal
    np.testing.assert_allclose(back.apply([100, 1000]), linear_cal.apply([100, 1000]))
    with pytest.raises(CalibrationError, match="coeffs"):
        Calibration.from_dict({"covariance": []})


def test_quadratic_calibration() -> None:
    adc = _th_events(200_000, 0.8, 0.19, 2e-6, seed=3)
    cal = calibrate(adc, order=2)
    assert cal.order == 2
    ch = np.array([1000.0, 7000.0, 11500.0])
    truth = 0.8 + 0.19 * ch + 2e-6 * ch**2
    assert np.all(np.abs(cal.apply(ch) - truth) < 4 * cal.apply_error(ch) + 0.02)
    assert cal.compass_coefficients[2] == pytest.approx(2e-6, rel=0.2)


def test_find_peaks_and_failures() -> None:
    counts = np.full(1000, 100.0)
    counts[300:305] += [50, 300, 600, 300, 50]
    fp = find_peaks_adc(counts)
    assert fp.channel.tolist() == [302.0]
    rng = np.random.default_rng(1)
    with pytest.raises(CalibrationError, match=r"peak|line"):
        calibrate(rng.uniform(0, 4000, 50_000))
    with pytest.raises(CalibrationError, match="order"):
        calibrate(np.arange(10), [100.0], order=1)
    with pytest.raises(CalibrationError, match="finite"):
        calibrate(np.array([np.nan, np.nan]))


def test_fit_resolution_exact_points() -> None:
    (a, b, c), cov = fit_resolution(_E, _F, np.full(3, 0.01))
    np.testing.assert_allclose([a, b, c], ABC, rtol=1e-8)
    assert cov.shape == (3, 3)
    (a1, b1, c1), _ = fit_resolution([100.0], [1.0], [0.1])
    assert (a1, b1, c1) == pytest.approx((1.0, 0.0, 0.0))


def test_config_section_and_line_lists() -> None:
    cfg = load_config({"calib": {"source": "cryoconite", "order": 2}}).section("calib")
    assert isinstance(cfg, CalibConfig)
    assert cfg.lines_kev == CRYOCONITE_LINES_KEV
    assert cfg.order == 2


def test_line_energies_match_shared_physics_data() -> None:
    data = Path(__file__).resolve().parents[2] / "shared" / "physics-data"
    if not data.is_dir():
        pytest.skip("shared physics-data not present")

    def energies(name: str, col: str) -> set[float]:
        with (data / name).open() as fh:
            rows = csv.DictReader(line for line in fh if not line.startswith("#"))
            return {float(r[col]) for r in rows}

    assert set(TH232_LINES_KEV) <= energies("th232_chain_lines.csv", "E_keV")
    assert set(CRYOCONITE_LINES_KEV) <= energies("cryoconite_lines.csv", "E_keV")


def test_calibrate_from_streamed_adc_spectrum(linear_cal: Calibration) -> None:
    from bege_psd.spectrum import adc_spectrum, fill, make_spectrum

    adc = _th_events(200_000, 1.5, 0.2)
    h = adc_spectrum(adc[:0], n_channels=16384)
    for lo in range(0, adc.size, 50_000):
        fill(h, adc[lo : lo + 50_000])
    cal = calibrate(h)
    # same events; only the spectrum length differs, which moves the fit starting points
    assert cal.coeffs == pytest.approx(linear_cal.coeffs, rel=1e-6)
    coarse = make_spectrum(adc, bins=100, range=(0, 16000))
    with pytest.raises(CalibrationError, match="one bin per ADC channel"):
        calibrate(coarse)
