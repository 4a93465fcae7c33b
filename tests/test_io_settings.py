"""settings.xml and run.info: CoMPASS 2.x layouts, per-channel overrides, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bege_psd import io
from bege_psd.errors import CompassFormatError

# the structure of CoMPASS 2.x settings.xml (COMPASS-FORMATS.md section 0): board-level entries,
# a disabled channel with a single entry, an enabled channel overriding RECLEN and polarity
SETTINGS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<configuration>
  <board>
    <modelName>DT5730SB</modelName>
    <serialNumber>2198</serialNumber>
    <adcBitCount>14</adcBitCount>
    <sampleTime>2000</sampleTime>
    <energyMaxBits>15</energyMaxBits>
    <parameters>
      <entry><key>SRV_PARAM_RECLEN</key><value><value xsi:type="xs:double" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">10000.0</value></value></entry>
      <entry><key>SRV_PARAM_CH_PRETRG</key><value><value>1000.0</value></value></entry>
      <entry><key>SRV_PARAM_CH_POLARITY</key><value><value>POLARITY_POSITIVE</value></value></entry>
    </parameters>
    <channel><index>1</index><values><entry><key>SRV_PARAM_CH_ENABLED</key><value><value>false</value></value></entry></values></channel>
    <channel><index>0</index><values>
      <entry><key>SRV_PARAM_CH_ENABLED</key><value><value>true</value></value></entry>
      <entry><key>SRV_PARAM_RECLEN</key><value><value>20000.0</value></value></entry>
      <entry><key>SRV_PARAM_CH_POLARITY</key><value><value>POLARITY_NEGATIVE</value></value></entry>
    </values></channel>
  </board>
  <acquisitionMemento><runId>run_7</runId><fileFormatList>ROOT</fileFormatList></acquisitionMemento>
</configuration>
"""

RUN_INFO = """id=run_7
time.start=2025/03/19 09:47:46.724-0400
time.stop=2025/03/19 10:47:50.124-0400
time.real=01:00:03
board.0-14-292.readout.rate=0.33 kb/s
board.0-14-292.0.rejections.singles=0.0
board.0-14-292.0.calibration.energy.c0=0.0
board.0-14-292.0.calibration.energy.c1=1.0
board.0-14-292.0.calibration.energy.c2=0.0
board.0-14-292.0.calibration.energy.uom=keV
board.0-14-292.1.calibration.energy.c0=1.5
board.0-14-292.1.calibration.energy.c1=0.33
board.0-14-292.1.calibration.energy.c2=0.0
board.0-14-292.1.calibration.energy.uom=keV
"""


def test_settings_xml_with_channel_overrides(tmp_path):
    path = tmp_path / "settings.xml"
    path.write_text(SETTINGS)
    meta = io.parse_settings_xml(path)
    assert meta.model == "DT5730SB"
    assert meta.serial_number == 2198
    assert meta.sample_period_ns == 2.0
    assert meta.record_length == 10000  # channel 0 override: 20000 ns / 2 ns
    assert meta.pre_trigger_ns == 1000.0
    assert meta.polarity == "negative"
    assert meta.adc_bits == 14
    assert meta.run_id == "run_7"
    assert meta.live_time_s is None


def test_sample_period_from_model_when_sample_time_missing(tmp_path):
    path = tmp_path / "settings.xml"
    path.write_text(
        SETTINGS.replace("<sampleTime>2000</sampleTime>", "").replace("DT5730SB", "DT5725")
    )
    assert io.parse_settings_xml(path).sample_period_ns == 4.0


def test_run_info(tmp_path):
    path = tmp_path / "run.info"
    path.write_text(RUN_INFO)
    meta = io.parse_run_info(path)
    assert meta.real_time_s == 3603.0
    assert meta.run_id == "run_7"
    # channel 0 has the identity (uncalibrated); channel 1's coefficients are used
    assert meta.calibration == (1.5, 0.33, 0.0)
    assert meta.calibration_unit == "keV"
    path.write_text(RUN_INFO.replace("time.real=01:00:03\n", ""))
    assert io.parse_run_info(path).real_time_s == pytest.approx(3603.4)


