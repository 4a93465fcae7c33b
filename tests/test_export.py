"""Round trips of every export format: ROOT TH1D, ORTEC .Spe, N42.42-2012 XML, fit JSON."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import uproot
from hypothesis import given, settings
from hypothesis import strategies as st

from bege_psd.calib import Calibration
from bege_psd.fit import fit_peaks, make_model
from bege_psd.io.export import (
    N42_NAMESPACE,
    ExportError,
    channel_spectrum,
    read_n42,
    read_spe,
    write_fit_json,
    write_n42,
    write_spe,
    write_th1,
)
from bege_psd.spectrum import adc_spectrum, make_spectrum

GOLDEN = Path(__file__).parent / "golden"
START = dt.datetime(2026, 12, 4, 12, 30, 0)
CAL = Calibration.from_coefficients(1.5, 0.2, 1e-6)


def _small_adc_spectrum() -> object:
    adc = np.repeat(np.arange(16), [0, 1, 2, 3, 5, 8, 13, 21, 34, 21, 13, 8, 5, 3, 2, 100000])
    return adc_spectrum(adc, n_channels=16)


def test_th1d_round_trip_with_sumw2(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    e = rng.uniform(-5, 105, 2000)
    w = rng.uniform(0.5, 2.0, 2000)
    h = make_spectrum(e, bins=20, range=(0, 100), weight=w)
    path = write_th1(tmp_path / "spec.root", h, name="kept", title="kept events")
    with uproot.open(path) as f:
        th1 = f["kept"]
        assert th1.classname == "TH1D"
        assert th1.title == "kept events"
        np.testing.assert_allclose(th1.values(), h.values())
        np.testing.assert_allclose(th1.variances(), h.variances())
        np.testing.assert_allclose(th1.values(flow=True), h.values(flow=True))
        back = th1.to_hist()
        np.testing.assert_allclose(back.axes[0].edges, h.axes[0].edges)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_spe_golden_and_own_reader(tmp_path: Path) -> None:
    h = _small_adc_spectrum()
    path = write_spe(
        tmp_path / "small.Spe",
        h,
        calibration=CAL,
        live_time_s=3500.5,
        real_time_s=3600.0,
        start_time=START,
        spec_id="golden test",
    )
    assert path.read_bytes() == (GOLDEN / "small.Spe").read_bytes()
    back = read_spe(path)
    np.testing.assert_array_equal(back.counts, h.values())
    assert back.coefficients == pytest.approx((1.5, 0.2, 1e-6))
    assert (back.live_time_s, back.real_time_s, back.start_time) == (3500.5, 3600.0, START)
    assert back.title == "golden test"


def test_spe_read_by_becquerel(tmp_path: Path) -> None:
    bq = pytest.importorskip("becquerel")
    h = _small_adc_spectrum()
    path = write_spe(
        tmp_path / "small.Spe",
        h,
        calibration=CAL,
        live_time_s=3500.5,
        real_time_s=3600.0,
        start_time=START,
    )
    spec = bq.Spectrum.from_file(str(path))
    np.testing.assert_array_equal(spec.counts_vals, h.values())
    assert spec.livetime == 3500.5
    assert spec.realtime == 3600.0
    assert spec.start_time == START
    np.testing.assert_allclose(spec.energy_cal(np.array([0.0, 10.0])), CAL.apply([0.0, 10.0]))


@pytest.mark.parametrize("suffix", [".Spe", ".n42"])
def test_read_by_specutils(tmp_path: Path, suffix: str) -> None:
    specutils = pytest.importorskip("SpecUtils")
    h = _small_adc_spectrum()
    kw = {"calibration": CAL, "live_time_s": 3500.5, "real_time_s": 3600.0, "start_time": START}
    path = tmp_path / f"s{suffix}"
    (write_spe if suffix == ".Spe" else write_n42)(path, h, **kw)
    f = specutils.SpecFile()
    f.loadFile(str(path), specutils.ParserType.Auto)
    m = f.measurements()[0]
    np.testing.assert_array_equal(np.asarray(m.gammaCounts()), h.values())
    np.testing.assert_allclose(m.calibrationCoeffs(), (1.5, 0.2, 1e-6), rtol=1e-6)
    assert m.liveTime() == pytest.approx(3500.5)
    assert m.realTime() == pytest.approx(3600.0)
    assert m.startTime().replace(tzinfo=None) == START


def test_channel_offset_and_kev_axis() -> None:
    # an ADC histogram starting at channel 100: coefficients move to the channel index
    h = make_spectrum(np.arange(100, 110), bins=10, range=(99.5, 109.5), unit="adc")
    counts, coeffs = channel_spectrum(h, CAL)
    assert counts.tolist() == [1.0] * 10
    i = np.arange(10.0)
    np.testing.assert_allclose(coeffs[0] + coeffs[1] * i + coeffs[2] * i**2, CAL.apply(100 + i))
    # a keV spectrum with regular bins: linear map of the bin centres
    hk = make_spectrum([0.5], bins=4, range=(0.0, 2.0))
    _, ck = channel_spectrum(hk)
    assert ck == pytest.approx((0.25, 0.5, 0.0))


def _cs_fit() -> object:
    edges = np.arange(650.0, 674.0 + 1e-9, 0.25)
    m = make_model("gauss_step", 1, 662.0, 12.0)
    n = np.random.default_rng(9).poisson(m.expected(edges, 5000.0, 661.66, 0.01, 0.57, 30.0, 25.0))
    return fit_peaks((n.astype(float), edges), (650.0, 674.0), "gauss_step", [661.66])


def test_n42_golden_structure_and_peaks(tmp_path: Path) -> None:
    h = _small_adc_spectrum()
    peaks = [{"energy": 661.7, "fwhm": 1.3, "net_area": 1234.0, "net_area_uncertainty": 40.0}]
    path = write_n42(
        tmp_path / "small.n42",
        h,
        calibration=CAL,
        live_time_s=3500.5,
        real_time_s=3600.0,
        start_time=START,
        peaks=peaks,
        title="kept: ACM >= 0.58",
        doc_uuid="00000000-0000-4000-8000-000000000000",
    )
    text = path.read_text()
    golden = (GOLDEN / "small.n42").read_text()
    # the creator line carries the package version; compare everything else
    strip = lambda s: [ln for ln in s.splitlines() if "bege-psd " not in ln]  # noqa: E731
    assert strip(text) == strip(golden)
    root = ET.parse(path).getroot()
    ns = {"n": N42_NAMESPACE}
    children = [c.tag.split("}")[1] for c in root]
    assert children == [
        "RadInstrumentDataCreatorName",
        "RadInstrumentInformation",
        "RadDetectorInformation",
        "EnergyCalibration",
        "RadMeasurement",
        "AnalysisResults",
    ]
    coeffs = root.find("n:EnergyCalibration/n:CoefficientValues", ns).text.split()
    assert len(coeffs) == 3
    back = read_n42(path)
    np.testing.assert_array_equal(back.counts, h.values())
    assert back.peaks == (peaks[0],)
    assert back.title == "kept: ACM >= 0.58"
    assert (back.live_time_s, back.real_time_s) == (3500.5, 3600.0)


def test_n42_peaks_from_fit_result(tmp_path: Path) -> None:
    fit = _cs_fit()
    h = make_spectrum([661.0, 662.0], bins=100, range=(650.0, 675.0))
    path = write_n42(tmp_path / "fit.n42", h, live_time_s=10.0, real_time_s=10.0, peaks=[fit])
    back = read_n42(path)
    (pk,) = back.peaks
    assert pk["net_area"] == fit.areas[0].area
    assert pk["net_area_uncertainty"] == fit.areas[0].error
    assert pk["fwhm"] == pytest.approx(fit.fwhm[0])
    assert back.coefficients == pytest.approx((650.125, 0.25, 0.0))


def test_fit_json_round_trip(tmp_path: Path) -> None:
    fit = _cs_fit()
    path = write_fit_json(tmp_path / "fit.json", fit, extra={"spectrum": "all"})
    d = json.loads(path.read_text())
    assert d["spectrum"] == "all"
    assert d["result"]["values"] == pytest.approx(fit.values)
    assert d["result"]["areas"][0]["minos_lower"] == pytest.approx(fit.areas[0].minos_lower)
    assert np.allclose(d["result"]["covariance"], fit.covariance)


def test_export_errors_leave_no_file(tmp_path: Path) -> None:
    hw = make_spectrum([1.0, 2.0], bins=4, range=(0, 4), weight=[0.5, 1.5])
    with pytest.raises(ExportError, match="non-integer"):
        write_spe(tmp_path / "w.Spe", hw, live_time_s=1.0, real_time_s=1.0)
    write_spe(tmp_path / "r.Spe", hw, live_time_s=1.0, real_time_s=1.0, round_counts=True)
    with pytest.raises(ExportError, match="live_time_s <= real_time_s"):
        write_n42(tmp_path / "t.n42", _small_adc_spectrum(), live_time_s=2.0, real_time_s=1.0)
    with pytest.raises(ExportError, match="equal-width"):
        write_spe(
            tmp_path / "v.Spe",
            make_spectrum([1.0], bins=[0, 1, 3]),
            live_time_s=1.0,
            real_time_s=1.0,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.Spe"]
    bad = tmp_path / "bad.Spe"
    bad.write_text("hello\n")
    with pytest.raises(ExportError, match="section"):
        read_spe(bad)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=64),
    live=st.floats(min_value=1e-3, max_value=1e7, allow_nan=False),
    dead=st.floats(min_value=0.0, max_value=1e3, allow_nan=False),
    c=st.tuples(*(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False) for _ in range(3))),
)
def test_spe_and_n42_round_trip_property(
    counts: list[int], live: float, dead: float, c: tuple[float, float, float]
) -> None:
    arr = np.array(counts, dtype=np.float64)
    with tempfile.TemporaryDirectory() as d:
        for writer, reader, name in (
            (write_spe, read_spe, "p.Spe"),
            (write_n42, read_n42, "p.n42"),
        ):
            path = writer(
                Path(d) / name,
                arr,
                calibration=c,
                live_time_s=live,
                real_time_s=live + dead,
                start_time=START,
            )
            back = reader(path)
            np.testing.assert_array_equal(back.counts, arr)
            assert back.coefficients == pytest.approx(c, rel=1e-8, abs=1e-300)
            assert back.live_time_s == pytest.approx(live, rel=1e-6, abs=1e-6)
            assert back.real_time_s == pytest.approx(live + dead, rel=1e-6, abs=1e-6)
