"""Export spectra and fit results to the formats other tools read; every writer is atomic.

What to use when
----------------
- ROOT users: :func:`write_th1` writes a ``TH1D`` with ``fSumw2`` (from ``Weight`` storage)
  through uproot; read back with ``uproot.open(path)[name].to_hist()``.
- InterSpec / SpecUtils, lossless: :func:`write_n42` (ANSI N42.42-2012 XML with exactly three
  energy-calibration coefficients and, optionally, fitted peaks in ``AnalysisResults``).
- GammaVision, becquerel, most MCA software: :func:`write_spe` (ORTEC / IAEA ASCII ``.Spe``);
  integer counts only.
- Fit results: :func:`write_fit_json` (``FitResult.to_dict()`` and friends as JSON).
- :func:`read_spe` / :func:`read_n42`: small readers for our own files (tests, round trips).

Channel spectra
---------------
``.Spe`` and N42 store counts per channel plus a polynomial ``E = c0 + c1 ch + c2 ch^2`` on the
channel index ``ch = 0..N-1``. A spectrum with one bin per ADC channel
(:func:`bege_psd.spectrum.adc_spectrum`) is written with the calibration you pass (a
:class:`~bege_psd.calib.Calibration` or coefficients of ``E(adc)``); the coefficients are
re-expressed on the channel index when the histogram does not start at channel 0. A spectrum
with regular keV bins is written with the linear calibration of its bin centres.

Format facts: ``shared/reference/ECOSYSTEM.md`` (A2); N42 element names and order follow the
NIST N42.42-2012 schema (namespace ``http://physics.nist.gov/N42/2011/N42``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._util import atomic_path, atomic_write_text
from ..errors import BegePsdError

__all__ = (
    "N42_NAMESPACE",
    "ExportError",
    "SpectrumFile",
    "channel_spectrum",
    "read_n42",
    "read_spe",
    "write_fit_json",
    "write_n42",
    "write_spe",
    "write_th1",
)

N42_NAMESPACE = "http://physics.nist.gov/N42/2011/N42"
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


class ExportError(BegePsdError, ValueError):
    """A spectrum cannot be written in the requested format (binning, counts, metadata)."""


@dataclass(frozen=True, eq=False)
class SpectrumFile:
    """A channel spectrum as stored in ``.Spe``/N42: counts, calibration, times, peaks."""

    counts: NDArray[np.float64]
    coefficients: tuple[float, float, float]
    live_time_s: float
    real_time_s: float
    start_time: dt.datetime | None
    title: str = ""
    peaks: tuple[dict[str, float], ...] = ()


def _poly_shift(coeffs: Sequence[float], x0: float, w: float) -> tuple[float, float, float]:
    """Coefficients in ``i`` of ``E(x0 + w i)`` for ``E(x) = c0 + c1 x + c2 x^2``."""
    c = list(coeffs) + [0.0] * (3 - len(coeffs))
    if len(c) > 3:
        msg = f"only polynomials up to second order can be exported, got {len(coeffs)} coefficients"
        raise ExportError(msg)
    c0, c1, c2 = (float(v) for v in c)
    return (c0 + c1 * x0 + c2 * x0 * x0, (c1 + 2.0 * c2 * x0) * w, c2 * w * w)


def channel_spectrum(
    h: Any, calibration: Any = None
) -> tuple[NDArray[np.float64], tuple[float, float, float]]:
    """Counts per channel and ``(c0, c1, c2)`` on the channel index for a 1-D histogram.

    ``h`` is a ``hist.Hist`` with regular bins (flow bins are not exported) or a plain array
    of counts per channel. ``calibration`` is a :class:`~bege_psd.calib.Calibration` or a
    sequence of coefficients of ``E(x)`` in the histogram's axis units; without it an axis in
    keV is written with the linear map of its bin centres and an ADC axis uncalibrated
    (zeros).
    """
    coeffs: Sequence[float] | None
    if calibration is None:
        coeffs = None
    elif hasattr(calibration, "compass_coefficients"):
        coeffs = calibration.compass_coefficients
    else:
        coeffs = [float(v) for v in calibration]
    if isinstance(h, (np.ndarray, list, tuple)):
        counts = np.asarray(h, dtype=np.float64)
        return counts, _poly_shift(coeffs or (0.0, 0.0, 0.0), 0.0, 1.0)
    if len(h.axes) != 1:
        msg = f"only 1-D spectra can be exported, got {len(h.axes)} axes"
        raise ExportError(msg)
    ax = h.axes[0]
    edges = np.asarray(ax.edges, dtype=np.float64)
    widths = np.diff(edges)
    if not np.allclose(widths, widths[0], rtol=1e-9, atol=0.0):
        msg = (
            "channel formats (.Spe, N42) need equal-width bins; this spectrum has variable bins "
            f"({widths.min():.6g} to {widths.max():.6g}); export it as ROOT instead"
        )
        raise ExportError(msg)
    counts = np.asarray(h.values(), dtype=np.float64)
    x0, w = float(0.5 * (edges[0] + edges[1])), float(widths[0])
    label = str(getattr(ax, "label", "") or "")
    if coeffs is None:
        coeffs = (0.0, 1.0, 0.0) if "keV" in label else (0.0, 0.0, 0.0)
        if "keV" not in label:
            return counts, (0.0, 0.0, 0.0)
    return counts, _poly_shift(coeffs, x0, w)


def write_th1(
    path: str | Path, h: Any, *, name: str = "spectrum", title: str | None = None
) -> Path:
    """Write ``h`` as a ROOT ``TH1D`` (with ``fSumw2`` for ``Weight`` storage), atomically."""
    import uproot

    if len(h.axes) != 1:
        msg = f"write_th1 writes 1-D histograms; got {len(h.axes)} axes"
        raise ExportError(msg)
    if title is not None:
        h = h.copy()
        h.name = title  # uproot takes fTitle from .title, else .name
    path = Path(path)
    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        f[name] = h
    return path


def _fmt_time(t: dt.datetime | None) -> dt.datetime:
    if t is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    return t


def write_spe(
    path: str | Path,
    h: Any,
    *,
    calibration: Any = None,
    live_time_s: float,
    real_time_s: float,
    start_time: dt.datetime | None = None,
    spec_id: str = "bege-psd spectrum",
    remarks: Sequence[str] = (),
    round_counts: bool = False,
) -> Path:
    """Write an ORTEC/IAEA ASCII ``.Spe`` file (CRLF line ends), atomically.

    Sections: ``$SPEC_ID``, ``$SPEC_REM``, ``$DATE_MEA`` (``mm/dd/yyyy hh:mm:ss``),
    ``$MEAS_TIM`` (live real), ``$DATA`` (``0 N-1`` then one count per line), ``$ENER_FIT``
    (offset gain), ``$MCA_CAL`` (3 coefficients, keV), ``$ENDRECORD``. Counts must be integers
    (a weighted spectrum raises unless ``round_counts=True``).
    """
    raw_counts, coeffs = channel_spectrum(h, calibration)
    counts = _integer_counts(raw_counts, path, round_counts)
    _check_times(live_time_s, real_time_s, path)
    t = _fmt_time(start_time)
    lines = ["$SPEC_ID:", spec_id.replace("\n", " "), "$SPEC_REM:"]
    lines += [r.replace("\n", " ") for r in remarks] or ["created by bege-psd"]
    lines += ["$DATE_MEA:", t.strftime("%m/%d/%Y %H:%M:%S")]
    lines += ["$MEAS_TIM:", f"{_num(live_time_s)} {_num(real_time_s)}"]
    lines += ["$DATA:", f"0 {counts.size - 1}"]
    lines += [f"{int(c):8d}" for c in counts]
    lines += ["$ENER_FIT:", f"{coeffs[0]:.9E} {coeffs[1]:.9E}"]
    lines += ["$MCA_CAL:", "3", f"{coeffs[0]:.9E} {coeffs[1]:.9E} {coeffs[2]:.9E} keV"]
    lines += ["$ENDRECORD:"]
    atomic_write_text(path, "\r\n".join(lines) + "\r\n")
    return Path(path)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.6f}"


def _integer_counts(
    counts: NDArray[np.float64], path: Any, round_counts: bool
) -> NDArray[np.int64]:
    if np.any(~np.isfinite(counts)) or np.any(counts < 0):
        msg = f"{path}: counts must be finite and >= 0 for a channel spectrum"
        raise ExportError(msg)
    r = np.rint(counts)
    if not round_counts and not np.allclose(r, counts, rtol=0, atol=1e-9):
        msg = (
            f"{path}: the spectrum has non-integer contents (weighted fill); .Spe/N42 channel "
            "data are counts: pass round_counts=True to round, or write ROOT (keeps sumw2)"
        )
        raise ExportError(msg)
    return r.astype(np.int64)


def _check_times(live: float, real: float, path: Any) -> None:
    if not (live > 0 and real > 0 and live <= real * (1 + 1e-12)):
        msg = f"{path}: need 0 < live_time_s <= real_time_s, got live={live}, real={real}"
        raise ExportError(msg)


def read_spe(path: str | Path) -> SpectrumFile:
    """Read an ASCII ``.Spe`` file (ours or GammaVision's) into a :class:`SpectrumFile`."""
    p = Path(path)
    text = p.read_text(encoding="utf-8-sig", errors="strict")
    lines = [ln.strip() for ln in text.splitlines()]
    sections: dict[str, list[str]] = {}
    key = None
    for i, ln in enumerate(lines):
        if ln.startswith("$"):
            key = ln[1:].rstrip(":")
            sections[key] = []
        elif key is not None:
            sections[key].append(ln)
        elif ln:
            msg = f"{p}: line {i + 1}: expected a '$KEY:' section header, got {ln[:40]!r}"
            raise ExportError(msg)
    for need in ("DATA", "MEAS_TIM"):
        if need not in sections:
            msg = f"{p}: missing section ${need}:; sections present: {', '.join(sections)}"
            raise ExportError(msg)
    first, last = (int(v) for v in sections["DATA"][0].split()[:2])
    data = [ln for ln in sections["DATA"][1:] if ln]
    n = last - first + 1
    if len(data) < n:
        msg = f"{p}: $DATA announces {n} channels but holds {len(data)}"
        raise ExportError(msg)
    counts = np.array([float(v) for v in data[:n]])
    live, real = (float(v) for v in sections["MEAS_TIM"][0].split()[:2])
    coeffs: list[float] = [0.0, 0.0, 0.0]
    if "MCA_CAL" in sections:
        k = int(sections["MCA_CAL"][0])
        vals = [float(v) for v in sections["MCA_CAL"][1].split()[:k]]
        coeffs = ([*vals, 0.0, 0.0, 0.0])[:3]
    elif "ENER_FIT" in sections:
        vals = [float(v) for v in sections["ENER_FIT"][0].split()[:2]]
        coeffs = [*vals, 0.0]
    start = None
    if sections.get("DATE_MEA"):
        start = dt.datetime.strptime(sections["DATE_MEA"][0], "%m/%d/%Y %H:%M:%S")
    title = sections.get("SPEC_ID", [""])[0] if sections.get("SPEC_ID") else ""
    return SpectrumFile(counts, (coeffs[0], coeffs[1], coeffs[2]), live, real, start, title)


def _duration(seconds: float) -> str:
    return f"PT{seconds:.6f}".rstrip("0").rstrip(".") + "S"


def _peaks_from(peaks: Sequence[Any]) -> list[dict[str, float]]:
    out = []
    for p in peaks:
        if hasattr(p, "areas") and hasattr(p, "values"):  # a FitResult: one entry per peak
            fwhm = _FWHM_PER_SIGMA * float(p.values["sigma"])
            for i, a in enumerate(p.areas):
                out.append(
                    {
                        "energy": float(p.values[f"mu_{i}"]),
                        "expected_energy": float(a.energy),
                        "fwhm": fwhm,
                        "net_area": float(a.area),
                        "net_area_uncertainty": float(a.error),
                    }
                )
        elif isinstance(p, Mapping):
            out.append({k: float(v) for k, v in p.items()})
        else:
            msg = f"peaks must be FitResult objects or dicts, got {type(p).__name__}"
            raise ExportError(msg)
    return out


def write_n42(
    path: str | Path,
    h: Any,
    *,
    calibration: Any = None,
    live_time_s: float,
    real_time_s: float,
    start_time: dt.datetime | None = None,
    peaks: Sequence[Any] = (),
    title: str = "",
    detector_description: str = "p-type BEGe (Broad Energy Germanium), CAEN digitizer, CoMPASS",
    measurement_class: str = "Foreground",
    round_counts: bool = False,
    doc_uuid: str | None = None,
) -> Path:
    """Write an ANSI N42.42-2012 XML file with one spectrum, atomically.

    The energy calibration always carries exactly three coefficients (the schema requires it).
    ``peaks`` (fit results, or dicts with ``energy``, ``fwhm``, ``net_area``,
    ``net_area_uncertainty`` in keV/counts) go into ``AnalysisResults`` /
    ``SpectrumPeakAnalysisResults``. ``title`` is written as a ``Remark`` of the measurement
    (e.g. which selection produced the spectrum).
    """
    from .. import __version__

    counts, coeffs = channel_spectrum(h, calibration)
    icounts = _integer_counts(counts, path, round_counts)
    _check_times(live_time_s, real_time_s, path)
    allowed = ("Foreground", "Background", "Calibration", "IntrinsicActivity", "NotSpecified")
    if measurement_class not in allowed:
        msg = f"measurement_class={measurement_class!r} is not allowed; use one of {allowed}"
        raise ExportError(msg)
    t = _fmt_time(start_time)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    ns = N42_NAMESPACE
    ET.register_namespace("", ns)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ns}}}{tag}", attrib)
        if text is not None:
            el.text = text
        return el

    root = ET.Element(
        f"{{{ns}}}RadInstrumentData",
        {"n42DocUUID": doc_uuid or str(uuid.uuid4()), "n42DocDateTime": t.isoformat()},
    )
    sub(root, "RadInstrumentDataCreatorName", f"bege-psd {__version__}")
    info = sub(root, "RadInstrumentInformation", id="RadInstrumentInformation-1")
    sub(info, "RadInstrumentManufacturerName", "unknown")
    sub(info, "RadInstrumentModelName", "BEGe spectrometer")
    sub(info, "RadInstrumentClassCode", "Other")
    ver = sub(info, "RadInstrumentVersion")
    sub(ver, "RadInstrumentComponentName", "Software")
    sub(ver, "RadInstrumentComponentVersion", f"bege-psd {__version__}")
    det = sub(root, "RadDetectorInformation", id="RadDetectorInformation-1")
    sub(det, "RadDetectorCategoryCode", "Gamma")
    sub(det, "RadDetectorKindCode", "HPGe")
    sub(det, "RadDetectorDescription", detector_description)
    cal = sub(root, "EnergyCalibration", id="EnergyCalibration-1")
    sub(cal, "CoefficientValues", " ".join(f"{c:.9E}" for c in coeffs))
    meas = sub(root, "RadMeasurement", id="RadMeasurement-1")
    if title:
        sub(meas, "Remark", title)
    sub(meas, "MeasurementClassCode", measurement_class)
    sub(meas, "StartDateTime", t.isoformat())
    sub(meas, "RealTimeDuration", _duration(real_time_s))
    spec = sub(
        meas,
        "Spectrum",
        id="Spectrum-1",
        radDetectorInformationReference="RadDetectorInformation-1",
        energyCalibrationReference="EnergyCalibration-1",
    )
    sub(spec, "LiveTimeDuration", _duration(live_time_s))
    # plain integers: exponent notation in ChannelData has broken readers (becquerel PR #323)
    sub(spec, "ChannelData", " ".join(str(int(c)) for c in icounts), compressionCode="None")
    peak_list = _peaks_from(peaks)
    if peak_list:
        ar = sub(root, "AnalysisResults", radMeasurementReferences="RadMeasurement-1")
        sub(ar, "AnalysisAlgorithmName", "bege_psd.fit.fit_peaks (ExtendedBinnedNLL, Minuit)")
        spa = sub(ar, "SpectrumPeakAnalysisResults")
        for p in peak_list:
            pk = sub(spa, "SpectrumPeak")
            sub(pk, "SpectrumPeakEnergyValue", repr(p["energy"]))
            if "expected_energy" in p:
                sub(pk, "SpectrumPeakExpectedEnergyValue", repr(p["expected_energy"]))
            if "fwhm" in p:
                sub(pk, "SpectrumPeakFWHMValue", repr(p["fwhm"]))
            sub(pk, "SpectrumPeakNetAreaValue", repr(p["net_area"]))
            if "net_area_uncertainty" in p:
                sub(pk, "SpectrumPeakNetAreaUncertaintyValue", repr(p["net_area_uncertainty"]))
    ET.indent(root, space="  ")
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
    atomic_write_text(path, text)
    return Path(path)


