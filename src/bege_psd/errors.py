"""Exceptions and warnings of bege-psd.

Every error raised by the package derives from :class:`BegePsdError`. Messages name the bad
value (file, entry or byte offset, key), say what was expected, and, where one exists, how to
fix it. Input-format errors carry ``path`` and ``offset``/``entry`` attributes so that a caller
can report them without parsing the message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = (
    "BegePsdError",
    "BegePsdWarning",
    "CompassFormatError",
    "ConfigError",
    "FitError",
    "FitQualityWarning",
    "MissingBranchError",
    "ModelMismatchError",
    "OptionalDependencyError",
    "SelectionError",
    "SimulationError",
    "TruncatedFileError",
    "UnderdeterminedComponentWarning",
    "nearest_names",
    "require",
)


def nearest_names(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return ``candidates`` ordered with the closest matches to ``name`` first."""
    cands = list(candidates)
    close = difflib.get_close_matches(name, cands, n=len(cands), cutoff=0.0)
    return close[:n] if n else close


class BegePsdError(Exception):
    """Base class of every exception raised by bege-psd."""


class CompassFormatError(BegePsdError, ValueError):
    """A CoMPASS file (ROOT, BIN, CSV, settings.xml, run.info) is not what was expected.

    Attributes ``path`` and ``offset`` (byte offset) or ``entry`` (event index / CSV line)
    locate the problem; either may be ``None`` when it does not apply.
    """

    def __init__(
        self,
        msg: str,
        *,
        path: str | None = None,
        offset: int | None = None,
        entry: int | None = None,
    ) -> None:
        super().__init__(msg)
        self.path = path
        self.offset = offset
        self.entry = entry


class TruncatedFileError(CompassFormatError):
    """A file ends in the middle of a record."""


class MissingBranchError(CompassFormatError, KeyError):
    """A ROOT tree or branch that is required does not exist; the message lists what does."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class ConfigError(BegePsdError, ValueError):
    """A configuration key or value is invalid; the message names the key and what is allowed."""


class FitError(BegePsdError, RuntimeError):
    """A fit could not be set up or did not converge."""


class SelectionError(BegePsdError, RuntimeError):
    """A selector could not be trained or applied."""


class ModelMismatchError(SelectionError):
    """A saved model does not match this version of bege-psd or the given configuration."""


class SimulationError(BegePsdError, RuntimeError):
    """The simulator was configured inconsistently (e.g. the detector does not deplete)."""


class OptionalDependencyError(BegePsdError, ImportError):
    """An optional stack (TensorFlow, scikit-learn, dask, matplotlib) is not installed."""


def require(module: str, extra: str) -> object:
    """Import ``module`` or raise :class:`OptionalDependencyError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = (
            f"{module!r} is needed for this feature but is not installed; "
            f"install it with: pip install 'bege-psd[{extra}]'"
        )
        raise OptionalDependencyError(msg) from exc


class BegePsdWarning(UserWarning):
    """Base class of the package's warnings."""


class FitQualityWarning(BegePsdWarning):
    """A fit converged but its quality is doubtful (edge of limits, poor p-value, ...)."""


class UnderdeterminedComponentWarning(BegePsdWarning):
    """The evidence for which mixture component is multi-site is weak or contradictory."""
