"""Trainer overhead and startup time, measured side by side in one run.

1. Epoch time of `Trainer.fit` (taco.training) with the default callbacks (per-epoch validation
   scoring and threshold tuning, best-weights tracking, `last.ckpt` and `best.ckpt` written,
   early stopping, progress line, metrics logging) against a raw `model.fit` with
   `validation_data` on the same images held in memory, same model, same batch size; the two
   run in alternating blocks in one process, and the first (tracing) epoch of each block is
   dropped.
2. Wall time of `taco-train --cfg job` (no TensorFlow, Keras or MLflow import).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from taco.tracking.base import NullLogger


class _Collect(NullLogger):
    """A logger that keeps what the Trainer logs, for the benchmark to read back."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append(dict(metrics))

    def values(self, key: str) -> list[float]:
        return [r[key] for r in self.rows if key in r]


def _epoch_starts():
    from taco.training.callbacks import Callback

    class EpochStarts(Callback):
        """Wall clock at each epoch start and at the end of fitting: whole epochs, every
        callback's work included."""

        def __init__(self) -> None:
            self.stamps: list[float] = []
            self.fit_end = 0.0

        def on_train_epoch_start(self, trainer, classifier, epoch) -> None:
            self.stamps.append(time.perf_counter())

        def on_fit_end(self, trainer, classifier) -> None:
            self.fit_end = time.perf_counter()

    return EpochStarts()


def _epoch_times():
    import keras

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=4, help="epochs measured per block")
    parser.add_argument("--blocks", type=int, default=3, help="alternating blocks per side")
    args = parser.parse_args()

    exe = os.path.join(os.path.dirname(sys.executable), "taco-train")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([exe, "--cfg", "job"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)

    import keras

    from taco.data.datamodule import TacoDataModule
    from taco.data.sources.synthetic import SyntheticTaco
    from taco.models.cnn import build_cnn
    from taco.models.keras_classifier import KerasClassifier
    from taco.training.callbacks import EarlyStopping, LogEpochMetrics, ModelCheckpoint, ProgressBar
    from taco.training.trainer import Trainer

    tmp = Path(tempfile.mkdtemp(prefix="taco-bench-trainer-"))
    try:
        dm = TacoDataModule(
            "synthetic",
            tmp / "synthetic",
            generator=SyntheticTaco(num_images=args.images),
            image_size=64,
            cache_dir=tmp / "cache",
        )
        dm.prepare_data()
        dm.setup()
        train, val = dm.batches("train", shuffle=False, augment=False), dm.batches("val")
        x, y = train.images(), train.targets()  # uint8, as the Trainer feeds it
        xv, yv = val.images(), val.targets()

        epochs = args.rounds + 1  # the first epoch of each block traces the graph: dropped
        ours, theirs = [], []
        for block in range(args.blocks):  # raw, Trainer, raw, Trainer, ...: drift hits both
            keras.utils.set_random_seed(block)
            raw = build_cnn(dm.num_classes, 64)
            raw.compile(optimizer=keras.optimizers.Adam(0.004), loss="binary_crossentropy")
            stamps = _epoch_times()
            raw.fit(
                x,
                y,
                batch_size=32,
                epochs=epochs,
                validation_data=(xv, yv),
                verbose=0,
                callbacks=[stamps],
            )
            theirs += stamps.seconds[1:]

            starts = _epoch_starts()
            callbacks = [
                ModelCheckpoint(dirpath=str(tmp / f"checkpoints{block}")),
                EarlyStopping(patience=100),
                ProgressBar(),
                LogEpochMetrics(),
                starts,
            ]
            trainer = Trainer(
                max_epochs=epochs, deterministic=False, callbacks=callbacks, profiler="simple"
            )
            trainer.fit(KerasClassifier(build_cnn, learning_rate=0.004), dm, _Collect())
            ours += np.diff([*starts.stamps, starts.fit_end]).tolist()[1:]
            profile = trainer.profiler.table()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(
        f"{len(x)} training images at 64 px, batch 32, CNN; median of {len(ours)} epochs each "
        f"({args.blocks} alternating blocks of {args.rounds})"
    )
    print(f"raw model.fit epoch (with validation_data): {mt:.2f} s")
    print(
        f"Trainer.fit epoch (default callbacks: val scoring, thresholds, checkpoints): {mo:.2f} s "
        f"({mo / mt:.2f}x raw)"
    )
    print("where the Trainer's time went in its last block (trainer.profiler=simple):")
    print(profile)
    print(f"taco-train --cfg job: median {statistics.median(times):.2f} s over 3 runs")


if __name__ == "__main__":
    main()
