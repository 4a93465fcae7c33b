"""Streaming engine: local chunked path, typetracer awareness, and dask == local."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from bege_psd import io, stream
from bege_psd.calib import Calibration
from bege_psd.config import from_mapping
from bege_psd.errors import ConfigError
from bege_psd.sim import simulate
from bege_psd.sim.config import SimConfig

COARSE = {"detector": {"field_grid_mm": 0.5, "library_grid_mm": 2.0}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from bege_psd.dsp import SSETemplate, features
    from bege_psd.select.gmm import GMMSelector

    base = tmp_path_factory.mktemp("stream")
    run = simulate(
        "th232",
        4000,
        base / "th",
        seed=5,
        config=from_mapping(SimConfig, COARSE),
        cache_dir=base / "cache",
    )
    meta = io.read_metadata(run)
    cal = Calibration.from_coefficients(*meta.calibration)
    events = io.read(run)
    energy = cal.apply(events["energy_adc"].to_numpy())
    template = SSETemplate.build(events, energy, window_kev=(1500.0, 2700.0))
    template.save(base / "template.npz")
    feats = features(events, template=template)
    table = ak.with_field(feats, energy, "energy_kev")
    GMMSelector().fit(table).save(base / "gmm.json")
    spec = stream.StreamSpec(
        selectors={"gmm": str(base / "gmm.json")},
        calibration=cal.to_dict(),
        template=str(base / "template.npz"),
    )
    return run, spec, events, base


def test_local_accounts_for_every_event(setup):
    run, spec, events, base = setup
    friend = base / "friend.root"
    result = stream.process(run, spec, step_size=700, friend=friend)
    n = len(events)
    assert result.n_events == n
    assert result.n_chunks == -(-n // 700)
    all_ = result.spectra["all"]
    kept, rejected = result.spectra["kept_gmm"], result.spectra["rejected_gmm"]
    assert all_.sum(flow=True).value == n
    np.testing.assert_array_equal(
        kept.values(flow=True) + rejected.values(flow=True), all_.values(flow=True)
    )
    assert kept.sum(flow=True).value == result.n_kept["gmm"]
    assert 0 < result.n_kept["gmm"] < n
    cols, meta = io.friend.read_friend(friend)
    assert meta["n_entries"] == n
    np.testing.assert_array_equal(cols["energy_adc"], events["energy_adc"].to_numpy())
    np.testing.assert_array_equal(cols["entry"], np.arange(n))
    # chunking does not change any number
    whole = stream.process(run, spec, step_size=10 * n)
    assert stream.spectra_equal(whole.spectra, result.spectra)


def test_analyse_chunk_on_typetracer_matches_form(setup):
    _run, spec, events, _ = setup
    concrete = stream.analyse_chunk(events[:50], spec)
    tt = ak.Array(events[:50].layout.to_typetracer(forget_length=True), attrs=events.attrs)
    lazy = stream.analyse_chunk(tt, spec)
    assert ak.backend(lazy) == "typetracer"
    assert lazy.layout.form == concrete.layout.form


def test_partitions_cover_the_run(setup):
    run, _spec, events, _ = setup
    parts = stream.plan_partitions(run, 900)
    assert parts[0].start == 0
    assert sum(len(p) for p in parts) == len(events)
    got = ak.concatenate([stream.read_partition(p) for p in parts])
    assert ak.array_equal(got["energy_adc"], events["energy_adc"])
    assert ak.array_equal(got["waveform"], events["waveform"])


def test_bad_executor(setup):
    run, spec, _, _ = setup
    with pytest.raises(ConfigError, match="allowed values: 'local', 'dask'"):
        stream.process(run, spec, executor="spark")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="step_size"):
        stream.process(run, spec, step_size=0)


@pytest.mark.dask
def test_dask_local_cluster_equals_local(setup):
    from distributed import Client, LocalCluster

    run, spec, events, _ = setup
    local = stream.process(run, spec, step_size=1000)
    table_local = stream.analyse_chunk(events, spec)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        remote = stream.process(run, spec, step_size=1000, executor="dask", scheduler=address)
        lazy, n_parts = stream.dask_table(run, spec, 1000)
        with Client(address) as client:
            table_dask = client.compute(lazy).result()
    assert n_parts == 4
    assert remote.n_events == local.n_events == len(events)
    assert remote.n_kept == local.n_kept
    assert stream.spectra_equal(remote.spectra, local.spectra)
    np.testing.assert_array_equal(
        table_dask["score_gmm"].to_numpy(), table_local["score_gmm"].to_numpy()
    )
    np.testing.assert_array_equal(
        table_dask["risetime_ns"].to_numpy(), table_local["risetime_ns"].to_numpy()
    )


def test_process_cli(setup, tmp_path):
    import json

    import uproot

    from bege_psd.cli import main

    run, _spec, events, base = setup
    out = tmp_path / "out"
    code = main(
        [
            "-q",
            "process",
            str(run),
            "--model",
            str(base / "gmm.json"),
            "--template",
            str(base / "template.npz"),
            "--out",
            str(out),
            "--friend",
            "--step-size",
            "1500",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_events"] == len(events)
    assert summary["n_chunks"] == 3
    with uproot.open(out / "spectra.root") as f:
        total = f["all"].values(flow=True).sum()
        kept = f["kept_gmm"].values(flow=True).sum()
    assert total == len(events)
    assert kept == summary["n_kept"]["gmm"]
    assert uproot.open(out / "friend.root")["PSD"].num_entries == len(events)


def test_prefetch_order_and_errors():
    def gen(n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"bad chunk {i}")
            yield i

    assert list(stream.prefetch(gen(50), depth=2)) == list(range(50))
    got = []

    def consume():
        for x in stream.prefetch(gen(20, fail_at=7)):
            got.append(x)

    with pytest.raises(ValueError, match="bad chunk 7"):
        consume()
    assert got == list(range(7))
    # the consumer stopping early does not hang the producer
    it = stream.prefetch(gen(10**6))
    assert next(it) == 0
    it.close()
