"""Small shared helpers: atomic file output and stable configuration hashes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ("atomic_path", "atomic_write_bytes", "atomic_write_text", "stable_hash")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path for ``path``; on success move it onto ``path``.

    Writers that need a file name (uproot, Keras, matplotlib) write to the yielded path; a
    crash leaves the destination untouched and removes the partial file. The temporary file
    has the final *name*, in a private hidden folder beside the destination: ROOT stores the
    file name inside the file, so a random temporary name would end up in the output (and make
    otherwise identical outputs differ).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    tmp_path = tmpdir / dest.name
    try:
        yield tmp_path
        # give the result the permissions a plain open() would (mkdtemp's folder is 0700)
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, dest)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short SHA-256 of a JSON-serialisable object, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def _json_default(obj: Any) -> Any:
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    msg = f"cannot hash object of type {type(obj).__name__}"
    raise TypeError(msg)
