"""The Autoencoder Classifier Model (ACM): the paper's supervised benchmark selection.

An autoencoder (122-50-35-5-35-50-122, LeakyReLU, batch normalisation on every dense step, MSE
loss, Adam) compresses each normalised, down-sampled waveform to 5 latent features; a small
classifier (two LeakyReLU hidden layers, one sigmoid output, binary cross-entropy, Adam) turns
the 5 standardised features into a score in [0, 1] (1 = multi-site-like, kept). The autoencoder is
trained on a uniform random sample of all events in ``labels.energy_range`` ([300, 2700] keV);
the classifier on the class-balanced energy-window labels of the paper's Table 1
(:mod:`bege_psd.select.labels`). Paper: Sec. 4, Figs. 3-9.

What to use when
----------------
- :class:`ACMSelector` when a 232Th calibration run with waveforms is available and
  TensorFlow is installed (``pip install 'bege-psd[ml]'``); it needs the ``waveform`` and
  ``energy_kev`` fields of the event table.
- :class:`bege_psd.select.gmm.GMMSelector` when no labels can be trusted (unsupervised), and
  :class:`bege_psd.select.aoe.AoESelector` as the classical baseline.

Events outside ``labels.energy_range``, events without a waveform (empty list) and flat waveforms
(maximum equal to minimum) cannot be scored: their score is NaN, so :meth:`ACMSelector.mask`
does not keep them. Nothing is dropped from the table; the score array is entry-aligned.

TensorFlow / Keras are imported only inside the methods that need them, so
``import bege_psd.select.acm`` stays light. Models are saved as a ``.keras`` file (loaded with
``safe_mode=True``) plus ``<file>.keras.json`` metadata; both are written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
from numpy.typing import NDArray

from .._util import atomic_path, atomic_write_text, stable_hash
from ..config import from_mapping, to_mapping
from ..errors import ModelMismatchError, SelectionError, require
from .labels import LabelConfig, balanced_indices

if TYPE_CHECKING:
    import awkward as ak

__all__ = ("ACMConfig", "ACMSelector", "ACMTraining", "waveforms_to_input")

log = logging.getLogger(__name__)

#: bumped when the layout of the saved model or metadata changes
FORMAT_VERSION = 1
KIND = "acm"


@dataclasses.dataclass(frozen=True)
class ACMConfig:
    """Options of the ACM (TOML section ``[acm]``). Defaults follow the paper where it says."""

    bottleneck: int = field(default=5, metadata={"min": 1, "max": 64, "doc": "latent features"})
    encoder_units: tuple[int, ...] = field(
        default=(50, 35), metadata={"doc": "hidden layers before the bottleneck (mirrored after)"}
    )
    classifier_units: tuple[int, int] = field(
        default=(16, 8), metadata={"doc": "the classifier's two hidden layers (paper: unstated)"}
    )
    leaky_relu_slope: float = field(default=0.3, metadata={"min": 0.0, "max": 1.0})
    downsample: int = field(default=3, metadata={"min": 1, "max": 16, "doc": "366 -> 122"})
    baseline_samples: int = field(
        default=40, metadata={"min": 2, "doc": "leading samples averaged as the baseline"}
    )
    polarity: Literal["auto", "positive", "negative"] = "auto"
    threshold: float = field(
        default=0.58, metadata={"min": 0.0, "max": 1.0, "doc": "working point"}
    )
    ae_max_events: int = field(
        default=200_000, metadata={"min": 10, "doc": "uniform sample size for the autoencoder"}
    )
    ae_epochs: int = field(default=200, metadata={"min": 1})
    ae_batch_size: int = field(default=256, metadata={"min": 1})
    ae_learning_rate: float = field(default=1e-3, metadata={"min": 0.0})
    ae_patience: int = field(default=10, metadata={"min": 1, "doc": "early stopping on val loss"})
    clf_epochs: int = field(default=200, metadata={"min": 1})
    clf_batch_size: int = field(default=256, metadata={"min": 1})
    clf_learning_rate: float = field(default=1e-3, metadata={"min": 0.0})
    clf_patience: int = field(default=20, metadata={"min": 1})
    validation_fraction: float = field(default=0.3, metadata={"min": 0.05, "max": 0.9})
    seed: int = field(default=0, metadata={"min": 0})
    threads: int = field(default=0, metadata={"min": 0, "doc": "CPU threads; 0 = TF default"})
    deterministic: bool = True
    inference_batch_size: int = field(default=65536, metadata={"min": 1})

    def __post_init__(self) -> None:
        if len(self.encoder_units) < 1 or any(u < 1 for u in self.encoder_units):
            msg = f"acm.encoder_units = {list(self.encoder_units)}: expected positive layer sizes"
            raise ValueError(msg)
        if any(u < 1 for u in self.classifier_units):
            msg = f"acm.classifier_units = {list(self.classifier_units)}: expected positive sizes"
            raise ValueError(msg)

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any] | None) -> ACMConfig:
        """Validated construction from a TOML/JSON table."""
        return from_mapping(cls, mapping, where="acm")


@dataclasses.dataclass(frozen=True)
class ACMTraining:
    """What :meth:`ACMSelector.fit` did: histories, split sizes and the validation partition.

    Index arrays point into the event table given to ``fit``.
    """

    ae_history: dict[str, list[float]]
    clf_history: dict[str, list[float]]
    ae_train_idx: NDArray[np.int64]
    ae_val_idx: NDArray[np.int64]
    clf_train_idx: NDArray[np.int64]
    clf_val_idx: NDArray[np.int64]
    clf_val_labels: NDArray[np.int8]
    val_accuracy_05: float
    val_accuracy_threshold: float
    ae_seconds: float
    clf_seconds: float

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no index arrays)."""
        return {
            "ae_history": self.ae_history,
            "clf_history": self.clf_history,
            "ae_epochs_run": len(self.ae_history.get("loss", [])),
            "clf_epochs_run": len(self.clf_history.get("loss", [])),
            "n_ae_train": int(self.ae_train_idx.size),
            "n_ae_val": int(self.ae_val_idx.size),
            "n_clf_train": int(self.clf_train_idx.size),
            "n_clf_val": int(self.clf_val_idx.size),
            "val_accuracy_0.5": self.val_accuracy_05,
            "val_accuracy_threshold": self.val_accuracy_threshold,
            "ae_seconds": self.ae_seconds,
            "clf_seconds": self.clf_seconds,
        }


