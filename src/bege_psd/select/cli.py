"""``bege-psd train`` and ``bege-psd apply``: the selection stage on the command line.

- ``bege-psd train aoe|gmm|acm FEATURES --out MODEL [--config FILE]`` trains a selector on an
  event table and writes its model (JSON for A/E and GMM; ``.keras`` + JSON for the ACM).
- ``bege-psd apply MODEL FEATURES --out FILE`` scores every event and writes ``score_<name>``
  and ``mask_<name>`` entry-aligned with FEATURES: a ROOT friend tree ``PSD`` (``.root``), or
  ``.npz`` / ``.csv`` columns.

FEATURES is a ROOT file with one tree of per-event features (a tree named ``Features`` or
``PSD`` is preferred when there are several) or an ``.npz`` of equal-length arrays; it must hold
the selector's feature fields and ``energy_kev`` (and ``waveform`` for the ACM). The Python
equivalents are :meth:`Selector.fit`, :meth:`Selector.save`, :func:`~bege_psd.select.base.load_selector`
and :meth:`Selector.score`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

__all__ = ("read_event_table", "register", "write_scores")

log = logging.getLogger(__name__)

_SELECTORS = {
    "aoe": ("bege_psd.select.aoe", "AoESelector"),
    "gmm": ("bege_psd.select.gmm", "GMMSelector"),
    "acm": ("bege_psd.select.acm", "ACMSelector"),
}
_PREFERRED_TREES = ("Features", "PSD", "Data_R")


def register(subparsers: Any) -> None:
    """Add ``train`` and ``apply`` to the ``bege-psd`` command line."""
    p = subparsers.add_parser(
        "train", help="train a selection (A/E, GMM or ACM) on a feature table"
    )
    p.add_argument("kind", choices=sorted(_SELECTORS), help="which selection")
    p.add_argument("features", type=Path, help="feature table (.root tree or .npz)")
    p.add_argument("--out", type=Path, required=True, help="model file to write")
    p.add_argument(
        "--config", type=Path, default=None, help="TOML file; uses its [aoe]/[gmm]/[acm] section"
    )
    p.set_defaults(func=_train)

    a = subparsers.add_parser("apply", help="score events with a trained selection model")
    a.add_argument("model", type=Path, help="model written by `bege-psd train`")
    a.add_argument("features", type=Path, help="feature table (.root tree or .npz)")
    a.add_argument(
        "--out", type=Path, required=True, help="output: .root (friend tree PSD), .npz or .csv"
    )
    a.set_defaults(func=_apply)


def read_event_table(path: Path) -> Any:
    """Read a feature table (ROOT tree or ``.npz``) as an ``ak.Array`` of records."""
    import awkward as ak
    import numpy as np

    from ..errors import SelectionError

    if not path.exists():
        msg = f"feature table {path} does not exist"
        raise SelectionError(msg)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            cols = {k: z[k] for k in z.files}
        lengths = {k: v.shape[0] for k, v in cols.items()}
        if len(set(lengths.values())) > 1:
            msg = f"{path}: arrays have different lengths {lengths}; expected one entry per event"
            raise SelectionError(msg)
        return ak.zip(cols, depth_limit=1)
    if path.suffix == ".root":
        import uproot

        with uproot.open(path) as f:
            trees = [k for k, c in f.classnames(cycle=False).items() if c == "TTree"]
            if not trees:
                msg = f"{path}: no TTree inside; it holds {', '.join(f.keys(cycle=False)) or 'nothing'}"
                raise SelectionError(msg)
            name = next((t for t in _PREFERRED_TREES if t in trees), trees[0])
            if len(trees) > 1:
                log.info("%s: using tree %r of %s", path, name, trees)
            return f[name].arrays(library="ak")
    msg = f"{path}: unsupported feature-table format {path.suffix!r}; expected .root or .npz"
    raise SelectionError(msg)


def write_scores(path: Path, name: str, score: Any, mask: Any, metadata: dict[str, Any]) -> Path:
    """Write ``score_<name>`` and ``mask_<name>`` (entry-aligned) to ``.root``, ``.npz`` or ``.csv``."""
    import io

    import numpy as np

    from .._util import atomic_path, atomic_write_text
    from ..errors import SelectionError

    cols = {
        f"score_{name}": np.asarray(score, dtype=np.float64),
        f"mask_{name}": np.asarray(mask, dtype=bool),
    }
    if path.suffix == ".root":
        from ..io.friend import write_friend

        return write_friend(path, [cols], tree="PSD", metadata=metadata)
    if path.suffix == ".npz":
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez(fh, **cols)  # type: ignore[arg-type]
        return path
    if path.suffix == ".csv":
        buf = io.StringIO()
        buf.write(f"entry,score_{name},mask_{name}\n")
        for i, (s, m) in enumerate(zip(cols[f"score_{name}"], cols[f"mask_{name}"], strict=True)):
            buf.write(f"{i},{s:.9g},{int(m)}\n")
        atomic_write_text(path, buf.getvalue())
        return path
    msg = f"{path}: unsupported output format {path.suffix!r}; use .root, .npz or .csv"
    raise SelectionError(msg)


def _train(args: argparse.Namespace) -> int:
    import importlib

    module, cls_name = _SELECTORS[args.kind]
    cls = getattr(importlib.import_module(module), cls_name)
    if args.config is not None:
        from ..config import load_config

        selector = cls(load_config(args.config).section(args.kind))
    else:
        selector = cls()
    table = read_event_table(args.features)
    selector.fit(table)
    path = selector.save(args.out)
    log.info("trained %s on %d events; model written to %s", args.kind, len(table), path)
    return 0


def _apply(args: argparse.Namespace) -> int:
    import numpy as np

    from .base import load_selector, read_model_header

    selector = load_selector(args.model)
    table = read_event_table(args.features)
    score = selector.score(table)
    mask = np.isfinite(score) & (score >= selector.threshold)
    meta = read_model_header(args.model)
    out = write_scores(
        args.out, selector.name, score, mask,
        {"model": str(args.model), "kind": meta["kind"], "config_hash": meta.get("config_hash"),
         "threshold": float(selector.threshold), "source": str(args.features)},
    )  # fmt: skip
    n_nan = int(np.count_nonzero(~np.isfinite(score)))
    log.info(
        "%s: %d events, %d kept, %d rejected, %d not scorable (NaN score) -> %s",
        selector.name, score.size, int(mask.sum()), int((~mask).sum()) - n_nan, n_nan, out,
    )  # fmt: skip
    return 0
