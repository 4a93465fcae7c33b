"""bege_psd.io: the event model, round trips through ROOT/BIN/CSV, run folders, metadata,
split runs, chunking, flags and options."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest

from bege_psd import io
from bege_psd.config import from_mapping, load_config
from bege_psd.errors import CompassFormatError, ConfigError

FORMATS = ("root", "bin", "csv")


def make_events(
    n: int = 300,
    lengths: tuple[int, ...] | None = (120,),
    *,
    seed: int = 7,
    energy_short: bool = False,
    energy_cal: bool = False,
    ragged: bool = False,
) -> ak.Array:
    """Events in the package's event model; channel ``c`` has waveforms of ``lengths[c]``."""
    rng = np.random.default_rng(seed)
    n_ch = len(lengths) if lengths else 1
    channel = (rng.integers(0, n_ch, n)).astype(np.uint16)
    cols: dict[str, Any] = {
        "board": rng.integers(0, 3, n).astype(np.uint16),
        "channel": channel,
        # beyond 2**53: float64 would lose the last picoseconds
        "timestamp_ps": (np.uint64(2**60) + np.cumsum(rng.integers(1, 10**9, n).astype(np.uint64))),
        "energy_adc": rng.integers(0, 2**16, n).astype(np.uint16),
    }
    if energy_short:
        cols["energy_short"] = rng.integers(0, 2**16, n).astype(np.uint16)
    if energy_cal:
        cols["energy_cal"] = rng.normal(1000, 500, n)
    cols["flags"] = rng.choice(
        np.array([0x4000, 0x4080, 0xC000, 0x4408, 0x0, 0x200000], dtype=np.uint32), n
    )
    if lengths:
        ns = np.asarray(lengths)[channel]
        if ragged:
            ns = rng.integers(0, 50, n)
        samples = rng.integers(-(2**15), 2**15, int(ns.sum())).astype(np.int16)
        cols["waveform"] = ak.unflatten(samples, ns)
    return ak.zip(cols, depth_limit=1)


def assert_same_events(a: ak.Array, b: ak.Array) -> None:
    assert list(a.fields) == list(b.fields)
    for f in a.fields:
        if f == "waveform":
            assert ak.to_list(ak.num(a[f], axis=1)) == ak.to_list(ak.num(b[f], axis=1))
            np.testing.assert_array_equal(
                ak.to_numpy(ak.flatten(a[f])), ak.to_numpy(ak.flatten(b[f]))
            )
        else:
            x, y = ak.to_numpy(a[f]), ak.to_numpy(b[f])
            assert x.dtype == y.dtype, f
            np.testing.assert_array_equal(x, y)


EXPECTED_TYPES = {
    "board": "uint16",
    "channel": "uint16",
    "timestamp_ps": "uint64",
    "energy_adc": "uint16",
    "energy_short": "uint16",
    "energy_cal": "float64",
    "flags": "uint32",
    "waveform": "var * int16",
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("short", "cal", "lengths"),
    [(False, False, (120,)), (True, False, (64, 200)), (True, True, (16,)), (False, False, None)],
)
def test_round_trip_single_file(tmp_path, fmt, short, cal, lengths):
    ev = make_events(lengths=lengths, energy_short=short, energy_cal=cal)
    path = tmp_path / f"f.{ {'root': 'root', 'bin': 'BIN', 'csv': 'CSV'}[fmt] }"
    {"root": io.write_root, "bin": io.write_bin, "csv": io.write_csv}[fmt](path, ev)
    back = io.read(path)
    expect = (
        ev if lengths else ak.with_field(ev, ak.Array([[]] * len(ev), with_name=None), "waveform")
    )
    assert_same_events(back, ak.zip({f: expect[f] for f in back.fields}, depth_limit=1))
    for f in back.fields:
        assert str(back[f].type).split(" * ", 1)[1] == EXPECTED_TYPES[f]


