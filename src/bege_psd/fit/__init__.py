"""Peak fits for gamma spectra: binned Poisson likelihood on bin-integrated peak models.

What to use when
----------------
- :func:`fit_peaks`: net areas (with Minos intervals), positions and widths of one or more
  peaks in a window of a ``hist.Hist`` spectrum.
- :mod:`bege_psd.fit.models`: the model shapes and their parameter conventions.
- ``bege-psd fit SPECTRUM --window LO HI --peaks E1 [E2 ...] --out fit.json`` on the command line.
"""

from __future__ import annotations

from .models import MODELS, PeakModel, make_model
from .peaks import FitResult, PeakArea, fit_peaks

__all__ = ("MODELS", "FitResult", "PeakArea", "PeakModel", "fit_peaks", "make_model")


def __dir__() -> tuple[str, ...]:
    return __all__
