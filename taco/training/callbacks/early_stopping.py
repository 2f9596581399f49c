"""`EarlyStopping`: stop when the monitored validation metric has not improved for `patience`
validation epochs."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

from taco.schema import Mode, NonNegative, PositiveInt
from taco.training.callbacks.base import _Monitoring

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer

log = logging.getLogger(__name__)


class EarlyStopping(_Monitoring):
    """Stops fitting after `patience` validation epochs without a better `monitor`."""

    def __init__(
        self,
        monitor: str = "val/f1_macro",
        patience: PositiveInt = 10,
        mode: Mode = "auto",
        min_delta: Annotated[float, NonNegative] = 0.0,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = int(patience)
        self.wait = 0
        self.stopped_epoch = 0

    def on_train_epoch_end(self, trainer: Trainer, classifier: BaseClassifier, epoch: int) -> None:
        value = self.current(trainer)
        if value is None:
            return
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch + 1
            trainer.should_stop = True
            log.info(
                "early stopping after epoch %d: no better %s for %d validation epochs",
                epoch + 1,
                self.monitor,
                self.patience,
            )

    def state_dict(self) -> dict:
        return {**super().state_dict(), "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.wait = int(state.get("wait", 0))
