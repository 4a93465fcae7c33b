"""CoMPASS ROOT: a genuine TArrayS file written by ROOT (tests/fixtures), the fast TArrayS path
checked against uproot's own streamer, uproot-written jagged files, missing trees/branches."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from bege_psd import io
from bege_psd.errors import CompassFormatError, MissingBranchError
from bege_psd.io import compass_root

FIXTURES = Path(__file__).parent / "fixtures"


def _fixture_module():
    spec = importlib.util.spec_from_file_location(
        "make_tarrays_fixture", FIXTURES / "make_tarrays_fixture.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_genuine_tarrays_fixture_reads_exactly():
    mod = _fixture_module()
    want = mod.fixture_events(**mod.FIXTURE_SPEC)
    path = FIXTURES / "compass_tarrays.root"
    tree = uproot.open(path)["Data_R"]
    # the fixture really has CoMPASS's unsplit TArrayS branch
    assert str(tree["Samples"].interpretation) == "AsObjects(Model_TArrayS)"
    assert tree["Samples"].member("fClassName") == "TArrayS"
    arr = io.read(path, sample_period_ns=4.0)
    assert str(arr.type) == (
        "240 * {board: uint16, channel: uint16, timestamp_ps: uint64, energy_adc: uint16, "
        "energy_short: uint16, flags: uint32, waveform: var * int16}"
    )
    for name in ("board", "channel", "timestamp_ps", "energy_adc", "energy_short", "flags"):
        np.testing.assert_array_equal(ak.to_numpy(arr[name]), want[name])
    np.testing.assert_array_equal(ak.to_numpy(ak.num(arr.waveform)), np.diff(want["wf_offsets"]))
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(arr.waveform)), want["samples"])
    # timestamps above 2**53 keep their last picosecond
    assert int(arr.timestamp_ps[0]) == int(want["timestamp_ps"][0])
    assert int(arr.timestamp_ps[0]) > 2**53


def test_fast_path_equals_uproot_default_interpretation():
    path = FIXTURES / "compass_tarrays.root"
    slow = uproot.open(path)["Data_R"]["Samples"].array(entry_stop=25, library="ak")
    fast = io.read(path, sample_period_ns=4.0)["waveform"][:25]
    assert ak.to_list(slow) == ak.to_list(fast)


def test_tarrays_chunks(tmp_path):
    path = FIXTURES / "compass_tarrays.root"
    chunks = list(io.iterate(path, step_size=100, sample_period_ns=4.0))
    assert [(c.attrs["entry_start"], c.attrs["entry_stop"]) for c in chunks] == [
        (0, 100),
        (100, 200),
        (200, 240),
    ]
    assert ak.to_list(ak.concatenate(chunks).waveform[150]) == ak.to_list(
        io.read(path, sample_period_ns=4.0).waveform[150]
    )


def test_uproot_written_file_has_compass_branches(tmp_path):
    from test_io import make_events

    ev = make_events(n=30, lengths=(10,), energy_short=True)
    path = io.write_root(tmp_path / "w.root", ev)
    tree = uproot.open(path)["Data_R"]
    assert tree.title == "CoMPASS RAW events TTree"
    names = list(tree.keys())
    # CoMPASS's order; uproot adds the counter nSamples for the jagged Samples
    assert names == [
        "Channel",
        "Timestamp",
        "Board",
        "Energy",
        "EnergyShort",
        "Flags",
        "Probe",
        "nSamples",
        "Samples",
    ]
    assert tree["Timestamp"].typename == "uint64_t"
    assert tree["Flags"].typename == "uint32_t"
    assert "Samples" in names
    assert tree.classname == "TTree"


def test_extra_branches_kept_and_probe_optional(tmp_path):
    path = tmp_path / "x.root"
    with uproot.recreate(path) as f:
        t = f.mktree(
            "Data",
            {
                "Channel": "u2",
                "Timestamp": "u8",
                "Board": "u2",
                "Energy": "u2",
                "Flags": "u4",
                "Samples": "var * int16",
                "Temperature": "f8",
            },
        )
        t.extend(
            {
                "Channel": np.array([0, 1], np.uint16),
                "Timestamp": np.array([5, 6], np.uint64),
                "Board": np.zeros(2, np.uint16),
                "Energy": np.array([7, 8], np.uint16),
                "Flags": np.array([0x4000, 0x8000], np.uint32),
                "Samples": ak.Array([[1, 2, 3], [4, 5, 6]]),
                "Temperature": np.array([20.5, 21.0]),
            }
        )
    arr = io.read(path)
    assert ak.to_list(arr.Temperature) == [20.5, 21.0]
    assert ak.to_list(arr.waveform) == [[1, 2, 3], [4, 5, 6]]
    assert "energy_short" not in arr.fields


def test_no_waveform_branches(tmp_path):
    from test_io import make_events

    ev = make_events(n=12, lengths=None)
    path = io.write_root(tmp_path / "nw.root", ev, tree="Data_F")
    assert "Samples" not in list(uproot.open(path)["Data_F"].keys())
    arr = io.read(path)
    assert ak.to_list(ak.num(arr.waveform)) == [0] * 12
    assert ak.to_list(arr.energy_adc) == ak.to_list(ev.energy_adc)


def test_missing_tree_lists_what_exists(tmp_path):
    path = tmp_path / "m.root"
    with uproot.recreate(path) as f:
        f.mktree("Data_RR", {"x": "i4"}).extend({"x": np.arange(3, dtype=np.int32)})
        f.mktree("Other", {"x": "i4"}).extend({"x": np.arange(3, dtype=np.int32)})
    with pytest.raises(
        MissingBranchError,
        match=r"no TTree named Data_R or Data or Data_F; the file holds \(nearest first\): Data_RR \(TTree\), Other",
    ) as info:
        io.read(path)
    assert info.value.path == str(path)
    with pytest.raises(MissingBranchError, match="no TTree named Mine"):
        io.read(path, tree="Mine")


def test_rntuple_written_by_dict_assignment_gets_a_hint(tmp_path):
    path = tmp_path / "rn.root"
    with uproot.recreate(path) as f:
        f["Data_R"] = {"Channel": np.zeros(2, np.uint16)}
    with pytest.raises(MissingBranchError, match="RNTuple, not a TTree"):
        io.read(path)


def test_missing_branch_lists_branches_nearest_first(tmp_path):
    path = tmp_path / "b.root"
    with uproot.recreate(path) as f:
        f.mktree(
            "Data_R",
            {"Channel": "u2", "Timestamp": "u8", "Board": "u2", "Energie": "u2", "Flags": "u4"},
        ).extend(
            {
                k: np.zeros(2, d)
                for k, d in (
                    ("Channel", np.uint16),
                    ("Timestamp", np.uint64),
                    ("Board", np.uint16),
                    ("Energie", np.uint16),
                    ("Flags", np.uint32),
                )
            }
        )
    with pytest.raises(
        MissingBranchError,
        match=r"lacks branch 'Energy'; its branches \(nearest first\): Energie, ",
    ) as info:
        io.read(path)
    assert "Energie" in str(info.value)


def test_wrong_samples_type(tmp_path):
    path = tmp_path / "s.root"
    with uproot.recreate(path) as f:
        f.mktree(
            "Data_R",
            {
                "Channel": "u2",
                "Timestamp": "u8",
                "Board": "u2",
                "Energy": "u2",
                "Flags": "u4",
                "Samples": "var * float32",
            },
        ).extend(
            {
                "Channel": np.zeros(1, np.uint16),
                "Timestamp": np.zeros(1, np.uint64),
                "Board": np.zeros(1, np.uint16),
                "Energy": np.zeros(1, np.uint16),
                "Flags": np.zeros(1, np.uint32),
                "Samples": ak.Array([[1.5]]),
            }
        )
    with pytest.raises(CompassFormatError, match="expected an unsplit TArrayS object branch"):
        io.read(path)


def test_not_a_root_file_and_empty_file(tmp_path):
    path = tmp_path / "junk.root"
    path.write_bytes(b"this is not ROOT" * 10)
    with pytest.raises(CompassFormatError, match="not a readable ROOT file"):
        io.read(path)
    path.write_bytes(b"")
    with pytest.raises(CompassFormatError, match="empty file"):
        io.read(path)


def test_interpretation_constant_is_the_documented_one():
    interp = compass_root.TARRAYS_INTERPRETATION
    assert interp.header_bytes == 4
    assert interp.content.from_dtype == np.dtype(">i2")


def _tarrays_bytes(entries):
    blob = b""
    offsets = [0]
    for e in entries:
        blob += np.array([len(e)], dtype=">i4").tobytes() + np.asarray(e, dtype=">i2").tobytes()
        offsets.append(len(blob))
    return np.frombuffer(blob, dtype=np.uint8), np.asarray(offsets, dtype=np.int64)


@pytest.mark.parametrize("fn", [compass_root._strip_tarrays, compass_root._strip_tarrays_py])
def test_tarrays_decoder_twins(fn):
    entries = [[1, -2, 3], [], [32767, -32768], list(range(100))]
    data, bo = _tarrays_bytes(entries)
    out = np.empty(200, dtype=np.int16)
    offsets = np.empty(len(entries) + 1, dtype=np.int64)
    assert fn(data, bo, out, offsets) == -1
    got = [out[offsets[i] : offsets[i + 1]].tolist() for i in range(len(entries))]
    assert got == entries
    # a header that disagrees with the entry's byte count is reported with its entry
    bad = data.copy()
    bad[bo[2] + 3] = 5  # entry 2 claims 5 samples but holds 2
    assert fn(bad, bo, out, offsets) == 2


def _tree(path, types, n=2):
    with uproot.recreate(path) as f:
        t = f.mktree("Data_R", types)
        t.extend({k: np.arange(n).astype(v) for k, v in types.items()})


def test_float_energy_is_read_as_calibrated_and_bad_types_fail(tmp_path):
    base = {"Channel": "u2", "Timestamp": "u8", "Board": "u2", "Flags": "u4"}
    _tree(tmp_path / "f.root", {**base, "Energy": "f8"})
    arr = io.read(tmp_path / "f.root")
    assert "energy_adc" not in arr.fields
    assert ak.to_list(arr.energy_cal) == [0.0, 1.0]
    _tree(tmp_path / "g.root", {**base, "Energy": "u2", "Board": "f4"})
    with pytest.raises(
        CompassFormatError,
        match=r"branch Board of tree Data_R is 'float'; expected an integer of at most 16 bits",
    ):
        io.read(tmp_path / "g.root")


def test_fast_inflate_leaves_writing_alone(tmp_path):
    """Reading switches only uproot's decompressor; a file written afterwards is deflated by
    the same library as before any read (so same data -> same bytes)."""
    import zlib

    import numpy as np
    import uproot

    from bege_psd.io.compass_root import _use_fast_inflate

    before = uproot.compression.ZLIB.library
    _use_fast_inflate()
    assert uproot.compression.ZLIB.library == before == "zlib"
    data = bytes(range(256)) * 40
    assert uproot.compression.ZLIB(1).compress(data) == zlib.compress(data, level=1)
    with uproot.recreate(tmp_path / "a.root") as f:
        f.mktree("t", {"x": "int32"}).extend({"x": np.arange(1000, dtype=np.int32)})
    with uproot.open(tmp_path / "a.root") as f:
        assert f["t"]["x"].array(library="np").tolist() == list(range(1000))
