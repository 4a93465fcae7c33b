"""CoMPASS run metadata: ``settings.xml`` and ``run.info``.

Use :func:`bege_psd.io.read_metadata` on a run folder (or a data file inside one) to get a
:class:`RunMetadata`; :func:`parse_settings_xml` and :func:`parse_run_info` read the two files
separately. :func:`settings_xml_text` and :func:`run_info_text` write them (used by
:func:`bege_psd.io.write_run`).

``settings.xml`` (CoMPASS 2.x) holds ``<configuration><board>`` with ``modelName``,
``serialNumber``, ``adcBitCount``, ``sampleTime`` (ps per sample) and ``<parameters>`` entries
such as ``SRV_PARAM_RECLEN`` (record length in ns), ``SRV_PARAM_CH_PRETRG`` (ns) and
``SRV_PARAM_CH_POLARITY``; ``run.info`` is ``key=value`` lines (``time.start``, ``time.real``,
``board.<id>.<ch>.calibration.energy.c0`` ...). See ``shared/COMPASS-FORMATS.md`` section 0.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

from ..errors import CompassFormatError

__all__ = (
    "MODEL_SAMPLE_PERIOD_NS",
    "RunMetadata",
    "parse_hcompass",
    "parse_run_info",
    "parse_settings_xml",
    "run_info_text",
    "settings_xml_text",
)

log = logging.getLogger(__name__)

#: native sample period of common CAEN digitizers (ns), used when settings.xml lacks sampleTime
MODEL_SAMPLE_PERIOD_NS: dict[str, float] = {
    "DT5725": 4.0,
    "V1725": 4.0,
    "DT5730": 2.0,
    "V1730": 2.0,
    "DT5751": 1.0,
    "V1751": 1.0,
    "DT5720": 4.0,
    "V1720": 4.0,
    "DT5781": 10.0,
    "V1782": 10.0,
}


@dataclasses.dataclass(frozen=True)
class RunMetadata:
    """What a CoMPASS run folder says about itself (``None`` where it says nothing).

    ``record_length`` is in samples; ``calibration`` is ``(c0, c1, c2)`` with
    ``E = c0 + c1*adc + c2*adc**2`` in ``calibration_unit`` (keV unless stated).
    """

    sample_period_ns: float | None = 4.0
    record_length: int | None = None
    pre_trigger_ns: float | None = None
    polarity: str | None = None
    model: str | None = "DT5725"
    serial_number: int | None = 1146
    adc_bits: int | None = 14
    live_time_s: float | None = None
    real_time_s: float | None = None
    calibration: tuple[float, float, float] | None = None
    calibration_unit: str | None = None
    run_id: str | None = "run"
    time_start: str | None = None
    time_stop: str | None = None
    settings_file: str | None = None
    run_info_file: str | None = None

    def __post_init__(self) -> None:
        if self.polarity not in (None, "positive", "negative"):
            msg = (
                f"RunMetadata.polarity = {self.polarity!r}: expected 'positive', 'negative' or None"
            )
            raise ValueError(msg)
        if self.sample_period_ns is not None and not self.sample_period_ns > 0:
            msg = f"RunMetadata.sample_period_ns = {self.sample_period_ns}: must be positive"
            raise ValueError(msg)
        if self.calibration is not None and len(tuple(self.calibration)) != 3:
            msg = f"RunMetadata.calibration = {self.calibration!r}: expected (c0, c1, c2)"
            raise ValueError(msg)

    def merged(self, other: RunMetadata) -> RunMetadata:
        """Fields of ``self``, completed by those of ``other`` where ``self`` has ``None``."""
        values = {
            f.name: getattr(self, f.name)
            if getattr(self, f.name) is not None
            else getattr(other, f.name)
            for f in dataclasses.fields(self)
        }
        return RunMetadata(**values)


_EMPTY = dict.fromkeys(f.name for f in dataclasses.fields(RunMetadata))


def _empty(**kw: object) -> RunMetadata:
    values = dict(_EMPTY)
    values.update(kw)
    return RunMetadata(**values)  # type: ignore[arg-type,unused-ignore]


def _text(el: ET.Element | None) -> str | None:
    if el is None or el.text is None:
        return None
    return el.text.strip()


def _entry_value(entry: ET.Element) -> str | None:
    value = entry.find("value")
    if value is None:
        return None
    inner = value.find("value")
    return _text(inner if inner is not None else value)


def _float(path: Path, key: str, text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        msg = f"{path}: {key} = {text!r} is not a number (expected a CoMPASS numeric setting)"
        raise CompassFormatError(msg, path=str(path)) from None


def parse_settings_xml(path: str | Path) -> RunMetadata:
    """Parse a CoMPASS 2.x ``settings.xml`` into a :class:`RunMetadata` (run times left ``None``).

    Raises :class:`~bege_psd.errors.CompassFormatError` when the file is not XML or not a
    CoMPASS settings file (no ``<configuration><board>``).
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, col = exc.position
        msg = f"{path}: not well-formed XML at line {line}, column {col} (expected CoMPASS settings.xml)"
        raise CompassFormatError(msg, path=str(path), entry=line) from None
    except OSError as exc:
        msg = f"{path}: cannot read settings.xml: {exc}"
        raise CompassFormatError(msg, path=str(path)) from None
    board = root.find("board")
    if root.tag != "configuration" or board is None:
        children = ", ".join(sorted({c.tag for c in root})) or "none"
        msg = (
            f"{path}: not a CoMPASS settings file: expected a <configuration> root with a <board> "
            f"element, found <{root.tag}> with children: {children}"
        )
        raise CompassFormatError(msg, path=str(path))
    model = _text(board.find("modelName"))
    serial_text = _text(board.find("serialNumber"))
    serial = (
        int(float(serial_text)) if serial_text and re.fullmatch(r"[0-9.]+", serial_text) else None
    )
    adc_bits_f = _float(path, "adcBitCount", _text(board.find("adcBitCount")))
    sample_ps = _float(path, "sampleTime", _text(board.find("sampleTime")))
    params: dict[str, str | None] = {}
    parameters = board.find("parameters")
    if parameters is not None:
        for entry in parameters.findall("entry"):
            key = _text(entry.find("key"))
            if key:
                params[key] = _entry_value(entry)
    # per-channel overrides: take channel 0's (or the first enabled channel's) values
    for channel in board.findall("channel"):
        values = channel.find("values")
        entries = values.findall("entry") if values is not None else []
        if len(entries) <= 1:
            continue
        for entry in entries:
            key = _text(entry.find("key"))
            if key in ("SRV_PARAM_RECLEN", "SRV_PARAM_CH_PRETRG", "SRV_PARAM_CH_POLARITY"):
                val = _entry_value(entry)
                if val is not None:
                    params[key] = val
        break
    if sample_ps is not None and sample_ps > 0:
        period_ns: float | None = sample_ps / 1000.0
    else:
        base = re.match(r"[A-Z]+[0-9]+", model or "")
        period_ns = MODEL_SAMPLE_PERIOD_NS.get(base.group(0)) if base else None
    reclen_ns = _float(path, "SRV_PARAM_RECLEN", params.get("SRV_PARAM_RECLEN"))
    record_length = round(reclen_ns / period_ns) if reclen_ns and period_ns else None
    pol_text = (params.get("SRV_PARAM_CH_POLARITY") or "").upper()
    polarity = (
        "positive" if "POSITIVE" in pol_text else ("negative" if "NEGATIVE" in pol_text else None)
    )
    memento = root.find("acquisitionMemento")
    run_id = _text(memento.find("runId")) if memento is not None else None
    return _empty(
        sample_period_ns=period_ns,
        record_length=record_length,
        pre_trigger_ns=_float(path, "SRV_PARAM_CH_PRETRG", params.get("SRV_PARAM_CH_PRETRG")),
        polarity=polarity,
        model=model,
        serial_number=serial,
        adc_bits=int(adc_bits_f) if adc_bits_f is not None else None,
        run_id=run_id,
        settings_file=str(path),
    )


