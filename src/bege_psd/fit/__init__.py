"""Peak fits for gamma spectra: binned Poisson likelihood on bin-integrated peak models.

What to use when
----------------
- :func:`fit_peaks`: net areas (with Minos intervals), positions and widths of one or more
  peaks in a window of a ``hist.Hist`` spectrum.
- :mod:`bege_psd.fit.models`: the model shapes and their parameter conventions.
- ``bege-psd fit SPECTRUM --window LO HI --peaks E1 [E2 ...] --out fit.json`` on the command line.

The submodules are imported on first use, so that ``bege-psd --help`` does not load SciPy and
iminuit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import MODELS, PeakModel, make_model
    from .peaks import FitResult, PeakArea, fit_peaks

__all__ = ("MODELS", "FitResult", "PeakArea", "PeakModel", "fit_peaks", "make_model")

_WHERE = {
    "MODELS": "models",
    "PeakModel": "models",
    "make_model": "models",
    "FitResult": "peaks",
    "PeakArea": "peaks",
    "fit_peaks": "peaks",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> tuple[str, ...]:
    return __all__
