"""CoMPASS BIN: files built byte by byte from the format notes (independent of the writer),
every 2.x header mask, 1.x layouts, memory-mapped vs walked reading, bad input, fuzzing."""

from __future__ import annotations

import struct

import awkward as ak
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bege_psd import io
from bege_psd.errors import BegePsdError, CompassFormatError, TruncatedFileError
from bege_psd.io import compass_bin as cb


def v2_record(mask, board, channel, ts, energy, cal, short, flags, samples, code=1):
    out = struct.pack("<HHQ", board, channel, ts)
    if mask & 1:
        out += struct.pack("<H", energy)
    if mask & 2:
        out += struct.pack("<d", cal)
    if mask & 4:
        out += struct.pack("<H", short)
    out += struct.pack("<I", flags)
    if mask & 8:
        out += struct.pack("<BI", code, len(samples)) + struct.pack(f"<{len(samples)}H", *samples)
    return out


def spec_events(n, rng, ns_choices=(8,)):
    return [
        {
            "board": int(rng.integers(0, 4)),
            "channel": int(rng.integers(0, 16)),
            "ts": int(rng.integers(0, 2**64, dtype=np.uint64)),
            "energy": int(rng.integers(0, 2**16)),
            "cal": float(rng.normal(500, 100)),
            "short": int(rng.integers(0, 2**16)),
            "flags": int(rng.integers(0, 2**32)),
            "samples": [int(x) for x in rng.integers(0, 16384, int(rng.choice(ns_choices)))],
        }
        for _ in range(n)
    ]


def write_v2(path, mask, events, header=True):
    body = b"".join(
        v2_record(
            mask,
            e["board"],
            e["channel"],
            e["ts"],
            e["energy"],
            e["cal"],
            e["short"],
            e["flags"],
            e["samples"],
        )
        for e in events
    )
    path.write_bytes((struct.pack("<H", 0xCAE0 | mask) if header else b"") + body)


def check(arr, events, mask):
    assert ak.to_list(arr.board) == [e["board"] for e in events]
    assert ak.to_list(arr.channel) == [e["channel"] for e in events]
    assert ak.to_list(arr.timestamp_ps) == [e["ts"] for e in events]
    assert ak.to_list(arr.flags) == [e["flags"] for e in events]
    assert ("energy_adc" in arr.fields) == bool(mask & 1)
    if mask & 1:
        assert ak.to_list(arr.energy_adc) == [e["energy"] for e in events]
    assert ("energy_cal" in arr.fields) == bool(mask & 2)
    if mask & 2:
        assert ak.to_list(arr.energy_cal) == [e["cal"] for e in events]
    assert ("energy_short" in arr.fields) == bool(mask & 4)
    if mask & 4:
        assert ak.to_list(arr.energy_short) == [e["short"] for e in events]
    want = [e["samples"] if mask & 8 else [] for e in events]
    assert ak.to_list(arr.waveform) == want
    assert str(arr.type).endswith("waveform: var * int16}")
    assert str(arr.timestamp_ps.type).endswith("uint64")


@pytest.mark.parametrize("mask", range(16))
@pytest.mark.parametrize("ragged", [False, True])
def test_every_header_mask_matches_the_spec(tmp_path, mask, ragged):
    rng = np.random.default_rng(mask)
    events = spec_events(23, rng, ns_choices=(0, 3, 8) if ragged else (8,))
    path = tmp_path / "spec.BIN"
    write_v2(path, mask, events)
    arr = io.read(path, check_lengths=False, step_size=10)
    check(arr, events, mask)


def test_record_sizes_of_the_format_notes():
    # E+ES+waves = 25 + 2Ns, PHA E+waves = 23 + 2Ns, E only = 18, E+cal = 26 (COMPASS-FORMATS 2.1)
    assert cb.v2_dtype(0xD).itemsize == 25
    assert cb.v2_dtype(0x9).itemsize == 23
    assert cb.v2_dtype(0x1).itemsize == 18
    assert cb.v2_dtype(0x3).itemsize == 26
    assert cb.v1_dtype("psd").itemsize == 24
    assert cb.v1_dtype("pha").itemsize == 22


def test_writer_is_byte_exact(tmp_path):
    rng = np.random.default_rng(5)
    events = spec_events(17, rng, ns_choices=(5, 9))
    ref = tmp_path / "ref.BIN"
    write_v2(ref, 0xF, events)
    arr = io.read(ref, check_lengths=False)
    io.write_bin(tmp_path / "mine.BIN", arr)
    assert (tmp_path / "mine.BIN").read_bytes() == ref.read_bytes()
    const = spec_events(9, rng, ns_choices=(6,))
    write_v2(ref, 0xD, const)
    io.write_bin(tmp_path / "mine.BIN", io.read(ref))
    assert (tmp_path / "mine.BIN").read_bytes() == ref.read_bytes()


