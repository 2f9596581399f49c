"""Trainer overhead and startup time, measured side by side in one run.

1. Epoch time of `taco.trainer.Trainer.fit` (cached batches, per-epoch validation scoring,
   threshold tuning, best-weights tracking) against a raw `model.fit` with `validation_data`
   on the same images held in memory, same model, same batch size; epochs alternate between the
   two so machine noise hits both alike.
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

import taco  # noqa: F401


class _Collect:
    """A logger that keeps what the Trainer logs, for the benchmark to read back."""

    active = False

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append(dict(metrics))

    def log_dict(self, data, name) -> None:
        pass

    def values(self, key: str) -> list[float]:
        return [r[key] for r in self.rows if key in r]


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
    parser.add_argument("--rounds", type=int, default=4, help="epochs measured for each side")
    args = parser.parse_args()

    exe = os.path.join(os.path.dirname(sys.executable), "taco-train")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([exe, "--cfg", "job"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)

    import keras

    from taco.data.datamodule import TacoDataModule
    from taco.data.synthetic import SyntheticTaco
    from taco.models.cnn import build_cnn
    from taco.models.keras_classifier import KerasClassifier
    from taco.trainer import Trainer

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
        x = np.asarray(dm.cache.array[dm.rows["train"]], np.float32)
        y = dm.labels("train").astype(np.float32)
        xv = np.asarray(dm.cache.array[dm.rows["val"]], np.float32)
        yv = dm.labels("val").astype(np.float32)

        keras.utils.set_random_seed(0)
        raw = build_cnn(dm.num_classes, 64)
        raw.compile(optimizer=keras.optimizers.Adam(0.004), loss="binary_crossentropy")
        stamps = _epoch_times()
        epochs = args.rounds + 1  # the first epoch of each traces the graph: dropped
        raw.fit(
            x,
            y,
            batch_size=32,
            epochs=epochs,
            validation_data=(xv, yv),
            verbose=0,
            callbacks=[stamps],
        )
        theirs = stamps.seconds[1:]

        logger = _Collect()
        trainer = Trainer(max_epochs=epochs, deterministic=False)
        trainer.fit(KerasClassifier(build_cnn, learning_rate=0.004), dm, logger)
        ours = logger.values("epoch_seconds")[1:]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"{len(x)} training images at 64 px, batch 32, CNN; median of {args.rounds} epochs each")
    print(f"raw model.fit epoch (with validation_data): {mt:.2f} s")
    print(
        f"Trainer.fit epoch (cached batches, val scoring, thresholds): {mo:.2f} s "
        f"({mo / mt:.2f}x raw)"
    )
    print(f"taco-train --cfg job: median {statistics.median(times):.2f} s over 3 runs")


if __name__ == "__main__":
    main()
