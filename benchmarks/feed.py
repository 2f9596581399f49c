"""Feed benchmark (`make bench-feed`): does the Trainer's input path cost anything? No GPU needed.

A near-free model (the images' global average pool and one dense layer) makes the model's own
time small, so what is left is the feed: reading batches from the memory-mapped cache, the
augmentation pool, handing batches to Keras and the Trainer's epoch loop. Side by side in one
run, in alternating blocks (drift hits every row), each row the median of its epochs' training
seconds (the first epoch of each fit, which traces or compiles, dropped):

  raw      `model.fit` on uint8 arrays in memory, no augmentation: what Keras alone costs
  none     the Trainer, augmentation none (batches gathered from the cache)
  light    the Trainer, augmentation light, N augmentation workers
  heavy    the Trainer, augmentation heavy, N augmentation workers
  pool     the augmentation pool alone, heavy, N workers: `CachedBatches` read in a loop

N is `--workers` (default: one per usable core). It ends with the two ratios the feed is held to:
`feed none: Trainer / raw` and `feed heavy: Trainer / pool`. `benchmarks/gpu.py` imports the
helpers below for its GPU rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import taco  # noqa: F401  (offline-friendly environment defaults)
from taco.config import usable_cores

CONF = Path(__file__).resolve().parents[1] / "conf"


def build_pooled_dense(num_classes: int, image_size: int):
    """The near-free model: the top-left eighth (by side) of the uint8 images, scaled and
    averaged per channel -> one sigmoid dense layer. Its arithmetic is 1/64 of one pass over the
    pixels (a contiguous corner: TensorFlow's strided slicing cost 2.5x as much), so what the
    clock sees is the feed and each backend's fixed cost of a step."""
    import keras
    from keras import layers

    side = max(1, image_size // 8)

    class Corner(layers.Layer):
        def call(self, images):
            return images[:, :side, :side, :]

    inputs = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    x = layers.Rescaling(1 / 255.0)(Corner()(inputs))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="pooled_dense")


def augmentation(name: str, size: int, seed: int = 0):
    """An augmentation group of `conf/augmentation/` at `size` px (None for `none`)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    group = OmegaConf.load(CONF / "augmentation" / f"{name}.yaml")
    cfg = OmegaConf.merge({"model": {"image_size": size}, "seed": seed, "group": group})
    return instantiate(cfg.group) if cfg.group else None


def datamodule(folder: Path, images: int, size: int, workers: int, batch: int):
    """The synthetic data set at `size` px, generated and decoded once into `folder`."""
    from taco.data.datamodule import TacoDataModule
    from taco.data.sources.synthetic import SyntheticTaco

    dm = TacoDataModule(
        "synthetic",
        folder / "synthetic",
        generator=SyntheticTaco(num_images=images, image_size=(max(size, 96), max(size, 72))),
        split={"train": 0.9, "val": 0.05, "test": 0.05},
        batch_size=batch,
        image_size=size,
        cache_dir=folder / "cache",
        num_workers=workers,
    )
    dm.prepare_data()
    dm.setup()
    return dm


def with_augmentation(dm, name: str):
    """The same data module (and cache) with another augmentation group."""
    dm.augmentation = augmentation(name, dm.image_size)
    return dm


def trainer_seconds(dm, build, epochs: int, precision: str = "32") -> list[float]:
    """Training seconds of each epoch of one `Trainer.fit` (validation not included), with the
    callbacks a run has that touch every epoch: progress line, curves, early stopping."""
    from taco.models.keras_classifier import KerasClassifier
    from taco.training.callbacks import EarlyStopping, LogEpochMetrics, ProgressBar
    from taco.training.trainer import Trainer

    seconds: list[float] = []

    class Keep(LogEpochMetrics):
        def on_train_epoch_end(self, trainer, classifier, epoch) -> None:
            seconds.append(trainer.callback_metrics["train_seconds"])

    callbacks = [EarlyStopping(patience=100), ProgressBar(), LogEpochMetrics(), Keep()]
    trainer = Trainer(
        max_epochs=epochs, deterministic=False, precision=precision, callbacks=callbacks
    )
    trainer.fit(KerasClassifier(build, learning_rate=1e-3, head_epochs=0), dm)  # all layers
    return seconds


def raw_seconds(
    build, x: np.ndarray, y: np.ndarray, batch: int, epochs: int, precision: str = "32"
):
    """Seconds of each epoch of a plain `model.fit` on uint8 arrays in memory (no shuffling)."""
    import keras

    from taco.training.hardware import Hardware

    with Hardware(precision=precision).scope():
        model = build(num_classes=y.shape[1], image_size=x.shape[1])
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    seconds: list[float] = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: seconds.append(-time.perf_counter()),
        on_epoch_end=lambda e, logs: seconds.__setitem__(-1, seconds[-1] + time.perf_counter()),
    )
    model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=0, callbacks=[timer])
    return seconds


def pool_seconds(dm, epochs: int) -> list[float]:
    """Seconds of each epoch of the training batches read in a loop, no model: the augmentation
    pool's own rate. Like the Trainer's rows, the first epoch (workers starting) is dropped."""
    batches = dm.batches("train")
    try:
        seconds, timing = [], []
        for epoch in range(epochs + 1):
            batches.set_epoch(epoch)
            start = time.perf_counter()
            for i in range(len(batches)):
                batches[i]
            seconds.append(time.perf_counter() - start)
            timing.append(getattr(batches, "pool_timing", lambda: None)())  # older code: none
        first, last = timing[0], timing[-1]
        if first and last and last["batches"] > first["batches"]:
            # the workers' mean CPU seconds a batch after the warm-up epoch x the batches read,
            # over the time they had
            cpu = sum(last[k] - first[k] for k in ("read", "augment"))
            per_batch = cpu / (last["batches"] - first["batches"])
            wall = sum(seconds[1:])
            POOL_BUSY.append(per_batch * epochs * len(batches) / (wall * last["workers"]))
        return seconds[1:]
    finally:
        batches.close()


POOL_BUSY: list[float] = []  # per block: the share of the wall time the workers were busy


def backend_line() -> str:
    import keras

    return f"Keras {keras.__version__} on {keras.backend.backend()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="0: one per usable core")
    parser.add_argument("--epochs", type=int, default=4, help="epochs measured per block")
    parser.add_argument("--blocks", type=int, default=4, help="alternating blocks per row")
    parser.add_argument("--rows", default="raw,none,light,heavy,pool", help="rows to measure")
    args = parser.parse_args()
    wanted = args.rows.split(",")
    workers = args.workers or usable_cores()

    rows: dict[str, list[float]] = {k: [] for k in ("raw", "none", "light", "heavy", "pool")}
    with tempfile.TemporaryDirectory(prefix="taco-bench-feed-") as tmp:
        dm = datamodule(Path(tmp), args.images, args.size, workers, args.batch)
        plain = dm.batches("train", shuffle=False, augment=False)
        x, y = plain.images(), plain.targets()
        n = len(x)
        print(
            f"{backend_line()}; {usable_cores()} usable cores, {workers} augmentation workers; "
            f"{n} training images at {args.size} px, batch {args.batch}; median of "
            f"{args.epochs} epochs x {args.blocks} blocks per row",
            flush=True,
        )
        for _ in range(args.blocks):  # raw, none, light, heavy, pool, raw, ...
            if "raw" in wanted:
                rows["raw"] += raw_seconds(build_pooled_dense, x, y, args.batch, args.epochs + 1)[
                    1:
                ]
            for aug in ("none", "light", "heavy"):
                if aug in wanted:
                    with_augmentation(dm, aug)
                    rows[aug] += trainer_seconds(dm, build_pooled_dense, args.epochs + 1)[1:]
            if "pool" in wanted:
                rows["pool"] += pool_seconds(with_augmentation(dm, "heavy"), args.epochs)

    rate = {k: n / statistics.median(v) if v else float("nan") for k, v in rows.items()}
    labels = {
        "raw": "raw model.fit, uint8 arrays in memory",
        "none": "Trainer, augmentation none",
        "light": f"Trainer, augmentation light, {workers} workers",
        "heavy": f"Trainer, augmentation heavy, {workers} workers",
        "pool": f"augmentation pool alone, heavy, {workers} workers",
    }
    for key, label in labels.items():
        print(f"  {label:48s} {rate[key]:8,.0f} img/s")
    if POOL_BUSY:
        print(
            f"  (the pool's workers were busy {statistics.median(POOL_BUSY):.0%} of its rows' time)"
        )
    print(f"feed light: Trainer / raw {rate['light'] / rate['raw']:.2f}")
    print(f"feed heavy: pool alone / raw {rate['pool'] / rate['raw']:.2f}")
    print(f"feed none: Trainer / raw {rate['none'] / rate['raw']:.2f}")
    print(f"feed heavy: Trainer / pool {rate['heavy'] / rate['pool']:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