def _hms_to_s(text: str) -> float | None:
    m = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*", text)
    if m:
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    try:
        return float(text)
    except ValueError:
        return None


_TIME_FORMATS = (
    "%Y/%m/%d %H:%M:%S.%f%z",
    "%Y/%m/%d %H:%M:%S%z",
    "%Y/%m/%d %H:%M:%S.%f",
    "%Y/%m/%d %H:%M:%S",
)


def _parse_time(text: str) -> datetime | None:
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    return None


def parse_run_info(path: str | Path) -> RunMetadata:
    """Parse a CoMPASS ``run.info`` (``key=value`` lines) into a :class:`RunMetadata`.

    Real time comes from ``time.real`` (``HH:MM:SS``) or ``time.stop - time.start``; live time
    from ``time.live`` (written by :func:`run_info_text`) when present; calibration from the
    first ``board.<id>.<ch>.calibration.energy.c0/c1/c2`` that is not the identity (0, 1, 0).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        msg = f"{path}: cannot read run.info: {exc}"
        raise CompassFormatError(msg, path=str(path)) from None
    kv: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            msg = f"{path}: line {lineno}: {line[:60]!r} is not 'key=value' (expected CoMPASS run.info)"
            raise CompassFormatError(msg, path=str(path), entry=lineno)
        key, _, value = line.partition("=")
        kv[key.strip()] = value.strip()
    real = _hms_to_s(kv["time.real"]) if "time.real" in kv else None
    start = _parse_time(kv["time.start"]) if "time.start" in kv else None
    stop = _parse_time(kv["time.stop"]) if "time.stop" in kv else None
    if (
        real is None
        and start is not None
        and stop is not None
        and (start.tzinfo is None) == (stop.tzinfo is None)
    ):
        real = (stop - start).total_seconds()
    live = _hms_to_s(kv["time.live"]) if "time.live" in kv else None
    coeffs: dict[str, dict[str, str]] = {}
    for key, value in kv.items():
        m = re.fullmatch(r"board\.(.+)\.(\d+)\.calibration\.energy\.(c0|c1|c2|uom)", key)
        if m:
            coeffs.setdefault(f"{m.group(1)}.{m.group(2)}", {})[m.group(3)] = value
    calibration = None
    unit = None
    for _chan, c in sorted(coeffs.items()):
        if {"c0", "c1", "c2"} <= c.keys():
            try:
                cal = (float(c["c0"]), float(c["c1"]), float(c["c2"]))
            except ValueError:
                msg = f"{path}: calibration coefficients {c} are not numbers"
                raise CompassFormatError(msg, path=str(path)) from None
            if cal != (0.0, 1.0, 0.0):  # CoMPASS writes the identity when uncalibrated
                calibration, unit = cal, c.get("uom")
                break
    return _empty(
        live_time_s=live,
        real_time_s=real,
        calibration=calibration,
        calibration_unit=unit,
        run_id=kv.get("id"),
        time_start=kv.get("time.start"),
        time_stop=kv.get("time.stop"),
        run_info_file=str(path),
    )


def parse_hcompass(path: str | Path, channel: int | None = None) -> RunMetadata:
    """Live and real time from a CoMPASS histogram file ``Hcompass_<run>.root``.

    CoMPASS writes ``LiveTime_<n>`` / ``RealTime_<n>`` (``TTime``, milliseconds) per channel;
    ``channel`` picks one (default: the lowest present).
    """
    import uproot

    path = Path(path)
    try:
        with uproot.open(path) as f:
            classes = f.classnames(recursive=False)
            times: dict[str, dict[int, float]] = {"LiveTime": {}, "RealTime": {}}
            for key, cls in classes.items():
                m = re.fullmatch(r"(LiveTime|RealTime)_(\d+)(;\d+)?", key)
                if m and cls == "TTime":
                    ms = f[key].member("fMilliSec")
                    times[m.group(1)][int(m.group(2))] = float(ms) / 1000.0
    except Exception as exc:
        msg = f"{path}: not a readable CoMPASS histogram file ({type(exc).__name__}: {exc})"
        raise CompassFormatError(msg, path=str(path)) from None
    chans = sorted(set(times["LiveTime"]) | set(times["RealTime"]))
    ch = channel if channel is not None else (chans[0] if chans else None)
    if ch is None:
        return _empty()
    return _empty(live_time_s=times["LiveTime"].get(ch), real_time_s=times["RealTime"].get(ch))


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def settings_xml_text(
    meta: RunMetadata, *, file_format: str = "ROOT", waveforms: bool = True
) -> str:
    """A CoMPASS 2.x-style ``settings.xml`` describing ``meta`` (the keys this package reads)."""
    period = meta.sample_period_ns or 4.0
    params: list[tuple[str, str, str]] = []
    if meta.record_length is not None:
        params.append(("SRV_PARAM_RECLEN", "xs:double", repr(float(meta.record_length * period))))
    if meta.pre_trigger_ns is not None:
        params.append(("SRV_PARAM_CH_PRETRG", "xs:double", repr(float(meta.pre_trigger_ns))))
    if meta.polarity is not None:
        params.append(("SRV_PARAM_CH_POLARITY", "xs:string", f"POLARITY_{meta.polarity.upper()}"))
    params.append(("SRV_PARAM_WAVEFORMS", "xs:boolean", "true" if waveforms else "false"))
    entries = "\n".join(
        f"        <entry>\n          <key>{k}</key>\n          <value>\n"
        f'            <value xsi:type="{t}" xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">{_xml_escape(v)}</value>\n'
        f"          </value>\n        </entry>"
        for k, t, v in params
    )
    model = _xml_escape(meta.model or "DT5725")
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        "<configuration>\n"
        "  <board>\n"
        f"    <id>{model}_{meta.serial_number or 0}</id>\n"
        f"    <modelName>{model}</modelName>\n"
        f"    <serialNumber>{meta.serial_number or 0}</serialNumber>\n"
        f"    <adcBitCount>{meta.adc_bits or 14}</adcBitCount>\n"
        f"    <sampleTime>{round(period * 1000.0)}</sampleTime>\n"
        "    <energyMaxBits>15</energyMaxBits>\n"
        f"    <label>{model}_{meta.serial_number or 0}</label>\n"
        "    <parameters>\n"
        f"{entries}\n"
        "    </parameters>\n"
        "  </board>\n"
        "  <acquisitionMemento>\n"
        "    <acquisitionMode>WAVES</acquisitionMode>\n"
        "    <saveRaw>true</saveRaw>\n"
        "    <saveUnfiltered>false</saveUnfiltered>\n"
        "    <saveFiltered>false</saveFiltered>\n"
        f"    <fileFormatList>{_xml_escape(file_format)}</fileFormatList>\n"
        f"    <runId>{_xml_escape(meta.run_id or 'run')}</runId>\n"
        "  </acquisitionMemento>\n"
        "</configuration>\n"
    )


def _hms(seconds: float) -> str:
    ms = round(seconds * 1000.0)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    return f"{h:02d}:{m:02d}:{rem // 1000:02d}.{rem % 1000:03d}"


def run_info_text(meta: RunMetadata, *, channels: tuple[int, ...] = (0,)) -> str:
    """A CoMPASS-style ``run.info`` for ``meta`` (``time.live`` is this package's addition)."""
    lines = [f"id={meta.run_id or 'run'}"]
    if meta.time_start:
        lines.append(f"time.start={meta.time_start}")
    if meta.time_stop:
        lines.append(f"time.stop={meta.time_stop}")
    if meta.real_time_s is not None:
        lines.append(f"time.real={_hms(meta.real_time_s)}")
    if meta.live_time_s is not None:
        lines.append(f"time.live={_hms(meta.live_time_s)}")
    board = f"0-14-{meta.serial_number or 0}"
    c0, c1, c2 = meta.calibration if meta.calibration is not None else (0.0, 1.0, 0.0)
    for ch in channels:
        prefix = f"board.{board}.{ch}.calibration.energy"
        lines += [
            f"{prefix}.c0={c0!r}",
            f"{prefix}.c1={c1!r}",
            f"{prefix}.c2={c2!r}",
            f"{prefix}.uom={meta.calibration_unit or 'keV'}",
        ]
    return "\n".join(lines) + "\n"
