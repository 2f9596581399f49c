"""The three interfaces the Trainer and the entry points are written against.

A new model family implements `Classifier`, a new data source `DataModule` (whose batches are
`Batches`), a new tracking backend `RunLogger`. Nothing outside `taco/data` reads a data module's
arrays; nothing outside `taco/models` knows a model kind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class Classifier(Protocol):
    """A model family behind the Trainer: Keras models and the random forest alike."""

    kind: str  # names the saved format (taco.models.registry)
    single_pass: bool  # fitted in one pass (the forest): the Trainer runs one epoch
    thresholds: np.ndarray | None  # per class, tuned on validation by `Trainer.validate`

    def check(self, image_size: int) -> None:
        """Config checks that need no data (backbone, image size, parameters): fail early."""

    def use_callbacks(self, callbacks: Sequence[Any]) -> None:
        """Callbacks of the model's own framework (e.g. `keras.callbacks.*`) that the Trainer
        does not drive itself; raise ConfigError for one the classifier cannot drive either."""

    def setup(self, num_classes: int, image_size: int, train_labels: np.ndarray) -> None: ...
    def train_epoch(self, batches: Batches, epoch: int, hooks: BatchHooks) -> float:
        """Train one epoch (0-based `epoch`); returns its training loss (NaN if none)."""

    def train_epochs(self, batches: Batches, epochs: range, hooks: EpochHooks) -> None:
        """Train `epochs` in order, calling `hooks.epoch_started` before each and
        `hooks.epoch_ended` after it (stop when it says so). The Trainer calls this; a family
        that can run several epochs in one go (Keras: one `fit` per stage) saves the set-up
        of each (`BaseClassifier` runs `train_epoch` once per epoch)."""

    def end_epoch(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """After the Trainer's callbacks: hand the epoch's metrics to the model's own callbacks;
        True asks the Trainer to stop."""

    def end_fit(self) -> None: ...
    def predict_scores(self, batches: Batches) -> np.ndarray:
        """(images, classes) scores in [0, 1], in batch order."""

    def get_state(self) -> Any:
        """The weights in memory (the best epoch so far)."""

    def set_state(self, state: Any) -> None: ...
    def checkpoint_state(self) -> dict[str, np.ndarray]:
        """Everything a resumed run needs, as named arrays."""

    def load_checkpoint_state(
        self, arrays: Mapping[str, np.ndarray], source: Any = "", weights_only: bool = False
    ) -> None: ...
    def set_learning_rate_factor(self, factor: float) -> float | None:
        """Scale the learning rate of the current stage; the rate now in use (None: no rate)."""

    def save(self, folder: Path, meta: Mapping[str, Any]) -> Path:
        """The trained model and `taco_model.json` (`taco.models.registry.write_info`)."""

    @staticmethod
    def load_predictor(folder: Path, info: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
        """A saved model as a function: (n, size, size, 3) uint8-range images -> scores; it
        reads its files now (a downloaded folder is removed once loaded)."""


class RunLogger(Protocol):
    """A tracking backend: one run per job, closed FINISHED, FAILED or KILLED."""

    run_id: str | None
    tracking_uri: str | None
    active: bool  # False: nothing is recorded, so nothing needs preparing for it
    resumed: bool  # True: run() reopened an existing run (resuming from a checkpoint)
    nests_sweeps: bool  # True: a sweep opens a parent run in this store and jobs nest under it

    def run(
        self, tags: Mapping[str, str] | None = None, run_id: str | None = None
    ) -> contextlib.AbstractContextManager[RunLogger]: ...
    # defaults for all of these: `taco.tracking.base.BaseLogger`
    def check(self) -> None:
        """Refuse a store that cannot be used (ConfigError, TacoError), before a run opens."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def log_dict(self, data: Any, name: str) -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def log_figure(self, figure: Any, name: str) -> None: ...
    def log_artifacts(self, folder: str | Path, name: str | None = None) -> None: ...
    def log_dataset(self, record: Mapping[str, Any]) -> None:
        """The run's data as a dataset input (a DataModule's split record: name, source, the
        annotations' hash, the class names and each part's image ids)."""

    def log_model(self, folder: Path, example: np.ndarray) -> None:
        """A saved model folder (a classifier's `save`) as the run's model, with one or more
        images (uint8) as its input example."""