def test_constant_length_file_is_memory_mapped_and_chunks_match(tmp_path):
    rng = np.random.default_rng(1)
    events = spec_events(40, rng, ns_choices=(12,))
    path = tmp_path / "c.BIN"
    write_v2(path, 0xD, events)
    chunks = list(io.iterate(path, step_size=16))
    assert [len(c) for c in chunks] == [16, 16, 8]
    check(ak.concatenate(chunks), events, 0xD)


def test_length_change_midway_falls_back_to_the_walk(tmp_path):
    # same size as a constant-length file, but the Ns of two records differ (10+6 = 8+8)
    rng = np.random.default_rng(2)
    events = spec_events(6, rng, ns_choices=(8,))
    events[2]["samples"] = events[2]["samples"] + [1, 2]
    events[3]["samples"] = events[3]["samples"][:6]
    path = tmp_path / "v.BIN"
    write_v2(path, 0x9, events)
    check(io.read(path, check_lengths=False), events, 0x9)


def test_walk_twins_agree():
    rng = np.random.default_rng(3)
    blob = b"".join(
        v2_record(0xD, 0, 0, 1, 2, 0.0, 3, 4, list(range(int(k)))) for k in rng.integers(0, 20, 50)
    )
    blob += b"\x01\x02\x03"  # partial record
    buf = np.frombuffer(blob, dtype=np.uint8)
    outs = []
    for fn in (cb.walk_records, cb.walk_records_py):
        offs = np.empty(60, dtype=np.int64)
        ns = np.empty(60, dtype=np.int64)
        n, end, status = fn(buf, 0, 25, 21, 1 << 20, offs, ns)
        outs.append((n, end, status, offs[:n].tolist(), ns[:n].tolist()))
    assert outs[0] == outs[1]
    assert outs[0][:3] == (50, len(blob) - 3, 1)


@pytest.mark.parametrize("layout", ["psd", "pha"])
def test_v1_layouts_detected_and_selectable(tmp_path, layout):
    rng = np.random.default_rng(4)
    rows = []
    expect = []
    for i in range(30):
        ns = 10
        samples = [int(x) for x in rng.integers(0, 16384, ns)]
        e, s, f = int(rng.integers(0, 4096)), int(rng.integers(0, 4096)), 0x4000
        head = struct.pack("<HHQH", 0, i % 2, 1000 * i, e) + (
            struct.pack("<H", s) if layout == "psd" else b""
        )
        rows.append(head + struct.pack("<II", f, ns) + struct.pack(f"<{ns}H", *samples))
        expect.append((e, s, samples))
    path = tmp_path / "v1.bin"
    path.write_bytes(b"".join(rows))
    for opt in ("auto", layout):
        arr = io.read(path, bin_v1_layout=opt)
        assert ak.to_list(arr.energy_adc) == [x[0] for x in expect]
        assert ak.to_list(arr.waveform) == [x[2] for x in expect]
        assert ak.to_list(arr.timestamp_ps) == [1000 * i for i in range(30)]
        assert ("energy_short" in arr.fields) == (layout == "psd")
        if layout == "psd":
            assert ak.to_list(arr.energy_short) == [x[1] for x in expect]


def test_v1_without_waveforms(tmp_path):
    rows = b"".join(
        struct.pack("<HHQHHII", 1, 3, 4000 * i, 100 + i, 50, 0x4000, 0) for i in range(11 * 3 + 1)
    )
    path = tmp_path / "v1.BIN"
    path.write_bytes(rows)
    arr = io.read(path)
    assert ak.to_list(arr.energy_adc) == [100 + i for i in range(34)]
    assert ak.to_list(ak.num(arr.waveform)) == [0] * 34


def test_headerless_continuation_of_a_v2_run(tmp_path):
    rng = np.random.default_rng(6)
    first, second = spec_events(5, rng), spec_events(4, rng)
    for e in first + second:
        e["channel"] = 0
    write_v2(tmp_path / "DataR_CH0@DT5725_1_r.BIN", 0xD, first)
    write_v2(tmp_path / "DataR_CH0@DT5725_1_r_1.BIN", 0xD, second, header=False)
    check(io.read(tmp_path), first + second, 0xD)


