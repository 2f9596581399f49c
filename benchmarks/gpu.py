"""GPU feed benchmark (`make bench-gpu`): does the model wait for its batches?

With a GPU (the Keras backend sees one; `KERAS_BACKEND=jax` on a machine without TensorFlow):
VGG16 and Xception (`weights=None`, 224 px, batch 64, `bf16-mixed`) trained through the
project's Trainer with augmentation none, light and heavy (`conf/augmentation/`), each as img/s
of its second epoch and as a ratio to a raw `model.fit` on uint8 arrays in memory, no
augmentation, same model, same run: what the device can take.

Without a GPU it prints the pipeline alone, side by side in one run:
  1. heavy augmentation at 224 px, batch 64: img/s with 0 (in-process), 1 and N workers
     (N = usable cores) and the scaling ratio of N workers to 1;
  2. the Trainer (the default CNN at 64 px, light augmentation, every default callback) with
     N workers against 0, in alternating blocks: median epoch seconds of each.
`--gpu` forces the GPU part (e.g. a small CPU run of it: `--gpu --images 128 --size 32`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import taco  # noqa: F401  (offline-friendly environment defaults)
from taco.config import usable_cores

CONF = Path(__file__).resolve().parents[1] / "conf"


def augmentation(name: str, size: int, seed: int = 0):
    """An augmentation group of `conf/augmentation/` at `size` px (None for `none`)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    group = OmegaConf.load(CONF / "augmentation" / f"{name}.yaml")
    cfg = OmegaConf.merge({"model": {"image_size": size}, "seed": seed, "group": group})
    return instantiate(cfg.group) if cfg.group else None


def datamodule(folder: Path, images: int, size: int, aug: str, workers: int, batch: int):
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
        augmentation=augmentation(aug, size),
        num_workers=workers,
    )
    dm.prepare_data()
    dm.setup()
    return dm


def pipeline_rates(folder: Path, images: int, size: int, counts: list[int]) -> dict[int, float]:
    """Heavy augmentation alone: img/s of two epochs of batches for each worker count."""
    from taco.data.pipeline import CachedBatches

    path = folder / "pipeline.npy"
    rng = np.random.default_rng(0)
    np.save(path, rng.integers(0, 255, (images, size, size, 3), dtype=np.uint8))
    cache, heavy = np.load(path, mmap_mode="r"), augmentation("heavy", size)
    rates = {}
    for workers in counts:
        batches = CachedBatches(
            cache, np.zeros((images, 1)), np.arange(images), 64, shuffle=True,
            augment=heavy, num_workers=workers, cache_path=path,
        )  # fmt: skip
        batches[0]  # workers started: startup is not throughput
        start = time.perf_counter()
        for epoch in (1, 2):
            batches.set_epoch(epoch)
            for i in range(len(batches)):
                batches[i]
        rates[workers] = 2 * images / (time.perf_counter() - start)
        batches.close()
    return rates


class _Stamps:
    """A Trainer callback: the wall clock at each epoch start and after its last batch."""

    def __new__(cls):
        from taco.training.callbacks import Callback

        class Stamps(Callback):
            def __init__(self) -> None:
                self.starts: list[float] = []
                self.trained: list[float] = []
                self.ends: list[float] = []

            def on_train_epoch_start(self, trainer, classifier, epoch) -> None:
                self.starts.append(time.perf_counter())

            def on_train_batch_end(self, trainer, classifier, batch, logs) -> None:
                if batch + 1 == trainer.num_training_batches:
                    self.trained.append(time.perf_counter())

            def on_train_epoch_end(self, trainer, classifier, epoch) -> None:
                self.ends.append(time.perf_counter())

        return Stamps()


def trainer_epochs(dm, build, epochs: int, precision: str = "32", default_callbacks=True):
    """(train seconds, whole-epoch seconds) of each epoch of one `Trainer.fit`."""
    from taco.models.keras_classifier import KerasClassifier
    from taco.training.callbacks import EarlyStopping, LogEpochMetrics, ProgressBar
    from taco.training.trainer import Trainer

    stamps = _Stamps()
    callbacks = [EarlyStopping(patience=100), ProgressBar(), LogEpochMetrics()]
    trainer = Trainer(
        max_epochs=epochs,
        deterministic=False,
        precision=precision,
        callbacks=[*(callbacks if default_callbacks else []), stamps],
    )
    trainer.fit(KerasClassifier(build, learning_rate=1e-3, head_epochs=0), dm)  # all layers
    train = np.subtract(stamps.trained, stamps.starts).tolist()
    return train, np.subtract(stamps.ends, stamps.starts).tolist()


