from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Literal

import pytest

from bege_psd import config as cfg
from bege_psd._util import atomic_path, atomic_write_text, stable_hash
from bege_psd.errors import ConfigError, nearest_names


@dataclasses.dataclass(frozen=True)
class Inner:
    lo: float = 1.0
    hi: float = 2.0


@dataclasses.dataclass(frozen=True)
class Example:
    threshold: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    window: int = field(default=19, metadata={"min": 3, "odd": True})
    mode: Literal["fast", "exact"] = "fast"
    window_kev: tuple[float, float] = (1590.0, 1595.0)
    names: tuple[str, ...] = ("a",)
    inner: Inner = field(default_factory=Inner)
    seed: int | None = None


def test_defaults_and_conversion():
    ex = cfg.from_mapping(Example, {"threshold": 1, "window_kev": [1, 2], "inner": {"lo": 3}})
    assert ex.threshold == 1.0
    assert isinstance(ex.threshold, float)
    assert ex.window_kev == (1.0, 2.0)
    assert ex.inner == Inner(lo=3.0)
    assert cfg.to_mapping(ex)["inner"] == {"lo": 3.0, "hi": 2.0}


@pytest.mark.parametrize(
    ("mapping", "fragment"),
    [
        ({"threshhold": 0.3}, "unknown configuration key ex.threshhold"),
        ({"threshold": 1.5}, "above the allowed maximum"),
        ({"window": 20}, "must be odd"),
        ({"window": 1}, "below the allowed minimum"),
        ({"window": 2.5}, "expected an integer"),
        ({"mode": "slow"}, "allowed values: 'fast', 'exact'"),
        ({"window_kev": [1.0]}, "expected a list of 2 values"),
        ({"seed": "x"}, "ex.seed = 'x'"),
    ],
)
def test_errors_name_key_and_allowed(mapping, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        cfg.from_mapping(Example, mapping, where="ex")


def test_unknown_key_lists_nearest_first():
    with pytest.raises(ConfigError) as info:
        cfg.from_mapping(Example, {"windw": 3}, where="ex")
    assert "allowed keys of [ex] (nearest first): window" in str(info.value)


def test_unknown_section(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[gmmm]\nthreshold = 0.5\n")
    with pytest.raises(
        ConfigError, match=r"unknown configuration section \[gmmm\].*nearest first\): gmm"
    ):
        cfg.load_config(p)


def test_bad_toml_and_missing_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[run\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg.load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load_config(tmp_path / "nope.toml")


def test_nearest_names():
    assert nearest_names("Sampels", ["Energy", "Samples", "Flags"])[0] == "Samples"


def test_stable_hash_order_independent():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_atomic_write(tmp_path):
    dest = tmp_path / "sub" / "out.txt"
    atomic_write_text(dest, "hello")
    assert dest.read_text() == "hello"

    def crash():
        with atomic_path(dest) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        crash()
    assert dest.read_text() == "hello"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["out.txt"]


def test_atomic_write_permissions_follow_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        dest = tmp_path / "perm.txt"
        atomic_write_text(dest, "x")
        assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    finally:
        os.umask(old)
