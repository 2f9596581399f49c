"""`BaseClassifier`: the contract of a model family behind the Trainer, Keras models and the
random forest alike. The Trainer, callbacks and entry points are written against it, and every
family subclasses it (there is no separate Protocol to keep in step: one statement of each
member). What a family must write is abstract: fitting (`train_epoch`), scoring
(`predict_scores`), its state for checkpoints (`checkpoint_state`, `load_checkpoint_state`) and
its saved model (`save`, `load_predictor`); instantiating a family that lacks one names the
missing members. Every other member has a default, so a new family writes what it does and
nothing else."""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taco.errors import TacoError
from taco.protocols import Batches, BatchHooks, EpochHooks

log = logging.getLogger(__name__)


class BaseClassifier(abc.ABC):
    kind: str = ""  # names the saved format (`taco.models.registry`); set it
    single_pass = False  # True: fitted in one pass, so the Trainer runs one epoch
    has_gradients = False  # True: `gradient_model` gives a differentiable model (saliency)
    thresholds: np.ndarray | None = None  # per class, tuned on validation by the Trainer

    # ------------------------------------------------------------------ must write
    @abc.abstractmethod
    def train_epoch(self, batches: Batches, epoch: int, hooks: BatchHooks) -> float:
        """Train one epoch (0-based `epoch`); returns its training loss (NaN if none)."""

    @abc.abstractmethod
    def predict_scores(self, batches: Batches) -> np.ndarray:
        """(images, classes) scores in [0, 1], in batch order."""

    @abc.abstractmethod
    def checkpoint_state(self) -> dict[str, np.ndarray]:
        """Everything a resumed run needs, as named arrays."""

    @abc.abstractmethod
    def load_checkpoint_state(
        self, arrays: Mapping[str, np.ndarray], source: Any = "", weights_only: bool = False
    ) -> None:
        """Back to the state `checkpoint_state` gave (`source` names it in errors)."""

    @abc.abstractmethod
    def save(self, folder: Path, meta: Mapping[str, Any]) -> Path:
        """The trained model and `taco_model.json` (`taco.models.registry.write_info`)."""

    @staticmethod
    @abc.abstractmethod
    def load_predictor(folder: Path, info: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
        """A saved model as a function: (n, size, size, 3) uint8-range images -> scores; it
        reads its files now (a downloaded folder is removed once loaded)."""

    # ------------------------------------------------------------------ defaults
    @staticmethod
    def load_exportable(folder: Path, info: Mapping[str, Any]) -> Any:
        """The saved model as a graph `taco-export` can write: an object with Keras' `export(path,
        format=...)` ("onnx", "tf_saved_model"). A family that has none says why, in one line."""
        raise TacoError(
            f"a {info.get('kind', 'model')} model cannot be exported: its family gives no graph "
            "(BaseClassifier.load_exportable)"
        )

    def gradient_model(self) -> Any:
        """The set-up model whose input gradients show where it looks (a `keras.Model` taking
        the images), for a family with `has_gradients`."""
        raise TacoError(f"a {self.kind or type(self).__name__} model has no input gradients")

    def check(self, image_size: int) -> None:
        """Config checks that need no data (backbone, image size, parameters), to fail before a
        run opens; none by default."""
        return None

    def use_callbacks(self, callbacks: Sequence[Any]) -> None:
        """Callbacks of the model's own framework (`keras.callbacks.*`) that the Trainer does
        not drive itself; a family raises ConfigError for one it cannot drive either. By
        default they mean nothing (not a Keras model): said once."""
        if callbacks:
            names = ", ".join(type(c).__qualname__ for c in callbacks)
            log.warning("callbacks %s are ignored by %s (not a Keras model)", names, self.kind)

    def setup(self, num_classes: int, image_size: int, train_labels: np.ndarray) -> None:
        self.num_classes, self.image_size = num_classes, image_size
        self.thresholds = None

    def train_epochs(self, batches: Batches, epochs: range, hooks: EpochHooks) -> None:
        """Train `epochs` in order, `hooks.epoch_started` before each and `hooks.epoch_ended`
        after it (stop when it says so). The Trainer calls this; a family that runs several
        epochs in one go (Keras: one `fit` per stage) saves the set-up of each. By default one
        `train_epoch` per epoch."""
        for epoch in epochs:
            hooks.epoch_started(epoch)
            if hooks.epoch_ended(epoch, self.train_epoch(batches, epoch, hooks)):
                return

    def end_epoch(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """After the Trainer's callbacks: the epoch's metrics to the model's own callbacks;
        True asks the Trainer to stop."""
        return False  # no callbacks of its own that could ask to stop

    def end_fit(self) -> None:
        return None

    def get_state(self) -> Any:
        """The weights in memory (the best epoch so far): the checkpoint state by default."""
        return self.checkpoint_state()

    def set_state(self, state: Any) -> None:
        self.load_checkpoint_state(state)

    def set_learning_rate_factor(self, factor: float) -> float | None:
        """Scale the learning rate of the current stage; the rate now in use (None: none)."""
        return None  # no learning rate to schedule
