"""Tests of bege_psd.spectrum: binning, masks, flow accounting, streaming fills, ROI counts."""

from __future__ import annotations

import hist
import numpy as np
import pytest

from bege_psd.calib import Calibration
from bege_psd.spectrum import (
    SpectrumError,
    adc_spectrum,
    channel_edges_kev,
    empty_spectrum,
    fill,
    kev_spectrum_from_adc,
    make_spectrum,
    roi_counts,
)


def test_make_spectrum_counts_mask_and_flow() -> None:
    e = np.array([0.5, 1.5, 1.6, 2.5, np.nan, -3.0, 99.0])
    mask = np.array([True, True, False, True, True, True, True])
    h = make_spectrum(e, mask, bins=3, range=(0.0, 3.0))
    assert h.storage_type == hist.storage.Weight
    assert h.values().tolist() == [1.0, 1.0, 1.0]
    assert h.variances().tolist() == [1.0, 1.0, 1.0]
    flow = h.values(flow=True)
    assert flow[0] == 1.0  # -3
    assert flow[-1] == 2.0  # NaN and 99 go to overflow: nothing dropped
    assert h.sum(flow=True).value == mask.sum()
    assert h.axes[0].label == "Energy [keV]"


def test_weights_and_variances() -> None:
    h = make_spectrum([1.0, 1.2, 2.5], bins=[0.0, 2.0, 3.0], weight=[2.0, 3.0, 0.5])
    assert h.values().tolist() == [5.0, 0.5]
    assert h.variances().tolist() == [13.0, 0.25]


def test_streaming_fill_equals_one_shot() -> None:
    rng = np.random.default_rng(0)
    e = rng.uniform(0, 100, 10_000)
    m = rng.random(10_000) < 0.3
    one = make_spectrum(e, m, bins=50, range=(0, 100))
    h = empty_spectrum(bins=50, range=(0, 100))
    for lo in range(0, 10_000, 1234):
        fill(h, e[lo : lo + 1234], m[lo : lo + 1234])
    np.testing.assert_array_equal(h.values(flow=True), one.values(flow=True))


def test_adc_spectrum_one_channel_per_bin() -> None:
    h = adc_spectrum(np.array([0, 1, 1, 5, 16383], dtype=np.uint16))
    assert len(h.axes[0]) == 16384
    assert h.axes[0].centers[5] == 5.0
    assert h.values()[1] == 2.0
    assert h.values()[16383] == 1.0
    assert h.axes[0].label == "Energy [ADC channel]"


def test_channel_edges_kev_and_roi() -> None:
    cal = Calibration.from_coefficients(1.5, 0.2)
    edges = channel_edges_kev(cal.apply, 10, 19)
    assert edges.size == 11
    assert edges[0] == pytest.approx(1.5 + 0.2 * 9.5)
    adc = np.arange(10, 20)
    h = make_spectrum(cal.apply(adc), bins=edges)
    assert h.values().tolist() == [1.0] * 10
    q = roi_counts(h, (cal.apply(12), cal.apply(14)))
    assert q.value == 3.0
    assert q.error == pytest.approx(np.sqrt(3.0))
    value, error = q
    assert (value, error) == (q.value, q.error)


def test_bad_input_errors() -> None:
    with pytest.raises(SpectrumError, match="boolean"):
        make_spectrum([1.0, 2.0], np.array([1, 0]), bins=2, range=(0, 3))
    with pytest.raises(SpectrumError, match="entry-aligned"):
        make_spectrum([1.0, 2.0], np.array([True]), bins=2, range=(0, 3))
    with pytest.raises(SpectrumError, match="range"):
        make_spectrum([1.0], bins=2)
    with pytest.raises(SpectrumError, match="unit"):
        make_spectrum([1.0], bins=2, range=(0, 1), unit="MeV")  # type: ignore[arg-type]
    with pytest.raises(SpectrumError, match="no bin centre"):
        roi_counts(make_spectrum([1.0], bins=2, range=(0, 4)), (0.1, 0.2))


def test_kev_spectrum_from_adc_has_one_channel_per_bin() -> None:
    cal = Calibration.from_coefficients(0.3, 0.2)
    adc = np.repeat(np.arange(2000, 2600), 3)  # flat: 3 counts in every channel
    h = kev_spectrum_from_adc(adc, cal.apply, range_kev=(420.0, 500.0))
    assert np.all(h.values() == 3.0)  # a fixed 0.25 keV binning would alternate 3 / 6 / 0
    np.testing.assert_allclose(np.diff(h.axes[0].edges), 0.2)
    assert h.axes[0].centers[0] >= 420.0
    h25 = make_spectrum(cal.apply(adc), bins=320, range=(420.0, 500.0))
    assert h25.values().min() != h25.values().max()