def read_n42(path: str | Path) -> SpectrumFile:
    """Read the first spectrum of an N42-2012 file (as written by :func:`write_n42`)."""
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as exc:
        msg = f"{p}: not well-formed XML ({exc})"
        raise ExportError(msg) from exc
    ns = {"n": N42_NAMESPACE}
    if root.tag != f"{{{N42_NAMESPACE}}}RadInstrumentData":
        msg = f"{p}: root element is {root.tag!r}; expected RadInstrumentData in namespace {N42_NAMESPACE}"
        raise ExportError(msg)
    spec = root.find("n:RadMeasurement/n:Spectrum", ns)
    if spec is None:
        msg = f"{p}: no RadMeasurement/Spectrum element"
        raise ExportError(msg)
    cd = spec.find("n:ChannelData", ns)
    counts = (
        np.array([float(v) for v in (cd.text or "").split()]) if cd is not None else np.zeros(0)
    )
    cal_id = spec.get("energyCalibrationReference")
    coeffs = (0.0, 0.0, 0.0)
    for cal in root.findall("n:EnergyCalibration", ns):
        if cal_id is None or cal.get("id") == cal_id:
            cv = cal.find("n:CoefficientValues", ns)
            vals = [float(v) for v in (cv.text or "").split()] if cv is not None else []
            if len(vals) != 3:
                msg = f"{p}: EnergyCalibration {cal.get('id')} has {len(vals)} coefficients; N42-2012 requires 3"
                raise ExportError(msg)
            coeffs = (vals[0], vals[1], vals[2])
            break

    def dur(el: ET.Element | None) -> float:
        if el is None or not el.text:
            return float("nan")
        return float(el.text.strip().removeprefix("PT").removesuffix("S"))

    live = dur(spec.find("n:LiveTimeDuration", ns))
    real = dur(root.find("n:RadMeasurement/n:RealTimeDuration", ns))
    st = root.find("n:RadMeasurement/n:StartDateTime", ns)
    start = dt.datetime.fromisoformat(st.text.strip()) if st is not None and st.text else None
    rem = root.find("n:RadMeasurement/n:Remark", ns)
    peaks = []
    tags = {
        "SpectrumPeakEnergyValue": "energy",
        "SpectrumPeakExpectedEnergyValue": "expected_energy",
        "SpectrumPeakFWHMValue": "fwhm",
        "SpectrumPeakNetAreaValue": "net_area",
        "SpectrumPeakNetAreaUncertaintyValue": "net_area_uncertainty",
    }
    for pk in root.findall("n:AnalysisResults/n:SpectrumPeakAnalysisResults/n:SpectrumPeak", ns):
        d = {}
        for child in pk:
            name = child.tag.split("}")[-1]
            if name in tags and child.text:
                d[tags[name]] = float(child.text)
        peaks.append(d)
    return SpectrumFile(
        counts, coeffs, live, real, start, (rem.text or "") if rem is not None else "", tuple(peaks)
    )


def write_fit_json(
    path: str | Path, result: Any, *, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write a fit result (anything with ``to_dict()``, a list of them, or a dict) as JSON."""

    def conv(obj: Any) -> Any:
        if hasattr(obj, "to_dict"):
            return conv(obj.to_dict())
        if isinstance(obj, Mapping):
            return {str(k): conv(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [conv(v) for v in obj]
        if isinstance(obj, np.ndarray):
            return conv(obj.tolist())
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, float) and not math.isfinite(obj):
            return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
        return obj

    payload: dict[str, Any] = {"result": conv(result)}
    if extra:
        payload.update(conv(dict(extra)))
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, allow_nan=False) + "\n")
    return Path(path)
