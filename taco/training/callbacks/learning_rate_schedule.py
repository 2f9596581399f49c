"""`LearningRateSchedule`: the learning rate per epoch (warm-up, cosine, step), set on the
classifier before each epoch trains."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Annotated, Literal

from taco.schema import Count, PositiveInt, Range
from taco.training.callbacks.base import Callback

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer

log = logging.getLogger(__name__)


class LearningRateSchedule(Callback):
    """Sets the learning rate at the start of each epoch from the epoch alone (so a resumed run
    follows the same curve): linear warm-up, then `cosine` decay to `min_factor`, `step` decay
    by `gamma` every `step_epochs`, or `constant`. Factors multiply the stage's learning rate
    (the fine-tuning stage of a transfer model starts from its own, lower one)."""

    def __init__(
        self,
        schedule: Literal["cosine", "step", "constant"] = "cosine",
        warmup_epochs: Count = 0,
        min_factor: Annotated[float, Range(0, 1, open_low=True)] = 0.01,
        step_epochs: PositiveInt = 10,
        gamma: Annotated[float, Range(0, 1, open_low=True)] = 0.1,
    ) -> None:
        self.schedule, self.warmup_epochs = schedule, int(warmup_epochs)
        self.min_factor, self.step_epochs, self.gamma = (
            float(min_factor),
            int(step_epochs),
            float(gamma),
        )

    def factor(self, epoch: int, max_epochs: int) -> float:
        if epoch < self.warmup_epochs:
            return (epoch + 1) / (self.warmup_epochs + 1)
        if self.schedule == "step":
            return self.gamma ** ((epoch - self.warmup_epochs) // max(self.step_epochs, 1))
        if self.schedule == "cosine":
            span = max(max_epochs - self.warmup_epochs - 1, 1)
            t = min((epoch - self.warmup_epochs) / span, 1.0)
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    def on_train_epoch_start(
        self, trainer: Trainer, classifier: BaseClassifier, epoch: int
    ) -> None:
        lr = classifier.set_learning_rate_factor(self.factor(epoch, trainer.max_epochs))
        if lr is not None:
            trainer.callback_metrics["lr"] = lr
