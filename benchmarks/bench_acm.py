"""ACM speed: seconds per autoencoder epoch on 2e5 events, and inference events/s.

Prints one JSON line. The paper trained at 3.50 s/epoch on an Intel i5-10400 (quoted, not
measured here). Side-by-side references measured in the same run: inference through Keras'
generic ``model.predict`` (the path a user would take by default) against the selector's compiled
``tf.function`` on large float32 batches, and the end-to-end ``ACMSelector.score`` on an awkward
event table (preprocessing included).

Usage: ``nice python benchmarks/bench_acm.py [--events 200000] [--epochs 3] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import awkward as ak
import numpy as np


def synthetic_waveforms(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Toy one- and two-step pulses (366 samples, int16) and energies in [300, 2700] keV."""
    rng = np.random.default_rng(seed)
    t = np.arange(366, dtype=np.float32) * 4.0
    out = np.empty((n, 366), np.int16)
    energy = rng.uniform(300, 2700, n)
    for a in range(0, n, 20_000):
        m = min(20_000, n - a)
        t0 = 400 + rng.normal(0, 8, m).astype(np.float32)
        rise = rng.uniform(120, 260, m).astype(np.float32)
        mse = rng.random(m) < 0.5
        frac = np.where(mse, rng.uniform(0.3, 0.7, m), 1.0).astype(np.float32)
        dt = np.where(mse, rng.uniform(200, 400, m), 0.0).astype(np.float32)
        s1 = np.clip((t[None] - t0[:, None]) / rise[:, None], 0, 1)
        s2 = np.clip((t[None] - (t0 + dt)[:, None]) / rise[:, None], 0, 1)
        w = frac[:, None] * s1 + (1 - frac)[:, None] * s2
        amp = (3.0 * energy[a : a + m]).astype(np.float32)
        noise = rng.normal(0, 3, (m, 366)).astype(np.float32)
        out[a : a + m] = np.round(1000 + amp[:, None] * w + noise).astype(np.int16)
    return out, energy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from bege_psd.select.acm import ACMConfig, ACMSelector, _build_autoencoder, _tf_setup

    wf, energy = synthetic_waveforms(args.events)
    table = ak.Array(
        ak.zip({"energy_kev": energy, "waveform": ak.from_regular(wf, axis=1)}, depth_limit=1),
        attrs={"polarity": "positive"},
    )
    cfg = ACMConfig(threads=args.threads, ae_epochs=args.epochs, ae_max_events=args.events)
    sel = ACMSelector(cfg)
    t0 = time.perf_counter()
    x, ok, _ = sel._inputs(table)
    prep_s = time.perf_counter() - t0
    x = x[ok]

    keras = _tf_setup(cfg)
    _, _, ae = _build_autoencoder(keras, x.shape[1], cfg)
    ae.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")

    class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_begin(self, logs=None):
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._t)

    timer = EpochTimer()
    ae.fit(x, x, epochs=args.epochs, batch_size=cfg.ae_batch_size, verbose=0, callbacks=[timer])
    # the first epoch includes graph tracing; report the mean of the others
    steady = timer.times[1:] or timer.times

    # a trained selector for inference (few epochs: speed does not depend on weights)
    small = ACMConfig(threads=args.threads, ae_epochs=1, clf_epochs=1, ae_max_events=20_000)
    lab_e = np.concatenate(
        [np.full(2000, 2615.0), np.full(2000, 2200.0), np.full(2000, 1592.0), np.full(2000, 2500.0)]
    )
    lab_table = ak.Array(
        ak.zip(
            {"energy_kev": lab_e, "waveform": ak.from_regular(wf[: lab_e.size], axis=1)},
            depth_limit=1,
        ),
        attrs={"polarity": "positive"},
    )
    sel = ACMSelector(small).fit(lab_table)
    sel._predict(x[:1000])  # trace once
    t0 = time.perf_counter()
    sel._predict(x)
    fn_s = time.perf_counter() - t0
    sel._full.predict(x[:1000], batch_size=32, verbose=0)
    t0 = time.perf_counter()
    sel._full.predict(x, batch_size=32, verbose=0)
    keras_default_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sel.score(table)
    score_s = time.perf_counter() - t0

    n = x.shape[0]
    print(
        json.dumps(
            {
                "benchmark": "acm",
                "events": n,
                "threads": args.threads,
                "ae_batch_size": cfg.ae_batch_size,
                "ae_epoch_s": round(float(np.mean(steady)), 3),
                "ae_epoch_s_all": [round(t, 3) for t in timer.times],
                "paper_ae_epoch_s_i5_10400": 3.50,
                "inference_events_per_s": round(n / fn_s),
                "reference_keras_predict_batch32_events_per_s": round(n / keras_default_s),
                "speedup_vs_keras_predict": round(keras_default_s / fn_s, 2),
                "score_end_to_end_events_per_s": round(n / score_s),
                "preprocess_events_per_s": round(n / prep_s),
                "target_inference_events_per_s": 100_000,
            }
        )
    )


if __name__ == "__main__":
    main()
