"""Selections that separate multi-site (MSE, kept) from single-site (SSE, rejected) events.

What to use when
----------------
- :class:`bege_psd.select.aoe.AoESelector`: the classical A/E cut of GERDA/LEGEND; the
  baseline every other selection must beat; needs only the current maximum and the energy.
- :class:`bege_psd.select.gmm.GMMSelector`: the paper's unsupervised two-component Gaussian
  mixture on (rise time, L1 distance to the SSE template, number of d2 peaks); no labels.
- :class:`bege_psd.select.acm.ACMSelector`: the paper's autoencoder + classifier trained on
  energy-window labels (:mod:`bege_psd.select.labels`); needs TensorFlow (``bege-psd[ml]``).

All follow :class:`bege_psd.select.base.Selector`: ``fit``, ``score`` (float in [0, 1],
1 = MSE-like), ``mask`` (``score >= threshold``), ``save`` and ``load``.
"""

from __future__ import annotations

from .base import Selector, load_selector

__all__ = ("Selector", "load_selector")


def __dir__() -> tuple[str, ...]:
    return __all__
