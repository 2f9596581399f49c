"""`AugmentationPreview`: a grid of augmented training images, logged before the first epoch."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from taco.plots import augmentation_preview
from taco.training.callbacks.base import Callback, log_figure

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer


class AugmentationPreview(Callback):
    """`plots/augmentation_preview.png`: `images` training images, each with augmented copies."""

    def __init__(self, images: int = 6) -> None:
        self.images = int(images)

    def on_fit_start(self, trainer: Trainer, classifier: BaseClassifier) -> None:
        datamodule = trainer.datamodule
        if datamodule.augmentation is None or not trainer.logger.active:
            return
        augment = copy.deepcopy(datamodule.augmentation)  # the training draws stay untouched
        figure = augmentation_preview(datamodule.sample("train", self.images), augment)
        log_figure(trainer.logger, figure, "plots/augmentation_preview.png")
