"""CoMPASS CSV: real-file quirks (samples as trailing fields, hex flags, header only in the first
file of a split run, CALIB_ENERGY, no waveforms), bad fields, fuzzing."""

from __future__ import annotations

import contextlib

import awkward as ak
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bege_psd import io
from bege_psd.errors import BegePsdError, CompassFormatError

# a DT5725-like row layout seen in real files: 7 scalar fields + every sample as its own field
PSD_WAVES = (
    "BOARD;CHANNEL;TIMETAG;ENERGY;ENERGYSHORT;FLAGS;PROBE_CODE;SAMPLES\n"
    "0;0;1000000;1500;700;0x4000;1;13150;13149;13151;12000\n"
    "0;1;2000000;1600;701;0x4080;1;3500;3501;3499;3000\n"
    "0;0;3004000;1700;702;0xc000;1;13150;13152;13148;11000\n"
)


def test_samples_are_trailing_fields(tmp_path):
    path = tmp_path / "Data_CH0@DT5725_1146_r.CSV"
    path.write_text(PSD_WAVES)
    arr = io.read(path)
    assert ak.to_list(arr.waveform) == [
        [13150, 13149, 13151, 12000],
        [3500, 3501, 3499, 3000],
        [13150, 13152, 13148, 11000],
    ]
    assert ak.to_list(arr.flags) == [0x4000, 0x4080, 0xC000]
    assert ak.to_list(arr.timestamp_ps) == [1000000, 2000000, 3004000]
    assert ak.to_list(arr.energy_short) == [700, 701, 702]
    assert str(arr.waveform.type).endswith("var * int16")


def test_split_run_header_only_in_first_file(tmp_path):
    (tmp_path / "Data_r.csv").write_text(PSD_WAVES)
    # continuation files: data rows directly (CoMPASS writes no header there)
    (tmp_path / "Data_r_1.csv").write_text("0;0;5000000;1800;703;0x4000;1;1;2;3;4\n")
    (tmp_path / "Data_r_2.CSV").write_text("0;1;6000000;1900;704;0x4000;1;5;6;7;8\r\n")
    arr = io.read(tmp_path)
    assert ak.to_list(arr.energy_adc) == [1500, 1600, 1700, 1800, 1900]
    assert ak.to_list(arr.waveform[-1]) == [5, 6, 7, 8]
    assert [c.attrs["source_file"].rsplit("/", 1)[1] for c in io.iterate(tmp_path)] == [
        "Data_r.csv",
        "Data_r_1.csv",
        "Data_r_2.CSV",
    ]


def test_headerless_file_alone_is_recognised(tmp_path):
    path = tmp_path / "cont_1.CSV"
    path.write_text(
        "0;0;5000000;1800;703;0x4000;1;1;2;3;4\n0;0;6000000;1801;704;0x4001;1;5;6;7;8\n"
    )
    arr = io.read(path)
    assert ak.to_list(arr.energy_short) == [703, 704]
    assert ak.to_list(arr.flags) == [0x4000, 0x4001]
    path.write_text("0;0;5000000;1800;0x4000\n")
    arr = io.read(path)
    assert "energy_short" not in arr.fields
    assert ak.to_list(arr.waveform) == [[]]


def test_calib_energy_variant_and_no_waveforms(tmp_path):
    path = tmp_path / "cal.csv"
    path.write_text(
        "BOARD;CHANNEL;TIMETAG;ENERGY;CALIB_ENERGY;FLAGS;PROBE_CODE;SAMPLES\n"
        "0;0;10;1500;661.657;0x4000;1;1;2\n"
        "0;0;20;1600;1173.228;0x4000;1;3;4\n"
    )
    arr = io.read(path)
    assert ak.to_list(arr.energy_cal) == [661.657, 1173.228]
    assert "energy_short" not in arr.fields
    path.write_text("BOARD;CHANNEL;TIMETAG;ENERGY;ENERGYSHORT;FLAGS\n0;2;10;1500;10;0x4000\n")
    arr = io.read(path)
    assert ak.to_list(arr.channel) == [2]
    assert ak.to_list(arr.waveform) == [[]]


