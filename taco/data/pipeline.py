"""Batches from the uint8 image cache, with albumentations applied to the training split only."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from taco.data.augment_pool import AugmentPool, augment_into, batch_seed, read_rows
from taco.data.feeder import Feeder, Key
from taco.files import open_array, remove_dead_temps, save_array
from taco.process import feed_cores, use_feed_cores
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
        feed_ahead: bool = True,
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
        self._recent: dict[Key, tuple[np.ndarray, ...]] = {}
        self.epoch: int | None = None
        self._orders: dict[int, np.ndarray] = {}
        self._orders_lock = threading.Lock()
        self.feed_ahead = feed_ahead
        self._feeder = self._new_feeder()  # its thread starts at the first batch read
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
        order = self._epoch_order(self.epoch if epoch is None else epoch)
        return order[index * self.batch_size : (index + 1) * self.batch_size]

    def set_epoch(self, epoch: int) -> None:
        """Order of epoch `epoch`; once batches have been read, the feeder starts on its first
        ones at once (e.g. while the previous epoch is validated).

        The epoch is set here only: Keras' `on_epoch_end` also fires when a `fit` starts (its
        epoch iterator's reset), so it cannot count epochs."""
        if self.epoch is not None and int(epoch) == self.epoch:
            return
        self.epoch = int(epoch)
        if self.num_batches:
            self._feeder.expect((self.epoch, 0))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """Rows in the order of `epoch` (this one's and the next, which the feeder reaches,
        kept; the feeder's thread asks too, hence the lock)."""
        with self._orders_lock:
            if epoch not in self._orders:
                rng = np.random.default_rng([self.seed, epoch])
                order = rng.permutation(self.rows) if self.shuffle else self.rows.copy()
                self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
                self._orders[epoch] = order
            return self._orders[epoch]

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        return self.read(self.epoch, index)

    def read(self, epoch: int, index: int) -> tuple[np.ndarray, ...]:
        """Batch `index` of epoch `epoch`, whichever epoch is set (a pipeline that runs on
        into the next epoch asks for its batches before the Trainer moves to it)."""
        if self._progress is not None:
            self._read.add(int(index))
            self._progress.update(len(self._read))
        key = (int(epoch), int(index))
        if self.profiler is not None and self.profiler.enabled:
            with self.profiler.section("data"):  # the time the consumer waited for a batch
                return self._batch(key)
        return self._batch(key)

    def _batch(self, key: Key) -> tuple[np.ndarray, ...]:
        if key in self._recent:  # Keras reads the first batches twice (to learn their spec)
            return self._recent[key]
        batch = self._feeder.get(key)
        self._recent = {**dict(list(self._recent.items())[-1:]), key: batch}  # the last two
        return batch

    def _make(self, key: Key) -> tuple[np.ndarray, ...]:
        """Batch `key` (epoch, index), in the feeder's thread: read, augmented, padded."""
        epoch, index = key
        rows = self.batch_rows(index, epoch)
        if self.augment is None:
            x = read_rows(self.images_array, rows)
        elif self.num_workers:
            x = self._pooled(key, rows)
        else:
            x = np.empty((len(rows), *self.images_array.shape[1:]), np.uint8)
            augment_into(
                self.augment, read_rows(self.images_array, rows), batch_seed(self.seed, *key), x
            )
        return _padded(x, self.labels[rows], self.pad_to)

    def _pooled(self, key: Key, rows: np.ndarray) -> np.ndarray:
        """Batch `key` from the augmentation pool, whose ring is kept full of the batches that
        follow it (only the feeder's thread hands the pool work)."""
        pool = self._start_pool()
        if not pool.wanted(key):  # not handed out ahead: a jump (resume, a limit) or the start
            window = set(self._keys_from(key, pool.slots))
            pool.drop_except(window.__contains__)
            while not pool.submit(key, rows, batch_seed(self.seed, *key)):
                pool.wait()
        self._fill(key)
        x = pool.take(key, len(rows))
        self._fill(key)
        return x

    def _keys_from(self, key: Key, count: int) -> list[Key]:
        """`count` batch keys from `key` on, running on into the next epochs."""
        n = self.num_batches
        if not n:
            return []
        epoch, start = key
        return [(epoch + (start + i) // n, (start + i) % n) for i in range(count)]

    def _successor(self, key: Key) -> Key | None:
        """The batch after `key`: on into the next epoch for training batches (shuffled or
        augmented), nothing after the last one of a fixed pass (validation, test)."""
        following = self._keys_from(key, 2)
        if len(following) < 2 or (following[1][0] != key[0] and not self._runs_on):
            return None
        return following[1]

    @property
    def _runs_on(self) -> bool:
        return self.shuffle or self.augment is not None

    def _fill(self, key: Key) -> None:
        """Hand the workers the batches after `key`, as far as the ring has free slots."""
        pool = self._pool
        for epoch, index in self._keys_from(key, pool.slots)[1:]:
            rows = self.batch_rows(index, epoch)
            if not pool.submit((epoch, index), rows, batch_seed(self.seed, epoch, index)):
                return

    def _start_pool(self) -> AugmentPool:
        if self._pool is None:
            shape = (self.batch_size, *self.images_array.shape[1:])
            slots = max(2, self.prefetch_factor * self.num_workers)
            self._pool = AugmentPool(
                self.cache_path, self.augment, shape, self.num_workers, slots, feed_cores()
            )
        return self._pool

    def _new_feeder(self) -> Feeder:
        """The feeder; one that starts augmentation workers lives until `close` (its workers
        die with the thread that started them)."""
        return Feeder(
            self._make,
            self._successor,
            depth=self.prefetch_factor,
            idle_seconds=None if self.num_workers else 2.0,
            on_start=use_feed_cores,
            threaded=self.feed_ahead,
        )

    def pool_timing(self) -> dict[str, float] | None:
        """The augmentation workers' time so far (`AugmentPool.timing`), or None without them."""
        return self._pool.timing() if self._pool is not None else None

    def wait_ready(self) -> None:
        """Until every augmentation worker has started (a benchmark's clock starts after)."""
        if self.num_workers:
            self._start_pool().wait_ready()

    def close(self) -> None:
        """Stop the feeder's thread and the augmentation workers, if any (both start again
        when needed)."""
        feeder, self._feeder = self._feeder, self._new_feeder()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()  # first: a feeder waiting on a worker gives up within half a second
        feeder.close()
        self._recent = {}

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
        # read when asked: in memory already, and made by the thousand (occluded copies)
        super().__init__(
            np.asarray(images), labels, np.arange(len(images)), batch_size, feed_ahead=False
        )

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