# --------------------------------------------------------------------------------------------
# preprocessing


def _normalise_numpy(
    wf: NDArray[Any], *, polarity: str, baseline_samples: int, downsample: int
) -> NDArray[np.float32]:
    """Baseline-subtract, flip to positive, min-max normalise to [0, 1], average ``downsample``
    consecutive samples (paper Sec. 4.1). Flat rows give NaN. ``wf`` is (n, n_samples)."""
    n, ns = wf.shape
    m = ns // downsample
    out = np.empty((n, m), dtype=np.float32)
    # blocks of rows keep the temporaries in cache (about 2x faster than whole-array passes)
    step = 4096
    for a in range(0, n, step):
        out[a : a + step] = _normalise_block(
            wf[a : a + step], polarity, baseline_samples, downsample
        )
    return out


def _normalise_block(
    wf: NDArray[Any], polarity: str, baseline_samples: int, downsample: int
) -> NDArray[np.float32]:
    x = np.asarray(wf, dtype=np.float32)
    n, ns = x.shape
    nb = min(baseline_samples, ns)
    x -= x[:, :nb].mean(axis=1, keepdims=True)
    if polarity == "negative":
        np.negative(x, out=x)
    elif polarity == "auto":
        # sign of the signal: the tail after the trigger sits above (positive) or below the baseline
        tail = x[:, ns - max(1, ns // 4) :].mean(axis=1)
        x *= np.where(tail < 0, -1.0, 1.0).astype(np.float32)[:, None]
    lo = x.min(axis=1, keepdims=True)
    span = x.max(axis=1, keepdims=True) - lo
    flat = span[:, 0] <= 0
    x -= lo
    x /= np.where(flat[:, None], np.float32(1.0), span)
    x[flat] = np.nan
    m = ns // downsample
    out: NDArray[np.float32] = (
        x[:, : m * downsample].reshape(n, m, downsample).mean(axis=2, dtype=np.float32)
    )
    return out


def waveforms_to_input(
    waveforms: Any,
    config: ACMConfig | None = None,
    *,
    polarity: str | None = None,
    source: str = "<table>",
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """The ACM input for each event: ``(x, ok)`` with ``x`` of shape (n, n_samples // 3).

    ``waveforms`` is a ``var * int16`` awkward array (or a 2-D numpy array). Rows with an empty
    waveform or a flat one get ``ok = False`` and NaN in ``x``. All non-empty waveforms must
    have the same length; otherwise a :class:`SelectionError` names the first odd entry.
    ``polarity`` ("positive"/"negative", e.g. from the table's ``attrs``) overrides
    ``config.polarity``.
    """
    import awkward as ak

    config = config or ACMConfig()
    pol = polarity if polarity in ("positive", "negative") else config.polarity
    if isinstance(waveforms, np.ndarray):
        if waveforms.ndim != 2:
            msg = f"{source}: waveforms must be 2-D (events, samples), got shape {waveforms.shape}"
            raise SelectionError(msg)
        wf2 = waveforms
        has = np.ones(len(waveforms), dtype=bool)
        ns = waveforms.shape[1]
    else:
        counts = np.asarray(ak.num(waveforms, axis=1))
        has = counts > 0
        lengths = np.unique(counts[has])
        if lengths.size > 1:
            ref = int(np.flatnonzero(has)[0])
            first = int(np.flatnonzero(has & (counts != counts[ref]))[0])
            msg = (
                f"{source}: waveforms of different lengths {lengths.tolist()} in one table "
                f"(entry {first} has {counts[first]} samples, entry {ref} has {counts[ref]}); "
                "the ACM expects one record length per run"
            )
            raise SelectionError(msg)
        ns = int(lengths[0]) if lengths.size else 0
        if ns and has.all():
            wf2 = ak.to_numpy(ak.flatten(waveforms, axis=1)).reshape(-1, ns)
        else:
            wf2 = np.zeros((len(counts), ns), dtype=np.int16)
            if ns:
                flat = ak.to_numpy(ak.flatten(waveforms[has], axis=1))
                wf2[has] = flat.reshape(-1, ns)
    n_out = ns // config.downsample
    if ns and has.all():
        x = _acm_input_impl(wf2, config, pol)
    else:
        x = np.full((wf2.shape[0], n_out), np.nan, dtype=np.float32)
        if ns and has.any():
            x[has] = _acm_input_impl(wf2[has], config, pol)
    # a flat waveform is NaN on the whole row, so one column tells
    ok = has & np.isfinite(x[:, 0]) if n_out else np.zeros(len(has), dtype=bool)
    return x, ok


def _acm_input_impl(wf2: NDArray[Any], config: ACMConfig, polarity: str) -> NDArray[np.float32]:
    """``bege_psd.dsp.acm_input`` for a known polarity; the numpy twin decides it per event
    when ``polarity`` is ``"auto"`` (the dsp kernel takes one polarity per call)."""
    if polarity == "auto":
        return _normalise_numpy(
            wf2,
            polarity=polarity,
            baseline_samples=config.baseline_samples,
            downsample=config.downsample,
        )
    from ..dsp import acm_input
    from ..dsp.config import DSPConfig

    dcfg = dataclasses.replace(
        DSPConfig(), baseline_samples=config.baseline_samples, acm_downsample=config.downsample
    )
    return np.asarray(acm_input(wf2, dcfg, polarity=polarity), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Keras models


def _tf_setup(config: ACMConfig) -> Any:
    tf: Any = require("tensorflow", "ml")
    keras: Any = require("keras", "ml")
    if config.threads:
        for setter, getter in (
            (
                tf.config.threading.set_intra_op_parallelism_threads,
                tf.config.threading.get_intra_op_parallelism_threads,
            ),
            (
                tf.config.threading.set_inter_op_parallelism_threads,
                tf.config.threading.get_inter_op_parallelism_threads,
            ),
        ):
            if getter() == config.threads:
                continue
            try:
                setter(config.threads)
            except RuntimeError:
                # TF fixes its thread pools at the first op; later changes are impossible
                log.warning(
                    "cannot set TensorFlow threads to %d: the runtime is already initialised "
                    "with %d (set it before any TensorFlow work)",
                    config.threads,
                    getter(),
                )
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    return keras


def _dense_block(keras: Any, x: Any, units: int, slope: float, name: str) -> Any:
    x = keras.layers.Dense(units, name=f"{name}_dense")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(negative_slope=slope, name=f"{name}_act")(x)


def _build_autoencoder(keras: Any, n_in: int, config: ACMConfig) -> tuple[Any, Any, Any]:
    """Encoder, decoder and autoencoder (sharing layers)."""
    slope = config.leaky_relu_slope
    inp = keras.Input(shape=(n_in,), name="waveform")
    x = inp
    for i, u in enumerate(config.encoder_units):
        x = _dense_block(keras, x, u, slope, f"enc{i}")
    z = _dense_block(keras, x, config.bottleneck, slope, "latent")
    encoder = keras.Model(inp, z, name="encoder")
    zin = keras.Input(shape=(config.bottleneck,), name="latent_in")
    y = zin
    for i, u in enumerate(reversed(config.encoder_units)):
        y = _dense_block(keras, y, u, slope, f"dec{i}")
    # the output is linear: the target is in [0, 1] and MSE needs no squashing
    y = keras.layers.Dense(n_in, name="reconstruction")(y)
    decoder = keras.Model(zin, y, name="decoder")
    ae = keras.Model(inp, decoder(encoder(inp)), name="autoencoder")
    return encoder, decoder, ae


def _build_classifier(keras: Any, config: ACMConfig) -> Any:
    slope = config.leaky_relu_slope
    inp = keras.Input(shape=(config.bottleneck,), name="latent_std")
    x = inp
    for i, u in enumerate(config.classifier_units):
        x = keras.layers.Dense(u, name=f"clf{i}_dense")(x)
        x = keras.layers.LeakyReLU(negative_slope=slope, name=f"clf{i}_act")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="score")(x)
    return keras.Model(inp, out, name="classifier")


def _fit_early_stopping(
    keras: Any,
    model: Any,
    train: tuple[Any, Any],
    val: tuple[Any, Any],
    *,
    epochs: int,
    batch_size: int,
    patience: int,
    what: str,
) -> tuple[Any, float]:
    """``model.fit`` with early stopping on the validation loss (best weights restored);
    returns the Keras history and the wall time in seconds."""
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    t0 = time.perf_counter()
    history = model.fit(
        *train,
        validation_data=val,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[stop, _logging_callback(keras, what)],
    )
    return history, time.perf_counter() - t0


def _history(h: Any) -> dict[str, list[float]]:
    return {k: [float(v) for v in vals] for k, vals in h.history.items()}


def _logging_callback(keras: Any, what: str) -> Any:
    class _Log(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            log.debug("%s epoch %d: %s", what, epoch + 1, {k: round(v, 6) for k, v in logs.items()})

    return _Log()


def _split(
    idx: NDArray[np.int64], frac: float, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    perm = rng.permutation(idx)
    n_val = max(1, round(frac * perm.size))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# --------------------------------------------------------------------------------------------
# the selector


class ACMSelector:
    """Autoencoder + classifier selection (see the module docstring).

    Parameters
    ----------
    config
        :class:`ACMConfig`; ``config.threshold`` is the working point (0.58, paper Sec. 4.3).
    labels
        :class:`~bege_psd.select.labels.LabelConfig`: the label windows and the energy range of
        events the ACM trains on and scores.

    Examples
    --------
    >>> sel = ACMSelector().fit(events)          # doctest: +SKIP
    >>> keep = sel.mask(events)                  # doctest: +SKIP
    >>> sel.save("generated/models/acm.keras")   # doctest: +SKIP
    """

    name = "acm"

    def __init__(self, config: ACMConfig | None = None, labels: LabelConfig | None = None) -> None:
        self.config = config or ACMConfig()
        self.labels = labels or LabelConfig()
        self.threshold = float(self.config.threshold)
        self.n_input: int | None = None
        self.latent_mean: NDArray[np.float64] | None = None
        self.latent_std: NDArray[np.float64] | None = None
        self.training: ACMTraining | None = None
        self.history: dict[str, Any] = {}
        self._encoder: Any = None
        self._decoder: Any = None
        self._autoencoder: Any = None
        self._classifier: Any = None
        self._full: Any = None
        self._predict_fn: Any = None

    # -- inputs ---------------------------------------------------------------------------------

    def _inputs(
        self, table: Any
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.float64]]:
        """(x, scorable, energy_kev) for every event of the table."""
        fields = getattr(table, "fields", None)
        source = "<table>"
        attrs = getattr(table, "attrs", None) or {}
        source = str(attrs.get("source_file", source))
        if fields is None or "waveform" not in fields or "energy_kev" not in fields:
            msg = (
                f"{source}: the ACM needs the fields 'waveform' and 'energy_kev' in the event "
                f"table; it has {list(fields) if fields is not None else type(table).__name__}"
            )
            raise SelectionError(msg)
        import awkward as ak

        energy = np.asarray(ak.to_numpy(table["energy_kev"]), dtype=np.float64)
        x, ok = waveforms_to_input(
            table["waveform"], self.config, polarity=attrs.get("polarity"), source=source
        )
        lo, hi = self.labels.energy_range
        in_range = (energy >= lo) & (energy <= hi)
        if self.n_input is not None and x.shape[1] != self.n_input and ok.any():
            msg = (
                f"{source}: waveforms give {x.shape[1]} ACM inputs after down-sampling by "
                f"{self.config.downsample}, but the model was trained on {self.n_input}"
            )
            raise ModelMismatchError(msg)
        return x, ok & in_range, energy

    # -- training -------------------------------------------------------------------------------

    def fit(self, table: ak.Array, **kwargs: Any) -> Self:
        """Train autoencoder then classifier on one 232Th event table; return ``self``.

        The autoencoder sees a uniform random sample (``config.ae_max_events``) of scorable
        events; the classifier the class-balanced labelled events
        (:func:`~bege_psd.select.labels.balanced_indices`). Both split off
        ``config.validation_fraction`` for early stopping on the validation loss.
        :attr:`training` afterwards holds the histories and the validation partition.
        """
        if kwargs:
            msg = f"ACMSelector.fit got unexpected options {sorted(kwargs)}"
            raise TypeError(msg)
        x, ok, energy = self._inputs(table)
        self._fit_arrays(x, ok, energy)
        return self

    def fit_autoencoder(self, table: ak.Array) -> dict[str, list[float]]:
        """Train only the autoencoder (for the bottleneck scan); return its history."""
        x, ok, _ = self._inputs(table)
        keras = _tf_setup(self.config)
        hist, *_ = self._train_ae(keras, x, ok, np.random.default_rng(self.config.seed))
        return hist

    def _train_ae(
        self, keras: Any, x: NDArray[np.float32], ok: NDArray[np.bool_], rng: np.random.Generator
    ) -> tuple[dict[str, list[float]], NDArray[np.int64], NDArray[np.int64], float]:
        cfg = self.config
        cand = np.flatnonzero(ok)
        if cand.size < 10:
            msg = (
                f"only {cand.size} events with a waveform in {list(self.labels.energy_range)} keV; "
                "the autoencoder needs at least 10"
            )
            raise SelectionError(msg)
        sample = np.sort(rng.choice(cand, size=min(cfg.ae_max_events, cand.size), replace=False))
        tr, va = _split(sample, cfg.validation_fraction, rng)
        self.n_input = int(x.shape[1])
        enc, dec, ae = _build_autoencoder(keras, self.n_input, cfg)
        # start the linear output at the mean waveform: the loss then starts at the input
        # variance instead of ~1, which saves many epochs on 2 cores
        out_layer = dec.get_layer("reconstruction")
        kernel, _ = out_layer.get_weights()
        out_layer.set_weights([kernel, x[tr].mean(axis=0).astype(np.float32)])
        ae.compile(optimizer=keras.optimizers.Adam(cfg.ae_learning_rate), loss="mse")
        h, seconds = _fit_early_stopping(
            keras, ae, (x[tr], x[tr]), (x[va], x[va]),
            epochs=cfg.ae_epochs, batch_size=cfg.ae_batch_size, patience=cfg.ae_patience,
            what="autoencoder",
        )  # fmt: skip
        self._encoder, self._decoder, self._autoencoder = enc, dec, ae
        hist = _history(h)
        log.info(
            "autoencoder: %d epochs, best val_loss %.3g, %.1f s",
            len(hist["loss"]),
            min(hist["val_loss"]),
            seconds,
        )
        return hist, tr, va, seconds

    def _fit_arrays(
        self, x: NDArray[np.float32], ok: NDArray[np.bool_], energy: NDArray[np.float64]
    ) -> None:
        cfg = self.config
        keras = _tf_setup(cfg)
        rng = np.random.default_rng(cfg.seed)
        ae_hist, ae_tr, ae_va, ae_s = self._train_ae(keras, x, ok, rng)

        e_lab = np.where(ok, energy, np.nan)
        idx, lab = balanced_indices(e_lab, self.labels, seed=cfg.seed)
        if idx.size < 4 or np.unique(lab).size < 2:
            msg = (
                f"the classifier needs events of both classes in the label windows; found "
                f"{int((lab == 1).sum())} MSE and {int((lab == 0).sum())} SSE "
                "(is this a 232Th run calibrated in keV?)"
            )
            raise SelectionError(msg)
        perm = rng.permutation(idx.size)
        n_val = max(2, round(cfg.validation_fraction * idx.size))
        va_sel, tr_sel = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        z = self._latent_raw(x[idx])
        self.latent_mean = z[tr_sel].mean(axis=0).astype(np.float64)
        std = z[tr_sel].std(axis=0).astype(np.float64)
        self.latent_std = np.where(std > 0, std, 1.0)
        zs = ((z - self.latent_mean) / self.latent_std).astype(np.float32)
        y = lab.astype(np.float32)

        clf = _build_classifier(keras, cfg)
        clf.compile(
            optimizer=keras.optimizers.Adam(cfg.clf_learning_rate),
            loss="binary_crossentropy",
            metrics=["accuracy"],
        )
        h, clf_s = _fit_early_stopping(
            keras, clf, (zs[tr_sel], y[tr_sel]), (zs[va_sel], y[va_sel]),
            epochs=cfg.clf_epochs, batch_size=cfg.clf_batch_size, patience=cfg.clf_patience,
            what="classifier",
        )  # fmt: skip
        self._classifier = clf
        self._assemble(keras)
        s_val = self._predict(x[idx[va_sel]])[1]
        acc05 = float(np.mean((s_val >= 0.5) == (y[va_sel] == 1)))
        acc_t = float(np.mean((s_val >= self.threshold) == (y[va_sel] == 1)))
        self.training = ACMTraining(
            ae_history=ae_hist,
            clf_history=_history(h),
            ae_train_idx=ae_tr,
            ae_val_idx=ae_va,
            clf_train_idx=idx[tr_sel],
            clf_val_idx=idx[va_sel],
            clf_val_labels=lab[va_sel],
            val_accuracy_05=acc05,
            val_accuracy_threshold=acc_t,
            ae_seconds=ae_s,
            clf_seconds=clf_s,
        )
        self.history = self.training.summary()
        log.info(
            "classifier: validation accuracy %.3f at 0.5, %.3f at %.2f",
            acc05,
            acc_t,
            self.threshold,
        )

    def _latent_raw(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        out = (
            self._encoder.predict_on_batch(x)
            if x.shape[0]
            else np.zeros((0, self.config.bottleneck))
        )
        return np.asarray(out, dtype=np.float32)

    def _assemble(self, keras: Any) -> None:
        """One model waveform -> (latent, score, reconstruction), with the latent scaling
        inside (a Normalization layer), so that the saved ``.keras`` file is self-contained."""
        assert self.latent_mean is not None
        assert self.latent_std is not None
        inp = keras.Input(shape=(self.n_input,), name="waveform")
        z = self._encoder(inp)
        norm = keras.layers.Normalization(
            mean=self.latent_mean.astype(np.float32),
            variance=(self.latent_std**2).astype(np.float32),
            name="latent_scaling",
        )
        s = self._classifier(norm(z))
        r = self._decoder(z)
        self._full = keras.Model(inp, [z, s, r], name="acm")
        self._predict_fn = None

    def _require_trained(self) -> None:
        if self._full is None:
            msg = "this ACMSelector is not trained; call fit(table) or ACMSelector.load(path)"
            raise SelectionError(msg)

    def _predict(
        self, x: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
        """(latent, score, reconstruction) for rows of ``x`` (all finite), in large batches
        through one compiled ``tf.function`` (float32)."""
        self._require_trained()
        tf: Any = require("tensorflow", "ml")
        if self._predict_fn is None:
            model = self._full
            self._predict_fn = tf.function(
                lambda t: model(t, training=False),
                input_signature=[tf.TensorSpec([None, self.n_input], tf.float32)],
                reduce_retracing=True,
            )
        n = x.shape[0]
        zs = np.empty((n, self.config.bottleneck), np.float32)
        ss = np.empty(n, np.float32)
        rs = np.empty((n, self.n_input or 0), np.float32)
        bs = self.config.inference_batch_size
        for a in range(0, n, bs):
            z, s, r = self._predict_fn(tf.constant(x[a : a + bs]))
            zs[a : a + bs] = z.numpy()
            ss[a : a + bs] = s.numpy()[:, 0]
            rs[a : a + bs] = r.numpy()
        return zs, ss, rs

    # -- scoring --------------------------------------------------------------------------------

    def predict(self, table: ak.Array) -> dict[str, NDArray[Any]]:
        """Everything the model computes, entry-aligned with ``table``: ``score`` (n,),
        ``latent`` (n, bottleneck; raw, not standardised), ``mse`` (n,; reconstruction error),
        ``scorable`` (n,) bool. Unscorable rows are NaN."""
        self._require_trained()
        x, ok, _ = self._inputs(table)
        n = x.shape[0]
        score = np.full(n, np.nan)
        latent = np.full((n, self.config.bottleneck), np.nan)
        mse = np.full(n, np.nan)
        if ok.any():
            z, s, r = self._predict(x[ok])
            score[ok] = s
            latent[ok] = z
            mse[ok] = np.mean((r - x[ok]) ** 2, axis=1)
        return {"score": score, "latent": latent, "mse": mse, "scorable": ok}

    def score(self, table: ak.Array) -> NDArray[np.float64]:
        """Classifier score in [0, 1] per event (1 = MSE-like); NaN for events outside
        ``labels.energy_range``, without a waveform, or with a flat waveform."""
        self._require_trained()
        x, ok, _ = self._inputs(table)
        out = np.full(x.shape[0], np.nan)
        if ok.any():
            out[ok] = self._predict(x[ok])[1]
        return out

    def mask(self, table: ak.Array) -> NDArray[np.bool_]:
        """``score >= threshold``; unscorable events (NaN score) are not kept."""
        s = self.score(table)
        with np.errstate(invalid="ignore"):
            return np.asarray(s >= self.threshold)

    # -- persistence ----------------------------------------------------------------------------

    def _config_block(self) -> dict[str, Any]:
        return {"acm": to_mapping(self.config), "labels": to_mapping(self.labels)}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``<path>`` (``.keras``, added if missing) and ``<path>.json`` atomically."""
        self._require_trained()
        keras: Any = require("keras", "ml")
        tf: Any = require("tensorflow", "ml")
        p = Path(path)
        if p.suffix != ".keras":
            p = p.with_name(p.name + ".keras")
        with atomic_path(p) as tmp:
            self._full.save(tmp)
            digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        from .. import __version__ as pkg_version

        assert self.latent_mean is not None
        assert self.latent_std is not None
        meta = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "config": self._config_block(),
            "config_hash": stable_hash(self._config_block()),
            "threshold": self.threshold,
            "n_input": self.n_input,
            "latent_mean": self.latent_mean.tolist(),
            "latent_std": self.latent_std.tolist(),
            "label_windows": {**self.labels.mse_windows, **self.labels.sse_windows},
            "label_classes": {
                "mse": list(self.labels.mse_windows),
                "sse": list(self.labels.sse_windows),
            },
            "versions": {
                "bege_psd": pkg_version,
                "keras": keras.__version__,
                "tensorflow": tf.__version__,
                "numpy": np.__version__,
            },
            "training_history": self.history,
            "keras_file": p.name,
            "keras_sha256": digest,
        }
        atomic_write_text(p.with_name(p.name + ".json"), json.dumps(meta, indent=1) + "\n")
        return p

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        config: ACMConfig | None = None,
        labels: LabelConfig | None = None,
    ) -> Self:
        """Read a model written by :meth:`save` (the ``.keras`` or its ``.json``).

        Raises :class:`~bege_psd.errors.ModelMismatchError` when the metadata is not an ACM's,
        was written by another format version or Keras major version, does not match the
        ``.keras`` file beside it, or (when ``config``/``labels`` are given) was trained with a
        different configuration.
        """
        from .base import read_model_header

        p = Path(path)
        keras_path = p.with_suffix("") if p.suffix == ".json" else p
        meta = read_model_header(keras_path)
        where = f"{keras_path}.json"
        if meta.get("kind") != KIND:
            msg = f"{where}: kind {meta.get('kind')!r}, expected {KIND!r}; use load_selector()"
            raise ModelMismatchError(msg)
        if meta.get("format_version") != FORMAT_VERSION:
            msg = f"{where}: format_version {meta.get('format_version')!r}, this bege-psd reads {FORMAT_VERSION}"
            raise ModelMismatchError(msg)
        try:
            cfg = from_mapping(ACMConfig, meta["config"]["acm"], where="acm")
            lab = from_mapping(LabelConfig, meta["config"]["labels"], where="labels")
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"{where}: invalid stored configuration: {exc}"
            raise ModelMismatchError(msg) from exc
        stored_hash = stable_hash({"acm": to_mapping(cfg), "labels": to_mapping(lab)})
        if stored_hash != meta.get("config_hash"):
            msg = f"{where}: config_hash {meta.get('config_hash')!r} does not match its stored configuration ({stored_hash}); the file was edited"
            raise ModelMismatchError(msg)
        for given, stored, what in ((config, cfg, "acm"), (labels, lab, "labels")):
            if given is not None and to_mapping(given) != to_mapping(stored):
                diff = {
                    k: (v, to_mapping(stored)[k])
                    for k, v in to_mapping(given).items()
                    if to_mapping(stored)[k] != v
                }
                msg = f"{where}: the model was trained with a different [{what}] configuration; differing keys (given, stored): {diff}"
                raise ModelMismatchError(msg)
        if not keras_path.exists():
            msg = f"{where}: the model file {keras_path} beside it does not exist"
            raise ModelMismatchError(msg)
        digest = hashlib.sha256(keras_path.read_bytes()).hexdigest()
        if digest != meta.get("keras_sha256"):
            msg = f"{keras_path}: its SHA-256 does not match the one in {where}; model and metadata do not belong together"
            raise ModelMismatchError(msg)
        keras: Any = require("keras", "ml")
        stored_keras = str(meta.get("versions", {}).get("keras", "?"))
        if stored_keras.split(".")[0] != keras.__version__.split(".")[0]:
            msg = f"{where}: written with Keras {stored_keras}, this is Keras {keras.__version__}"
            raise ModelMismatchError(msg)
        _tf_setup(dataclasses.replace(cfg, deterministic=False))
        try:
            full = keras.saving.load_model(keras_path, safe_mode=True, compile=False)
        except Exception as exc:  # Keras raises many types for a bad file
            msg = f"{keras_path}: cannot load the Keras model: {exc}"
            raise ModelMismatchError(msg) from exc
        self = cls(cfg, lab)
        self.threshold = float(meta.get("threshold", cfg.threshold))
        self.n_input = int(meta["n_input"])
        self.latent_mean = np.asarray(meta["latent_mean"], dtype=np.float64)
        self.latent_std = np.asarray(meta["latent_std"], dtype=np.float64)
        self.history = dict(meta.get("training_history", {}))
        try:
            self._encoder = full.get_layer("encoder")
            self._decoder = full.get_layer("decoder")
            self._classifier = full.get_layer("classifier")
        except ValueError as exc:
            msg = f"{keras_path}: not an ACM model (missing sub-model): {exc}"
            raise ModelMismatchError(msg) from exc
        in_shape = tuple(full.inputs[0].shape)
        if in_shape[-1] != self.n_input or tuple(full.outputs[0].shape)[-1] != cfg.bottleneck:
            msg = (
                f"{keras_path}: model input {in_shape[-1]} / latent {tuple(full.outputs[0].shape)[-1]} "
                f"do not match the metadata ({self.n_input} / {cfg.bottleneck})"
            )
            raise ModelMismatchError(msg)
        self._full = full
        return self
