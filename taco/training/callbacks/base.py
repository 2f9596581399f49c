"""The base of every taco callback, Lightning style: hooks around fitting, configured in
`conf/callbacks/` (one callback per file in this package; `taco.training.callbacks.<Name>`).

A callback subclasses `Callback` and overrides the hooks it needs. After each epoch,
`trainer.callback_metrics` holds that epoch's metrics (`taco.metrics.EPOCH_METRICS`): `train/loss`,
`epoch_seconds` and, on validation epochs, `val/loss`, `val/f1_macro` (thresholds tuned per class)
and `val/f1_macro_fixed` (0.5). `state_dict` / `load_state_dict` carry a callback's state through
a checkpoint under its `state_key`, so a resumed run continues exactly where it stopped.
Callbacks run in `order` (lowest first): the checkpoint callback runs last, after every state it
saves has been updated.

Plain Keras callbacks (`keras.callbacks.*`) may be listed too: the Keras classifier drives them,
and they see the validation metrics in `logs` as `val_f1_macro`, `val_loss`, ...
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Annotated, Any

from taco.errors import ConfigError
from taco.metrics import EPOCH_METRICS, Evaluation
from taco.schema import Mode, NonNegative, better

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.tracking.base import BaseLogger
    from taco.training.trainer import Trainer

log = logging.getLogger(__name__)


class Callback:
    """Override the hooks you need; each gets the Trainer and the classifier it fits."""

    order = 0  # callbacks run lowest order first

    @property
    def state_key(self) -> str:
        """The key of this callback's state in a checkpoint."""
        return type(self).__qualname__

    def check(self, classifier: BaseClassifier) -> None:
        """Refuse (ConfigError) a classifier this callback cannot serve: called when the job is
        built, before a run opens or any data work."""

    def on_fit_start(self, trainer: Trainer, classifier: BaseClassifier) -> None:
        """Data set up, model built (and restored when resuming), before the first epoch."""

    def on_train_epoch_start(
        self, trainer: Trainer, classifier: BaseClassifier, epoch: int
    ) -> None:
        """Before epoch `epoch` (0-based) trains; `trainer.callback_metrics` is empty."""

    def on_train_batch_end(
        self, trainer: Trainer, classifier: BaseClassifier, batch: int, logs: dict
    ) -> None:
        """After each training batch, with the model's running `logs` (e.g. `loss`)."""

    def on_train_epoch_end(self, trainer: Trainer, classifier: BaseClassifier, epoch: int) -> None:
        """After epoch `epoch` trained and (on validation epochs) was scored."""

    def on_fit_end(self, trainer: Trainer, classifier: BaseClassifier) -> None:
        """After the last epoch (or an early stop), before thresholds are tuned."""

    def on_validation_end(
        self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation
    ) -> None:
        """After `Trainer.validate` tuned the thresholds (`classifier.thresholds`)."""

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        """After `Trainer.test` scored the test part with the tuned thresholds."""

    def on_exception(
        self, trainer: Trainer, classifier: BaseClassifier, error: BaseException
    ) -> None:
        """Fitting stopped on an error or an interrupt (Ctrl-C, SIGTERM); it is re-raised."""

    def state_dict(self) -> dict:
        """What a resumed run needs of this callback (JSON-serialisable)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what `state_dict` returned, when resuming from a checkpoint."""


class _Monitoring(Callback):
    """Tracks the best value of one epoch metric."""

    def __init__(
        self, monitor: str, mode: Mode, min_delta: Annotated[float, NonNegative] = 0.0
    ) -> None:
        if monitor not in EPOCH_METRICS:  # fails while the config is built, before any run
            raise ConfigError(
                f"callbacks: monitor must be one of {sorted(EPOCH_METRICS)}; got {monitor!r}"
            )
        self.monitor, self.mode, self.min_delta = monitor, better(monitor, mode), float(min_delta)
        self.best: float | None = None
        self.best_epoch = 0  # 1-based; 0 = none yet

    def current(self, trainer: Trainer) -> float | None:
        value = trainer.callback_metrics.get(self.monitor)
        return None if value is None or math.isnan(value) else float(value)

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state.get("best"), int(state.get("best_epoch", 0))


def log_figure(logger: BaseLogger, figure: Any, name: str) -> None:
    import matplotlib.pyplot as plt

    logger.log_figure(figure, name)
    plt.close(figure)
