"""Friend ROOT trees: per-event PSD results, entry-aligned with the input events.

Use :class:`FriendWriter` when results arrive chunk by chunk (the pipeline streams a run with
:func:`bege_psd.io.iterate`), and :func:`write_friend` when all chunks are at hand. The output
is a classic ``TTree`` (written with uproot's ``mktree``/``extend``, not by dict assignment,
which would make an RNTuple), so that

* ROOT users can ``tree->AddFriend("PSD", "friend.root")`` on the CoMPASS ``Data_R`` tree and
  ``Draw("Data_R.Energy", "PSD.mask_acm")``;
* uproot users can ``ak.zip`` the two trees' arrays entry by entry.

Entry alignment is enforced, not assumed: every chunk carries the ``entry_start`` of the input
events it belongs to, and the writer refuses a gap or an overlap. A branch ``entry`` (uint64)
holds the input entry number of each row, so that alignment can be checked afterwards.

See also :func:`read_friend` (uproot) and :mod:`bege_psd.pipeline`, which writes one friend tree
per run (features, ``score_<selector>``, ``mask_<selector>``, quality flags).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._util import atomic_path
from ..errors import BegePsdError

__all__ = ("FriendTreeError", "FriendWriter", "read_friend", "write_friend")

#: numpy kinds that a flat TTree branch can hold
_ALLOWED_KINDS = frozenset("biuf")


class FriendTreeError(BegePsdError, ValueError):
    """A chunk given to a friend-tree writer is not entry-aligned or not writable."""


def _as_columns(chunk: Mapping[str, Any], path: Path) -> dict[str, NDArray[Any]]:
    cols: dict[str, NDArray[Any]] = {}
    n: int | None = None
    for name, values in chunk.items():
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.dtype.kind not in _ALLOWED_KINDS:
            msg = (
                f"friend tree {path}: branch {name!r} must be a flat numeric or boolean array, "
                f"got dtype {arr.dtype} with shape {arr.shape}"
            )
            raise FriendTreeError(msg)
        if n is None:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            msg = (
                f"friend tree {path}: branch {name!r} has {arr.shape[0]} entries but the other "
                f"branches of this chunk have {n}; all branches must be entry-aligned"
            )
            raise FriendTreeError(msg)
        # ROOT leaves are big-endian on disk; uproot converts, but keep native, contiguous input
        cols[name] = np.ascontiguousarray(arr)
    return cols


class FriendWriter:
    """Write a friend ``TTree`` chunk by chunk, atomically.

    Parameters
    ----------
    path
        Output ROOT file. It appears only when :meth:`close` succeeds (the context manager
        calls it); a failure leaves no partial file.
    tree
        Tree name (``"PSD"`` by default); the name ROOT's ``AddFriend`` uses as alias.
    source
        Path of the input file the rows are aligned with; stored in the file's metadata.
    metadata
        JSON-serialisable provenance (config hash, selector versions, ...), stored as a
        ``TObjString`` named ``<tree>_metadata``.
    n_entries
        When given, :meth:`close` checks that exactly this many rows were written.

    Examples
    --------
    >>> with FriendWriter("run_psd.root", source="DataR_CH0.root") as w:  # doctest: +SKIP
    ...     for chunk in chunks:
    ...         w.extend({"score_gmm": s, "mask_gmm": s >= 0.5}, entry_start=chunk.start)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        tree: str = "PSD",
        *,
        source: str | os.PathLike[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        n_entries: int | None = None,
        title: str = "bege-psd pulse-shape results (friend of the CoMPASS tree)",
    ) -> None:
        self.path = Path(path)
        self.tree = tree
        self.title = title
        self.n_entries = n_entries
        self._meta = {"source": str(source) if source is not None else None, **(metadata or {})}
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None
        self._file: Any = None
        self._ttree: Any = None
        self._types: dict[str, np.dtype[Any]] | None = None
        self.entries_written = 0

    # -- context management ------------------------------------------------------------
    def __enter__(self) -> FriendWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(exc)

    def _open(self) -> None:
        import uproot

        self._tmp = self._stack.enter_context(atomic_path(self.path))
        self._file = uproot.recreate(self._tmp)

    def extend(self, chunk: Mapping[str, Any], *, entry_start: int | None = None) -> None:
        """Append one chunk of rows.

        Parameters
        ----------
        chunk
            Branch name -> 1-d array (all of the same length; numeric or bool).
        entry_start
            Input entry number of the chunk's first row. It must equal the number of rows
            written so far; a gap or overlap raises :class:`FriendTreeError`. ``None`` skips
            the check (rows are appended in order).
        """
        if self._file is None:
            self._open()
        cols = _as_columns(chunk, self.path)
        if not cols:
            return
        n = next(iter(cols.values())).shape[0]
        if entry_start is not None and entry_start != self.entries_written:
            msg = (
                f"friend tree {self.path}: chunk starts at input entry {entry_start} but "
                f"{self.entries_written} entries were written so far; the friend tree must stay "
                "entry-aligned with the input (no gaps, no overlaps, in order)"
            )
            raise FriendTreeError(msg)
        entry = np.arange(self.entries_written, self.entries_written + n, dtype=np.uint64)
        cols = {"entry": entry, **{k: v for k, v in cols.items() if k != "entry"}}
        if self._types is None:
            self._types = {k: v.dtype for k, v in cols.items()}
            self._ttree = self._file.mktree(self.tree, dict(self._types), title=self.title)
        elif set(cols) != set(self._types):
            missing = sorted(set(self._types) - set(cols))
            extra = sorted(set(cols) - set(self._types))
            msg = (
                f"friend tree {self.path}: chunk at entry {self.entries_written} has different "
                f"branches than the first chunk (missing {missing}, unexpected {extra})"
            )
            raise FriendTreeError(msg)
        cols = {k: v.astype(self._types[k], copy=False) for k, v in cols.items()}
        self._ttree.extend(cols)
        self.entries_written += n

    def close(self) -> Path:
        """Check the entry count, write the metadata, and move the file into place."""
        if self._file is None:
            self._open()
        if self.n_entries is not None and self.entries_written != self.n_entries:
            msg = (
                f"friend tree {self.path}: {self.entries_written} entries written but the input "
                f"has {self.n_entries}; every input event must have a row"
            )
            self.abort(None)
            raise FriendTreeError(msg)
        meta = {**self._meta, "tree": self.tree, "n_entries": self.entries_written}
        self._file[f"{self.tree}_metadata"] = json.dumps(meta, sort_keys=True, default=str)
        self._file.close()
        self._file = None
        self._stack.close()  # renames the temporary file onto self.path
        return self.path

    def abort(self, exc: BaseException | None = None) -> None:
        """Discard the partial output."""
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        err = exc or FriendTreeError("aborted")
        self._stack.__exit__(type(err), err, None)


def write_friend(
    path: str | os.PathLike[str],
    chunks: Iterable[Mapping[str, Any]],
    tree: str = "PSD",
    **kwargs: Any,
) -> Path:
    """Write all ``chunks`` (branch -> array mappings, in input order) as one friend tree."""
    with FriendWriter(path, tree, **kwargs) as writer:
        for chunk in chunks:
            writer.extend(chunk)
    return writer.path


def read_friend(
    path: str | os.PathLike[str], tree: str = "PSD", branches: Iterable[str] | None = None
) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
    """Read a friend tree back as numpy columns plus its metadata dict."""
    import uproot

    with uproot.open(path) as f:
        if tree not in f:
            msg = f"{path}: no tree {tree!r}; it holds {', '.join(f.keys(cycle=False))}"
            raise FriendTreeError(msg)
        t = f[tree]
        names = list(branches) if branches is not None else list(t.keys())
        cols = {name: np.asarray(t[name].array(library="np")) for name in names}
        key = f"{tree}_metadata"
        meta = json.loads(str(f[key])) if key in f else {}
    return cols, meta