def test_same_events_read_back_identical_from_all_formats(tmp_path):
    ev = make_events(n=257, lengths=(50, 90), energy_short=True, seed=3)
    reads = []
    for fmt in FORMATS:
        folder = io.write_run(tmp_path / fmt, ev, io.RunMetadata(run_id="run_3"), fmt=fmt)
        reads.append(io.read(folder))
    for other in reads[1:]:
        assert_same_events(reads[0], other)
    # one file per channel, channel order, event order kept within a channel
    order = np.argsort(ak.to_numpy(ev.channel), kind="stable")
    assert_same_events(reads[0], ev[order])


def test_write_run_layout_and_metadata(tmp_path):
    ev = make_events(n=50, lengths=(366,))
    meta = io.RunMetadata(
        sample_period_ns=4.0,
        pre_trigger_ns=400.0,
        polarity="negative",
        live_time_s=95.5,
        real_time_s=100.25,
        calibration=(0.5, 0.25, 1e-7),
        run_id="run_42",
        time_start="2026/12/04 10:00:00.000+0000",
    )
    folder = io.write_run(tmp_path / "run_42", ev, meta, fmt="bin")
    assert (folder / "settings.xml").is_file()
    assert (folder / "run.info").is_file()
    assert (folder / "RAW" / "DataR_CH0@DT5725_1146_run_42.BIN").is_file()
    back = io.read_metadata(folder)
    assert back.sample_period_ns == 4.0
    assert back.record_length == 366
    assert back.pre_trigger_ns == 400.0
    assert back.polarity == "negative"
    assert back.model == "DT5725"
    assert back.adc_bits == 14
    assert back.live_time_s == pytest.approx(95.5)
    assert back.real_time_s == pytest.approx(100.25)
    assert back.calibration == (0.5, 0.25, 1e-7)
    assert back.run_id == "run_42"
    chunk = next(io.iterate(folder))
    assert chunk.attrs["sample_period_ns"] == 4.0
    assert chunk.attrs["polarity"] == "negative"
    # metadata of a data file inside the folder is the folder's
    assert (
        io.read_metadata(folder / "RAW" / "DataR_CH0@DT5725_1146_run_42.BIN").record_length == 366
    )


def test_overrides_of_sample_period_and_polarity(tmp_path):
    folder = io.write_run(
        tmp_path / "r", make_events(n=10), io.RunMetadata(polarity="negative"), fmt="root"
    )
    chunk = next(io.iterate(folder, sample_period_ns=2.0, polarity="positive"))
    assert chunk.attrs["sample_period_ns"] == 2.0
    assert chunk.attrs["polarity"] == "positive"


@pytest.mark.parametrize("fmt", FORMATS)
def test_split_run_read_in_order(tmp_path, fmt):
    ev = make_events(n=95, lengths=(40,), seed=11)
    folder = io.write_run(
        tmp_path / "run", ev, io.RunMetadata(run_id="run_1"), fmt=fmt, max_events_per_file=30
    )
    files = io.find_run_files(folder).files
    stem = "DataR_CH0@DT5725_1146_run_1"
    assert [f.name.rsplit(".", 1)[0] for f in files] == [
        stem,
        stem + "_1",
        stem + "_2",
        stem + "_3",
    ]
    back = io.read(folder)
    assert_same_events(back, ev)
    # the same files given as a list, in order
    assert_same_events(io.read(list(files)), ev)
    # chunks never span files and carry their file's entry range
    chunks = list(io.iterate(folder, step_size=20))
    assert [Path(c.attrs["source_file"]).name for c in chunks] == [
        f.name for f in files for _ in (0, 1)
    ][:7]
    assert [(c.attrs["entry_start"], c.attrs["entry_stop"]) for c in chunks[:3]] == [
        (0, 20),
        (20, 30),
        (0, 20),
    ]
    assert sum(len(c) for c in chunks) == 95


