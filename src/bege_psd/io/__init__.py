"""CAEN CoMPASS input and output: one event model for ROOT, BIN and CSV runs.

What to use when
----------------
- A run that fits in memory: :func:`read` (a file, a list of split files, or a run folder).
- A large run, chunk by chunk with bounded memory: :func:`iterate`.
- Sample period, record length, polarity, live time, calibration: :func:`read_metadata`.
- Flag masks and counts by reason (saturation, pile-up, fake): :mod:`bege_psd.io.flags`.
- Writing: :func:`write_run` (a whole CoMPASS run folder), or single files with
  :func:`write_root`, :func:`write_bin`, :func:`write_csv`.
- Reader options (also the ``[io]`` config section): :class:`ReadOptions`.

Format facts and their sources: ``shared/COMPASS-FORMATS.md``.
"""

from __future__ import annotations

from . import flags
from ._events import ProbeCodeWarning
from .compass_bin import write_bin
from .compass_csv import write_csv
from .compass_root import write_root
from .options import ReadOptions
from .reader import find_run_files, iterate, read, read_metadata
from .settings import RunMetadata, parse_hcompass, parse_run_info, parse_settings_xml
from .writer import write_run

__all__ = (
    "ProbeCodeWarning",
    "ReadOptions",
    "RunMetadata",
    "find_run_files",
    "flags",
    "iterate",
    "parse_hcompass",
    "parse_run_info",
    "parse_settings_xml",
    "read",
    "read_metadata",
    "write_bin",
    "write_csv",
    "write_root",
    "write_run",
)


def __dir__() -> tuple[str, ...]:
    return __all__