def test_truncated_last_record(tmp_path):
    rng = np.random.default_rng(7)
    events = spec_events(10, rng, ns_choices=(8,))
    path = tmp_path / "t.BIN"
    write_v2(path, 0xD, events)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    rec = 25 + 16
    with pytest.raises(TruncatedFileError) as info:
        io.read(path)
    err = info.value
    assert err.path == str(path)
    assert err.offset == 2 + 9 * rec
    assert err.entry == 9
    assert f"byte offset {2 + 9 * rec} (entry 9)" in str(err)
    assert "needs 41" in str(err)
    arr = io.read(path, on_error="skip")
    check(arr, events[:9], 0xD)
    (skip,) = arr.attrs["skipped"]
    assert skip["offset"] == 2 + 9 * rec
    assert skip["n_bytes"] == rec - 5


def test_bad_header_empty_file_and_header_only(tmp_path):
    path = tmp_path / "h.BIN"
    path.write_bytes(struct.pack("<H", 0xCA12) + b"\x00" * 40)
    with pytest.raises(CompassFormatError, match=r"byte offset 0: header 0xCA12 .*expected 0xCAE0"):
        io.read(path)
    path.write_bytes(b"")
    with pytest.raises(CompassFormatError, match="empty file") as info:
        io.read(path)
    assert info.value.path == str(path)
    path.write_bytes(struct.pack("<H", 0xCAED))
    arr = io.read(path)
    assert len(arr) == 0
    assert "energy_short" in arr.fields
    path.write_bytes(b"\x13\x57" + bytes(range(37)))
    with pytest.raises(CompassFormatError, match=r"no CoMPASS 2\.x header"):
        io.read(path)


def test_bad_file_skipped_and_counted_in_skip_mode(tmp_path):
    rng = np.random.default_rng(8)
    good = spec_events(4, rng)
    for e in good:
        e["channel"] = 0
    write_v2(tmp_path / "a.BIN", 0xD, good)
    (tmp_path / "a_1.BIN").write_bytes(struct.pack("<H", 0xCA00))
    with pytest.raises(CompassFormatError):
        io.read(tmp_path)
    arr = io.read(tmp_path, on_error="skip")
    check(arr, good, 0xD)
    assert len(arr.attrs["skipped"]) == 1
    assert "a_1.BIN" in arr.attrs["skipped"][0]["file"]


def test_implausible_sample_count(tmp_path):
    path = tmp_path / "n.BIN"
    path.write_bytes(
        struct.pack("<H", 0xCAE9)
        + struct.pack("<HHQHIBI", 0, 0, 0, 0, 0, 1, 0xFFFFFFF0)
        + b"\0" * 64
    )
    with pytest.raises(
        CompassFormatError, match=r"byte offset 2 \(entry 0\): record 0 claims 4294967280 samples"
    ):
        io.read(path)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(min_size=0, max_size=400))
def test_fuzz_random_bytes_raise_only_package_errors(tmp_path, data):
    path = tmp_path / "fuzz.BIN"
    path.write_bytes(data)
    for mode in ("raise", "skip"):
        try:
            arr = io.read(path, on_error=mode)
        except BegePsdError:
            continue
        assert len(arr) >= 0


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=0, max_value=600), mask=st.integers(0, 15), ragged=st.booleans())
def test_fuzz_truncation_reads_a_prefix_or_raises_package_errors(tmp_path, cut, mask, ragged):
    rng = np.random.default_rng(cut)
    events = spec_events(12, rng, ns_choices=(0, 4, 9) if ragged else (7,))
    path = tmp_path / "cut.BIN"
    write_v2(path, mask, events)
    data = path.read_bytes()[:cut]
    path.write_bytes(data)
    try:
        arr = io.read(path, on_error="skip", check_lengths=False)
    except BegePsdError:
        return
    n = len(arr)
    if cut < 2:  # no complete header: the whole file is skipped, and said so
        assert n == 0
        assert "unreadable file" in arr.attrs["skipped"][0]["reason"]
        return
    # whatever was read is exactly the first n events, and what was skipped is counted
    check(arr, events[:n], mask)
    read_bytes = 2 + sum(
        len(
            v2_record(
                mask,
                **{
                    k: e[k]
                    for k in (
                        "board",
                        "channel",
                        "ts",
                        "energy",
                        "cal",
                        "short",
                        "flags",
                        "samples",
                    )
                },
            )
        )
        for e in events[:n]
    )
    left = len(data) - read_bytes
    assert sum(s.get("n_bytes", 0) for s in arr.attrs["skipped"]) == left
