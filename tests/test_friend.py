"""Friend trees: entry alignment, uproot zip with the input tree, ROOT AddFriend."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import awkward as ak
import numpy as np
import pytest
import uproot

from bege_psd.io.friend import FriendTreeError, FriendWriter, read_friend, write_friend

N = 1000


@pytest.fixture
def input_tree(tmp_path):
    """A CoMPASS-like ``Data_R`` tree with known energies, written by uproot."""
    rng = np.random.default_rng(7)
    energy = rng.integers(100, 16000, size=N).astype(np.uint16)
    path = tmp_path / "DataR_CH0@DT5725_1146_run.root"
    with uproot.recreate(path) as f:
        f.mktree("Data_R", {"Energy": np.uint16, "Channel": np.uint16})
        f["Data_R"].extend({"Energy": energy, "Channel": np.zeros(N, np.uint16)})
    return path, energy


def _write(path, energy, chunk=300):
    score = (energy.astype(np.float64) % 97) / 96.0
    with FriendWriter(path, source="in.root", metadata={"config_hash": "abc"}, n_entries=N) as w:
        for start in range(0, N, chunk):
            sl = slice(start, start + chunk)
            w.extend(
                {
                    "energy_kev": energy[sl] * 0.2,
                    "score_gmm": score[sl],
                    "mask_gmm": score[sl] >= 0.5,
                    "quality": np.zeros(len(score[sl]), np.uint32),
                },
                entry_start=start,
            )
    return score


def test_roundtrip_and_uproot_zip(tmp_path, input_tree):
    in_path, energy = input_tree
    out = tmp_path / "psd.root"
    score = _write(out, energy)
    cols, meta = read_friend(out)
    assert meta["n_entries"] == N
    assert meta["config_hash"] == "abc"
    np.testing.assert_array_equal(cols["entry"], np.arange(N))
    np.testing.assert_allclose(cols["score_gmm"], score)
    assert cols["mask_gmm"].dtype == np.bool_
    with uproot.open(out) as f:
        assert f.classname_of("PSD") == "TTree"
    events = uproot.open(in_path)["Data_R"].arrays()
    psd = uproot.open(out)["PSD"].arrays()
    zipped = ak.zip({"ev": events, "psd": psd}, depth_limit=1)
    # the friend row i belongs to input entry i: energies agree row by row
    np.testing.assert_allclose(
        ak.to_numpy(zipped.psd.energy_kev), ak.to_numpy(zipped.ev.Energy) * 0.2
    )


def test_root_addfriend(tmp_path, input_tree):
    import importlib.util

    if importlib.util.find_spec("ROOT") is None:  # the PyPI `root` wheel (test extra, Linux x86-64)
        pytest.skip("ROOT (PyPI package `root`) is not installed")
    in_path, energy = input_tree
    out = tmp_path / "psd.root"
    score = _write(out, energy)
    script = textwrap.dedent(
        f"""
        import warnings
        warnings.simplefilter("ignore")
        import ROOT
        f = ROOT.TFile.Open({str(in_path)!r})
        t = f.Get("Data_R")
        t.AddFriend("PSD", {str(out)!r})
        n_kept = t.GetEntries("PSD.mask_gmm")
        t.Draw("Data_R.Energy*0.2 - PSD.energy_kev", "", "goff")
        v = t.GetV1()
        worst = max(abs(v[i]) for i in range(t.GetSelectedRows()))
        print(n_kept, t.GetSelectedRows(), worst)
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    n_kept, n_rows, worst = res.stdout.split()[-3:]
    assert int(n_kept) == int(np.sum(score >= 0.5))
    assert int(n_rows) == N
    assert float(worst) < 1e-3


def test_gap_is_refused_and_leaves_no_file(tmp_path):
    out = tmp_path / "psd.root"
    w = FriendWriter(out)
    w.extend({"a": np.zeros(5)}, entry_start=0)
    with pytest.raises(FriendTreeError, match="entry 10 but 5 entries"):
        w.extend({"a": np.zeros(5)}, entry_start=10)
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_count_mismatch_and_bad_branches(tmp_path):
    out = tmp_path / "psd.root"
    with pytest.raises(FriendTreeError, match="3 entries written but the input has 4"):
        write_friend(out, [{"a": np.zeros(3)}], n_entries=4)
    assert not out.exists()
    with pytest.raises(FriendTreeError, match="'b' has 2 entries"):
        write_friend(out, [{"a": np.zeros(3), "b": np.zeros(2)}])
    with pytest.raises(FriendTreeError, match="flat numeric"):
        write_friend(out, [{"a": np.zeros((3, 2))}])
    with pytest.raises(FriendTreeError, match="different branches"):
        write_friend(out, [{"a": np.zeros(3)}, {"c": np.zeros(3)}])
    assert list(tmp_path.iterdir()) == []
