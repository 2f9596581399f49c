"""The interfaces of what has no base class: a data source (`DataModule`, whose batches are
`Batches`), the Trainer's hooks a classifier reports to, a profiler.

A new model family subclasses `taco.models.base.BaseClassifier`, a new tracking backend
`taco.tracking.base.BaseLogger`: those base classes are the contracts, each member stated once,
with its default. Nothing outside `taco/data` reads a data module's arrays; nothing outside
`taco/models` knows a model kind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

PerImage = Callable[[np.ndarray], np.ndarray]  # a chunk of images -> one row per image


class Profiler(Protocol):
    enabled: bool

    def section(self, name: str) -> contextlib.AbstractContextManager: ...
    def add(self, name: str, seconds: float) -> None: ...


class Batches(Protocol):
    """One part's batches in a fixed order: (uint8-range images, multi-hot labels) per index."""

    pad_to: int  # > 1: batches padded to a multiple, with sample weight 0 for the copies
    progress: Any  # a `taco.progress.Progress` counting the batches read, or None

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]: ...
    def read(self, epoch: int, index: int) -> tuple[np.ndarray, ...]:
        """Batch `index` of epoch `epoch`, whichever epoch is set."""

    def set_epoch(self, epoch: int) -> None:
        """Order and augmentation of epoch `epoch`, from (seed, epoch) alone: resumable."""

    def targets(self) -> np.ndarray:
        """Labels in batch order, aligned with what a classifier's `predict_scores` returns."""

    def images(self) -> np.ndarray:
        """Every image of these batches, in batch order, un-augmented (uint8)."""

    def derived(self, folder: Path, name: str, compute: PerImage, chunk: int = 64) -> np.ndarray:
        """Per-image values computed once from every cached image by `compute` (uint8 chunks
        in, one row per image out), stored under `folder` keyed by the image cache and `name`,
        returned in batch order: e.g. a forest's backbone features."""

    @property
    def num_images(self) -> int: ...

    def close(self) -> None:
        """Free what reading needs (augmentation workers); reading again starts them anew."""


class DataModule(Protocol):
    """Data set -> labels -> split -> image cache -> batches, the same for every data source."""

    name: str
    image_size: int
    resize: str
    seed: int
    augmentation: Any

    def prepare_data(self) -> None:
        """Write (generate) or check the files once, before `setup`."""

    def check(self) -> None:
        """`prepare_data`, then refuse (ConfigError, DataError) what can be refused without
        decoding an image: annotations, class map, split. Runs before a run opens."""

    def setup(self) -> None:
        """Load labels, build the image cache, split."""

    @property
    def class_names(self) -> list[str]: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def cache_key(self) -> str:
        """Names the image cache: what caches derived from it (features) are keyed on."""

    def labels(self, part: str) -> np.ndarray: ...
    def batches(self, part: str, **options: Any) -> Batches:
        """One part's batches. Options: `shuffle` and `augment` (default: the training part
        only), `limit_batches`, and a `Profiler` to time batch reading."""

    def sample(self, part: str, n: int) -> np.ndarray: ...
    def images(self, part: str) -> np.ndarray:
        """A part's images as the model sees them (uint8), in the order of its labels."""

    def boxes(self, part: str) -> list[np.ndarray]:
        """Each image's object boxes as (class column, x0, y0, x1, y1) rows in model-input
        pixels; a data module without boxes returns []: where a model looks is then shown,
        not checked."""

    def record(self) -> tuple[dict[str, str], dict[str, Any]]:
        """(tags, split record) to log with a run: name, source, content hash, class names,
        image ids per part, skips (`dataset`, `source`, `annotation_sha256`, `class_names`,
        `train`/`val`/`test`: the keys the logger names the data by)."""

    def split_labels(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """(class names, each part's labels) as a run with this config splits them, from the
        annotations alone where the data allow (`taco-stats`); before or without `setup`."""

    def notes(self) -> list[str]:
        """Lines a report of the data states besides counts (class map, split, left out)."""


class BatchHooks(Protocol):
    """What a classifier reports while it trains one epoch (the Trainer implements it)."""

    def batch_started(self, batch: int) -> None: ...
    def batch_ended(self, batch: int, logs: Mapping[str, float]) -> None: ...


class EpochHooks(BatchHooks, Protocol):
    """What a classifier reports around each epoch it trains (the Trainer implements it):
    `epoch_ended` scores validation and runs the Trainer's callbacks; True asks to stop."""

    def epoch_started(self, epoch: int) -> None: ...
    def epoch_ended(self, epoch: int, loss: float) -> bool: ...