def test_header_only_file_gives_typed_empty_array(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("BOARD;CHANNEL;TIMETAG;ENERGY;ENERGYSHORT;FLAGS\n")
    arr = io.read(path)
    assert len(arr) == 0
    assert "energy_short" in arr.fields


def test_non_numeric_field_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(PSD_WAVES.replace("0;1;2000000;1600", "0;1;2000000;16x0"))
    with pytest.raises(
        CompassFormatError, match=r"bad\.csv: line 3: ENERGY = b'16x0' is not a uint16 number"
    ) as info:
        io.read(path)
    assert info.value.entry == 3
    arr = io.read(path, on_error="skip")
    assert ak.to_list(arr.energy_adc) == [1500, 1700]
    assert arr.attrs["skipped"][0]["entry"] == 3
    assert len(arr) + len(arr.attrs["skipped"]) == 3


def test_bad_flags_and_bad_sample(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(PSD_WAVES.replace("0x4080", "0xZZ"))
    with pytest.raises(
        CompassFormatError, match="line 3: FLAGS = b'0xZZ' is not a hexadecimal flag word"
    ):
        io.read(path)
    path.write_text(PSD_WAVES.replace("13152", "1e3"))
    with pytest.raises(
        CompassFormatError, match=r"line 4: SAMPLES\[1\] = b'1e3' is not a 16-bit sample"
    ):
        io.read(path)
    arr = io.read(path, on_error="skip")
    assert len(arr) == 2


def test_short_row_and_wrong_header(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(PSD_WAVES + "0;0;77\n")
    with pytest.raises(
        CompassFormatError,
        match=r"line 5: row = b'0;0;77' is not a row of at least 7 fields \(3 found\)",
    ):
        io.read(path)
    assert len(io.read(path, on_error="skip")) == 3
    path.write_text("TIME;ENERGY;FOO\n1;2;3\n")
    with pytest.raises(
        CompassFormatError, match=r"line 1: header .* is not a CoMPASS 2\.x CSV header"
    ):
        io.read(path)
    path.write_text("hello world\n")
    with pytest.raises(
        CompassFormatError, match=r"header HELLO WORLD is not a CoMPASS 2\.x CSV header"
    ):
        io.read(path)
    path.write_text("1;2;3\n")
    with pytest.raises(CompassFormatError, match="no header and no hexadecimal FLAGS"):
        io.read(path)
    path.write_text("")
    with pytest.raises(CompassFormatError, match="empty file"):
        io.read(path)


def test_writer_matches_the_real_layout(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(PSD_WAVES)
    events = io.read(path, check_lengths=False)
    io.write_csv(tmp_path / "out.csv", events)
    assert (tmp_path / "out.csv").read_text() == PSD_WAVES


@pytest.mark.filterwarnings("ignore::bege_psd.io.ProbeCodeWarning")
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300))
def test_fuzz_random_bytes(tmp_path, data):
    path = tmp_path / "f.CSV"
    path.write_bytes(data)
    for mode in ("raise", "skip"):
        with contextlib.suppress(BegePsdError):
            io.read(path, on_error=mode)


@pytest.mark.filterwarnings("ignore::bege_psd.io.ProbeCodeWarning")
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(0, len(PSD_WAVES)), junk=st.text(alphabet="0123456789;x\n-.", max_size=20))
def test_fuzz_truncation_and_junk(tmp_path, cut, junk):
    text = PSD_WAVES[:cut] + junk
    path = tmp_path / "t.csv"
    path.write_text(text)
    try:
        arr = io.read(path, on_error="skip", check_lengths=False)
    except BegePsdError:
        return
    skipped = arr.attrs["skipped"]
    if any(s["reason"].startswith("unreadable file") for s in skipped):
        assert len(arr) == 0
        return
    # every data line is either read or counted as skipped
    lines = [
        ln
        for ln in text.split("\n")[1 if text.startswith("BOARD") else 0 :]
        if ln.strip().strip(";")
    ]
    assert len(arr) + len(skipped) == len(lines)
    # rows that were not touched by the cut read back exactly
    intact = PSD_WAVES[:cut].count("\n") - 1
    assert (
        ak.to_list(arr.timestamp_ps)[: max(intact, 0)]
        == [1000000, 2000000, 3004000][: max(intact, 0)]
    )


def test_trailing_separator_is_not_a_sample(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(PSD_WAVES.replace("\n", ";\n"))
    arr = io.read(path)
    assert ak.to_list(arr.waveform[0]) == [13150, 13149, 13151, 12000]
