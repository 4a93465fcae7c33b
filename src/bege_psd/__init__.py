"""bege-psd: pulse-shape discrimination for BEGe gamma-ray spectroscopy.

What to use when
----------------
- Read CAEN CoMPASS runs (ROOT, BIN, CSV): :func:`bege_psd.io.read` / :func:`bege_psd.io.iterate`.
- Per-event pulse-shape features (numba): :func:`bege_psd.dsp.features`.
- Selections (A/E, GMM, autoencoder+classifier): :mod:`bege_psd.select`.
- Spectra, peak fits and metrics: :mod:`bege_psd.spectrum`, :mod:`bege_psd.fit`,
  :mod:`bege_psd.metrics`.
- A simulated BEGe detector writing CoMPASS runs with truth: :mod:`bege_psd.sim`.
- The whole chain from a TOML configuration: ``bege-psd run CONFIG`` or :mod:`bege_psd.pipeline`.

Heavy stacks (TensorFlow, scikit-learn, dask, matplotlib) are imported only by the
submodules that need them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bege-psd")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ("__version__",)


def __dir__() -> tuple[str, ...]:
    return __all__
