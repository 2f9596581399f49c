"""`LogModel`: the trained model with what predicting needs, as the run's MLflow model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from taco.metrics import Evaluation
from taco.training.callbacks.base import Callback

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.training.trainer import Trainer


class LogModel(Callback):
    """The trained model as the run's logged model `model`: an MLflow pyfunc with signature and
    input example around the saved folder, which holds what predicting needs (class names,
    thresholds, image size; read back by `taco.models.registry.load_model`)."""

    def __init__(self, model: str = "", dataset: str = "") -> None:
        self.model, self.dataset = model, dataset

    def on_test_end(self, trainer: Trainer, classifier: BaseClassifier, result: Evaluation) -> None:
        if not trainer.logger.active:
            return
        datamodule = trainer.datamodule
        meta = {
            "model": self.model,
            "dataset": self.dataset or datamodule.name,
            "class_names": datamodule.class_names,
            "thresholds": [float(t) for t in classifier.thresholds],
            "rare_thresholds": trainer.threshold_support(datamodule.class_names)["below_minimum"],
            "image_size": datamodule.image_size,
            "resize": datamodule.resize,
        }
        with trainer.profiler.section("log_model"), tempfile.TemporaryDirectory() as tmp:
            folder = classifier.save(Path(tmp) / "model", meta)
            trainer.logger.log_model(folder, datamodule.sample("test", 1))
