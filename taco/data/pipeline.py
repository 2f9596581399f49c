"""Batches from the uint8 image cache, with albumentations applied to the training split only."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from taco.data.augment_pool import AugmentPool, augment_into, batch_seed, read_rows
from taco.files import open_array, remove_dead_temps, save_array
from taco.progress import Progress
from taco.protocols import PerImage

log = logging.getLogger(__name__)


class CachedBatches(keras.utils.PyDataset):
    """Batches of (uint8 images, float32 multi-hot labels) read from the cache: a quarter of
    the bytes of float32 on their way to the device; every model casts and scales inside itself.

    The order of epoch `e` depends only on (seed, e) and the augmentation of its batch `i` only
    on (seed, e, i), so a run is repeatable, a resumed run draws exactly what the uninterrupted
    one would have, and `num_workers` (processes that augment into shared memory,
    `taco.data.augment_pool`) changes the speed, never the batches.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        rows: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        augment: Callable[..., dict] | None = None,
        limit_batches: int | None = None,
        cache_key: str = "",
        profiler: Any = None,
        num_workers: int = 0,
        prefetch_factor: int = 2,
        cache_path: Path | None = None,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.images_array = images
        self.labels = labels.astype(np.float32)
        self.rows = np.asarray(rows, dtype=int)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.limit_batches = limit_batches
        self.cache_key = cache_key  # names the image cache: what derived caches are keyed on
        self.seed = int(seed)
        self.profiler = profiler  # times batch reading as `data` (`trainer.profiler`)
        # workers read the cache file themselves: only for augmented batches of a file cache
        pooled = augment is not None and cache_path is not None and num_workers > 0
        self.num_workers = int(num_workers) if pooled else 0
        self.prefetch_factor = max(1, int(prefetch_factor))
        self.cache_path = cache_path
        self._pool: AugmentPool | None = None
        self._recent: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._order: np.ndarray | None = None
        self._orders: dict[int, np.ndarray] = {}
        self.pad_to = 1  # batch sizes a multiple of this (replicas of a JAX data-parallel fit)
        self.progress = None  # a Progress counting the batches read (validation, test)
        self.set_epoch(0)

    @property
    def progress(self) -> Progress | None:
        return self._progress

    @progress.setter
    def progress(self, bar: Progress | None) -> None:
        self._progress, self._read = bar, set()  # each pass counts its own distinct batches

    @property
    def num_batches(self) -> int:
        n = math.ceil(len(self.rows) / self.batch_size)
        return min(n, self.limit_batches) if self.limit_batches else n

    def __len__(self) -> int:
        return self.num_batches

    def batch_rows(self, index: int, epoch: int | None = None) -> np.ndarray:
        order = self._order if epoch is None or epoch == self.epoch else self._epoch_order(epoch)
        return order[index * self.batch_size : (index + 1) * self.batch_size]

    def set_epoch(self, epoch: int) -> None:
        """Order of epoch `epoch`; with workers, they start on its first batches at once (e.g.
        while the previous epoch is validated)."""
        if self._order is not None and int(epoch) == self.epoch:
            return
        self.epoch = int(epoch)
        self._order = self._epoch_order(self.epoch)
        if self._pool is not None:
            self._pool.drop_except(lambda key: key[0] >= self.epoch)
            self._prefetch(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """Rows in the order of `epoch` (this one's and the next, which prefetch reaches, kept)."""
        if epoch not in self._orders:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(self.rows) if self.shuffle else self.rows.copy()
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = order
        return self._orders[epoch]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._progress is not None:
            self._read.add(int(index))
            self._progress.update(len(self._read))
        if self.profiler is not None and self.profiler.enabled:
            with self.profiler.section("data"):
                return self._batch(index)
        return self._batch(index)

    def _batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        key = (self.epoch, int(index))
        if key in self._recent:  # Keras reads the first batches twice (to learn their spec)
            return self._recent[key]
        rows = self.batch_rows(index)
        if self.augment is None:
            x = read_rows(self.images_array, rows)
        elif self.num_workers:
            x = self._pooled(int(index), rows)
        else:
            x = np.empty((len(rows), *self.images_array.shape[1:]), np.uint8)
            seed = batch_seed(self.seed, self.epoch, int(index))
            augment_into(self.augment, read_rows(self.images_array, rows), seed, x)
        batch = _padded(x, self.labels[rows], self.pad_to)
        self._recent = {**dict(list(self._recent.items())[-1:]), key: batch}  # the last two
        return batch

    def _pooled(self, index: int, rows: np.ndarray) -> np.ndarray:
        pool = self._start_pool()
        key = (self.epoch, index)
        if not pool.wanted(key):  # not prefetched: a jump (resume, a limit, Keras' spec read)
            window = set(self._ahead(index, pool.slots))
            pool.drop_except(window.__contains__)
            while not pool.submit(key, rows, batch_seed(self.seed, *key)):
                pool.wait()
        self._prefetch(index + 1)
        x = pool.take(key, len(rows))
        self._prefetch(index + 1)
        return x

    def _ahead(self, start: int, count: int) -> list[tuple[int, int]]:
        """The `count` batch keys from this epoch's batch `start` on, running on into the next
        epoch (whose order and augmentation are as fixed as this one's)."""
        n = self.num_batches
        if not n:
            return []
        return [(self.epoch + (start + i) // n, (start + i) % n) for i in range(count)]

    def _prefetch(self, start: int) -> None:
        """Hand the workers the batches after `start`, as far as the ring has free slots."""
        pool = self._pool
        for epoch, index in self._ahead(start, pool.slots - 1):
            rows = self.batch_rows(index, epoch)
            if not pool.submit((epoch, index), rows, batch_seed(self.seed, epoch, index)):
                return

    def _start_pool(self) -> AugmentPool:
        if self._pool is None:
            shape = (self.batch_size, *self.images_array.shape[1:])
            slots = max(2, self.prefetch_factor * self.num_workers)
            self._pool = AugmentPool(self.cache_path, self.augment, shape, self.num_workers, slots)
        return self._pool

    def close(self) -> None:
        """Stop the augmentation workers, if any (they start again when needed)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)

    def ordered_rows(self) -> np.ndarray:
        """Cache rows in batch order (this epoch, as far as `limit_batches` reaches)."""
        return np.concatenate([self.batch_rows(i) for i in range(self.num_batches)])

    def targets(self) -> np.ndarray:
        """Labels in batch order, aligned with what `predict` returns."""
        return self.labels[self.ordered_rows()]

    @property
    def num_images(self) -> int:
        return len(self.rows)

    def images(self) -> np.ndarray:
        """The un-augmented images in batch order (uint8)."""
        return read_rows(self.images_array, self.ordered_rows())

    def derived(self, folder: Path, name: str, compute: PerImage, chunk: int = 64) -> np.ndarray:
        """Per-image values (e.g. backbone features) computed once for every cached image,
        stored as `<folder>/<cache key>-<name>.npy` and returned in batch order: every part,
        split and job of a sweep reuses them."""
        values = _derived_for_cache(
            Path(folder), self.cache_key, name, self.images_array, compute, chunk
        )
        return values[self.ordered_rows()]


class ArrayBatches(CachedBatches):
    """Images held in memory (occluded copies for a saliency map, a folder), in order, without
    labels; what a family derives from them (forest features) is computed, never cached on
    disk: the cache is keyed on the data set's images, not these."""

    def __init__(self, images: np.ndarray, num_classes: int, batch_size: int = 64) -> None:
        labels = np.zeros((len(images), num_classes), np.float32)
        super().__init__(np.asarray(images), labels, np.arange(len(images)), batch_size)

    def derived(self, folder: Path, name: str, compute: PerImage, chunk: int = 64) -> np.ndarray:
        images = self.images_array
        return np.concatenate(
            [compute(images[i : i + chunk]) for i in range(0, len(images), chunk)]
        )


def _padded(x: np.ndarray, y: np.ndarray, multiple: int) -> tuple[np.ndarray, ...]:
    """A batch whose size is not a multiple of `multiple` gets copies of its last image with
    sample weight 0 (data-parallel JAX splits every batch evenly across its devices);
    predictions of the copies come last and are cut off by the classifier."""
    if multiple <= 1:
        return x, y
    short = -len(x) % multiple
    weights = np.ones(len(x) + short, np.float32)
    if short:
        weights[len(x) :] = 0
        x = np.concatenate([x, np.repeat(x[-1:], short, axis=0)])
        y = np.concatenate([y, np.repeat(y[-1:], short, axis=0)])
    return x, y, weights


def _derived_for_cache(
    folder: Path,
    cache_key: str,
    name: str,
    images: np.ndarray,
    compute: Callable[[np.ndarray], np.ndarray],
    chunk: int,
) -> np.ndarray:
    path = folder / f"{cache_key or 'nokey'}-{name}.npy"
    values = open_array(path, rows=len(images))  # memory-mapped: cheap to open again
    if values is not None:  # made by an earlier run or job
        return values
    remove_dead_temps(folder)
    start = time.perf_counter()
    parts = []
    with Progress(len(images), f"computing {name}", unit="img") as bar:
        for i in range(0, len(images), chunk):
            parts.append(compute(np.asarray(images[i : i + chunk])))
            bar.update(min(i + chunk, len(images)))
    values = np.concatenate(parts)
    log.info(
        "computed %s for %d images in %.1f s -> %s",
        name,
        len(values),
        time.perf_counter() - start,
        path,
    )
    save_array(path, values)
    return values
