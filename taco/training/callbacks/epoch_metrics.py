"""`LogEpochMetrics`: each epoch's metrics (`trainer.callback_metrics`) to the run."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from taco.training.callbacks.base import Callback

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer

log = logging.getLogger(__name__)


class LogEpochMetrics(Callback):
    """Logs each epoch's metrics (and the learning rate) to the run: the curves in MLflow."""

    def on_train_epoch_end(self, trainer: Trainer, classifier: BaseClassifier, epoch: int) -> None:
        metrics = {k: v for k, v in trainer.callback_metrics.items() if not np.isnan(v)}
        trainer.logger.log_metrics(metrics, step=epoch + 1)