def cpu_part(args: argparse.Namespace, folder: Path) -> None:
    from taco.models.cnn import build_cnn

    n = args.workers or usable_cores()
    rates = pipeline_rates(folder, args.pipeline_images, 224, [0, 1, n])
    print(f"heavy augmentation, {args.pipeline_images} images at 224 px, batch 64, 2 epochs:")
    for workers, rate in rates.items():
        print(f"  {workers} worker(s): {rate:,.0f} img/s ({rate / rates[0]:.2f}x in-process)")
    print(f"  {n} workers / 1 worker: {rates[n] / rates[1]:.2f}x")

    sides: dict[int, list[float]] = {0: [], n: []}
    for _ in range(args.blocks):  # 0, N, 0, N, ...: drift hits both
        for workers in sides:
            dm = datamodule(folder / "cnn", args.images, 64, "light", workers, 32)
            _, whole = trainer_epochs(dm, build_cnn, args.rounds + 1)
            sides[workers] += whole[1:]  # the first epoch traces the graph
    zero, many = statistics.median(sides[0]), statistics.median(sides[n])
    print(
        f"Trainer, default CNN at 64 px, light augmentation, {args.images} images; median of "
        f"{len(sides[0])} epochs per side ({args.blocks} alternating blocks of {args.rounds}):"
    )
    print(f"  0 workers: {zero:.2f} s/epoch; {n} workers: {many:.2f} s/epoch ({zero / many:.2f}x)")


def raw_rate(build, x: np.ndarray, y: np.ndarray, batch: int, precision: str) -> float:
    """img/s of the second epoch of a plain `model.fit` on uint8 arrays in memory."""
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
    model.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0, callbacks=[timer])
    return len(x) / seconds[-1]


def gpu_part(args: argparse.Namespace, folder: Path) -> None:
    import functools

    from taco.models.transfer import build_transfer

    print(f"Keras on {_backend()}; {args.images} images at {args.size} px, batch {args.batch}")
    for backbone in ("VGG16", "Xception"):
        build = functools.partial(build_transfer, backbone=backbone, weights=None)
        plain = datamodule(folder / "data", args.images, args.size, "none", 0, args.batch)
        train = plain.batches("train", shuffle=False, augment=False)
        x, y = train.images(), train.targets()
        raw = raw_rate(build, x, y, args.batch, "bf16-mixed")
        print(f"{backbone}: raw uint8 model.fit {raw:,.0f} img/s")
        for aug in ("none", "light", "heavy"):
            dm = datamodule(
                folder / backbone,
                args.images,
                args.size,
                aug,
                args.workers or usable_cores(),
                args.batch,
            )  # noqa: E501
            train_s, _ = trainer_epochs(dm, build, 2, "bf16-mixed", default_callbacks=False)
            rate = dm.batches("train").num_images / train_s[-1]
            print(f"  Trainer, augmentation {aug:5s}: {rate:,.0f} img/s ({rate / raw:.2f} of raw)")


def _backend() -> str:
    import keras

    return keras.backend.backend()


def has_gpu() -> bool:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the GPU part even without a GPU")
    parser.add_argument("--images", type=int, default=None, help="3072 (GPU) | 800 (CPU)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="0: one per usable core")
    parser.add_argument("--pipeline-images", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3, help="epochs measured per block")
    parser.add_argument("--blocks", type=int, default=3, help="alternating blocks per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taco-bench-gpu-") as tmp:
        if args.gpu or has_gpu():
            args.images = args.images or 3072
            gpu_part(args, Path(tmp))
        else:
            args.images = args.images or 800
            print(f"no GPU: the input pipeline alone ({usable_cores()} usable cores)")
            cpu_part(args, Path(tmp))


if __name__ == "__main__":
    main()
