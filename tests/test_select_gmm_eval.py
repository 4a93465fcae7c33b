"""End to end: analysis/evaluate_selections.py on small simulated runs (slow: simulates)."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ml]

SCRIPT = Path(__file__).resolve().parents[1] / "analysis" / "evaluate_selections.py"


def test_evaluation_script_end_to_end(tmp_path):
    spec = importlib.util.spec_from_file_location("evaluate_selections", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "eval"
    with warnings.catch_warnings():
        # weak-line fits on a short run may be poor; that is reported, not an error here
        warnings.simplefilter("ignore")
        rc = mod.main([
            "--th232", str(tmp_path / "th232"), "--cryoconite", str(tmp_path / "cryo"),
            "--n-events", "150000", "--n-cryoconite", "40000", "--out", str(out),
        ])  # fmt: skip
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["simulated"] is True
    assert s["gmm"]["evidence"]["decided_by"] in ("dep_fep_windows", "risetime")
    assert -1.0 < s["gmm"]["silhouette"] < 1.0
    # the GERDA-style cut is tuned to 90 % DEP net acceptance on the same run
    dep = s["th232_survival"]["aoe_gerda_sse_pass"]["DEP 1592.5"]
    assert dep["value"] == pytest.approx(0.9, abs=0.02)
    # kept (MSE) sides keep more of the FEP than of the DEP
    for sel in ("gmm", "aoe_keep_mse_at_90pc_dep"):
        row = s["th232_survival"][sel]
        assert row["FEP 2614.5"]["value"] > row["DEP 1592.5"]["value"]
    for sel in ("gmm", "aoe"):
        assert 0.5 < s["th232_roc"][sel]["auc"] <= 1.0
    # A/E was matched to the GMM's kept fraction on cryoconite
    c = s["cryoconite"]
    assert c["aoe_matched_to_gmm"]["kept_fraction_300_700"] == pytest.approx(
        c["gmm"]["kept_fraction_300_700"], abs=0.005
    )
    assert c["gmm"]["ptc_paper"]["ratio_all"]["value"] > 0
    for f in s["figures"]:
        assert Path(f).stat().st_size > 10_000