def test_split_files_sort_numerically(tmp_path):
    names = ["D_run_1.csv", "D_run_1_10.csv", "D_run_1_2.csv", "D_run_1_1.csv"]
    ordered = io.reader.order_split_files(Path(tmp_path / n) for n in names)
    assert [p.name for p in ordered] == [
        "D_run_1.csv",
        "D_run_1_1.csv",
        "D_run_1_2.csv",
        "D_run_1_10.csv",
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_iterate_chunks_concatenate_to_read(tmp_path, fmt):
    ev = make_events(n=203, lengths=(30, 31))
    path = tmp_path / f"x.{fmt}"
    {"root": io.write_root, "bin": io.write_bin, "csv": io.write_csv}[fmt](path, ev)
    chunks = list(io.iterate(path, step_size=50))
    assert [len(c) for c in chunks] == [50, 50, 50, 50, 3]
    assert chunks[-1].attrs["entry_start"] == 200
    assert chunks[-1].attrs["entry_stop"] == 203
    assert_same_events(ak.concatenate(chunks), io.read(path))


def test_extension_case_insensitive(tmp_path):
    ev = make_events(n=5)
    io.write_bin(tmp_path / "a.bin", ev)
    io.write_csv(tmp_path / "b.Csv", ev)
    assert_same_events(io.read(tmp_path / "a.bin"), io.read(tmp_path / "b.Csv"))


def test_folder_with_several_formats_needs_choice_or_prefers_root(tmp_path):
    ev = make_events(n=5)
    io.write_run(tmp_path / "r", ev, fmt="bin")
    io.write_run(tmp_path / "r", ev, fmt="csv")
    assert io.find_run_files(tmp_path / "r").fmt == "bin"
    assert io.find_run_files(tmp_path / "r", io.ReadOptions(format="csv")).fmt == "csv"
    with pytest.raises(CompassFormatError, match="no root files"):
        io.read(tmp_path / "r", format="root")


def test_missing_source_and_empty_folder(tmp_path):
    with pytest.raises(CompassFormatError, match="no such file"):
        io.read(tmp_path / "nope.root")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompassFormatError, match="no CoMPASS data files"):
        io.read(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(CompassFormatError, match="cannot tell the format"):
        io.read(tmp_path / "x.txt")


def test_flags_decode_and_accounting():
    f = np.array([0x4000, 0x4080, 0xC000, 0x4408, 0x0, 0x200000, 0x400], dtype=np.uint32)
    d = io.flags.decode(f)
    assert d["saturated"].tolist() == [False, True, False, True, False, False, True]
    assert d["pileup"].tolist() == [False, False, True, False, False, False, False]
    assert d["fake"].tolist() == [False, False, False, True, False, True, False]
    assert d["fine_timestamp"].sum() == 4
    acc = io.flags.accounting(f)
    assert (acc.n_events, acc.n_clean, acc.n_flagged) == (7, 2, 5)
    assert acc.by_reason == {"saturated": 3, "pileup": 1, "fake": 2}
    both = acc + io.flags.accounting(f[:2])
    assert (both.n_events, both.n_flagged, both.by_reason["saturated"]) == (9, 6, 4)


def test_drop_flagged_counts_what_it_drops(tmp_path):
    ev = make_events(n=400)
    io.write_bin(tmp_path / "a.BIN", ev)
    everything = io.read(tmp_path / "a.BIN")
    assert len(everything) == 400
    assert everything.attrs["dropped"] == {}
    kept = io.read(tmp_path / "a.BIN", drop_flagged=True)
    bad = io.flags.bad_mask(ak.to_numpy(ev.flags))
    assert len(kept) == 400 - bad.sum()
    assert kept.attrs["dropped"]["any"] == bad.sum()
    acc = io.flags.accounting(ev.flags)
    assert kept.attrs["dropped"]["saturated"] == acc.by_reason["saturated"]
    assert len(kept) + kept.attrs["dropped"]["any"] == len(everything)
    assert not io.flags.bad_mask(kept.flags).any()


def test_read_options_validation():
    assert from_mapping(io.ReadOptions, {"step_size": 10, "on_error": "skip"}).on_error == "skip"
    with pytest.raises(ConfigError, match="step_size"):
        from_mapping(io.ReadOptions, {"step_size": 0})
    with pytest.raises(ConfigError, match="on_error"):
        from_mapping(io.ReadOptions, {"on_error": "ignore"})
    with pytest.raises(ConfigError, match="nearest first"):
        from_mapping(io.ReadOptions, {"stepsize": 3})
    cfg = load_config({"io": {"polarity": "negative", "drop_flagged": True}})
    assert cfg.io == io.ReadOptions(polarity="negative", drop_flagged=True)
    with pytest.raises(ConfigError):
        io.read("whatever.root", bogus=1)


def test_read_accepts_options_object(tmp_path):
    io.write_root(tmp_path / "a.root", make_events(n=20))
    opts = io.ReadOptions(sample_period_ns=8.0)
    assert io.read(tmp_path / "a.root", options=opts).attrs["sample_period_ns"] == 8.0
    assert dataclasses.is_dataclass(opts)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.step_size = 3  # type: ignore[misc]


def test_variable_lengths_per_channel_are_an_error_unless_allowed(tmp_path):
    ev = make_events(n=60, ragged=True, seed=2)
    for fmt, writer in (("BIN", io.write_bin), ("CSV", io.write_csv), ("root", io.write_root)):
        path = tmp_path / f"r.{fmt}"
        writer(path, ev)
        with pytest.raises(
            CompassFormatError, match=r"entry \d+: channel 0 \(board \d\) waveform has \d+ samples"
        ):
            io.read(path)
        assert_same_events(io.read(path, check_lengths=False), ev)
        skipped = io.read(path, on_error="skip")
        n_bad = sum(s["n_events"] for s in skipped.attrs["skipped"])
        assert n_bad > 0
        assert len(skipped) + n_bad == len(ev)


def test_info_cli(tmp_path, capsys):
    from bege_psd.cli import main

    ev = make_events(n=40, lengths=(20,))
    folder = io.write_run(tmp_path / "r", ev, io.RunMetadata(live_time_s=10.0), fmt="csv")
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "events           40" in out
    assert "20 samples: 40" in out
    assert "sample period    4.0 ns" in out
    acc = io.flags.accounting(ev.flags)
    assert f"flagged {acc.n_flagged}" in out
    assert main(["info", str(folder), "--json"]) == 0
    import json

    summary = json.loads(capsys.readouterr().out)
    assert summary["n_events"] == 40
    assert summary["live_time_s"] == 10.0
    assert main(["info", str(tmp_path / "missing")]) == 1


@pytest.mark.parametrize("fmt", ["root", "bin", "csv"])
def test_entry_range_of_one_file(tmp_path, fmt):
    """``read``/``iterate`` with entry_start/entry_stop equal slices of the whole file."""
    from bege_psd.io.reader import count_entries

    rng = np.random.default_rng(3)
    n = 257
    events = ak.zip(
        {
            "board": np.zeros(n, np.uint16),
            "channel": np.zeros(n, np.uint16),
            "timestamp_ps": np.cumsum(rng.integers(1, 10**9, n)).astype(np.uint64),
            "energy_adc": rng.integers(0, 30000, n).astype(np.uint16),
            "flags": np.full(n, 0x4000, np.uint32),
            "waveform": ak.Array(rng.integers(0, 16000, (n, 40)).astype(np.int16)),
        },
        depth_limit=1,
    )
    writer = {"root": io.write_root, "bin": io.write_bin, "csv": io.write_csv}[fmt]
    path = writer(tmp_path / f"DataR_CH0@DT5725_1146_run.{fmt}", events)
    assert count_entries(path) == n
    whole = io.read(path)
    for a, b in [(0, 10), (10, 200), (250, 257), (100, 100), (0, None)]:
        part = io.read(path, entry_start=a, entry_stop=b)
        stop = n if b is None else b
        assert len(part) == stop - a
        assert part.attrs["entry_start"] == a
        assert ak.array_equal(part["energy_adc"], whole["energy_adc"][a:stop])
        assert ak.array_equal(part["waveform"], whole["waveform"][a:stop])
    chunks = list(io.iterate(path, step_size=30, entry_start=17, entry_stop=140))
    assert [len(c) for c in chunks] == [30, 30, 30, 30, 3]
    assert chunks[0].attrs["entry_start"] == 17
    assert chunks[-1].attrs["entry_stop"] == 140
    with pytest.raises(ValueError, match="entry range"):
        io.read(path, entry_start=5, entry_stop=2)