def test_read_metadata_of_a_folder_merges_both(tmp_path):
    (tmp_path / "settings.xml").write_text(SETTINGS)
    (tmp_path / "run.info").write_text(RUN_INFO)
    meta = io.read_metadata(tmp_path)
    assert (meta.sample_period_ns, meta.real_time_s, meta.run_id) == (2.0, 3603.0, "run_7")
    assert meta.settings_file.endswith("settings.xml")


def test_write_then_parse_round_trip(tmp_path):
    from bege_psd.io.settings import run_info_text, settings_xml_text

    meta = io.RunMetadata(
        sample_period_ns=2.0,
        record_length=500,
        pre_trigger_ns=200.0,
        polarity="positive",
        model="DT5730",
        serial_number=7,
        adc_bits=14,
        live_time_s=12.5,
        real_time_s=13.0,
        calibration=(0.1, 0.2, 0.3),
        calibration_unit="keV",
        run_id="r",
    )
    (tmp_path / "settings.xml").write_text(settings_xml_text(meta))
    (tmp_path / "run.info").write_text(run_info_text(meta))
    back = io.read_metadata(tmp_path)
    for name in (
        "sample_period_ns",
        "record_length",
        "pre_trigger_ns",
        "polarity",
        "model",
        "serial_number",
        "adc_bits",
        "live_time_s",
        "real_time_s",
        "calibration",
        "calibration_unit",
        "run_id",
    ):
        assert getattr(back, name) == getattr(meta, name), name


def test_not_xml_and_not_compass_xml(tmp_path):
    path = tmp_path / "settings.xml"
    path.write_text("<configuration><board>")
    with pytest.raises(CompassFormatError, match=r"not well-formed XML at line 1") as info:
        io.parse_settings_xml(path)
    assert info.value.path == str(path)
    path.write_text("<project><name>x</name><item/></project>")
    with pytest.raises(
        CompassFormatError,
        match=r"not a CoMPASS settings file: expected a <configuration> root .* found <project> with children: item, name",
    ):
        io.parse_settings_xml(path)
    path.write_text(
        SETTINGS.replace("<sampleTime>2000</sampleTime>", "<sampleTime>fast</sampleTime>")
    )
    with pytest.raises(CompassFormatError, match="sampleTime = 'fast' is not a number"):
        io.parse_settings_xml(path)


def test_bad_run_info_line(tmp_path):
    path = tmp_path / "run.info"
    path.write_text("id=3\nthis line has no equals sign\n")
    with pytest.raises(CompassFormatError, match=r"line 2: .* is not 'key=value'") as info:
        io.parse_run_info(path)
    assert info.value.entry == 2


def test_bad_settings_in_a_run_folder_fails_the_read(tmp_path):
    from test_io import make_events

    folder = io.write_run(tmp_path / "r", make_events(n=3), fmt="bin")
    (folder / "settings.xml").write_text("<html><body/></html>")
    with pytest.raises(CompassFormatError, match="not a CoMPASS settings file"):
        io.read(folder)


def test_run_metadata_validation():
    with pytest.raises(ValueError, match="polarity"):
        io.RunMetadata(polarity="up")
    with pytest.raises(ValueError, match="sample_period_ns"):
        io.RunMetadata(sample_period_ns=0.0)


HCOMPASS = Path(__file__).parent / "fixtures" / "Hcompass_run_1.root"


def test_live_time_from_hcompass_histogram_file(tmp_path):
    # written by ROOT (tests/fixtures/make_hcompass_fixture.py): TTime LiveTime_<n>/RealTime_<n>
    meta = io.parse_hcompass(HCOMPASS)
    assert (meta.live_time_s, meta.real_time_s) == (95.5, 100.25)
    assert io.parse_hcompass(HCOMPASS, channel=1).live_time_s == 97.0
    (tmp_path / "settings.xml").write_text(SETTINGS)
    (tmp_path / "run.info").write_text(RUN_INFO)
    shutil.copy(HCOMPASS, tmp_path / "Hcompass_run_7.root")
    meta = io.read_metadata(tmp_path)
    assert meta.live_time_s == 95.5
    assert meta.real_time_s == 3603.0  # run.info's time.real wins
    (tmp_path / "Hcompass_run_7.root").write_bytes(b"garbage")
    with pytest.raises(CompassFormatError, match="not a readable CoMPASS histogram file"):
        io.read_metadata(tmp_path)
