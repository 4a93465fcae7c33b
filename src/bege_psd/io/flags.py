"""CoMPASS event flags (32 bit, identical in ROOT, BIN and CSV): decoding and accounting.

Use :func:`decode` to turn the ``flags`` field into named boolean masks, :func:`bad_mask` for
"saturated, pile-up or fake" in one mask, and :func:`accounting` to count events by reason
(a reason may overlap another; ``n_clean`` counts events with none of them). Bit meanings follow
the CAEN DPP conventions collected in ``shared/COMPASS-FORMATS.md`` section 4.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = (
    "BAD_REASONS",
    "BITS",
    "FlagAccounting",
    "accounting",
    "bad_mask",
    "decode",
)

#: name -> bit mask
BITS: dict[str, int] = {
    "dead_time": 0x1,
    "timestamp_rollover": 0x2,
    "timestamp_reset": 0x4,
    "fake": 0x8,
    "memory_full": 0x10,
    "trigger_lost": 0x20,
    "n_triggers_lost": 0x40,
    "saturated_gate": 0x80,
    "triggers_1024_counted": 0x100,
    "saturated_input": 0x400,
    "n_triggers_counted": 0x800,
    "not_matched": 0x1000,
    "fine_timestamp": 0x4000,
    "pileup": 0x8000,
    "fake_pll_lock_loss": 0x80000,
    "fake_over_temperature": 0x100000,
    "fake_adc_shutdown": 0x200000,
}

#: the reasons for which an event is unfit for pulse-shape analysis, and their bits
BAD_REASONS: dict[str, int] = {
    "saturated": 0x80 | 0x400,
    "pileup": 0x8000,
    "fake": 0x8 | 0x80000 | 0x100000 | 0x200000,
}

_BAD_ALL = 0
for _bits in BAD_REASONS.values():
    _BAD_ALL |= _bits


def _as_u32(flags: ArrayLike) -> NDArray[np.uint32]:
    arr = np.asarray(flags)
    if arr.dtype.kind not in "ui":
        try:
            import awkward as ak

            arr = ak.to_numpy(flags)
        except Exception:
            msg = f"flags must be an integer array, got dtype {arr.dtype}"
            raise TypeError(msg) from None
    return arr.astype(np.uint32, copy=False)


def decode(flags: ArrayLike) -> dict[str, NDArray[np.bool_]]:
    """Named boolean masks for every known bit, plus the summary reasons of :data:`BAD_REASONS`.

    >>> decode([0x4000, 0x8080])["pileup"].tolist()
    [False, True]
    """
    f = _as_u32(flags)
    out = {name: (f & np.uint32(bit)) != 0 for name, bit in BITS.items()}
    for name, bits in BAD_REASONS.items():
        out[name] = (f & np.uint32(bits)) != 0
    return out


def bad_mask(flags: ArrayLike) -> NDArray[np.bool_]:
    """True for saturated, pile-up or fake events."""
    out: NDArray[np.bool_] = (_as_u32(flags) & np.uint32(_BAD_ALL)) != 0
    return out


@dataclasses.dataclass(frozen=True)
class FlagAccounting:
    """Event counts by flag reason. Reasons can overlap; ``n_clean + n_flagged == n_events``."""

    n_events: int
    n_clean: int
    n_flagged: int
    by_reason: Mapping[str, int]
    by_bit: Mapping[str, int]

    def __add__(self, other: FlagAccounting) -> FlagAccounting:
        return FlagAccounting(
            n_events=self.n_events + other.n_events,
            n_clean=self.n_clean + other.n_clean,
            n_flagged=self.n_flagged + other.n_flagged,
            by_reason={
                k: self.by_reason.get(k, 0) + other.by_reason.get(k, 0) for k in BAD_REASONS
            },
            by_bit={k: self.by_bit.get(k, 0) + other.by_bit.get(k, 0) for k in BITS},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_events": self.n_events,
            "n_clean": self.n_clean,
            "n_flagged": self.n_flagged,
            "by_reason": dict(self.by_reason),
            "by_bit": {k: v for k, v in self.by_bit.items() if v},
        }


def accounting(flags: ArrayLike | Any) -> FlagAccounting:
    """Count events by flag reason. ``flags`` is a flags array or an event array with ``flags``.

    Sum the results of several chunks with ``+``.
    """
    if hasattr(flags, "fields") and "flags" in getattr(flags, "fields", ()):
        flags = getattr(flags, "flags")  # noqa: B009 - an awkward record field
    f = _as_u32(flags)
    bad = (f & np.uint32(_BAD_ALL)) != 0
    n_flagged = int(np.count_nonzero(bad))
    return FlagAccounting(
        n_events=int(f.size),
        n_clean=int(f.size) - n_flagged,
        n_flagged=n_flagged,
        by_reason={k: int(np.count_nonzero(f & np.uint32(b))) for k, b in BAD_REASONS.items()},
        by_bit={k: int(np.count_nonzero(f & np.uint32(b))) for k, b in BITS.items()},
    )
