"""TOML configuration: typed, validated sections.

Each stage owns a frozen dataclass describing its options (``bege_psd.dsp.DSPConfig``,
``bege_psd.select.gmm.GMMConfig``, ...). :func:`from_mapping` builds such a dataclass from a
TOML table and rejects unknown keys, wrong types and out-of-range values with a
:class:`~bege_psd.errors.ConfigError` that names the key, the bad value and what is allowed.
:func:`load_config` reads a whole file whose top-level tables are the registered sections
(:data:`SECTIONS`).

Field metadata understood by the validator::

    threshold: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0, "doc": "..."})
    window: int = field(default=19, metadata={"min": 3, "odd": True})

``Literal[...]`` annotations restrict a value to a set of allowed strings.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ._util import stable_hash
from .errors import ConfigError, nearest_names

__all__ = ("SECTIONS", "Config", "from_mapping", "load_config", "to_mapping")

T = TypeVar("T")

#: Top-level TOML tables and the dataclass that validates each (``module:Class``, imported lazily).
SECTIONS: dict[str, str] = {
    "run": "bege_psd.pipeline:RunConfig",
    "io": "bege_psd.io.options:ReadOptions",
    "sim": "bege_psd.sim.config:SimConfig",
    "calib": "bege_psd.calib:CalibConfig",
    "dsp": "bege_psd.dsp.config:DSPConfig",
    "labels": "bege_psd.select.labels:LabelConfig",
    "aoe": "bege_psd.select.aoe:AoEConfig",
    "gmm": "bege_psd.select.gmm:GMMConfig",
    "acm": "bege_psd.select.acm:ACMConfig",
    "metrics": "bege_psd.metrics:MetricsConfig",
    "report": "bege_psd.report:ReportConfig",
}


def _resolve(spec: str) -> type[Any]:
    module, _, name = spec.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        msg = f"configuration section class {spec} is not a dataclass"
        raise TypeError(msg)
    return cls


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, key: str, meta: Mapping[str, Any]) -> Any:
    """Validate ``value`` against annotation ``tp``; return the converted value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, key, meta)
            except ConfigError as exc:
                errors.append(str(exc))
        msg = f"{key} = {value!r}: expected one of {' | '.join(_type_name(a) for a in args)}"
        raise ConfigError(msg)
    if origin is typing.Literal:
        if value not in args:
            msg = f"{key} = {value!r} is not allowed; allowed values: {', '.join(repr(a) for a in args)}"
            raise ConfigError(msg)
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            msg = f"{key} must be a table of {tp.__name__} options, got {value!r}"
            raise ConfigError(msg)
        return from_mapping(tp, value, where=key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            msg = f"{key} = {value!r}: expected a list"
            raise ConfigError(msg)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                msg = f"{key} = {value!r}: expected a list of {len(args)} values"
                raise ConfigError(msg)
            items = [
                _check(v, a, f"{key}[{i}]", {})
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            ]
        else:
            item_tp = args[0] if args else Any
            items = [_check(v, item_tp, f"{key}[{i}]", {}) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            msg = f"{key} = {value!r}: expected a table"
            raise ConfigError(msg)
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _check(v, vt, f"{key}.{k}", {}) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            msg = f"{key} = {value!r}: expected true or false"
            raise ConfigError(msg)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"{key} = {value!r}: expected an integer"
            raise ConfigError(msg)
        out: Any = value
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            msg = f"{key} = {value!r}: expected a number"
            raise ConfigError(msg)
        out = float(value)
    elif tp is str:
        if not isinstance(value, str):
            msg = f"{key} = {value!r}: expected a string"
            raise ConfigError(msg)
        out = value
    elif tp is Path or tp is os.PathLike:
        if not isinstance(value, (str, os.PathLike)):
            msg = f"{key} = {value!r}: expected a path string"
            raise ConfigError(msg)
        return Path(value)
    else:
        return value
    if "min" in meta and out < meta["min"]:
        msg = f"{key} = {out!r} is below the allowed minimum {meta['min']!r}"
        raise ConfigError(msg)
    if "max" in meta and out > meta["max"]:
        msg = f"{key} = {out!r} is above the allowed maximum {meta['max']!r}"
        raise ConfigError(msg)
    if meta.get("odd") and isinstance(out, int) and out % 2 == 0:
        msg = f"{key} = {out!r} must be odd"
        raise ConfigError(msg)
    if "choices" in meta and out not in meta["choices"]:
        msg = f"{key} = {out!r} is not allowed; allowed values: {', '.join(map(repr, meta['choices']))}"
        raise ConfigError(msg)
    return out


def from_mapping(cls: type[T], mapping: Mapping[str, Any] | None, *, where: str = "") -> T:
    """Build the dataclass ``cls`` from ``mapping``, validating every key and value.

    Missing keys take the dataclass defaults; unknown keys raise :class:`ConfigError` listing
    the nearest allowed names. ``where`` prefixes key names in messages (e.g. ``"dsp"``).
    """
    mapping = dict(mapping or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    prefix = f"{where}." if where else ""
    unknown = [k for k in mapping if k not in fields]
    if unknown:
        k = unknown[0]
        msg = (
            f"unknown configuration key {prefix}{k}; allowed keys of [{where or cls.__name__}] "
            f"(nearest first): {', '.join(nearest_names(k, fields, n=0))}"
        )
        raise ConfigError(msg)
    kwargs = {}
    for name, value in mapping.items():
        kwargs[name] = _check(value, hints[name], prefix + name, fields[name].metadata)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        msg = f"invalid [{where or cls.__name__}] configuration: {exc}"
        raise ConfigError(msg) from exc
    return obj


def to_mapping(obj: Any) -> dict[str, Any]:
    """The inverse of :func:`from_mapping`: a TOML/JSON-friendly dict of a config dataclass."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    result = conv(obj)
    assert isinstance(result, dict)
    return result


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated configuration: one dataclass per section, plus where it came from."""

    sections: Mapping[str, Any]
    path: Path | None = None

    def __getattr__(self, name: str) -> Any:
        sections = object.__getattribute__(self, "sections")
        if name in sections:
            return sections[name]
        if name in SECTIONS:
            cls = _resolve(SECTIONS[name])
            return cls()
        raise AttributeError(name)

    def section(self, name: str) -> Any:
        """The validated section ``name`` (its defaults when the file does not set it)."""
        result = getattr(self, name)
        return result

    def hash(self, *names: str) -> str:
        """A stable hash of the named sections (all when none are named)."""
        keys = names or tuple(sorted(self.sections))
        return stable_hash({k: to_mapping(self.section(k)) for k in keys})


def load_config(source: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> Config:
    """Read and validate a TOML configuration file (or an already-parsed mapping).

    Relative paths inside ``[run]`` are resolved by the pipeline against the file's folder.
    """
    path: Path | None = None
    if source is None:
        raw: Mapping[str, Any] = {}
    elif isinstance(source, Mapping):
        raw = source
    else:
        path = Path(source)
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            msg = f"configuration file {path} does not exist"
            raise ConfigError(msg) from None
        except tomllib.TOMLDecodeError as exc:
            msg = f"{path} is not valid TOML: {exc}"
            raise ConfigError(msg) from exc
    sections: dict[str, Any] = {}
    for name, table in raw.items():
        if name not in SECTIONS:
            msg = (
                f"unknown configuration section [{name}]"
                + (f" in {path}" if path else "")
                + f"; allowed sections (nearest first): {', '.join(nearest_names(name, SECTIONS, n=0))}"
            )
            raise ConfigError(msg)
        sections[name] = from_mapping(_resolve(SECTIONS[name]), table, where=name)
    return Config(sections=sections, path=path)
