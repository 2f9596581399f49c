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

from taco.data.files import open_array, remove_dead_temps, save_array
from taco.protocols import PerImage

log = logging.getLogger(__name__)


class CachedBatches(keras.utils.PyDataset):
    """Batches of (uint8 images, float32 multi-hot labels) read from the cache: a quarter of
    the bytes of float32 on their way to the device; every model casts and scales inside itself.

    The order and the augmentations of epoch `e` depend only on (seed, e), so a run is
    repeatable and a resumed run draws exactly what the uninterrupted one would have.
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
        self.set_epoch(0)

    @property
    def num_batches(self) -> int:
        n = math.ceil(len(self.rows) / self.batch_size)
        return min(n, self.limit_batches) if self.limit_batches else n

    def __len__(self) -> int:
        return self.num_batches

    def batch_rows(self, index: int) -> np.ndarray:
        return self._order[index * self.batch_size : (index + 1) * self.batch_size]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.shuffle:
            self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.rows)
        else:
            self._order = self.rows.copy()
        if self.augment is not None and hasattr(self.augment, "set_random_seed"):
            self.augment.set_random_seed(
                int(np.random.SeedSequence([self.seed, self.epoch, 1]).generate_state(1)[0])
            )

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self.profiler is not None and self.profiler.enabled:
            with self.profiler.section("data"):
                return self._batch(index)
        return self._batch(index)

    def _batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.batch_rows(index)
        x = self._read(rows)
        if self.augment is not None:
            x = np.stack([self.augment(image=img)["image"] for img in x])
        return x.astype(np.uint8, copy=False), self.labels[rows]

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
        return self._read(self.ordered_rows())

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """Cached images of `rows`, in that order (read in file order: memory-map friendly)."""
        return np.asarray(self.images_array[np.sort(rows)])[np.argsort(np.argsort(rows))]

    def derived(self, folder: Path, name: str, compute: PerImage, chunk: int = 64) -> np.ndarray:
        """Per-image values (e.g. backbone features) computed once for every cached image,
        stored as `<folder>/<cache key>-<name>.npy` and returned in batch order: every part,
        split and job of a sweep reuses them."""
        values = _derived_for_cache(
            Path(folder), self.cache_key, name, self.images_array, compute, chunk
        )
        return values[self.ordered_rows()]


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
    parts = [compute(np.asarray(images[i : i + chunk])) for i in range(0, len(images), chunk)]
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
